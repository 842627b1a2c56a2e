"""Alert webhook: a bounded queue drained by one background task that POSTs each event as
JSON with httpx, retried with exponential backoff.

:meth:`Webhook.put` never waits: it only appends to the queue (when the queue is full the
oldest event is dropped and counted), so a slow or failing receiver never slows a sample,
let alone a request. The URL may carry a secret: it is never logged, only its host.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import asdict
from urllib.parse import urlsplit

import anyio
import httpx

from .alerts import AlertEvent

log = logging.getLogger("sessionward.capacity")


class Webhook:
    def __init__(
        self,
        url: str,
        *,
        max_queued: int = 100,
        attempts: int = 4,
        backoff: float = 0.5,
        timeout: float = 5.0,
    ) -> None:
        self._url = url
        self._host = urlsplit(url).hostname or "?"
        self._queue: deque[AlertEvent] = deque(maxlen=max_queued)
        self._attempts, self._backoff, self._timeout = attempts, backoff, timeout
        self._wake: anyio.Event | None = None  # made in run(), on its event loop
        self.sent = self.failed = self.dropped = 0

    def __repr__(self) -> str:
        return f"Webhook(host={self._host!r})"

    @property
    def queued(self) -> int:
        return len(self._queue)

    def put(self, event: AlertEvent) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(event)
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Send queued events until cancelled."""
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            while True:
                self._wake = anyio.Event()
                while self._queue:
                    await self._send(client, self._queue.popleft())
                await self._wake.wait()

    async def _send(self, client: httpx.AsyncClient, event: AlertEvent) -> None:
        body = {"event": "capacity_alert", **asdict(event)}
        for attempt in range(self._attempts):
            try:
                answer = await client.post(self._url, json=body)
                if answer.status_code < 500 and answer.status_code != 429:
                    self.sent += answer.is_success
                    self.failed += not answer.is_success
                    return
            except httpx.HTTPError as exc:
                log.debug("alert webhook to %s failed: %s", self._host, type(exc).__name__)
            if attempt + 1 < self._attempts:
                await anyio.sleep(self._backoff * 2**attempt)
        self.failed += 1
        log.warning("alert webhook to %s gave up after %d attempts", self._host, self._attempts)
