"""Logging for ``sessionward serve``: uvicorn's setup, sessionward's loggers beside it, and
no secret in any line, whatever the level.

At debug level the WebSocket library logs every frame it sends and receives (the first
frame of a socket carries the access token) and every handshake header (``Authorization``,
``Cookie``). :class:`RedactSecrets` keeps those lines but drops data frames' payloads and
those headers' values, so debug logs can be shared.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from websockets.frames import Frame, Opcode

SECRET_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization"})
_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


class RedactSecrets(logging.Filter):
    """Rewrites WebSocket frame and header debug lines without their secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or not args:
            return True
        if isinstance(args[0], Frame) and args[0].opcode in _DATA:
            frame = args[0]
            record.args = (f"{frame.opcode.name} [{len(frame.data)} bytes, not shown]",)
        elif len(args) == 2 and str(args[0]).lower() in SECRET_HEADERS:
            record.args = (args[0], "[not shown]")
        return True


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging setup with :class:`RedactSecrets` on its handlers, and sessionward's
    own loggers on the same handler at ``level``."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": RedactSecrets}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    config["loggers"]["sessionward"] = {"handlers": ["default"], "level": level.upper(),
                                        "propagate": False}  # fmt: skip
    return config
