"""The scan dashboard example under AppTest: login, state across reruns and restarts,
isolation between users, a scan to its result, and a conflict between two tabs."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from sessionward import Job, StateScope, SyncWard
from sessionward.testing import wait_until

from .conftest import DASHBOARD, PASSWORD, TIMEOUT, dashboard, log_in, restart, texts

LEAKY = "Mail alice@example.com or call +44 20 7946 0958."


def fill_login(at: AppTest, name: str, password: str, button: str = "Log in") -> AppTest:
    at.text_input(key="sessionward-login-username").input(name)
    at.text_input(key="sessionward-login-password").input(password)
    next(b for b in at.button if b.label == button).click()
    return at.run()


def test_register_log_in_and_stay_logged_in_across_reruns_and_a_restart(ward: SyncWard) -> None:
    at = AppTest.from_file(str(DASHBOARD), default_timeout=TIMEOUT).run()
    assert not at.exception
    at = fill_login(at, "alice", PASSWORD, "Create account")
    assert not at.exception and not at.error
    token = at.query_params["sw"]
    assert "Logged in as **alice**" in texts(at)
    assert PASSWORD not in str(at.query_params) and PASSWORD not in str(at.session_state.to_dict())

    at.text_area[0].input(LEAKY)
    next(b for b in at.button if b.label == "Save draft").click()
    at.run()
    assert "Draft saved." in texts(at)
    at.run()  # a rerun keeps the session and the draft
    assert at.query_params["sw"] == token and at.text_area[0].value == LEAKY

    restart()
    again = dashboard(token)  # a new server process, the same URL
    assert not again.exception
    assert "Logged in as **alice**" in texts(again)
    assert again.text_area[0].value == LEAKY


def test_another_user_sees_none_of_it(ward: SyncWard) -> None:
    alice = dashboard(log_in(ward, "alice"))
    alice.text_area[0].input(LEAKY)
    next(b for b in alice.button if b.label == "Save draft").click()
    alice.run()
    next(b for b in alice.button if b.label == "Run scan").click()
    alice.run()
    assert ward.jobs.list(ward.users.find("alice").user_id)  # type: ignore[union-attr]

    bob = dashboard(log_in(ward, "bob"))
    assert "Logged in as **bob**" in texts(bob)
    assert bob.text_area[0].value == ""
    assert "No jobs yet." in texts(bob) and not bob.dataframe


def test_wrong_password_then_lockout(ward: SyncWard, monkeypatch) -> None:
    monkeypatch.setenv("SESSIONWARD_LOGIN_MAX_FAILURES", "2")
    ward.auth.register("carol", PASSWORD)
    at = AppTest.from_file(str(DASHBOARD), default_timeout=TIMEOUT).run()
    fill_login(at, "carol", "not the password")
    assert [e.value for e in at.error] == ["Wrong username or password."]
    fill_login(at, "carol", "not the password")
    fill_login(at, "carol", PASSWORD)  # right, but too late
    assert any("Too many failed logins. Try again in" in e.value for e in at.error)
    assert "sw" not in at.query_params and not at.exception


def test_logout_ends_the_session_in_every_tab(ward: SyncWard) -> None:
    token = log_in(ward, "dave")
    first, second = dashboard(token), dashboard(token)
    next(b for b in first.button if b.label == "Log out").click()
    first.run()
    assert "You have logged out." in texts(first) and "sw" not in first.query_params
    second.run()
    assert "Your session has ended. Please log in again." in texts(second)
    assert not second.text_area  # the login form, nothing of dave's


def test_a_scan_runs_to_its_result(ward: SyncWard) -> None:
    at = dashboard(log_in(ward, "erin"))
    at.text_area[0].input(LEAKY * 2000)  # several chunks: progress moves in steps
    next(b for b in at.button if b.label == "Run scan").click()
    at.run()
    assert not at.exception and not at.warning

    def done() -> bool:
        at.run()
        return "Findings" in [h.value for h in at.subheader]

    wait_until(done, timeout=30, what="the scan's result")
    assert "email: 2000" in texts(at) and "Done" in texts(at)
    assert at.get("progress")[0].proto.value == 100


def test_two_tabs_saving_the_draft_see_a_conflict(ward: SyncWard) -> None:
    token = log_in(ward, "frank")
    one, two = dashboard(token), dashboard(token)
    one.text_area[0].input("from tab one")
    next(b for b in one.button if b.label == "Save draft").click()
    one.run()
    two.text_area[0].input("from tab two")
    next(b for b in two.button if b.label == "Save draft").click()
    two.run()
    assert any("changed in another tab" in w.value for w in two.warning)
    doc = ward.state.get(user_scope(ward, "frank"), "draft")
    assert doc is not None and doc.data == {"text": "from tab one"}

    next(b for b in two.button if b.label == "Save mine over it").click()
    two.run()
    doc = ward.state.get(user_scope(ward, "frank"), "draft")
    assert doc is not None and doc.data == {"text": "from tab two"}
    assert not any("changed in another tab" in w.value for w in two.warning)


def test_an_uploaded_file_is_scanned(ward: SyncWard) -> None:
    at = dashboard(log_in(ward, "gail"))
    at.file_uploader[0].upload("notes.txt", b"IBAN GB82 WEST 1234 5698 7654 32, ok", "text/plain")
    next(b for b in at.button if b.label == "Run scan").click()
    at.run()

    def done() -> bool:
        at.run()
        return "Findings" in [h.value for h in at.subheader]

    wait_until(done, timeout=30, what="the scan's result")
    assert "iban: 1" in texts(at) and "email: 0" in texts(at)


def test_a_draft_too_large_to_save_is_a_message(ward: SyncWard) -> None:
    at = dashboard(log_in(ward, "hank"))
    at.text_area[0].input("x" * 300_000)
    next(b for b in at.button if b.label == "Save draft").click()
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Not saved: this is 300,011 bytes, and at most 262,144 fit."
    ]
    assert ward.state.get(user_scope(ward, "hank"), "draft") is None


def user_scope(ward: SyncWard, name: str) -> StateScope:
    user = ward.users.find(name)
    assert user is not None
    return StateScope("user", user.user_id)


def test_a_tab_given_another_users_token_keeps_nothing_of_the_first(ward: SyncWard) -> None:
    at = dashboard(log_in(ward, "ivy"))
    at.text_area[0].input("ivy's secret draft")
    next(b for b in at.button if b.label == "Save draft").click()
    at.run()
    at.query_params["sw"] = log_in(ward, "jack")  # the same tab, another user's URL
    at.run()
    assert "Logged in as **jack**" in texts(at) and "ivy" not in texts(at)
    assert at.text_area[0].value == ""
    assert not [k for k in at.session_state if "ivy" in str(at.session_state[k])]


def most_at_once(jobs: list[Job]) -> int:
    """The largest number of these jobs that ran at the same moment (from their times)."""
    edges = sorted(
        [(job.finished_at, -1) for job in jobs] + [(job.started_at, 1) for job in jobs]
    )  # at a tie the end sorts first: a slot freed and taken again is not an overlap
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_several_users_scan_at_once_within_the_limits(
    ward: SyncWard, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSIONWARD_JOBS_RUNNING", "2")
    monkeypatch.setenv("SESSIONWARD_JOBS_PER_USER_RUNNING", "1")
    names = ["kim", "lee", "max"]
    tabs = {name: dashboard(log_in(ward, name)) for name in names}
    for name, at in tabs.items():
        at.text_area[0].input(f"{name}@example.com " * 20_000)  # some chunks of work
        for _ in range(2):
            next(b for b in at.button if b.label == "Run scan").click()
            at.run()
        assert not at.warning and not at.exception
    users = {name: ward.users.find(name) for name in names}

    def all_done() -> bool:
        return all(job.finished for user in users.values() for job in ward.jobs.list(user.user_id))  # type: ignore[union-attr]

    wait_until(all_done, timeout=60, what="every scan finished")
    every = [job for user in users.values() for job in ward.jobs.list(user.user_id)]  # type: ignore[union-attr]
    assert [job.status for job in every] == ["succeeded"] * 6
    assert most_at_once(every) <= 2
    for name, user in users.items():
        assert most_at_once(ward.jobs.list(user.user_id)) == 1  # type: ignore[union-attr]
        at = tabs[name].run()
        shown = set(at.dataframe[0].value["job"])  # the table of scans
        assert shown == {job.job_id for job in ward.jobs.list(user.user_id)}  # type: ignore[union-attr]
