"""The admin dashboard, ``/admin``: server-rendered pages for users with the admin role.

Sign-in is the service's own login (``ward.auth.login``, with its lockout), and the access
token then rides in an ``HttpOnly``, ``SameSite=Strict`` cookie scoped to ``/admin``. Every
form that changes something carries a CSRF token derived from that cookie (a keyed hash),
checked before acting. A non-admin gets 403. The page updates itself every 5 s by swapping
its panel (``/admin/panel``); without JavaScript it refreshes itself.
"""

from __future__ import annotations

import hashlib
import hmac
from html import escape
from typing import Annotated
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...errors import InvalidCredentials, InvalidToken, SessionError, SessionwardError
from ...ward import Ward
from ...web.client import client_ip
from ..deps import WardDep
from . import pages

router = APIRouter(prefix="/admin", include_in_schema=False)
COOKIE = "sessionward_admin"
Id = Annotated[str, Path(min_length=1, max_length=255)]


class NotAdmin(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


async def _admin(request: Request, ward: Ward) -> str:
    """The signed-in admin's user id; ``NotAdmin(401)`` without a valid cookie, 403 for a
    user who is not an admin."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise NotAdmin(401)
    try:
        principal = await ward.auth.authenticate(token)
    except (InvalidToken, SessionError):
        raise NotAdmin(401) from None
    user = await ward.users.get(principal.user_id)
    if user is None or not user.is_admin:
        raise NotAdmin(403)
    return principal.user_id


def _csrf(request: Request, ward: Ward) -> str:
    key = ward.settings.secret_key.get_secret_value() if ward.settings.secret_key else ""
    token = request.cookies.get(COOKIE, "")
    return hmac.new(f"csrf:{key}".encode(), token.encode(), hashlib.sha256).hexdigest()[:32]


def _refused(status: int) -> HTMLResponse:
    if status == 401:
        return HTMLResponse(pages.login_form(), status_code=401)
    body = pages.page("Forbidden", "<h1>403</h1><p>Only an admin may see this page.</p>")
    return HTMLResponse(body, status_code=403)


async def _panel(request: Request, ward: Ward, query: str) -> str:
    monitor = ward.capacity
    view = await monitor.instances()
    parts = [
        pages.overview(monitor.latest(), view),
        "<h2>Instances</h2>", pages.instances_table(view),
        "<h2>Last hour (this instance)</h2>", pages.charts(list(monitor.history)),
        pages.advice(list(monitor.alerts.firing.values()), monitor.recommendations()),
    ]  # fmt: skip
    if query:
        parts.append(await _user(request, ward, query))
    return "".join(parts)


async def _user(request: Request, ward: Ward, query: str) -> str:
    user = await ward.users.find(query)
    if user is None:
        return f"<p id=user>No user {escape(query)}.</p>"
    sessions = await ward.sessions.list_active(user.user_id)
    jobs = await ward.jobs.list(user.user_id, limit=50)
    return pages.user_panel(user.username, user.user_id, sessions, jobs, _csrf(request, ward))


@router.get("", response_class=HTMLResponse)
async def dashboard(
    request: Request, ward: WardDep, user: Annotated[str, Query(max_length=64)] = ""
) -> Response:
    try:
        await _admin(request, ward)
    except NotAdmin as refused:
        return _refused(refused.status)
    body = (f"<h1>sessionward capacity</h1>{pages.search_form(user)}"
            '<form method="post" action="/admin/logout"><button>Sign out</button></form>'
            f'<div id="panel">{await _panel(request, ward, user)}</div>')  # fmt: skip
    return HTMLResponse(pages.page("sessionward admin", body, live=True))


@router.get("/panel", response_class=HTMLResponse)
async def panel(
    request: Request, ward: WardDep, user: Annotated[str, Query(max_length=64)] = ""
) -> Response:
    try:
        await _admin(request, ward)
    except NotAdmin as refused:
        return Response(status_code=refused.status)
    return HTMLResponse(await _panel(request, ward, user))


async def _form(request: Request) -> dict[str, str]:
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
    return {name: values[0] for name, values in fields.items()}


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, ward: WardDep) -> Response:
    form = await _form(request)
    ip = client_ip(request, ward.settings.trusted_proxies)
    try:
        pair = await ward.auth.login(form.get("username", ""), form.get("password", ""), ip=ip)
    except InvalidCredentials:
        return HTMLResponse(pages.login_form("Wrong username or password."), status_code=401)
    except SessionwardError as exc:
        return HTMLResponse(pages.login_form(str(exc)), status_code=429)
    principal = await ward.auth.authenticate(pair.access_token)
    user = await ward.users.get(principal.user_id)
    if user is None or not user.is_admin:
        # not an admin: no session from this form (admission control guards the API's login)
        await ward.sessions.revoke(principal.user_id, pair.session_id)
        return _refused(403)
    answer = RedirectResponse("/admin", status_code=303)
    answer.set_cookie(COOKIE, pair.access_token, max_age=ward.settings.access_token_ttl,
                      path="/admin", httponly=True, samesite="strict",
                      secure=request.url.scheme == "https")  # fmt: skip
    return answer


@router.post("/logout")
async def logout(ward: WardDep) -> Response:
    answer = RedirectResponse("/admin", status_code=303)
    answer.delete_cookie(COOKIE, path="/admin")
    return answer


async def _checked(request: Request, ward: Ward) -> Response | None:
    """``None`` when the caller is an admin and the form's CSRF token is right."""
    try:
        await _admin(request, ward)
    except NotAdmin as refused:
        return _refused(refused.status)
    form = await _form(request)
    if not hmac.compare_digest(form.get("csrf", ""), _csrf(request, ward)):
        return HTMLResponse(pages.page("Refused", "<p>Stale form: reload.</p>"), status_code=403)
    return None


@router.post("/users/{user_id}/sessions/{session_id}/revoke")
async def revoke(request: Request, ward: WardDep, user_id: Id, session_id: Id) -> Response:
    refused = await _checked(request, ward)
    if refused is not None:
        return refused
    await ward.sessions.revoke(user_id, session_id)
    return await _back_to(ward, user_id)


@router.post("/users/{user_id}/jobs/{job_id}/cancel")
async def cancel(request: Request, ward: WardDep, user_id: Id, job_id: Id) -> Response:
    refused = await _checked(request, ward)
    if refused is not None:
        return refused
    await ward.jobs.cancel(user_id, job_id)
    return await _back_to(ward, user_id)


async def _back_to(ward: Ward, user_id: str) -> Response:
    user = await ward.users.get(user_id)
    where = f"/admin?{urlencode({'user': user.username})}" if user is not None else "/admin"
    return RedirectResponse(where, status_code=303)
