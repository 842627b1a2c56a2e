"""Users: unique case-insensitive usernames, argon2id passwords, roles, a disabled flag.

Disabling a user revokes all their sessions; changing a password revokes all of them but
the one that made the change.

    user = await ward.users.create("alice", "correct horse battery", roles=("admin",))
    await ward.users.set_password(user.user_id, "new long password", keep=session_id)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .auth.passwords import Passwords
from .errors import InvalidArgument, UsernameTaken
from .sessions import Sessions
from .stores.protocols import UserStore
from .stores.records import NewUserRow, UserChange, UserRow
from .tokens import new_public_id
from .validation import check_text

MIN_USERNAME, MAX_USERNAME = 3, 64
# Anchored, and only syntax Python's re, pydantic (Rust regex) and JSON Schema (ECMA 262) read
# alike: request models publish this very pattern in the OpenAPI schema.
USERNAME_PATTERN = f"^[A-Za-z0-9_.-]{{{MIN_USERNAME},{MAX_USERNAME}}}$"
USERNAME = re.compile(USERNAME_PATTERN)
ROLE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MIN_PASSWORD, MAX_PASSWORD = 10, 1024
ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    username: str
    roles: tuple[str, ...]
    disabled: bool
    created_at: float

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @classmethod
    def from_row(cls, row: UserRow) -> User:
        return cls(row.user_id, row.username, row.roles, row.disabled, row.created_at)


def username_key(username: str) -> str:
    """The form usernames are unique in: case folded."""
    return username.casefold()


def possible_username(username: object) -> bool:
    """Whether ``username`` could name a user; anything else is never looked up, so input
    no user can have (a NUL, say) never reaches a store."""
    return isinstance(username, str) and USERNAME.fullmatch(username) is not None


def check_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise InvalidArgument(
            f"a username is {MIN_USERNAME} to {MAX_USERNAME} letters, digits, '_', '.' or '-'"
        )
    return username


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidArgument(f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    try:
        password.encode()
    except UnicodeEncodeError:
        raise InvalidArgument("a password must be valid Unicode") from None
    return password


def check_roles(roles: tuple[str, ...]) -> tuple[str, ...]:
    if not all(isinstance(r, str) and ROLE.fullmatch(r) for r in roles):
        raise InvalidArgument("a role is a lowercase name of up to 32 characters")
    return tuple(sorted(set(roles)))


class Users:
    def __init__(self, store: UserStore, sessions: Sessions, passwords: Passwords) -> None:
        self._store = store
        self._sessions = sessions
        self._passwords = passwords

    async def create(self, username: str, password: str, *, roles: tuple[str, ...] = ()) -> User:
        """Register a user; :class:`UsernameTaken` if the name is in use in any case."""
        name = check_username(username)
        new = NewUserRow(
            user_id=new_public_id(),
            username=name,
            username_key=username_key(name),
            password_hash=await self._passwords.hash(check_password(password)),
            roles=check_roles(roles),
        )
        row = await self._store.create_user(new)
        if row is None:
            raise UsernameTaken(f"the username {name!r} is taken")
        return User.from_row(row)

    async def get(self, user_id: str) -> User | None:
        row = await self._store.get_user(user_id)
        return None if row is None else User.from_row(row)

    async def find(self, username: str) -> User | None:
        if not possible_username(username):
            return None
        row = await self._store.find_user(username_key(username))
        return None if row is None else User.from_row(row)

    async def page(self, *, after: str | None = None, limit: int = 100) -> list[User]:
        """Users ordered by username (case folded), ``limit`` at a time after ``after``."""
        after_key = None if after is None else username_key(check_text(after, "after", 64) or "")
        rows = await self._store.list_users(after=after_key, limit=min(max(limit, 1), 1000))
        return [User.from_row(row) for row in rows]

    async def set_disabled(self, user_id: str, disabled: bool = True) -> User:
        """Disable (and log out everywhere) or re-enable a user."""
        row = await self._store.update_user(user_id, UserChange(disabled=disabled))
        if row is None:
            raise InvalidArgument("no such user")
        if disabled:
            await self._sessions.revoke_all(user_id)
        return User.from_row(row)

    async def set_roles(self, user_id: str, roles: tuple[str, ...]) -> User:
        row = await self._store.update_user(user_id, UserChange(roles=check_roles(roles)))
        if row is None:
            raise InvalidArgument("no such user")
        return User.from_row(row)

    async def set_password(self, user_id: str, password: str, *, keep: str | None = None) -> None:
        """Change a password and revoke every session except ``keep`` (the caller's)."""
        new_hash = await self._passwords.hash(check_password(password))
        if await self._store.update_user(user_id, UserChange(password_hash=new_hash)) is None:
            raise InvalidArgument("no such user")
        await self._sessions.revoke_all(user_id, keep=keep)
