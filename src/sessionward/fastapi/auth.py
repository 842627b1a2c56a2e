"""The auth router: register, login, refresh, logout, logout-all, the caller's sessions.

    app.include_router(sw.auth_router(), prefix="/auth")
    app.include_router(sw.auth_router(cookie=RefreshCookie()), prefix="/auth")   # browsers

The contract of the reference service's ``/v1/auth`` and ``/v1/sessions`` (docs/http-api.md):
lockout (429 ``locked_out``), refresh-token reuse detection (401 ``token_reused``, the
session revoked), the problem shape with ``install_handlers(app)``. In cookie mode login and
refresh set the refresh token as a cookie (:class:`RefreshCookie`) and leave it out of the
body; refresh reads it from there, and a refresh by cookie must pass the CSRF check
(:mod:`sessionward.web.csrf`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute

from ..auth.manager import Principal, TokenPair
from ..clock import iso_utc
from ..errors import InvalidArgument, InvalidToken, SessionError
from ..ward import Ward
from ..web.client import client_ip
from ..web.csrf import check_csrf
from ..web.errors import NOT_FOUND, invalid, to_api_error
from .cookies import RefreshCookie
from .deps import Dependencies
from .models import (
    AccessToken,
    Credentials,
    ErrorResponse,
    NewAccount,
    RefreshRequest,
    Registered,
    SessionList,
    SessionOut,
    Tokens,
)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


def auth_router(
    owner: Dependencies, *, cookie: RefreshCookie | None = None, sessions: bool = True,
    route_class: type[APIRoute] = APIRoute, tags: Sequence[str] = ("auth",),
) -> APIRouter:  # fmt: skip
    """The auth routes of ``owner`` (a :class:`SessionWard`); with ``sessions`` also
    ``GET /sessions`` and ``DELETE /sessions/{session_id}`` under the same prefix."""
    router = APIRouter(route_class=route_class, tags=list(tags))
    _accounts(router, owner, cookie)
    _refresh(router, owner, cookie)
    _logouts(router, owner, cookie)
    if sessions:
        _sessions(router, owner, "/sessions")
    return router


def sessions_router(
    owner: Dependencies, *, route_class: type[APIRoute] = APIRoute,
    tags: Sequence[str] = ("sessions",),
) -> APIRouter:  # fmt: skip
    """``GET ""`` (the caller's active sessions) and ``DELETE /{session_id}``, for apps that
    want them under a prefix of their own (the service's ``/v1/sessions``)."""
    router = APIRouter(route_class=route_class, tags=list(tags))
    _sessions(router, owner, "")
    return router


def _accounts(router: APIRouter, owner: Dependencies, cookie: RefreshCookie | None) -> None:
    @router.post("/register", status_code=201, response_model=Registered,
                 responses=_errors(409, 422))  # fmt: skip
    async def register(body: NewAccount) -> Registered:
        """Create an account. 409 ``username_taken``; 422 for a bad username or password."""
        try:
            user = await owner.ward.auth.register(body.username, body.password)
        except InvalidArgument as exc:
            raise invalid("password" if "password" in str(exc) else "username", str(exc)) from None
        return Registered(user_id=user.user_id, username=user.username)

    @router.post("/login", response_model=Tokens if cookie is None else AccessToken,
                 responses=_errors(401, 429))  # fmt: skip
    async def login(body: Credentials, request: Request, response: Response) -> AccessToken:
        """Tokens for a new session. 401 ``invalid_credentials``; 429 ``locked_out``."""
        ward = owner.ward
        pair = await ward.auth.login(
            body.username, body.password, ip=client_ip(request, ward.settings.trusted_proxies),
            user_agent=_agent(request),
        )  # fmt: skip
        return _answer(pair, cookie, request, response, ward)


def _refresh(router: APIRouter, owner: Dependencies, cookie: RefreshCookie | None) -> None:
    if cookie is None:

        @router.post("/refresh", response_model=Tokens, responses=_errors(401))
        async def refresh(body: RefreshRequest, request: Request, response: Response) -> Any:
            """A new pair for the same session. 401 ``invalid_token`` or ``token_reused``."""
            pair = await owner.ward.auth.refresh(body.refresh_token)
            return _answer(pair, None, request, response, owner.ward)

    else:

        @router.post("/refresh", response_model=AccessToken, responses=_errors(401, 403))
        async def refresh_by_cookie(request: Request, response: Response) -> Any:
            """A new access token for the cookie's session, and the cookie's successor.
            401 ``invalid_token`` or ``token_reused``; 403 ``csrf_failed``."""
            token = cookie.read(request)
            if token is None:  # nothing to delete: a Set-Cookie here would let others clear it
                raise InvalidToken("no refresh cookie")
            check_csrf(request, request.method, owner.trusted_origins)
            try:
                pair = await owner.ward.auth.refresh(token)
            except InvalidToken as exc:  # spent, reused or unknown: the cookie is no use
                raise _cleared(exc, cookie, request) from None
            return _answer(pair, cookie, request, response, owner.ward)

        @router.delete("/refresh", status_code=204, response_class=Response,
                       responses=_errors(403))  # fmt: skip
        async def logout_by_cookie(request: Request) -> Response:
            """Log out by the refresh cookie (sent only to this path): revoke its session and
            delete the cookie. 403 ``csrf_failed``."""
            token = cookie.read(request)
            if token is None:
                return Response(status_code=204)
            check_csrf(request, request.method, owner.trusted_origins)
            with suppress(SessionError):  # not live: nothing left to revoke
                session = await owner.ward.sessions.validate(token)
                await owner.ward.sessions.revoke(session.user_id, session.session_id)
            return _ended(cookie, request)


def _logouts(router: APIRouter, owner: Dependencies, cookie: RefreshCookie | None) -> None:
    csrf = (403,) if owner.cookie else ()  # an access cookie is CSRF-checked

    @router.post("/logout", status_code=204, response_class=Response,
                 responses=_errors(401, *csrf))  # fmt: skip
    async def logout(request: Request, principal: Principal = Depends(owner.principal)) -> Response:  # noqa: B008
        """Revoke the current session; its tokens stop working at once."""
        await owner.ward.auth.logout(principal)
        return _ended(cookie, request)

    @router.post("/logout-all", status_code=204, response_class=Response,
                 responses=_errors(401, *csrf))  # fmt: skip
    async def logout_all(
        request: Request,
        principal: Principal = Depends(owner.principal),  # noqa: B008
    ) -> Response:
        """Revoke every session of the user."""
        await owner.ward.auth.logout_all(principal)
        return _ended(cookie, request)


def _sessions(router: APIRouter, owner: Dependencies, path: str) -> None:
    @router.get(path, response_model=SessionList, responses=_errors(401))
    async def list_sessions(principal: Principal = Depends(owner.principal)) -> SessionList:  # noqa: B008
        """The caller's own active sessions."""
        current = principal.session.session_id
        return SessionList(sessions=[
            SessionOut(session_id=s.session_id, created_at=iso_utc(s.created_at),
                       last_seen_at=iso_utc(s.last_seen_at), expires_at=iso_utc(s.idle_expires_at),
                       ip=s.ip, user_agent=s.user_agent, current=s.session_id == current)
            for s in await owner.ward.sessions.list_active(principal.user_id)
        ])  # fmt: skip

    @router.delete(f"{path}/{{session_id}}", status_code=204, response_class=Response,
                   responses=_errors(401, 404, *((403,) if owner.cookie else ())))  # fmt: skip
    async def delete_session(
        session_id: str,
        principal: Principal = Depends(owner.principal),  # noqa: B008
    ) -> Response:
        """Revoke one of the caller's sessions; 404 for anyone else's (never revealed)."""
        ward = owner.ward
        if len(session_id) > 255 or not await ward.sessions.revoke(principal.user_id, session_id):
            raise NOT_FOUND
        return Response(status_code=204)


def _answer(
    pair: TokenPair, cookie: RefreshCookie | None, request: Request, response: Response,
    ward: Ward,
) -> AccessToken:  # fmt: skip
    if cookie is None:
        return Tokens(access_token=pair.access_token, refresh_token=pair.refresh_token,
                      token_type=pair.token_type, expires_in=pair.expires_in,
                      session_id=pair.session_id)  # fmt: skip
    cookie.set(response, request, pair.refresh_token, ward.settings)
    return AccessToken(access_token=pair.access_token, token_type=pair.token_type,
                       expires_in=pair.expires_in, session_id=pair.session_id)  # fmt: skip


def _ended(cookie: RefreshCookie | None, request: Request) -> Response:
    response = Response(status_code=204)
    if cookie is not None:
        response.headers["set-cookie"] = cookie.clear(request)
    return response


def _cleared(exc: Exception, cookie: RefreshCookie, request: Request) -> Exception:
    error = to_api_error(exc)
    error.headers = {**error.headers, "Set-Cookie": cookie.clear(request)}
    return error


def _agent(request: Request) -> str | None:
    agent = request.headers.get("user-agent", "")[:512]
    return "".join(c if c.isprintable() else "?" for c in agent) or None
