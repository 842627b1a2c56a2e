"""The capacity monitor: samples this instance and its store in the background.

    async with open_ward(url, settings=settings) as ward:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ward.capacity.run)      # every capacity_sample_interval
            ...
            decision = await ward.capacity.admit("login", user_id)

Sampling never runs on a request: :meth:`CapacityMonitor.run` takes a sample every
``capacity_sample_interval`` seconds (machine figures in a worker thread, each store read
bounded by ``capacity_store_timeout``), keeps it in the history, publishes it for the
deployment view and hands it to the listeners (the service's Prometheus gauges). Requests
only append to :attr:`CapacityMonitor.activity`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Protocol, TypeVar

import anyio
import anyio.to_thread
import psutil

from ..clock import Clock, SystemClock
from ..config import Settings
from ..errors import StorageError
from ..stores.protocols import Store
from .activity import Activity
from .admission import Admission, Decision, Kind
from .alerts import Alerts, parse_rules
from .deployment import Deployment, DeploymentView
from .history import History
from .machine import MachineFigures, MachineProbe
from .recommend import recommend
from .sample import Sample
from .webhook import Webhook

log = logging.getLogger("sessionward.capacity")
T = TypeVar("T")
Listener = Callable[[Sample], None]


class Probe(Protocol):
    def read(self) -> MachineFigures: ...


def new_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class CapacityMonitor:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        clock: Clock | None = None,
        instance_id: str | None = None,
        probe: Probe | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        self.instance_id = instance_id or new_instance_id()
        self.interval = settings.capacity_sample_interval
        self.activity = Activity(settings.capacity_request_window, self.clock.monotonic)
        self.history = History(settings.capacity_history, self.interval)
        self.deployment = Deployment(store, self.interval)
        self.admission = Admission(store, settings, self.history.latest)
        self.listeners: list[Listener] = []
        self.alerts = Alerts(parse_rules(settings.capacity_alerts), settings.capacity_hysteresis)
        hook = settings.capacity_alert_webhook
        self.webhook = Webhook(hook.get_secret_value()) if hook is not None else None
        if self.webhook is not None:
            self.alerts.notify = self.webhook.put
        self._probe = probe
        self._lag = 0.0
        self._waited = 0.0  # the pool's wait_time at the previous sample

    async def admit(self, kind: Kind, user_id: str | None = None) -> Decision:
        """See :meth:`~sessionward.capacity.admission.Admission.admit`."""
        return await self.admission.admit(kind, user_id)

    def latest(self) -> Sample | None:
        return self.history.latest()

    def recommendations(self) -> list[str]:
        return recommend(list(self.history), self.settings)

    async def instances(self) -> DeploymentView:
        """Every live instance's latest sample, this one's included once it has published."""
        return await self.deployment.view()

    async def run(self) -> None:
        """Sample every ``capacity_sample_interval`` seconds until cancelled, and watch the
        event loop's lag meanwhile. Failures are logged and sampling goes on."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._watch_loop)
            if self.webhook is not None:
                tasks.start_soon(self.webhook.run)
            while True:
                try:
                    await self.sample()
                except (StorageError, TimeoutError) as exc:
                    log.warning("could not publish the capacity sample: %s", exc or "timeout")
                await anyio.sleep(self.interval)

    async def sample(self) -> Sample:
        """Take one sample now: keep it, check the alert rules, tell the listeners, publish
        it; return it."""
        sample = await self.measure()
        self.history.add(sample)
        self.alerts.check(sample)
        for listener in self.listeners:
            listener(sample)
        with anyio.fail_after(self.settings.capacity_store_timeout):
            await self.deployment.publish(sample)
        return sample

    async def measure(self) -> Sample:
        errors: list[str] = []
        machine = await self._machine(errors)
        pool = self.store.pool_stats()
        latency = await self._read(self.store.ping(), "ping", errors)
        active = await self._read(
            self.store.count_active(self.settings.capacity_active_window), "active", errors
        )
        jobs = await self._read(self.store.job_counts(), "jobs", errors)
        requests = self.activity.requests()
        lag, self._lag = self._lag, 0.0
        waited, self._waited = max(pool.wait_time - self._waited, 0.0), pool.wait_time
        sample = Sample(
            self.instance_id, self.clock.now(), loop_lag=lag,
            pool_in_use=pool.in_use, pool_idle=pool.idle, pool_waiting=pool.waiting,
            pool_max=pool.max_size, pool_wait=waited, store_latency=latency,
            active_sessions=active.sessions if active else None,
            active_users=active.users if active else None,
            jobs_running=jobs.running if jobs else None, jobs_queued=jobs.queued if jobs else None,
            request_rate=requests.rate, latency_p50=requests.p50, latency_p99=requests.p99,
            websockets=self.activity.websockets, rate_limited=self.activity.rate_limited,
            lockouts=self.activity.lockouts, admitted=self.admission.admitted,
            refused=self.admission.refused, errors=tuple(errors),
        )  # fmt: skip
        return sample if machine is None else _with_machine(sample, machine)

    async def _machine(self, errors: list[str]) -> MachineFigures | None:
        try:
            if self._probe is None:
                self._probe = await anyio.to_thread.run_sync(MachineProbe)
            return await anyio.to_thread.run_sync(self._probe.read)
        except (OSError, psutil.Error) as exc:  # a process table or /sys that went away
            errors.append(f"machine: {exc}")
            return None

    async def _read(self, call: Awaitable[T], name: str, errors: list[str]) -> T | None:
        try:
            with anyio.fail_after(self.settings.capacity_store_timeout):
                return await call
        except TimeoutError:
            errors.append(f"{name}: no answer in {self.settings.capacity_store_timeout} s")
        except StorageError as exc:
            errors.append(f"{name}: {exc}")
        return None

    async def _watch_loop(self) -> None:
        """The event loop's lag: how late a short sleep wakes up (real time, not the clock)."""
        period = min(0.5, self.interval / 4)
        while True:
            started = time.monotonic()
            await anyio.sleep(period)
            self._lag = max(self._lag, time.monotonic() - started - period)


def _with_machine(sample: Sample, m: MachineFigures) -> Sample:
    return replace(
        sample, cpu_process=m.cpu_process, cpu_used=m.cpu_used, cpu_limit=m.cpu_limit,
        memory_used=m.memory_used, memory_limit=m.memory_limit, memory_source=m.memory_source,
        rss=m.rss, open_fds=m.open_fds,
    )  # fmt: skip
