"""Submit a user's jobs, watch one live, cancel it, list them.

:func:`job_panel` draws a job's ``st.progress`` bar and status in an ``st.fragment`` that
reruns by itself every ``every`` seconds while the job is unfinished, so the page stays
responsive and only the panel is redrawn; when the job finishes it reruns the whole app
once, which draws the panel without a timer. The limits (``jobs_per_user_running``,
``jobs_running``, ``jobs_per_user_queued``) are decided in the store; here they become
messages: a refused submit says why, and a waiting job says which limit it waits for.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from ..errors import InvalidJobParams, JobLimitExceeded, UnknownJob, UnknownJobKind
from ..jobs import Job
from ..sessions import Session
from ..stores.records import RUNNING
from ..sync import SyncWard
from .login import WIDGET

_STATUS = {
    "running": "Running",
    "cancelling": "Cancelling",
    "succeeded": "Done",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "interrupted": "Interrupted (its worker stopped): waiting to run again",
}


def submit_job(ward: SyncWard, session: Session, kind: str, params: Any = None) -> Job | None:
    """Queue a job for the session's user; ``None``, with the reason shown, if refused."""
    try:
        return ward.jobs.submit(session.user_id, kind, params)
    except JobLimitExceeded:
        waiting = ward.settings.jobs_per_user_queued
        st.warning(
            f"You already have {_jobs(waiting)} waiting to start, the most allowed. "
            "Wait for one to start, or cancel one."
        )
    except InvalidJobParams as exc:
        st.error(f"This job cannot run: {exc}")
    except UnknownJobKind:
        st.error(f"This app cannot run {kind!r} jobs.")
    return None


def job_panel(ward: SyncWard, session: Session, job_id: str, *, every: float = 1.0) -> Job | None:
    """Draw one of the user's jobs (progress, status, a cancel button) and return it as this
    run saw it; ``None`` if the user has no such job."""
    job = _get(ward, session, job_id)
    if job is None:
        st.info("No such job.")
        return None
    panel = st.fragment(_draw, run_every=None if job.finished else every)
    panel(ward, session, job_id, job.finished)
    return job


def _draw(ward: SyncWard, session: Session, job_id: str, was_finished: bool) -> None:
    job = _get(ward, session, job_id)
    if job is None:
        return
    if job.finished and not was_finished:
        st.rerun()  # the whole app, once: the panel loses its timer, the result shows
    st.progress(job.progress, text=job_status(ward, session, job))
    if job.status == "failed" and job.error:
        st.error(job.error)
    if not job.finished and job.status != "cancelling":
        # a callback runs before the rerun the click causes, which then shows the cancel
        st.button("Cancel", key=f"{WIDGET}cancel-{job_id}", on_click=_cancel,
                  args=(ward, session.user_id, job_id))  # fmt: skip


def _cancel(ward: SyncWard, user_id: str, job_id: str) -> None:
    with suppress(UnknownJob):  # gone since the panel was drawn
        ward.jobs.cancel(user_id, job_id)


def job_status(ward: SyncWard, session: Session, job: Job) -> str:
    """A line saying what the job is doing, or which limit it waits for."""
    if job.status == "queued":
        return waiting_reason(ward, session)
    label = _STATUS.get(job.status, job.status)
    if job.status in RUNNING:
        detail = f" ({job.message})" if job.message else ""
        return f"{label}: {job.progress:.0%}{detail}"
    return label


def waiting_reason(ward: SyncWard, session: Session) -> str:
    """Why a queued job of this user has not started yet."""
    settings = ward.settings
    mine = sum(job.status in RUNNING for job in ward.jobs.list(session.user_id, limit=100))
    if mine >= settings.jobs_per_user_running:
        return (
            f"Waiting: {_jobs(mine)} of yours are running, and at most "
            f"{settings.jobs_per_user_running} of yours run at once."
        )
    running = ward.jobs.counts().running
    if running >= settings.jobs_running:
        return (
            f"Waiting: {_jobs(running)} are running for all users, and at most "
            f"{settings.jobs_running} run at once."
        )
    return "Waiting to start."


def job_list(ward: SyncWard, session: Session, *, limit: int = 20, every: float = 1.0) -> list[Job]:
    """Draw a table of the user's latest jobs, newest first, and return them as this run
    saw them. Like :func:`job_panel`, the table redraws itself while a job is unfinished."""
    jobs = ward.jobs.list(session.user_id, limit=limit)
    if not jobs:
        st.caption("No jobs yet.")
        return jobs
    busy = not all(job.finished for job in jobs)
    table = st.fragment(_draw_list, run_every=every if busy else None)
    table(ward, session, limit, busy)
    return jobs


def _draw_list(ward: SyncWard, session: Session, limit: int, was_busy: bool) -> None:
    jobs = ward.jobs.list(session.user_id, limit=limit)
    if was_busy and all(job.finished for job in jobs):
        st.rerun()  # the whole app, once: the table loses its timer
    rows = [
        {
            "submitted": _clock(job.created_at),
            "kind": job.kind,
            "status": job.status,
            "progress": f"{job.progress:.0%}",
            "job": job.job_id,
        }
        for job in jobs
    ]
    st.dataframe(rows, hide_index=True)


def _get(ward: SyncWard, session: Session, job_id: str) -> Job | None:
    try:
        return ward.jobs.get(session.user_id, job_id)
    except UnknownJob:
        return None


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


def _clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
