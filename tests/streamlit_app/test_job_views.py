"""The job helpers in a small app of their own (the built-in ``sleep`` kind): live progress
to completion, cancel, and the per-user, overall and waiting-job limits as messages."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from sessionward import SyncWard
from sessionward.jobs.builtin import SLEEP
from sessionward.testing import wait_until

from .conftest import TIMEOUT, log_in, texts


def sleep_app() -> None:
    import streamlit as st

    import sessionward.streamlit as sw
    from sessionward import Settings
    from sessionward.jobs.builtin import SLEEP

    ward = sw.connect(settings=Settings.from_env(), kinds=[SLEEP], worker=True)
    session = sw.login_form(ward)
    if session is None:
        st.stop()
    if st.button("Sleep"):
        seconds = float(st.query_params.get("seconds", "60"))
        sw.submit_job(ward, session, "sleep", {"seconds": seconds, "steps": 4})
    for job in sw.job_list(ward, session):
        sw.job_panel(ward, session, job.job_id, every=0.2)


def tab(token: str, seconds: float = 60) -> AppTest:
    at = AppTest.from_function(sleep_app, default_timeout=TIMEOUT)
    at.query_params["sw"] = token
    at.query_params["seconds"] = str(seconds)
    return at.run()


def press(at: AppTest, label: str, times: int = 1) -> AppTest:
    for _ in range(times):
        next(b for b in at.button if b.label == label).click()
        at.run()
    assert not at.exception, at.exception
    return at


def shows(at: AppTest, text: str, timeout: float = 15) -> None:
    def seen() -> bool:
        at.run()
        return text in texts(at)

    wait_until(seen, timeout=timeout, what=f"{text!r} on the page")


def test_progress_moves_and_the_job_completes(ward: SyncWard) -> None:
    at = press(tab(log_in(ward, "alice"), seconds=2), "Sleep")
    shows(at, "Running: ")
    shows(at, "Done")
    assert at.get("progress")[0].proto.value == 100
    assert not [b for b in at.button if b.label == "Cancel"]


def test_cancel_a_running_job(ward: SyncWard) -> None:
    at = press(tab(log_in(ward, "bob")), "Sleep")
    shows(at, "Running: ")
    press(at, "Cancel")
    shows(at, "Cancelled")
    user = ward.users.find("bob")
    assert user is not None and ward.jobs.list(user.user_id)[0].status == "cancelled"


def test_a_fourth_job_waits_for_one_of_the_users_three(ward: SyncWard) -> None:
    at = press(tab(log_in(ward, "carol")), "Sleep", times=4)
    shows(at, "Waiting: 3 jobs of yours are running, and at most 3 of yours run at once.")
    assert texts(at).count("Running: ") == 3


def test_past_eight_in_all_a_job_says_so(ward: SyncWard) -> None:
    ward.jobs.register(SLEEP)  # the test's own ward submits; the app's runs them
    tokens = {name: log_in(ward, name) for name in ("dan", "eve", "fay")}
    for name in tokens:
        user = ward.users.find(name)
        assert user is not None
        for _ in range(3):
            ward.jobs.submit(user.user_id, "sleep", {"seconds": 60})
    watcher = tab(tokens["dan"])  # its ward runs the worker, which now claims 8 of 9
    wait_until(lambda: ward.jobs.counts().running == 8, timeout=15, what="8 running jobs")
    waiting = next(
        name for name in tokens
        if any(job.status == "queued" for job in ward.jobs.list(ward.users.find(name).user_id))  # type: ignore[union-attr]
    )  # fmt: skip
    at = watcher if waiting == "dan" else tab(tokens[waiting])
    shows(at, "Waiting: 8 jobs are running for all users, and at most 8 run at once.")
    assert ward.jobs.counts().running == 8


def test_too_many_waiting_jobs_is_a_message(
    ward: SyncWard, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSIONWARD_JOBS_PER_USER_RUNNING", "1")
    monkeypatch.setenv("SESSIONWARD_JOBS_PER_USER_QUEUED", "1")
    at = press(tab(log_in(ward, "gus")), "Sleep", times=3)
    assert [w.value for w in at.warning] == [
        "You already have 1 job waiting to start, the most allowed. "
        "Wait for one to start, or cancel one."
    ]
    assert not at.exception and len(at.get("progress")) == 2
