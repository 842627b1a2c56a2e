"""On Redis, every limiter key expires: after a mixed workload through the library and a real
service, each ``<prefix>:rl:*`` key has a TTL, and none outlives the longest window."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import redis

from sessionward import FakeClock, RateLimited, open_ward
from sessionward.stores.redis.keys import decode_id
from sessionward.urls import RedisOptions, parse_store_url
from sessionward.ward import Ward
from tests.conftest import REDIS_URL, url_for
from tests.service.server import start
from tests.service.test_flows import PASSWORD, bearer

LONGEST_MS = 86_400 * 1000 + 1000  # the longest window in the workload is a day


@pytest.mark.anyio
async def test_every_limiter_key_has_a_ttl(tmp_path: Path) -> None:
    url = url_for("redis", tmp_path)
    async with open_ward(url, sweep=False) as ward:  # the server's clock
        await _library_workload(ward, "lib")
    async with open_ward(url, clock=FakeClock(1e9), sweep=False) as ward:  # one far away
        await _library_workload(ward, "fake")
    _service_workload(url, tmp_path)

    options = parse_store_url(url).options
    assert isinstance(options, RedisOptions)
    prefix = f"{options.key_prefix}:rl:"
    client = redis.Redis.from_url(REDIS_URL.split("?")[0], decode_responses=True)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        ttls = {decode_id(key.removeprefix(prefix)): int(client.pttl(key)) for key in keys}  # type: ignore[arg-type]
    finally:
        client.close()
    immortal = sorted(name for name, ttl in ttls.items() if ttl == -1)
    assert not immortal, f"limiter keys without a TTL: {immortal[:10]}"
    too_long = sorted(name for name, ttl in ttls.items() if ttl > LONGEST_MS)
    assert not too_long, f"limiter keys that outlive every window: {too_long[:10]}"
    families = {":".join(name.split("#")[0].split(":")[:2]) for name in ttls}
    # the workload reached every kind of limiter key, so the checks above checked them
    assert {"lib:hot", "fake:hot", "ip:ip", "api:user", "api:ip", "login:lock"} <= families
    assert {"login:locks", "login:acct", "login:acct-hour", "login:ip"} <= families


async def _library_workload(ward: Ward, tag: str) -> None:
    limits = ward.limits
    for n in range(12):
        await limits.hit(f"{tag}:hot", "5/minute;1000/day")
        await limits.hit(f"{tag}:cost:{n}", "10/second burst 3", cost=n % 4)
        await limits.peek(f"{tag}:peeked:{n}", "1/minute")
    for policy in ("3 per 30 seconds", "1/day", "100/minute burst 20"):
        try:
            for _ in range(30):
                await limits.enforce(f"{tag}:enforced", policy)
        except RateLimited:
            pass
    await limits.hit(f"{tag}:reset", "1/hour")
    await limits.reset(f"{tag}:reset")
    await limits.hit(f"{tag}:zero", "1/hour", cost=0)


def _service_workload(url: str, workdir: Path) -> None:
    server = start(url, workdir, SESSIONWARD_IP_RATE_LIMIT="8/minute",
                   SESSIONWARD_API_RATE_LIMIT="4/minute;100/day",
                   SESSIONWARD_LOGIN_MAX_FAILURES="2")  # fmt: skip
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            body = {"username": "ttl-user", "password": PASSWORD}
            assert client.post("/v1/auth/register", json=body).status_code == 201
            tokens = client.post("/v1/auth/login", json=body).json()
            wrong = {"username": "ttl-user", "password": "wrong " + PASSWORD}
            failed = [client.post("/v1/auth/login", json=wrong).status_code for _ in range(3)]
            assert failed == [401, 401, 429]  # the third finds the account locked
            statuses = [
                client.get("/v1/sessions", headers=bearer(tokens)).status_code,
                client.put("/v1/state/user/doc", json={"data": 1},
                           headers=bearer(tokens)).status_code,
                *(client.get("/v1/sessions").status_code for _ in range(5)),
                *(client.get("/v1/state/user", headers=bearer(tokens)).status_code
                  for _ in range(4)),
            ]  # fmt: skip
            assert statuses[:2] == [200, 200] and 429 in statuses[2:7] and 429 in statuses[7:]
            for _ in range(6):
                client.post("/v1/auth/refresh", json={"refresh_token": "nope"})
    finally:
        server.stop()
