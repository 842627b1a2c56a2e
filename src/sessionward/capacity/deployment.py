"""The deployment view: each instance publishes its latest sample through the store with a
TTL of 2.5 sample intervals, so any instance lists every live one, and one that stops
publishing drops out before its third missed sample."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..stores.protocols import CapacityStore
from .sample import Sample

log = logging.getLogger("sessionward.capacity")
TTL_INTERVALS = 2.5


@dataclass(frozen=True, slots=True)
class DeploymentView:
    instances: tuple[Sample, ...]

    def total(self, name: str) -> float:
        """The sum of one figure (``request_rate``, ``websockets``...) over the instances."""
        return float(sum(getattr(s, name) or 0 for s in self.instances))


class Deployment:
    def __init__(self, store: CapacityStore, interval: float) -> None:
        self._store = store
        self.ttl = TTL_INTERVALS * interval

    async def publish(self, sample: Sample) -> None:
        await self._store.publish_instance(sample.instance_id, sample.to_json(), ttl=self.ttl)

    async def view(self) -> DeploymentView:
        samples = []
        for row in await self._store.list_instances():
            try:
                samples.append(Sample.from_json(row.data))
            except (ValueError, TypeError) as exc:  # another version's, or garbage
                log.warning("ignoring the capacity sample of %s: %s", row.instance_id, exc)
        return DeploymentView(tuple(samples))
