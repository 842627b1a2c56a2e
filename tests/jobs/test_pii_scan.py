"""pii_scan: what it finds, where, and how it masks; linear time on hostile input; and a
run through a worker with progress."""

from __future__ import annotations

import time
from contextlib import aclosing

import pytest

from sessionward import Settings
from sessionward.jobs.builtin import CHUNK, MAX_FINDINGS, iban_valid, luhn, scan

from .helpers import FAST, running

TEXT = (
    "Write to john.doe@example.com or call +44 20 7946 0958 / (555) 123-4567. "
    "Pay DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432 with 4111 1111 1111 1111 "
    "or 5555555555554444. Not these: DE89 3704 0044 0532 0130 01, 4111 1111 1111 1112, "
    "1234-5678-9012-3456, order 12345, year 2024, bob@localhost."
)


def found(text: str) -> list[tuple[str, str, str]]:
    """(type, the matched text, masked) of every finding, checking the positions."""
    result = scan(text)
    out = []
    for f in result["findings"]:
        assert 0 <= f["start"] < f["end"] <= len(text)
        out.append((f["type"], text[f["start"] : f["end"]], f["masked"]))
    assert result["counts"] == {k: sum(t == k for t, _, _ in out) for k in result["counts"]}
    return out


def test_it_finds_each_kind_with_positions_and_masks() -> None:
    assert found(TEXT) == [
        ("email", "john.doe@example.com", "j***@example.com"),
        ("phone", "+44 20 7946 0958", "**********58"),
        ("phone", "555) 123-4567", "********67"),
        ("iban", "DE89 3704 0044 0532 0130 00", "DE89**************3000"),
        ("iban", "GB82WEST12345698765432", "GB82**************5432"),
        ("card", "4111 1111 1111 1111", "************1111"),
        ("card", "5555555555554444", "************4444"),
    ]
    assert scan(TEXT)["counts"] == {"email": 1, "iban": 2, "card": 2, "phone": 2}
    assert scan(TEXT)["truncated"] is False


def test_checks_tell_valid_numbers_from_lookalikes() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert iban_valid("DE89370400440532013000") and not iban_valid("DE89370400440532013001")
    for lookalike in ("4111 1111 1111 1112", "1234-5678-9012-3456", "DE89 3704 0044 0532 0130 01"):
        assert found(f"see {lookalike} here") == [], lookalike  # not even as a phone number


@pytest.mark.parametrize("shift", range(-20, 21, 4))
def test_a_match_across_a_chunk_boundary_is_found_once(shift: int) -> None:
    card, email = "4111 1111 1111 1111", "someone@example.org"
    for value, kind in ((card, "card"), (email, "email")):
        at = CHUNK + shift - len(value) // 2
        text = "x " * (at // 2) + " " * (at % 2) + value + " tail"
        assert [(t, v) for t, v, _ in found(text)] == [(kind, value)]
        assert scan(text)["findings"][0]["start"] == at


@pytest.mark.parametrize("filler", ["a", "1", "a.", "1 ", "x@", "-1", "A1"])
def test_hostile_input_takes_linear_time(filler: str) -> None:
    text = (filler * (1024 * 1024 // len(filler)))[: 1024 * 1024]
    began = time.perf_counter()
    scan(text)
    # ~0.2-0.8 s here; the unbounded e-mail pattern this replaced took 150 s on "a" * 1 MiB
    assert time.perf_counter() - began < 10


def test_findings_are_capped_but_counted() -> None:
    text = " ".join(f"user{i}@example.com" for i in range(MAX_FINDINGS + 5))
    result = scan(text)
    assert result["counts"]["email"] == MAX_FINDINGS + 5
    assert len(result["findings"]) == MAX_FINDINGS and result["truncated"] is True


@pytest.mark.anyio
async def test_a_scan_job_reports_progress_per_chunk(store_url: str) -> None:
    text = ("call +1 555 123 4567 now. " * 20_000)[: 8 * CHUNK]
    async with running(store_url, Settings(**FAST)) as ward:
        job = await ward.jobs.submit("alice", "pii_scan", {"text": text})
        async with aclosing(ward.jobs.watch("alice", job.job_id)) as changes:
            seen = [(j.status, j.progress) async for j in changes]
        done = await ward.jobs.get("alice", job.job_id)
    assert done.status == "succeeded"
    assert done.result == scan(text)
    assert done.result["counts"]["phone"] == text.count("+1 555 123 4567")
    progress = [p for _, p in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
