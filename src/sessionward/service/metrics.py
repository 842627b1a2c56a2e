"""Prometheus metrics of the service (``sessionward_*``), one registry per app.

Names follow prometheus-client's conventions: base units, ``_total`` counters, histograms
for latencies, no user or session id in any label. Gauges are set from each capacity
sample; with ``--workers > 1`` and ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus-client
keeps every worker's values in that directory and a scrape of any worker sums them
(``livesum``: per-process figures such as open WebSockets) or takes the largest
(``livemax``: deployment figures every worker reads from the store).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..capacity import Activity, Decision, Sample
from ..stores.records import JobRow

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
JOB_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class ServiceMetrics:
    """Every metric of one app, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            "sessionward_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "sessionward_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=r,
        )
        self.logins = Counter(
            "sessionward_logins", "Login attempts by outcome", ["outcome"], registry=r
        )
        self.rate_limited = Counter(
            "sessionward_rate_limited", "Requests refused by a rate limit", registry=r
        )
        self.admission = Counter(
            "sessionward_admission_decisions",
            "Admission decisions",
            ["kind", "decision", "reason"],
            registry=r,
        )
        self.job_duration = Histogram(
            "sessionward_job_duration_seconds",
            "Run time of finished jobs",
            ["kind", "status"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.pool_wait = Counter(
            "sessionward_store_pool_wait_seconds",
            "Seconds callers waited for a store connection",
            registry=r,
        )
        self.store_latency = Histogram(
            "sessionward_store_latency_seconds",
            "Store round trips (the sampler's ping)",
            registry=r,
        )
        self.websockets = _gauge(
            r, "sessionward_websocket_connections", "Open WebSockets", mode="livesum"
        )
        self.pool = _gauge(
            r, "sessionward_store_pool_connections", "Store connections", ["state"], mode="livesum"
        )
        self.active_sessions = _gauge(
            r, "sessionward_active_sessions", "Live sessions seen in the active window"
        )
        self.active_users = _gauge(
            r, "sessionward_active_users", "Users with a session seen in the active window"
        )
        self.jobs = _gauge(r, "sessionward_jobs", "Jobs in the store by state", ["state"])
        self.loop_lag = _gauge(
            r,
            "sessionward_event_loop_lag_seconds",
            "Worst event-loop lag since the previous sample",
        )
        self.cpu = _gauge(
            r,
            "sessionward_cpu_usage_ratio",
            "CPU used, as a share of the cgroup quota or the machine",
        )
        self.memory = _gauge(r, "sessionward_memory_used_bytes", "Memory used (cgroup or host)")
        self.memory_limit = _gauge(r, "sessionward_memory_limit_bytes", "Memory limit")
        self.rss = _gauge(
            r, "sessionward_process_resident_memory_bytes", "Process RSS", mode="livesum"
        )

    def observe_sample(self, s: Sample) -> None:
        for state, value in (
            ("in_use", s.pool_in_use),
            ("idle", s.pool_idle),
            ("waiting", s.pool_waiting),
        ):
            self.pool.labels(state).set(value)
        self.pool_wait.inc(s.pool_wait)
        if s.store_latency is not None:
            self.store_latency.observe(s.store_latency)
        if s.active_sessions is not None and s.active_users is not None:
            self.active_sessions.set(s.active_sessions)
            self.active_users.set(s.active_users)
        if s.jobs_queued is not None and s.jobs_running is not None:
            self.jobs.labels("queued").set(s.jobs_queued)
            self.jobs.labels("running").set(s.jobs_running)
        self.loop_lag.set(s.loop_lag)
        self.cpu.set(s.cpu_used / 100)
        self.memory.set(s.memory_used)
        if s.memory_limit:
            self.memory_limit.set(s.memory_limit)
        self.rss.set(s.rss)

    def observe_decision(self, kind: str, decision: Decision) -> None:
        verdict = "admitted" if decision.admitted else "refused"
        self.admission.labels(kind, verdict, decision.reason).inc()
        if kind == "login" and not decision.admitted:
            self.logins.labels("over_capacity").inc()

    def observe_job(self, row: JobRow) -> None:
        if row.started_at is not None and row.finished_at is not None:
            seconds = max(row.finished_at - row.started_at, 0.0)
            self.job_duration.labels(row.kind, row.status).observe(seconds)


def _gauge(
    registry: CollectorRegistry,
    name: str,
    doc: str,
    labels: list[str] | None = None,
    *,
    mode: str = "livemax",
) -> Gauge:
    return Gauge(name, doc, labels or [], registry=registry, multiprocess_mode=mode)  # type: ignore[arg-type]


def scrape_registry(registry: CollectorRegistry) -> CollectorRegistry:
    """What a scrape reads: every worker's files in multiprocess mode (prometheus-client's
    ``PROMETHEUS_MULTIPROC_DIR``), else this app's registry."""
    if not os.environ.get(MULTIPROC_ENV):
        return registry
    merged = CollectorRegistry()
    MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(scrape_registry(registry))


# the outcomes of a login, by status and problem code
_LOGIN = {200: "success", 401: "failure"}
_CODES = {b'"locked_out"': "locked_out", b'"rate_limited"': "rate_limited"}


class RequestMetrics:
    """Pure ASGI middleware: requests by route template and status, their latency (also
    into the capacity monitor's request window), login outcomes, rate-limit refusals and
    lockouts, and open WebSockets."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ServiceMetrics,
        activity: Callable[[Scope], Activity | None],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.activity = activity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, head = time.perf_counter(), 500, b""

        async def record(message: Message) -> None:
            nonlocal status, head
            if message["type"] == "http.response.start":
                status = message["status"]
            elif status == 429 and len(head) < 512:
                head += message.get("body", b"")[:512]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(seconds)
            self._count(scope, route, status, head, seconds)

    def _count(self, scope: Scope, route: str, status: int, head: bytes, seconds: float) -> None:
        activity = self.activity(scope)
        if activity is not None:
            activity.request(seconds)
        code = next((name for raw, name in _CODES.items() if raw in head), None)
        if code == "rate_limited":
            self.metrics.rate_limited.inc()
            if activity is not None:
                activity.rate_limited += 1
        if scope["path"] == "/v1/auth/login" and scope["method"] == "POST":
            outcome = "locked_out" if code == "locked_out" else _LOGIN.get(status)
            if outcome == "locked_out" and activity is not None:
                activity.lockouts += 1
            if outcome is not None:
                self.metrics.logins.labels(outcome).inc()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        accepted = False
        activity = self.activity(scope)

        async def record(message: Message) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                self.metrics.websockets.inc()
                if activity is not None:
                    activity.websockets += 1
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            if accepted:
                self.metrics.websockets.dec()
                if activity is not None:
                    activity.websockets -= 1
