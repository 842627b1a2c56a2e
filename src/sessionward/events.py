"""Events: a message published on a channel reaches every subscriber of that channel, in
every process that shares the store.

    async with open_event_hub("redis://127.0.0.1:6379/0?key_prefix=app") as hub:
        async with hub.subscribe(user_channel("alice")) as events:
            await hub.publish(user_channel("alice"), {"type": "message", "text": "hi"})
            async for event in events:
                ...

Messages are JSON objects (never pickled). The transport follows the store's URL:

- ``redis://``: Redis pub/sub on one channel per deployment, ``<key_prefix>:events``, over
  the hub's own connections (:mod:`.stores.redis.events`);
- ``postgresql://``: LISTEN/NOTIFY on one channel per schema, ``sw_events_<schema>``, with
  messages over NOTIFY's 8000-byte limit sent in chunks (:mod:`.stores.postgres.events`);
- ``memory://`` and ``sqlite://``: in this process only. Several processes (``serve
  --workers N``) on one SQLite file do **not** see each other's events.

Each process holds one listening connection and fans frames out to its local subscribers,
so subscribing is a local, instant step: a subscription is complete when ``subscribe``
returns. The listener reconnects by itself with jittered exponential backoff; events
published while it is disconnected are lost for this process (delivery is at most once).
A subscriber that falls ``buffer`` events behind loses the newer ones (counted in
``Subscription.dropped``) rather than slowing every other subscriber down. A delivered
event is shared by the process's subscribers of its channel: treat it as read-only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_random_exponential,
)

from ._groups import collapse_single_errors
from .errors import InvalidArgument
from .stores.registry import backend_entry, load
from .urls import StoreURL, parse_store_url

log = logging.getLogger("sessionward.events")

Event = dict[str, Any]
Deliver = Callable[[str], None]
MAX_CHANNEL = 256
# A connection that broke after living this long is retried at once, without backoff.
STABLE_AFTER = 2.0


def user_channel(user_id: str) -> str:
    """The channel of everything pushed to one user's connections (messages, jobs)."""
    return f"user:{user_id}"


class Transport(Protocol):
    """Carries frames (JSON text) between the processes that share a store."""

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...

    async def publish(self, frame: str) -> None:
        """Send a frame to every listener, or raise ``StorageError``."""

    async def listen(self, deliver: Deliver, connected: Callable[[], None]) -> None:
        """Hold one listening connection: call ``connected`` once frames will arrive, then
        ``deliver`` for each; raise when the connection breaks. Cancelled to stop."""


@dataclass
class HubStats:
    published: int = 0
    delivered: int = 0
    dropped: int = 0
    malformed: int = 0
    connects: int = 0


class Subscription:
    """The events of one channel, as an async iterator; ends when the hub closes."""

    def __init__(self, channel: str, buffer: int) -> None:
        self.channel = channel
        self.dropped = 0
        self._send, self._receive = anyio.create_memory_object_stream[Event](buffer)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    def offer(self, event: Event) -> bool:
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            self.dropped += 1
            return False
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True

    def end(self) -> None:
        self._send.close()

    def close(self) -> None:
        self._send.close()
        self._receive.close()


class EventHub:
    """Publish to channels and subscribe to them. Build it with :func:`open_event_hub`."""

    def __init__(
        self, transport: Transport, *, buffer: int = 100, max_event_bytes: int = 1 << 20
    ) -> None:
        self._transport = transport
        self._buffer = buffer
        self._max_bytes = max_event_bytes
        self._subscribers: dict[str, set[Subscription]] = {}
        self._up = anyio.Event()
        self._connected = False
        self.stats = HubStats()

    @property
    def connected(self) -> bool:
        """Whether this process's listener is connected (always, for in-process hubs)."""
        return self._connected

    async def publish(self, channel: str, message: Mapping[str, Any]) -> None:
        """Send ``message`` to every subscriber of ``channel`` in every process.

        Raises :class:`InvalidArgument` for a message that is not plain JSON or is larger
        than ``max_event_bytes``, ``StorageError`` when the store cannot take it."""
        frame = encode_frame(channel, message)
        if len(frame) > self._max_bytes:
            raise InvalidArgument(f"an event is at most {self._max_bytes} bytes of JSON")
        await self._transport.publish(frame)
        self.stats.published += 1

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        """The events published on ``channel`` from now on, until the block ends."""
        subscription = Subscription(_checked(channel), self._buffer)
        self._subscribers.setdefault(channel, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers.get(channel, set())
            subscribers.discard(subscription)
            if not subscribers:
                self._subscribers.pop(channel, None)
            subscription.close()

    async def wait_connected(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the listener to be connected; return whether it is."""
        with anyio.move_on_after(seconds):
            await self._up.wait()
        return self._connected

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff; never raises."""
        while True:
            async for attempt in AsyncRetrying(
                wait=wait_random_exponential(multiplier=0.1, max=5.0),
                retry=retry_if_exception_type(Exception),
                before_sleep=_log_retry,
            ):
                with attempt:
                    await self._listen_once()

    async def _listen_once(self) -> None:
        since: float | None = None

        def connected() -> None:
            nonlocal since
            since = time.monotonic()
            self._connected = True
            self.stats.connects += 1
            self._up.set()

        try:
            await self._transport.listen(self._deliver, connected)
        except Exception as exc:
            if since is None or time.monotonic() - since < STABLE_AFTER:
                raise
            log.warning("the event listener's connection broke (%s); reconnecting", exc)
        finally:
            if self._connected:
                self._connected, self._up = False, anyio.Event()

    def _deliver(self, frame: str) -> None:
        try:
            channel, event = decode_frame(frame)
        except ValueError:
            self.stats.malformed += 1
            return
        for subscription in tuple(self._subscribers.get(channel, ())):
            if subscription.offer(event):
                self.stats.delivered += 1
            else:
                self.stats.dropped += 1

    def end_subscriptions(self) -> None:
        for subscriptions in self._subscribers.values():
            for subscription in subscriptions:
                subscription.end()


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    reason = " ".join(str(error).split())  # driver messages may span lines
    log.warning("the event listener failed (%s); reconnecting in %.1f s", reason, wait)


def _checked(channel: str) -> str:
    if not isinstance(channel, str) or not 0 < len(channel) <= MAX_CHANNEL:
        raise InvalidArgument(f"a channel name is 1 to {MAX_CHANNEL} characters")
    return channel


def encode_frame(channel: str, message: Mapping[str, Any]) -> str:
    """The JSON text a transport carries (ASCII only, so its length is its size in bytes)."""
    if not isinstance(message, Mapping):
        raise InvalidArgument("an event is a JSON object")
    try:
        return json.dumps(
            {"c": _checked(channel), "m": message}, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"an event must be plain JSON: {exc}") from None


def decode_frame(frame: str) -> tuple[str, Event]:
    """``(channel, message)`` of a frame, or ``ValueError``."""
    try:
        value = json.loads(frame)
    except (ValueError, RecursionError):
        raise ValueError("not a JSON frame") from None
    if not isinstance(value, dict) or set(value) != {"c", "m"}:
        raise ValueError("not an event frame")
    channel, event = value["c"], value["m"]
    if not isinstance(channel, str) or not isinstance(event, dict):
        raise ValueError("not an event frame")
    return channel, event


class LocalTransport:
    """In-process delivery, for ``memory://`` and ``sqlite://`` stores."""

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def open(self) -> None:
        pass

    async def aclose(self) -> None:
        self._deliver = None

    async def publish(self, frame: str) -> None:
        if self._deliver is not None:
            self._deliver(frame)

    async def listen(self, deliver: Deliver, connected: Callable[[], None]) -> None:
        self._deliver = deliver
        connected()
        await anyio.sleep_forever()


def create_transport(url: str | StoreURL, *, heartbeat: float = 5.0) -> Transport:
    """The transport for a store URL (built, not opened). ``heartbeat``: seconds of silence
    after which a listener checks that its connection is still alive."""
    parsed = parse_store_url(url)
    entry = backend_entry(parsed)
    if entry.events is None:
        return LocalTransport()
    transport_class = load(parsed, entry.events, f"events on {parsed.scheme}:// need")
    transport: Transport = transport_class(parsed, heartbeat=heartbeat)
    return transport


@asynccontextmanager
async def open_event_hub(
    url: str | StoreURL,
    *,
    buffer: int = 100,
    max_event_bytes: int = 1 << 20,
    heartbeat: float = 5.0,
    ready_timeout: float = 5.0,
) -> AsyncIterator[EventHub]:
    """Open the :class:`EventHub` of a store URL and close it on exit.

    Waits up to ``ready_timeout`` seconds for the listener's first connection (events from
    other processes arrive once it has one); if it has none by then, the hub opens anyway
    and keeps trying in the background.
    """
    transport = create_transport(url, heartbeat=heartbeat)
    hub = EventHub(transport, buffer=buffer, max_event_bytes=max_event_bytes)
    await transport.open()
    try:
        async with collapse_single_errors(), anyio.create_task_group() as tasks:
            tasks.start_soon(hub.run)
            if not await hub.wait_connected(ready_timeout):
                log.warning("the event listener is not connected yet; retrying in the background")
            yield hub
            tasks.cancel_scope.cancel()
    finally:
        hub.end_subscriptions()
        with anyio.CancelScope(shield=True):
            await transport.aclose()
