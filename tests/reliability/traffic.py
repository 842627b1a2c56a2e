"""Mixed traffic against running services, a history of every request, and the checks
that every acknowledged write is there afterwards.

Each member (a user with one session for state and charges) runs in a thread of its own:
compare-and-set state writes, budget charges with idempotency keys, reads, logins and
small ``sleep`` jobs, spread over the live instances. Every request goes into the
:class:`History` as invoke -> ok / fail / unknown (Jepsen's model): an answer that is not a
success is "maybe applied", and the checks assert on acknowledgements only.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from sessionward.testing import wait_until
from tests.service.test_flows import PASSWORD, bearer

JOB_SECONDS = 0.4
# what a traffic-bearing service needs: roomy per-user caps and big budgets
TRAFFIC_SETTINGS = {
    "SESSIONWARD_SESSIONS_PER_USER": "100000",
    "SESSIONWARD_BUDGET_DEFAULT": str(10**12),
    "SESSIONWARD_JOBS_PER_USER_QUEUED": "100000",
    "SESSIONWARD_JOBS_PER_USER_RUNNING": "4",
    "SESSIONWARD_JOBS_RUNNING": "16",
    "SESSIONWARD_LOGIN_MAX_FAILURES": "100",
    "SESSIONWARD_ACCESS_TOKEN_TTL": "86400",  # a full-size soak outlasts the default 900 s
}
# short leases so that a killed instance's jobs come back quickly
SHORT_LEASES = {
    "SESSIONWARD_JOB_LEASE": "1.5",
    "SESSIONWARD_JOB_HEARTBEAT": "0.25",
    "SESSIONWARD_JOB_POLL_INTERVAL": "0.2",
}


@dataclass(frozen=True)
class Op:
    kind: str
    instance: int
    started: float
    ended: float
    status: int | None  # None: no HTTP answer (see ``error``)
    code: str | None = None
    retry_after: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def outcome(self) -> str:
        if self.status is None:
            return f"no answer ({self.error})"
        return f"{self.status} {self.code}" if self.code else str(self.status)


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)

    def snapshot(self) -> list[Op]:
        with self._lock:
            return list(self.ops)

    def successes(self) -> int:
        return sum(op.ok for op in self.snapshot())

    def between(self, start: float, end: float) -> list[Op]:
        return [op for op in self.snapshot() if op.started >= start and op.started < end]

    def failed(self, ops: list[Op] | None = None) -> Counter[str]:
        return Counter(op.outcome for op in (self.snapshot() if ops is None else ops) if not op.ok)

    def recovery(self, back: float, instances: set[int] | None = None) -> float | None:
        """Seconds from ``back`` to the first success that ended after it."""
        ends = [
            op.ended for op in self.snapshot()
            if op.ok and op.ended >= back and (instances is None or op.instance in instances)
        ]  # fmt: skip
        return min(ends) - back if ends else None

    def summary(self, ops: list[Op] | None = None) -> dict[str, Any]:
        chosen = self.snapshot() if ops is None else ops
        times = sorted(op.ended - op.started for op in chosen)
        return {
            "requests": len(chosen),
            "ok": sum(op.ok for op in chosen),
            "failed": dict(self.failed(chosen)),
            "p50_s": round(statistics.median(times), 4) if times else None,
            "p99_s": round(times[int(0.99 * (len(times) - 1))], 4) if times else None,
            "slowest_s": round(times[-1], 4) if times else None,
        }


@dataclass
class Member:
    """One user and what the service acknowledged to it."""

    name: str
    user_id: str
    auth: dict[str, str]
    version: int = 0  # last acknowledged state version
    data: Any = None
    versions: list[int] = field(default_factory=list)  # every version seen, in order
    charged: set[str] = field(default_factory=set)
    unknown_charges: set[str] = field(default_factory=set)
    logins: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    unknown_state: bool = False


def sign_up(url: str, name: str) -> Member:
    with httpx.Client(base_url=url, timeout=30) as client:
        made = client.post("/v1/auth/register", json={"username": name, "password": PASSWORD})
        assert made.status_code == 201, made.text
        login = client.post("/v1/auth/login", json={"username": name, "password": PASSWORD})
        assert login.status_code == 200, login.text
        return Member(name, made.json()["user_id"], bearer(login.json()))


class Traffic:
    """Members' threads sending mixed requests to the live instances until stopped."""

    def __init__(self, urls: list[str], members: list[Member], *, jobs: bool = True,
                 job_every: float = 1.0, timeout: float = 10.0) -> None:  # fmt: skip
        self.urls = urls
        self.live = set(range(len(urls)))
        self.members = members
        self.jobs = jobs
        self.job_every = job_every  # seconds between one member's jobs
        self.timeout = timeout
        self.history = History()
        self.unexpected: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(m, n), daemon=True)
                         for n, m in enumerate(members)]  # fmt: skip

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
            assert not thread.is_alive(), "a traffic thread did not stop"

    def more(self, successes: int, within: float | None = None) -> None:
        """Wait for ``successes`` more acknowledged requests (by default, allowing for as
        few as 10 a second on a busy machine)."""
        within = 30 + successes / 10 if within is None else within
        target = self.history.successes() + successes
        wait_until(lambda: self.history.successes() >= target, timeout=within,
                   what=f"{successes} more successes", interval=0.01)  # fmt: skip

    # the members' loop

    def _run(self, member: Member, n: int) -> None:
        clients = [httpx.Client(base_url=url, timeout=self.timeout) for url in self.urls]
        steps = itertools.cycle(["state", "charge", "read", "state", "charge", "login"])
        counter = itertools.count()
        next_job = time.monotonic()
        try:
            while not self._stop.is_set():
                live = sorted(self.live)
                if not live:
                    return
                i = next(counter)
                instance = live[(i + n) % len(live)]
                step = next(steps)
                if self.jobs and time.monotonic() >= next_job:
                    step, next_job = "job", time.monotonic() + self.job_every
                getattr(self, f"_{step}")(clients[instance], instance, member, i)
        finally:
            for client in clients:
                client.close()

    def _call(self, client: httpx.Client, instance: int, kind: str, method: str, path: str,
              **kwargs: Any) -> httpx.Response | None:  # fmt: skip
        started = time.monotonic()
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.history.add(Op(kind, instance, started, time.monotonic(), None,
                                error=type(exc).__name__))  # fmt: skip
            return None
        ended = time.monotonic()
        code = None
        if response.status_code >= 400:
            try:
                code = response.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "no problem body"
        op = Op(kind, instance, started, ended, response.status_code, code,
                response.headers.get("Retry-After"))  # fmt: skip
        self.history.add(op)
        if response.status_code >= 500 and not (
            response.status_code == 503 and code == "store_unavailable" and op.retry_after
        ):
            self.unexpected.append(f"{kind}: {response.status_code} {response.text[:200]}")
        return response

    def _resync(self, client: httpx.Client, instance: int, member: Member) -> None:
        got = self._call(client, instance, "read", "GET", "/v1/state/user/doc",
                         headers=member.auth)  # fmt: skip
        if got is not None and got.status_code == 200:
            body = got.json()
            if body["version"] < member.version:
                self.unexpected.append(f"{member.name}: version {body['version']} went back "
                                       f"from the acknowledged {member.version}")  # fmt: skip
            member.version, member.data = body["version"], body["data"]
            member.versions.append(body["version"])
            member.unknown_state = False
        elif got is not None and got.status_code == 404 and member.version == 0:
            member.unknown_state = False

    def _state(self, client: httpx.Client, instance: int, member: Member, i: int) -> None:
        if member.unknown_state:
            self._resync(client, instance, member)
            if member.unknown_state:
                return
        data = {"by": member.name, "n": i}
        headers = {**member.auth, "If-Match": f'"{member.version}"'}
        put = self._call(client, instance, "state", "PUT", "/v1/state/user/doc",
                         json={"data": data}, headers=headers)  # fmt: skip
        if put is not None and put.status_code == 200:
            version = put.json()["version"]
            if version != member.version + 1:
                self.unexpected.append(f"{member.name}: CAS over {member.version} gave {version}")
            member.version, member.data = version, data
            member.versions.append(version)
        else:
            member.unknown_state = True  # maybe applied, or a conflict: read it back first

    def _charge(self, client: httpx.Client, instance: int, member: Member, i: int) -> None:
        key = f"{member.name}-{i}"
        body = {"amount": 1, "idempotency_key": key}
        made = self._call(client, instance, "charge", "POST", "/v1/budget/charges",
                          json=body, headers=member.auth)  # fmt: skip
        if made is not None and made.status_code in (200, 201):
            member.charged.add(key)
        else:
            member.unknown_charges.add(key)

    def _read(self, client: httpx.Client, instance: int, member: Member, i: int) -> None:
        self._call(client, instance, "read", "GET", "/v1/budget", headers=member.auth)

    def _login(self, client: httpx.Client, instance: int, member: Member, i: int) -> None:
        got = self._call(client, instance, "login", "POST", "/v1/auth/login",
                         json={"username": member.name, "password": PASSWORD})  # fmt: skip
        if got is not None and got.status_code == 200:
            member.logins.append(got.json()["access_token"])

    def _job(self, client: httpx.Client, instance: int, member: Member, i: int) -> None:
        params = {"seconds": JOB_SECONDS, "steps": 2}
        got = self._call(client, instance, "job", "POST", "/v1/jobs",
                         json={"kind": "sleep", "params": params}, headers=member.auth)  # fmt: skip
        if got is not None and got.status_code == 202:
            member.jobs.append(got.json()["job_id"])


def check_acknowledged(
    url: str, members: list[Member], *, jobs_within: float = 60
) -> dict[str, int]:
    """Every acknowledged write, charge, login and job is there (asked of ``url``); unknown
    charges are resolved by sending their key again, so the budget must be exact. The counts
    checked."""
    totals: Counter[str] = Counter()
    with httpx.Client(base_url=url, timeout=30) as client:
        for m in members:
            got = client.get("/v1/state/user/doc", headers=m.auth)
            if m.version:
                assert got.status_code == 200, got.text
                body = got.json()
                assert body["version"] >= m.version, (m.name, body, m.version)
                if body["version"] == m.version:
                    assert body["data"] == m.data
            assert m.versions == sorted(m.versions), f"{m.name}: versions went back"
            totals["state_writes"] += m.version
            for key in sorted(m.unknown_charges - m.charged):
                body = {"amount": 1, "idempotency_key": key}
                again = client.post("/v1/budget/charges", json=body, headers=m.auth)
                assert again.status_code in (200, 201), again.text
                m.charged.add(key)
            listed = client.get("/v1/budget/charges", headers=m.auth).json()["charges"]
            keys = [c["idempotency_key"] for c in listed]
            assert len(keys) == len(set(keys)), f"{m.name}: a key was charged twice"
            assert set(keys) == m.charged, (m.name, set(keys) ^ m.charged)
            budget = client.get("/v1/budget", headers=m.auth).json()
            assert budget["spent"] == len(m.charged), (m.name, budget, len(m.charged))
            totals["charges"] += len(m.charged)
            for token in m.logins:
                seen = client.get("/v1/sessions", headers={"Authorization": f"Bearer {token}"})
                assert seen.status_code == 200, f"{m.name}: an acknowledged login is gone"
            totals["logins"] += len(m.logins)
        for m in members:
            for job_id in m.jobs:

                def done(job_id: str = job_id, m: Member = m) -> bool:
                    got = client.get(f"/v1/jobs/{job_id}", headers=m.auth)
                    assert got.status_code == 200, got.text
                    status = got.json()["status"]
                    assert status in {"queued", "running", "succeeded", "interrupted"}, got.text
                    return bool(status == "succeeded")

                wait_until(done, timeout=jobs_within, what=f"job {job_id} to succeed")
            totals["jobs"] += len(m.jobs)
    return dict(totals)
