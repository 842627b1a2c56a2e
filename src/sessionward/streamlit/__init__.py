"""Streamlit helpers: one SyncWard per process, login, per-user state, live jobs.

    import streamlit as st
    import sessionward.streamlit as sw

    ward = sw.connect("sqlite:///app.db")
    session = sw.login_form(ward, allow_register=True)
    if session is None:
        st.stop()
    sw.logout_button(ward, session)

Needs the ``streamlit`` extra. See docs/streamlit.md.
"""

from __future__ import annotations

from .job_views import job_list, job_panel, job_status, submit_job, waiting_reason
from .login import current_session, forget_tab, login_form, logout_button, username
from .resource import connect
from .user_state import Conflict, UserState, show_conflict

__all__ = [
    "Conflict",
    "UserState",
    "connect",
    "current_session",
    "forget_tab",
    "job_list",
    "job_panel",
    "job_status",
    "login_form",
    "logout_button",
    "show_conflict",
    "submit_job",
    "username",
    "waiting_reason",
]
