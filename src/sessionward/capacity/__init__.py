"""Capacity: a background monitor of this instance and its store, the deployment view,
recommendations, and admission control for new work (docs/capacity.md)."""

from __future__ import annotations

from .activity import Activity
from .admission import KINDS, REASONS, Admission, Decision, Gate, Kind
from .alerts import AlertEvent, AlertRule, Alerts, parse_rules
from .deployment import Deployment, DeploymentView
from .history import History
from .machine import MachineFigures, MachineProbe
from .monitor import CapacityMonitor
from .recommend import recommend
from .sample import Sample
from .webhook import Webhook

__all__ = [
    "KINDS",
    "REASONS",
    "Activity",
    "Admission",
    "AlertEvent",
    "AlertRule",
    "Alerts",
    "CapacityMonitor",
    "Decision",
    "Deployment",
    "DeploymentView",
    "Gate",
    "History",
    "Kind",
    "MachineFigures",
    "MachineProbe",
    "Sample",
    "Webhook",
    "parse_rules",
    "recommend",
]
