"""Login, refresh, logout, and authenticating a request's access token.

A login creates a session; its secret token is the *refresh token* and a JWT is the access
token (``sid`` = the session's public id). Refreshing rotates the session's token. The
successor is derived from the presented token with the server secret (HMAC-SHA256), and the
new access token's ``iat`` and ``jti`` from the rotation, so a parallel refresh within the
grace window rebuilds the *same* pair without the store ever holding a token. A spent token
presented any other way revokes the session (RFC 9700 §4.14.2).

    pair = await ward.auth.login("alice", "correct horse battery", ip="203.0.113.9")
    principal = await ward.auth.authenticate(pair.access_token)   # checks the session too
    pair = await ward.auth.refresh(pair.refresh_token)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

from ..clock import Clock
from ..config import Settings
from ..errors import (
    InvalidCredentials,
    InvalidToken,
    RefreshTokenReused,
    SessionError,
)
from ..limits import RateLimiter
from ..sessions import Session, Sessions, judge
from ..stores.protocols import Store
from ..stores.records import UserChange, UserRow
from ..tokens import hash_token, new_public_id, plausible_token
from ..users import MAX_PASSWORD, User, Users, possible_username, username_key
from .access import AccessTokens, Claims
from .keys import SigningKeys
from .lockout import Lockout
from .passwords import Passwords


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    session_id: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: a user, through one live session."""

    user_id: str
    session: Session
    claims: Claims


class Auth:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        sessions: Sessions,
        users: Users,
        passwords: Passwords,
        limits: RateLimiter,
        keys: SigningKeys,
        clock: Clock,
    ) -> None:
        self._store = store
        self._settings = settings
        self._sessions = sessions
        self._users = users
        self._passwords = passwords
        self._keys = keys
        self._clock = clock
        self.tokens = AccessTokens(keys, settings, clock)
        self.lockout = Lockout(limits, settings)

    async def register(self, username: str, password: str) -> User:
        return await self._users.create(username, password)

    async def login(
        self, username: str, password: str, *, ip: str | None = None, user_agent: str | None = None
    ) -> TokenPair:
        """Tokens for a new session, or :class:`InvalidCredentials` (unknown user, wrong
        password and disabled account alike) or :class:`AccountLocked`."""
        key = username_key(username) if isinstance(username, str) else ""
        attempt = await self.lockout.begin(key, ip)
        row = await self._store.find_user(key) if possible_username(username) else None
        # never truncated (ASVS 6.2.8): one longer than any account can have fails, after the
        # same one verification as any other failure
        fits = isinstance(password, str) and len(password) <= MAX_PASSWORD
        usable = row is not None and not row.disabled and fits
        given = password if fits else ""
        verified = await self._passwords.verify(row.password_hash if usable else None, given)  # type: ignore[union-attr]
        if row is None or not usable or not verified.ok:
            raise InvalidCredentials("invalid username or password")
        await self.lockout.succeeded(attempt)
        if verified.needs_rehash:
            await self._rehash(row, given)
        new = await self._sessions.create(row.user_id, ip=ip, user_agent=user_agent)
        issued_at = int(self._clock.now())
        return self._pair(new.session, new.token, issued_at, new_public_id())

    async def refresh(self, refresh_token: str) -> TokenPair:
        """A new pair for the same session; the presented token is spent."""
        if not plausible_token(refresh_token):
            raise InvalidToken("unknown refresh token")
        successor = self._derive("refresh", refresh_token)
        done = await self._store.refresh_session(
            hash_token(refresh_token), hash_token(successor), grace=self._settings.refresh_grace
        )
        if done.outcome == "reused":
            raise RefreshTokenReused("a spent refresh token was used again; the session is revoked")
        if done.outcome in ("unknown", "dead") or done.row is None:
            try:
                judge(done.row, done.now)
            except SessionError as exc:
                raise InvalidToken(f"refresh refused: {exc}") from None
            raise InvalidToken("unknown refresh token")
        session = Session.from_row(done.row)
        if done.now >= session.created_at + self._settings.refresh_token_ttl:
            await self._sessions.revoke(session.user_id, session.session_id)
            raise InvalidToken("the refresh token has expired")
        assert done.row.rotated_at is not None
        jti = self._derive("jti", successor)[:22]
        return self._pair(session, successor, int(done.row.rotated_at), jti)

    async def authenticate(self, access_token: str) -> Principal:
        """The principal of a request: a valid token *and* a live session, else
        :class:`InvalidToken` or a :class:`SessionError`."""
        claims = self.tokens.verify(access_token)
        session = await self._sessions.get(claims.user_id, claims.session_id)
        return Principal(claims.user_id, session, claims)

    async def logout(self, principal: Principal) -> None:
        await self._sessions.revoke(principal.user_id, principal.session.session_id)

    async def logout_all(self, principal: Principal) -> int:
        return await self._sessions.revoke_all(principal.user_id)

    async def change_password(self, principal: Principal, current: str, new: str) -> None:
        """Check ``current``, set ``new``, and end every other session of the user."""
        row = await self._store.get_user(principal.user_id)
        verified = await self._passwords.verify(row.password_hash if row else None, current)
        if row is None or not verified.ok:
            raise InvalidCredentials("the current password is wrong")
        await self._users.set_password(row.user_id, new, keep=principal.session.session_id)

    def _pair(self, session: Session, refresh: str, issued_at: int, jti: str) -> TokenPair:
        access = self.tokens.issue(
            session.user_id, session.session_id, issued_at=issued_at, jti=jti
        )
        return TokenPair(access, refresh, self.tokens.ttl, session.session_id)

    def _derive(self, purpose: str, token: str) -> str:
        mac = hmac.new(self._keys.secret, f"{purpose}:{token}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")

    async def _rehash(self, row: UserRow, password: str) -> None:
        # Conditional on the old hash: a password change racing this login wins.
        new_hash = await self._passwords.hash(password)
        await self._store.update_user(
            row.user_id, UserChange(password_hash=new_hash, expected_hash=row.password_hash)
        )
