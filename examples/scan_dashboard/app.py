"""Scan dashboard: log in, paste or upload text, scan it for PII, watch, cancel, see results.

    SESSIONWARD_STORE=sqlite:///scan.db streamlit run examples/scan_dashboard/app.py

Every user sees only their own scans and draft. At most 3 of a user's scans and 8 in all run
at once, across every Streamlit process sharing the store; the rest wait, and say why. This
process also runs the job worker (on the SyncWard's event loop thread).
"""

from __future__ import annotations

import streamlit as st
from pydantic import BaseModel

import sessionward.streamlit as sw
from sessionward import Job, Settings
from sessionward.jobs.builtin import PII_SCAN


class Draft(BaseModel):
    text: str = ""


def show_result(job: Job) -> None:
    result = job.result or {}
    counts = result.get("counts", {})
    st.subheader("Findings")
    st.write(", ".join(f"{kind}: {n}" for kind, n in counts.items()) or "nothing found")
    findings = result.get("findings", [])
    if findings:
        st.dataframe(findings, hide_index=True)


settings = Settings.from_env()
ward = sw.connect(settings=settings, kinds=[PII_SCAN], worker=True)

st.title("PII scan dashboard")
session = sw.login_form(ward, allow_register=True)
if session is None:
    st.stop()

with st.sidebar:
    st.write(f"Logged in as **{sw.username(ward, session)}**")
    sw.logout_button(ward, session)

draft = sw.UserState(ward, session, "draft", Draft)
saved = draft.get() or Draft()
# keyed by user and version: a reload of the draft, or another user, starts a fresh widget
key = f"text-{session.user_id}-v{draft.version}"
text = st.text_area("Text to scan", value=saved.text, height=160, key=key)
upload = st.file_uploader("...or upload a text file", type=["txt", "csv", "log", "md"])
save, scan = st.columns(2)
if save.button("Save draft") and draft.set(Draft(text=text)):
    st.success("Draft saved.")
sw.show_conflict(draft, what="Your draft")

if scan.button("Run scan", type="primary"):
    body = upload.getvalue().decode("utf-8", "replace") if upload is not None else text
    job = sw.submit_job(ward, session, "pii_scan", {"text": body})
    if job is not None:
        st.session_state["selected_job"] = job.job_id

st.header("Your scans")
jobs = sw.job_list(ward, session)
if jobs:
    ids = [job.job_id for job in jobs]
    chosen = st.session_state.get("selected_job")
    index = ids.index(chosen) if chosen in ids else 0
    selected = st.selectbox("Scan", ids, index=index)
    st.session_state["selected_job"] = selected
    shown = sw.job_panel(ward, session, selected)
    if shown is not None and shown.status == "succeeded":
        show_result(shown)
