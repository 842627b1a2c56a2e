"""Access tokens: JWTs with a pinned algorithm, several verification keys, and our clock.

Verification accepts only the configured algorithm (so ``alg: none`` and HS/RS confusion are
refused), requires every claim, checks issuer and audience, and picks the key by ``kid``.
Expiry, and ``iat``/``nbf`` in the future, are checked against the injected
:class:`~sessionward.clock.Clock` with 5 s of leeway, so tests move time instead of
sleeping. A valid token is not enough on its own: the caller also checks its session
(``sid``), so revocation takes effect at once.

A token's signature and claims are checked once and remembered (a bounded LRU of verified
tokens: the same string always verifies to the same claims, and the keys are fixed for the
process's life); only the time claims are judged again on every use. This halves the cost
of an authenticated request: PyJWT's parsing is most of it.

Signing is deterministic for a given payload (HS256, EdDSA and RS256 with PKCS#1 v1.5 all
are), which is what lets a refresh replayed within the grace window return the very same
access token.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jwt

from ..clock import Clock
from ..config import Settings
from ..errors import InvalidToken
from .keys import SigningKeys

LEEWAY = 5
VERIFIED_CACHE = 10_000
_REQUIRED = ["exp", "iat", "sub", "sid", "jti", "iss", "aud"]


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: str
    session_id: str
    jti: str
    issued_at: int
    expires_at: int
    not_before: int | None = None  # we never set nbf; a token that has one must respect it


class AccessTokens:
    def __init__(self, keys: SigningKeys, settings: Settings, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock
        self._ttl = settings.access_token_ttl
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._verified = functools.lru_cache(maxsize=VERIFIED_CACHE)(self._signed_claims)

    @property
    def ttl(self) -> int:
        return self._ttl

    def issue(self, user_id: str, session_id: str, *, issued_at: int, jti: str) -> str:
        payload = {
            "sub": user_id,
            "sid": session_id,
            "iat": issued_at,
            "exp": issued_at + self._ttl,
            "jti": jti,
            "iss": self._issuer,
            "aud": self._audience,
        }
        headers = {"kid": self._keys.kid}
        return jwt.encode(payload, self._keys.signing_key, self._keys.algorithm, headers)

    def verify(self, token: str) -> Claims:
        """The token's claims, or :class:`InvalidToken` whatever is wrong with it."""
        if not isinstance(token, str) or not 0 < len(token) <= 8192:
            raise InvalidToken("malformed token")
        return self._timely(self._verified(token))

    def _signed_claims(self, token: str) -> Claims:
        """Signature, algorithm, key, issuer, audience and claim types (cached per token)."""
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.verification.get(str(header.get("kid")))
            if key is None:
                raise InvalidToken("token signed with an unknown key")
            claims = jwt.decode(token, key, algorithms=[self._keys.algorithm], **self._options)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {exc}") from None
        return _typed(claims)

    @property
    def _options(self) -> dict[str, Any]:
        return {
            "audience": self._audience,
            "issuer": self._issuer,
            # time claims are checked below against our clock, not PyJWT's time.time()
            "options": {"require": _REQUIRED, "verify_exp": False, "verify_iat": False,
                        "verify_nbf": False},
        }  # fmt: skip

    def _timely(self, claims: Claims) -> Claims:
        now = self._clock.now()
        if now >= claims.expires_at + LEEWAY:
            raise InvalidToken("the token has expired")
        if claims.issued_at > now + LEEWAY:
            raise InvalidToken("the token was issued in the future")
        if claims.not_before is not None and claims.not_before > now + LEEWAY:
            raise InvalidToken("the token is not valid yet")
        return claims


def _typed(claims: dict[str, Any]) -> Claims:
    sub, sid, jti = (claims.get(name) for name in ("sub", "sid", "jti"))
    iat, exp, nbf = claims.get("iat"), claims.get("exp"), claims.get("nbf")
    if not (isinstance(sub, str) and isinstance(sid, str) and isinstance(jti, str)):
        raise InvalidToken("invalid token: sub, sid and jti must be strings")
    if not (type(iat) is int and type(exp) is int and (nbf is None or type(nbf) is int)):
        raise InvalidToken("invalid token: iat, exp and nbf must be integers")
    return Claims(sub, sid, jti, iat, exp, nbf)
