"""Signing keys for access tokens, and the server secret that derives refresh successors.

The secret comes from ``Settings.secret_key`` (``SESSIONWARD_SECRET_KEY``). Without one, a
SQLite store generates it once and keeps it beside the database file with 0600 permissions
(``app.db`` → ``app.db.key``), and a memory store makes one per process; Redis and
PostgreSQL refuse to start, because every instance sharing the store must share the key.
There is never a built-in default.

Each verification key has a ``kid`` (a digest of the key), so tokens signed with a previous
key (``previous_secret_keys``, or ``jwt_previous_public_keys`` for EdDSA/RS256) still verify
during a rotation while new tokens use the current key.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..config import Settings
from ..errors import ConfigurationError
from ..urls import SqliteOptions, StoreURL

MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class SigningKeys:
    algorithm: str
    kid: str
    signing_key: Any = field(repr=False)
    verification: dict[str, Any] = field(repr=False)
    secret: bytes = field(repr=False)


def load_keys(settings: Settings, store: StoreURL) -> SigningKeys:
    """The keys for ``settings``, or :class:`ConfigurationError` saying what is missing."""
    secret = _secret(settings, store)
    if settings.jwt_algorithm == "HS256":
        previous = [k.get_secret_value().encode() for k in settings.previous_secret_keys]
        verification = {_kid(k): k for k in [secret, *previous]}
        return SigningKeys("HS256", _kid(secret), secret, verification, secret)
    return _asymmetric(settings, secret)


def _kid(material: bytes) -> str:
    return hashlib.sha256(material).hexdigest()[:16]


def _secret(settings: Settings, store: StoreURL) -> bytes:
    if settings.secret_key is not None:
        secret = settings.secret_key.get_secret_value().encode()
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"SESSIONWARD_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return secret
    if isinstance(store.options, SqliteOptions):
        return _key_file(Path(f"{store.options.path}.key"))
    if store.backend == "memory":
        return secrets.token_urlsafe(48).encode()
    raise ConfigurationError(
        f"SESSIONWARD_SECRET_KEY is required with a {store.scheme}:// store: every instance "
        "sharing the store must sign with the same key. Generate one with: "
        "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
    )


def _key_file(path: Path) -> bytes:
    """Read the key beside the database, creating it once; safe when processes race."""
    if not path.exists():
        staged = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_urlsafe(48).encode())
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(staged, path)  # atomic: the first process's key wins, whole
        staged.unlink()
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigurationError(
            f"the key file {path} is readable by others (mode {mode:o}); chmod 600 it"
        )
    secret = path.read_bytes().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(f"the key file {path} holds fewer than {MIN_SECRET_BYTES} bytes")
    return secret


def _asymmetric(settings: Settings, secret: bytes) -> SigningKeys:
    if settings.jwt_private_key is None:
        raise ConfigurationError(
            f"SESSIONWARD_JWT_PRIVATE_KEY (a PEM private key) is required for "
            f"SESSIONWARD_JWT_ALGORITHM={settings.jwt_algorithm}"
        )
    expected = ed25519.Ed25519PrivateKey if settings.jwt_algorithm == "EdDSA" else rsa.RSAPrivateKey
    try:
        private = serialization.load_pem_private_key(
            settings.jwt_private_key.get_secret_value().encode(), password=None
        )
        previous = [
            serialization.load_pem_public_key(pem.encode())
            for pem in settings.jwt_previous_public_keys
        ]
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"a JWT key is not a valid PEM key: {exc}") from None
    if not isinstance(private, expected):
        raise ConfigurationError(
            f"SESSIONWARD_JWT_PRIVATE_KEY is not a key for {settings.jwt_algorithm}"
        )
    public = [private.public_key(), *previous]
    verification = {_kid(_public_pem(k)): k for k in public}
    return SigningKeys(settings.jwt_algorithm, _kid(_public_pem(public[0])), private,
                       verification, secret)  # fmt: skip


def _public_pem(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
