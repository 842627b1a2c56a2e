"""Alerts: threshold rules over the samples, with hysteresis, each change of state logged
as a structured event (logger ``sessionward.capacity``, ``extra={"event": "capacity_alert",
...}``), kept for the dashboard, and optionally posted to a webhook (:mod:`.webhook`).

Rules are one setting, ``capacity_alerts``: ``figure>threshold`` separated by ``;``, where a
figure is a :class:`~.sample.Sample` field or property (``memory_percent>90;loop_lag>0.5``).
A rule fires when its figure reaches the threshold and resolves once it falls below
``threshold * (1 - capacity_hysteresis)``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Literal

from ..errors import ConfigurationError
from .admission import Gate
from .sample import Sample

log = logging.getLogger("sessionward.capacity")
RECENT = 100
FIGURES = frozenset(
    {f.name for f in fields(Sample) if f.type in ("float", "int", "float | None", "int | None")}
    | {"memory_percent"}
) - {"at"}


@dataclass(frozen=True, slots=True)
class AlertRule:
    figure: str
    threshold: float

    @property
    def name(self) -> str:
        return f"{self.figure}>{self.threshold:g}"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    rule: str
    state: Literal["firing", "resolved"]
    value: float
    threshold: float
    instance_id: str
    at: float

    def describe(self) -> str:
        return f"{self.rule} {self.state} on {self.instance_id}: {self.value:g}"


def parse_rules(text: str) -> tuple[AlertRule, ...]:
    """``"memory_percent>90;loop_lag>0.5"`` as rules; a bad one is a ConfigurationError."""
    rules = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        figure, sep, threshold = part.partition(">")
        figure = figure.strip()
        if not sep or figure not in FIGURES:
            known = ", ".join(sorted(FIGURES))
            raise ConfigurationError(f"alert rule {part!r}: use figure>number, figures: {known}")
        try:
            rules.append(AlertRule(figure, float(threshold)))
        except ValueError:
            message = f"alert rule {part!r}: {threshold!r} is not a number"
            raise ConfigurationError(message) from None
    return tuple(rules)


class Alerts:
    """The rules' states; :meth:`check` each sample, which returns the changes."""

    def __init__(
        self,
        rules: tuple[AlertRule, ...],
        hysteresis: float,
        notify: Callable[[AlertEvent], None] | None = None,
    ) -> None:
        self.rules = rules
        self._gates = {rule.name: Gate(rule.threshold, hysteresis) for rule in rules}
        self.notify = notify
        self.firing: dict[str, AlertEvent] = {}
        self.recent: deque[AlertEvent] = deque(maxlen=RECENT)

    def check(self, sample: Sample) -> list[AlertEvent]:
        changes = []
        for rule in self.rules:
            value = getattr(sample, rule.figure)
            if value is None:
                continue
            over = self._gates[rule.name].over(float(value))
            if over == (rule.name in self.firing):
                continue
            event = AlertEvent(rule.name, "firing" if over else "resolved", float(value),
                               rule.threshold, sample.instance_id, sample.at)  # fmt: skip
            if over:
                self.firing[rule.name] = event
            else:
                del self.firing[rule.name]
            changes.append(event)
            self._emit(event)
        return changes

    def _emit(self, event: AlertEvent) -> None:
        self.recent.append(event)
        level = logging.WARNING if event.state == "firing" else logging.INFO
        extra = {"event": "capacity_alert", "rule": event.rule, "state": event.state,
                 "value": event.value, "threshold": event.threshold,
                 "instance_id": event.instance_id}  # fmt: skip
        log.log(level, "capacity alert %s", event.describe(), extra=extra)
        if self.notify is not None:
            self.notify(event)
