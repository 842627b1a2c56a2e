"""The two kinds the service ships: ``sleep`` (tests and demos) and ``pii_scan``.

``pii_scan`` finds e-mail addresses, phone numbers, IBANs (mod-97 checked) and card numbers
(Luhn checked) in a text, chunk by chunk, reporting progress per chunk and returning counts
and positions (``start``/``end``: character offsets, end exclusive) with masked values (the
first 10,000 findings; ``truncated`` says whether there were more). Where
matches overlap, the earlier kind in that list wins; a digit run shaped like a card or an IBAN
that fails its check is reported as nothing (not as a phone number either). Every pattern is
bounded and anchored at a boundary, so a scan takes time linear in the text.
"""

from __future__ import annotations

import bisect
import re
from typing import Any

import anyio
import anyio.lowlevel
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .context import JobContext
from .kinds import JobKind

MAX_TEXT_BYTES = 1024 * 1024
CHUNK = 16 * 1024
OVERLAP = 512  # longer than any match, so a match across a chunk boundary is whole
MAX_FINDINGS = 10_000  # listed; counts count them all (the result stays under 1 MiB)


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    seconds: float = Field(gt=0, le=600, description="how long to sleep, up to 600 s")
    steps: int = Field(default=10, ge=1, le=1000, description="progress reports, evenly spaced")


async def sleep(ctx: JobContext, params: SleepParams) -> dict[str, Any]:
    for step in range(params.steps):
        await anyio.sleep(params.seconds / params.steps)
        await ctx.progress((step + 1) / params.steps, f"step {step + 1} of {params.steps}")
    return {"slept": params.seconds}


class ScanParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str = Field(max_length=MAX_TEXT_BYTES, description="the text, at most 1 MiB of UTF-8")

    @field_validator("text")
    @classmethod
    def _at_most_a_mebibyte(cls, text: str) -> str:
        if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
            raise ValueError(f"the text is over {MAX_TEXT_BYTES} bytes of UTF-8")
        return text


_LOCAL = r"[A-Za-z0-9._%+-]"
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(
        rf"(?<!{_LOCAL}){_LOCAL}{{1,64}}@(?:[A-Za-z0-9-]{{1,63}}\.){{1,8}}[A-Za-z]{{2,24}}"
        r"(?![A-Za-z0-9-])"
    )),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")),
    ("card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")),
    ("phone", re.compile(r"(?<![\w+])\+?\d(?:[ ().-]{0,2}\d){7,14}(?!\w)")),
]  # fmt: skip
KINDS = [kind for kind, _ in PATTERNS]


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def luhn(number: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(number)):
        digit = int(char) * (2 if i % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def valid(kind: str, text: str) -> bool:
    if kind == "card":
        return 13 <= len(_digits(text)) <= 19 and luhn(_digits(text))
    if kind == "iban":
        return iban_valid(text)
    if kind == "phone":
        return 8 <= len(_digits(text)) <= 15
    return True


def mask(kind: str, text: str) -> str:
    if kind == "email":
        name, _, domain = text.partition("@")
        return f"{name[:1]}***@{domain}"
    if kind == "iban":
        compact = text.replace(" ", "")
        return f"{compact[:4]}{'*' * (len(compact) - 8)}{compact[-4:]}"
    digits = _digits(text)
    keep = 4 if kind == "card" else 2
    return "*" * (len(digits) - keep) + digits[-keep:]


class _Taken:
    """Disjoint spans already claimed by a finding (or by a failed card or IBAN)."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def overlaps(self, a: int, b: int) -> bool:
        i = bisect.bisect_right(self._starts, a)
        return (i > 0 and self._ends[i - 1] > a) or (i < len(self._starts) and self._starts[i] < b)

    def add(self, a: int, b: int) -> None:
        i = bisect.bisect_right(self._starts, a)
        self._starts.insert(i, a)
        self._ends.insert(i, b)


def scan_chunk(text: str, start: int, end: int, taken: _Taken) -> list[dict[str, Any]]:
    """Findings that start in ``[start, end)`` and overlap nothing in ``taken`` (added to)."""
    stop = min(end + OVERLAP, len(text))
    found = []
    for kind, pattern in PATTERNS:
        for match in pattern.finditer(text, start, stop):
            a, b = match.span()
            if a >= end or taken.overlaps(a, b):
                continue
            ok = valid(kind, match[0])
            if ok or kind in ("card", "iban"):
                taken.add(a, b)
            if ok:
                found.append({"type": kind, "start": a, "end": b, "masked": mask(kind, match[0])})
    return found


def scan(text: str) -> dict[str, Any]:
    """The whole scan at once (what ``pii_scan`` returns), without progress."""
    taken, findings = _Taken(), []
    for start in range(0, len(text), CHUNK):
        findings += scan_chunk(text, start, min(start + CHUNK, len(text)), taken)
    return _result(findings)


def _result(findings: list[dict[str, Any]]) -> dict[str, Any]:
    findings.sort(key=lambda f: f["start"])
    counts = {kind: sum(f["type"] == kind for f in findings) for kind in KINDS}
    truncated = len(findings) > MAX_FINDINGS
    return {"counts": counts, "findings": findings[:MAX_FINDINGS], "truncated": truncated}


async def pii_scan(ctx: JobContext, params: ScanParams) -> dict[str, Any]:
    text = params.text
    taken, findings = _Taken(), []
    for start in range(0, len(text), CHUNK):
        end = min(start + CHUNK, len(text))
        findings += scan_chunk(text, start, end, taken)
        await ctx.progress(end / len(text), f"scanned {end} of {len(text)} characters")
        await anyio.lowlevel.checkpoint()  # a cancel interrupts between chunks
    return _result(findings)


SLEEP = JobKind("sleep", sleep, SleepParams, "Sleep, reporting progress per step (tests, demos).",
                timeout=900)  # fmt: skip
PII_SCAN = JobKind(
    "pii_scan", pii_scan, ScanParams,
    "Find e-mail addresses, phone numbers, IBANs and card numbers (Luhn-checked) in a text; "
    "returns counts and positions with masked values.",
    timeout=600,
)  # fmt: skip
BUILTIN = (SLEEP, PII_SCAN)
