"""Access-token verification refuses everything but a genuine, current, live token."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from sessionward import ConfigurationError, FakeClock, InvalidToken, Settings, parse_store_url
from sessionward.auth.access import AccessTokens
from sessionward.auth.keys import load_keys

from .conftest import SECRET

MEMORY = parse_store_url("memory://")


def tokens(settings: Settings, clock: FakeClock | None = None) -> AccessTokens:
    return AccessTokens(load_keys(settings, MEMORY), settings, clock or FakeClock())


def good(t: AccessTokens, clock: FakeClock) -> str:
    return t.issue("u1", "s1", issued_at=int(clock.now()), jti="j1")


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged(header: dict[str, object], payload: dict[str, object], signature: str = "") -> str:
    return f"{_b64(header)}.{_b64(payload)}.{signature}"


def test_a_good_token_verifies() -> None:
    clock = FakeClock()
    t = tokens(Settings(secret_key=SECRET), clock)
    claims = t.verify(good(t, clock))
    assert (claims.user_id, claims.session_id, claims.jti) == ("u1", "s1", "j1")
    assert claims.expires_at == claims.issued_at + 900


def test_alg_none_is_refused() -> None:
    clock = FakeClock()
    t = tokens(Settings(secret_key=SECRET), clock)
    payload = jwt.decode(good(t, clock), options={"verify_signature": False})
    kid = jwt.get_unverified_header(good(t, clock))["kid"]
    for alg in ("none", "None", "NONE"):
        with pytest.raises(InvalidToken):
            t.verify(forged({"alg": alg, "typ": "JWT", "kid": kid}, payload))


def test_a_wrong_key_is_refused() -> None:
    clock = FakeClock()
    t = tokens(Settings(secret_key=SECRET), clock)
    other = tokens(Settings(secret_key="another-secret-" + "y" * 40), clock)
    with pytest.raises(InvalidToken, match="unknown key"):
        t.verify(good(other, clock))
    # same kid, other key: the signature fails
    payload = jwt.decode(good(t, clock), options={"verify_signature": False})
    kid = jwt.get_unverified_header(good(t, clock))["kid"]
    fake = jwt.encode(payload, "another-secret-" + "y" * 40, "HS256", {"kid": kid})
    with pytest.raises(InvalidToken, match="Signature verification failed"):
        t.verify(fake)


def test_algorithm_confusion_is_refused() -> None:
    clock = FakeClock()
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    rs = tokens(Settings(secret_key=SECRET, jwt_algorithm="RS256", jwt_private_key=pem), clock)
    token = good(rs, clock)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    payload = jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token)["kid"]
    # the classic attack: sign HS256 with the public key as the HMAC secret
    import hashlib
    import hmac

    head_body = forged({"alg": "HS256", "typ": "JWT", "kid": kid}, payload)[:-1]
    signature = (
        base64.urlsafe_b64encode(hmac.new(public_pem, head_body.encode(), hashlib.sha256).digest())
        .rstrip(b"=")
        .decode()
    )
    with pytest.raises(InvalidToken):
        rs.verify(head_body + "." + signature)
    assert rs.verify(token).user_id == "u1"


def test_wrong_audience_or_issuer_is_refused() -> None:
    clock = FakeClock()
    t = tokens(Settings(secret_key=SECRET), clock)
    for other in (Settings(secret_key=SECRET, jwt_audience="elsewhere"),
                  Settings(secret_key=SECRET, jwt_issuer="someone")):  # fmt: skip
        with pytest.raises(InvalidToken):
            t.verify(good(tokens(other, clock), clock))


def test_a_tampered_payload_is_refused() -> None:
    clock = FakeClock()
    t = tokens(Settings(secret_key=SECRET), clock)
    head, body, signature = good(t, clock).split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = "someone-else"
    with pytest.raises(InvalidToken):
        t.verify(f"{head}.{_b64(claims)}.{signature}")


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "sid", "jti", "iss", "aud"])
def test_every_claim_is_required(missing: str) -> None:
    clock = FakeClock()
    t = tokens(Settings(secret_key=SECRET), clock)
    payload = jwt.decode(good(t, clock), options={"verify_signature": False})
    del payload[missing]
    kid = jwt.get_unverified_header(good(t, clock))["kid"]
    with pytest.raises(InvalidToken):
        t.verify(jwt.encode(payload, SECRET, "HS256", {"kid": kid}))


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c", "x" * 9000, "é.é.é"])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        tokens(Settings(secret_key=SECRET)).verify(token)


def test_expiry_and_issued_in_the_future() -> None:
    clock = FakeClock()
    t = tokens(Settings(secret_key=SECRET, access_token_ttl=60), clock)
    token = good(t, clock)
    clock.advance(64)
    t.verify(token)
    clock.advance(1)
    with pytest.raises(InvalidToken, match="expired"):
        t.verify(token)
    future = t.issue("u1", "s1", issued_at=int(clock.now()) + 60, jti="j")
    with pytest.raises(InvalidToken, match="future"):
        t.verify(future)


def test_a_token_not_valid_yet_is_refused_until_its_nbf() -> None:
    clock = FakeClock()
    settings = Settings(secret_key=SECRET)
    t = tokens(settings, clock)
    claims = jwt.decode(good(t, clock), options={"verify_signature": False})
    kid = jwt.get_unverified_header(good(t, clock))["kid"]
    early = jwt.encode({**claims, "nbf": int(clock.now()) + 60}, SECRET, "HS256", {"kid": kid})
    with pytest.raises(InvalidToken, match="not valid yet"):
        t.verify(early)
    clock.advance(55)  # within the leeway of nbf
    assert t.verify(early).not_before == claims["iat"] + 60
    odd = jwt.encode({**claims, "nbf": "soon"}, SECRET, "HS256", {"kid": kid})
    with pytest.raises(InvalidToken):
        t.verify(odd)


def test_previous_keys_verify_during_a_rotation() -> None:
    clock = FakeClock()
    old_secret = "old-secret-" + "z" * 40
    old = tokens(Settings(secret_key=old_secret), clock)
    token = good(old, clock)
    rotating = tokens(Settings(secret_key=SECRET, previous_secret_keys=[old_secret]), clock)
    assert rotating.verify(token).user_id == "u1"
    assert (
        jwt.get_unverified_header(good(rotating, clock))["kid"]
        != jwt.get_unverified_header(token)["kid"]
    )
    with pytest.raises(InvalidToken):
        tokens(Settings(secret_key=SECRET), clock).verify(token)


def test_eddsa_is_selectable() -> None:
    clock = FakeClock()
    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    t = tokens(Settings(secret_key=SECRET, jwt_algorithm="EdDSA", jwt_private_key=pem), clock)
    token = good(t, clock)
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    assert t.verify(token).session_id == "s1"
    assert good(t, clock) == token  # deterministic: a replayed refresh rebuilds the same token


def test_asymmetric_needs_a_matching_key() -> None:
    with pytest.raises(ConfigurationError, match="JWT_PRIVATE_KEY"):
        tokens(Settings(secret_key=SECRET, jwt_algorithm="EdDSA"))
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ConfigurationError, match="not a key for EdDSA"):
        tokens(Settings(secret_key=SECRET, jwt_algorithm="EdDSA", jwt_private_key=rsa_pem))


@pytest.mark.parametrize("url", ["redis://127.0.0.1/0", "postgresql://h/db"])
def test_shared_stores_require_a_secret(url: str) -> None:
    with pytest.raises(ConfigurationError, match="SESSIONWARD_SECRET_KEY is required"):
        load_keys(Settings(), parse_store_url(url))


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        load_keys(Settings(secret_key="too-short"), MEMORY)


def test_sqlite_generates_its_key_once_0600(tmp_path: Path) -> None:
    url = parse_store_url(f"sqlite:///{tmp_path / 'app.db'}")
    first = load_keys(Settings(), url)
    key_file = tmp_path / "app.db.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_keys(Settings(), url).secret == first.secret == key_file.read_bytes().strip()
    assert [p.name for p in tmp_path.iterdir()] == ["app.db.key"]  # no staging files left
    os.chmod(key_file, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_keys(Settings(), url)
