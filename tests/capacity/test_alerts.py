"""Alert rules with hysteresis, their structured log events, and the webhook against a real
local HTTP receiver: retried with backoff, bounded, and never in the way of a sample."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import anyio
import pytest

from sessionward import FakeClock, Settings, open_ward
from sessionward.capacity import AlertEvent, AlertRule, Alerts, Sample, Webhook, parse_rules
from sessionward.errors import ConfigurationError
from sessionward.testing import wait_until_async
from tests.capacity.test_monitor import StaticProbe


def _sample(**figures: Any) -> Sample:
    return replace(Sample("i-1", 1.0), **figures)


def test_rules_parse_and_bad_ones_are_refused() -> None:
    assert parse_rules("memory_percent>90; loop_lag>0.5;") == (
        AlertRule("memory_percent", 90.0), AlertRule("loop_lag", 0.5),
    )  # fmt: skip
    for bad in ("memory>90", "loop_lag<1", "loop_lag>fast"):
        with pytest.raises(ConfigurationError):
            parse_rules(bad)


def test_a_rule_fires_once_and_resolves_below_its_hysteresis(
    caplog: pytest.LogCaptureFixture,
) -> None:
    alerts = Alerts(parse_rules("loop_lag>0.5"), 0.2)
    caplog.set_level(logging.INFO, "sessionward.capacity")
    lags = [0.1, 0.5, 0.45, 0.55, 0.41, 0.39, 0.6]
    changes = [[e.state for e in alerts.check(_sample(loop_lag=x))] for x in lags]
    assert changes == [[], ["firing"], [], [], [], ["resolved"], ["firing"]]
    assert list(alerts.firing) == ["loop_lag>0.5"]
    events = [r for r in caplog.records if getattr(r, "event", None) == "capacity_alert"]
    assert [(r.state, r.value, r.levelname) for r in events] == [  # type: ignore[attr-defined]
        ("firing", 0.5, "WARNING"), ("resolved", 0.39, "INFO"), ("firing", 0.6, "WARNING"),
    ]  # fmt: skip
    assert len(alerts.recent) == 3


def test_a_figure_not_measured_changes_nothing() -> None:
    alerts = Alerts(parse_rules("memory_percent>90"), 0.1)
    assert alerts.check(_sample(memory_limit=None, memory_used=10**9)) == []


class Receiver:
    """A real HTTP server on a free loopback port: answers 500 to the first ``fail``
    requests, then 204, and keeps every body."""

    def __init__(self, fail: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail = fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append(json.loads(body))
                failing = receiver.fail > 0
                receiver.fail -= failing
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=s3cret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(fail=2) as running:
        yield running


def _event(n: int) -> AlertEvent:
    return AlertEvent("loop_lag>0.5", "firing", 0.5 + n, 0.5, "i-1", float(n))


@pytest.mark.anyio
async def test_the_webhook_retries_with_backoff(receiver: Receiver) -> None:
    hook = Webhook(receiver.url, backoff=0.01)
    assert "s3cret" not in repr(hook)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(hook.run)
        hook.put(_event(1))
        await wait_until_async(lambda: _true(hook.sent == 1), what="the event delivered")
        tasks.cancel_scope.cancel()
    assert len(receiver.bodies) == 3  # two 500s, then delivered
    assert receiver.bodies[-1]["event"] == "capacity_alert"
    assert receiver.bodies[-1]["rule"] == "loop_lag>0.5" and receiver.bodies[-1]["value"] == 1.5


async def _true(value: bool) -> bool:
    return value


@pytest.mark.anyio
async def test_a_dead_webhook_never_slows_sampling(store_url: str) -> None:
    settings = Settings(
        capacity_alerts="cpu_used>50", capacity_alert_webhook="http://127.0.0.1:9/x"
    )
    async with open_ward(store_url, settings=settings, clock=FakeClock(), sweep=False) as ward:
        probe = StaticProbe(cpu=90.0)
        ward.capacity._probe = probe
        assert ward.capacity.webhook is not None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ward.capacity.webhook.run)
            for n in range(300):  # 150 firings and resolutions: more than the queue holds
                probe.cpu = 90.0 if n % 2 == 0 else 10.0
                await ward.capacity.sample()
            tasks.cancel_scope.cancel()
        # every sample ran while the receiver refused each event four times with 3.5 s of
        # backoff: none waited for it; the queue held at most 100, the rest were dropped
        hook = ward.capacity.webhook
        assert hook.sent == 0 and hook.queued <= 100
        assert hook.dropped + hook.failed + hook.queued >= 300 - 1  # one may be in flight
        assert len(ward.capacity.alerts.recent) == 100
