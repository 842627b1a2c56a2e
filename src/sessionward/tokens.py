"""Secret tokens: random, and stored only as their SHA-256."""

from __future__ import annotations

import hashlib
import secrets

MAX_TOKEN_LENGTH = 512


def new_token() -> str:
    """A fresh 256-bit secret, URL-safe."""
    return secrets.token_urlsafe(32)


def new_public_id() -> str:
    """A random, non-secret identifier (128 bits) for records users may see and name.
    Never starts with ``-``, which a command line would take for an option."""
    while (found := secrets.token_urlsafe(16)).startswith("-"):
        pass
    return found


def hash_token(token: str) -> str:
    """The hex SHA-256 under which a token is stored; the token itself never is."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def plausible_token(token: object) -> bool:
    """Cheap sanity check before any lookup: a non-empty string of sane length."""
    return isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_LENGTH
