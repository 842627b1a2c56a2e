"""The dashboard's HTML, rendered on the server (every value escaped)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from ...capacity import AlertEvent, DeploymentView, Sample
from ...clock import iso_utc
from ...jobs import Job
from ...sessions import Session
from .charts import line_chart

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1f2328}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #d0d7de;padding:.25rem .5rem}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.chart{margin:0}.alert{color:#cf222e}
.ok{color:#1a7f37}form.inline{display:inline}"""
# Live updates: swap the panel every 5 s. Without JavaScript the <noscript> refresh does it.
SCRIPT = """setInterval(async () => {
  const answer = await fetch("/admin/panel" + location.search, {credentials: "same-origin"});
  if (answer.ok) { document.getElementById("panel").innerHTML = await answer.text(); }
}, 5000);"""


def page(title: str, body: str, *, live: bool = False) -> str:
    refresh = '<noscript><meta http-equiv="refresh" content="5"></noscript>' if live else ""
    script = f"<script>{SCRIPT}</script>" if live else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f"</title>{refresh}<style>{STYLE}</style></head><body>{body}{script}</body></html>"
    )


def login_form(message: str = "") -> str:
    note = f'<p class="alert">{escape(message)}</p>' if message else ""
    return page(
        "sessionward admin: sign in",
        f"""<h1>sessionward admin</h1>{note}
<form method="post" action="/admin/login"><label>Username <input name="username"
autocomplete="username" required></label> <label>Password <input name="password"
type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form>""",
    )


def _figure(value: float | int | None, unit: str = "", digits: str = ".3g") -> str:
    return "-" if value is None else f"{value:{digits}}{unit}"


def instances_table(view: DeploymentView) -> str:
    rows = "".join(
        f"<tr><td>{escape(s.instance_id)}</td><td>{_figure(s.cpu_used, '%', '.1f')}</td>"
        f"<td>{_figure(s.memory_percent, '%', '.1f')}</td>"
        f"<td>{_figure(s.rss / 2**20, ' MiB', '.0f')}</td>"
        f"<td>{_figure(s.loop_lag * 1000, ' ms', '.1f')}</td>"
        f"<td>{s.pool_in_use}/{s.pool_max} ({s.pool_waiting} waiting)</td>"
        f"<td>{_figure(s.request_rate, '/s', '.2f')}</td><td>{_figure(s.latency_p99, ' s')}</td>"
        f"<td>{s.websockets}</td><td>{s.admitted}/{s.refused}</td></tr>"
        for s in view.instances
    )
    head = ("<tr><th>instance</th><th>CPU</th><th>memory</th><th>RSS</th><th>loop lag</th>"
            "<th>store pool</th><th>requests</th><th>p99</th><th>WebSockets</th>"
            "<th>admitted/refused</th></tr>")  # fmt: skip
    return f'<table id="instances">{head}{rows}</table>'


def charts(history: Sequence[Sample]) -> str:
    def series(name: str, scale: float = 1.0) -> list[tuple[float, float]]:
        return [(s.at, float(getattr(s, name)) * scale) for s in history
                if getattr(s, name) is not None]  # fmt: skip

    parts = [
        line_chart("CPU", series("cpu_used"), "%"),
        line_chart("Memory", series("memory_percent"), "%"),
        line_chart("Active users", series("active_users")),
        line_chart("Requests", series("request_rate"), "/s"),
        line_chart("Loop lag", series("loop_lag", 1000), " ms"),
        line_chart("Jobs queued", series("jobs_queued")),
    ]
    return f'<div class="charts">{"".join(parts)}</div>'


def overview(latest: Sample | None, view: DeploymentView) -> str:
    if latest is None:
        return "<p>No sample yet.</p>"
    return (
        '<table id="overview"><tr><th>active users</th><th>active sessions</th>'
        "<th>jobs running</th><th>jobs queued</th><th>instances</th><th>requests (all)</th></tr>"
        f"<tr><td>{_figure(latest.active_users)}</td><td>{_figure(latest.active_sessions)}</td>"
        f"<td>{_figure(latest.jobs_running)}</td><td>{_figure(latest.jobs_queued)}</td>"
        f"<td>{len(view.instances)}</td><td>{view.total('request_rate'):.2f}/s</td></tr></table>"
    )


def advice(alerts: Sequence[AlertEvent], recommendations: Sequence[str]) -> str:
    firing = "".join(f'<li class="alert">{escape(a.describe())}</li>' for a in alerts)
    words = "".join(f"<li>{escape(text)}</li>" for text in recommendations)
    return (
        f'<h2>Alerts</h2><ul id="alerts">{firing or "<li class=ok>none firing</li>"}</ul>'
        f'<h2>Recommendations</h2><ul id="recommendations">{words or "<li class=ok>none</li>"}</ul>'
    )


def user_panel(
    username: str, user_id: str, sessions: Sequence[Session], jobs: Sequence[Job], csrf: str
) -> str:
    base = f"/admin/users/{escape(user_id)}"
    session_rows = "".join(
        f"<tr><td>{escape(s.session_id)}</td><td>{escape(s.user_agent or '')}</td>"
        f"<td>{escape(s.ip or '')}</td><td>{iso_utc(s.last_seen_at)}</td><td>"
        f'<form class="inline" method="post" action="{base}/sessions/{escape(s.session_id)}'
        f'/revoke"><input type="hidden" name="csrf" value="{csrf}"><button>Revoke</button>'
        "</form></td></tr>"
        for s in sessions
    )
    job_rows = "".join(_job_row(base, job, csrf) for job in jobs)
    return (
        f'<h2 id="user">User {escape(username)}</h2><table id="sessions"><tr><th>session</th>'
        f"<th>device</th><th>IP</th><th>last seen</th><th></th></tr>{session_rows}</table>"
        f'<table id="jobs"><tr><th>job</th><th>kind</th><th>status</th><th>progress</th>'
        f"<th></th></tr>{job_rows}</table>"
    )


def _job_row(base: str, job: Job, csrf: str) -> str:
    cancel = ""
    if job.status in ("queued", "running", "interrupted"):
        cancel = (f'<form class="inline" method="post" action="{base}/jobs/{escape(job.job_id)}'
                  f'/cancel"><input type="hidden" name="csrf" value="{csrf}">'
                  "<button>Cancel</button></form>")  # fmt: skip
    return (f"<tr><td>{escape(job.job_id)}</td><td>{escape(job.kind)}</td>"
            f"<td>{escape(job.status)}</td><td>{job.progress:.0%}</td>"
            f"<td>{cancel}</td></tr>")  # fmt: skip


def search_form(query: str) -> str:
    return (
        '<form method="get" action="/admin"><label>User <input name="user" '
        f'value="{escape(query)}"></label> <button>Search</button></form>'
    )
