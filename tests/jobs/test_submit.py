"""Submitting: a clear error before anything is queued, and the per-user queue bound."""

from __future__ import annotations

import pytest

from sessionward import Settings
from sessionward.errors import InvalidArgument, JobLimitExceeded, UnknownJob, UnknownJobKind
from sessionward.jobs import InvalidJobParams, JobKind
from sessionward.jobs.builtin import SLEEP
from sessionward.ward import Ward

from .helpers import FAST, running, spin

pytestmark = pytest.mark.anyio


async def nothing_queued(ward: Ward, user: str) -> None:
    assert await ward.jobs.list(user) == []
    assert (await ward.jobs.counts()).queued == 0


async def test_an_unknown_kind_is_refused(store_url: str) -> None:
    async with running(store_url, Settings(**FAST), worker=False) as ward:
        with pytest.raises(UnknownJobKind, match="no job kind named 'nope'"):
            await ward.jobs.submit("alice", "nope", {})
        await nothing_queued(ward, "alice")


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("sleep", {}, "params.seconds"),
        ("sleep", {"seconds": 601}, "params.seconds"),
        ("sleep", {"seconds": 0}, "params.seconds"),
        ("sleep", {"seconds": "1"}, "params.seconds"),
        ("sleep", {"seconds": 1, "steps": 0}, "params.steps"),
        ("sleep", {"seconds": 1, "extra": True}, "params.extra"),
        ("sleep", [1], "params"),
        ("pii_scan", {"text": 5}, "params.text"),
        ("pii_scan", {"text": "é" * (512 * 1024 + 1)}, "params.text"),
    ],
)
async def test_bad_params_are_refused_with_the_field(
    store_url: str, kind: str, params: object, field: str
) -> None:
    async with running(store_url, Settings(**FAST), worker=False) as ward:
        with pytest.raises(InvalidJobParams) as caught:
            await ward.jobs.submit("alice", kind, params)
        assert caught.value.fields[0]["field"] == field
        assert isinstance(caught.value, InvalidArgument)
        await nothing_queued(ward, "alice")


async def test_the_largest_text_is_accepted(store_url: str) -> None:
    async with running(store_url, Settings(**FAST), worker=False) as ward:
        job = await ward.jobs.submit("alice", "pii_scan", {"text": "é" * (512 * 1024)})
        assert job.status == "queued"


async def test_the_per_user_queue_is_bounded(store_url: str) -> None:
    settings = Settings(**FAST, jobs_per_user_queued=3)
    async with running(store_url, settings, worker=False) as ward:
        jobs = [await ward.jobs.submit("alice", "spin", {"seconds": 1}) for _ in range(3)]
        with pytest.raises(JobLimitExceeded, match="3 jobs waiting"):
            await ward.jobs.submit("alice", "spin", {"seconds": 1})
        assert len(await ward.jobs.list("alice")) == 3
        await ward.jobs.submit("bob", "spin", {"seconds": 1})  # another user's queue
        await ward.jobs.cancel("alice", jobs[0].job_id)  # a cancelled job waits no more
        await ward.jobs.submit("alice", "spin", {"seconds": 1})


async def test_a_job_is_only_its_owners(store_url: str) -> None:
    async with running(store_url, Settings(**FAST), worker=False) as ward:
        job = await ward.jobs.submit("alice", "spin", {"seconds": 1})
        with pytest.raises(UnknownJob):
            await ward.jobs.get("mallory", job.job_id)
        with pytest.raises(UnknownJob):
            await ward.jobs.cancel("mallory", job.job_id)
        assert await ward.jobs.list("mallory") == []
        assert (await ward.jobs.get("alice", job.job_id)).status == "queued"


def test_kinds_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="ASCII letters"):
        JobKind("no spaces", spin)
    with pytest.raises(ValueError, match="timeout"):
        JobKind("forever", spin, timeout=0)
    assert SLEEP.describe()["params_schema"]["properties"]["seconds"]["maximum"] == 600


async def test_a_kind_is_registered_once(store_url: str) -> None:
    async with running(store_url, Settings(**FAST), worker=False) as ward:
        with pytest.raises(InvalidArgument, match="registered already"):
            ward.jobs.register(SLEEP)
        kinds = {k["kind"] for k in ward.jobs.describe()}
        assert {"sleep", "pii_scan"} <= kinds
