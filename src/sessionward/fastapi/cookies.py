"""Cookie mode: the refresh token in an HttpOnly, Secure, SameSite=Strict cookie.

    app.include_router(sw.auth_router(cookie=RefreshCookie()), prefix="/auth")

The cookie's ``Path`` is the refresh route's own path, so a browser sends it there and
nowhere else; page scripts never see it. ``secure=False`` is for ``http://localhost`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings


@dataclass(frozen=True, slots=True)
class RefreshCookie:
    """Where the refresh token goes in cookie mode.

    ``path`` defaults to the refresh route's path (found from the request, so any prefix the
    router is included under counts); ``max_age`` to the session's absolute lifetime, capped
    by the refresh token's.
    """

    name: str = "sw_refresh"
    secure: bool = True
    path: str | None = None
    domain: str | None = None
    max_age: int | None = None

    def read(self, request: Request) -> str | None:
        return request.cookies.get(self.name) or None

    def set(self, response: Response, request: Request, token: str, settings: Settings) -> None:
        age = self.max_age or min(settings.refresh_token_ttl, settings.session_absolute_timeout)
        response.set_cookie(
            self.name, token, max_age=int(age), path=self.path_for(request), domain=self.domain,
            secure=self.secure, httponly=True, samesite="strict",
        )  # fmt: skip

    def clear(self, request: Request) -> str:
        """A ``Set-Cookie`` header value that removes the cookie."""
        response = Response()
        response.delete_cookie(
            self.name, path=self.path_for(request), domain=self.domain, secure=self.secure,
            httponly=True, samesite="strict",
        )  # fmt: skip
        return response.headers["set-cookie"]

    def path_for(self, request: Request) -> str:
        if self.path is not None:
            return self.path
        # Every route that sets or clears the cookie sits beside "refresh" under the router's
        # prefix; FastAPI keeps an included route's path relative to that prefix.
        path = str(request.scope.get("path", ""))
        route = str(getattr(request.scope.get("route"), "path", ""))
        prefix = path[: -len(route)] if route and path.endswith(route) else path.rsplit("/", 1)[0]
        return f"{prefix}/refresh"
