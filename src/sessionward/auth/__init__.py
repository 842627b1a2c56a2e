"""Accounts and tokens: passwords, access JWTs, refresh rotation, brute-force protection."""

from __future__ import annotations

from .access import AccessTokens, Claims
from .keys import SigningKeys, load_keys
from .lockout import Lockout
from .manager import Auth, Principal, TokenPair
from .passwords import Passwords

__all__ = [
    "AccessTokens",
    "Auth",
    "Claims",
    "Lockout",
    "Passwords",
    "Principal",
    "SigningKeys",
    "TokenPair",
    "load_keys",
]
