"""Checks on values that cross into the store: ids, free text, JSON."""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import InvalidArgument

_ID = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value) or not _utf8(value):
        raise InvalidArgument(f"{what} must be 1 to 255 printable characters")
    return value


def possible_id(value: object) -> bool:
    """Whether ``value`` could be an id :func:`check_id` accepted; an id that could not is
    never looked up (it names nothing), so it never reaches a store."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None and _utf8(value)


def check_text(value: str | None, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _utf8(value) or _CONTROL.search(value):
        raise InvalidArgument(f"{what} must be a string without control characters")
    return value[:limit]


#: How deeply JSON the library stores may nest: a fixed bound, so that whether a document
#: is taken never depends on how deep the caller's stack happens to be (Python's encoder
#: and decoder recurse), and every reader (json, Lua's cjson) can read back what was written.
MAX_JSON_DEPTH = 100


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether lists and dicts nest more than ``limit`` deep (iteratively: any depth)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list | tuple))
    return False


def encode_json(
    value: Any, what: str, limit: int | None = None, error: type[InvalidArgument] = InvalidArgument
) -> str:
    """Compact JSON, refusing NaN/Infinity, lone surrogates, nesting deeper than
    :data:`MAX_JSON_DEPTH` and anything JSON cannot hold."""
    if isinstance(value, dict | list | tuple) and json_depth_exceeds(value):
        raise error(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise error(f"{what} must be plain JSON: {exc}") from None
    if not _utf8(text):
        raise error(f"{what} holds a lone surrogate, which is not valid Unicode")
    if limit is not None and len(text.encode()) > limit:
        raise InvalidArgument(f"{what} is larger than {limit} bytes")
    return text


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
