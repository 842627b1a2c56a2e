"""WebSocket client frames: JSON objects of a known ``type`` with exactly its string fields.

    parse_frame('{"type": "message", "text": "hi"}', {"message": frozenset({"text"})})
    == {"type": "message", "text": "hi"}

Anything else (not JSON, an array, an unknown type, a missing, extra or non-string field,
NaN, a lone surrogate, a binary frame) is ``None``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

Frame = str | bytes
Shapes = Mapping[str, frozenset[str]]

AUTH: Shapes = {"auth": frozenset({"access_token"})}
CHAT: Shapes = {"message": frozenset({"text"})}


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_frame(frame: Frame, shapes: Shapes) -> dict[str, str] | None:
    """A client message of one of ``shapes`` (type -> field names), or ``None``."""
    if not isinstance(frame, str):
        return None  # binary frames are not part of the protocol
    try:
        value = json.loads(frame, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    fields = shapes.get(kind) if isinstance(kind, str) else None
    if fields is None or set(value) != {"type", *fields}:
        return None
    if not all(_unicode(value[name]) for name in fields):
        return None
    return value


def _unicode(value: object) -> bool:
    # json.loads turns "\ud800" into a lone surrogate, which no UTF-8 frame can carry back
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def frame_size(frame: Frame) -> int:
    """The frame's size in bytes (UTF-8 for text)."""
    return len(frame.encode("utf-8")) if isinstance(frame, str) else len(frame)
