"""FastAPI dependencies bound to one :class:`SessionWard`.

    Me = Annotated[Principal, Depends(sw.principal)]

    @app.get("/me")
    async def me(who: Me) -> dict[str, str]:
        return {"user_id": who.user_id}

``from_app`` gives the same dependencies for whichever :class:`SessionWard` runs the app's
lifespan, for routers in modules that cannot import the app's one. Every one is ``async
def``: FastAPI runs a plain ``def`` dependency in a threadpool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from starlette.requests import Request

from ..auth.manager import Principal
from ..errors import InvalidToken, SessionError
from ..sessions import Session
from ..stores.records import StateScope
from ..ward import Ward
from ..web.client import client_ip
from ..web.csrf import check_csrf
from ..web.errors import ApiError, unauthorized

Source = Literal["header", "cookie"]


def credential(request: Request, cookie: str | None) -> tuple[str, Source] | None:
    """The bearer token, else (if the app chose a cookie) the cookie's value, and where it
    came from."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), "header"
    value = request.cookies.get(cookie) if cookie else None
    return (value, "cookie") if value else None


def access_token(request: Request, cookie: str | None) -> str | None:
    """The bearer token, else (if the app chose a cookie) the cookie's value."""
    found = credential(request, cookie)
    return None if found is None else found[0]


class Dependencies:
    """The ward, the principal, its session, its state scope; ``require_role``.

    :class:`SessionWard` provides ``ward``, ``cookie`` and ``trusted_origins``.
    """

    cookie: str | None
    trusted_origins: tuple[str, ...]

    @property
    def ward(self) -> Ward:
        raise NotImplementedError

    async def get_ward(self) -> Ward:
        return self.ward

    async def client_ip(self, request: Request) -> str | None:
        """The client's address (``X-Forwarded-For`` only from trusted proxies)."""
        return client_ip(request, self.ward.settings.trusted_proxies)

    async def principal(self, request: Request) -> Principal:
        # session, user_scope and require_role all start here: authenticate once a request
        known: Principal | None = getattr(request.state, "sessionward_principal", None)
        if known is not None:
            return known
        found = credential(request, self.cookie)
        if found is None:
            raise unauthorized()
        token, source = found
        if source == "cookie":  # a browser sends cookies on its own: only from our origin
            check_csrf(request, request.method, self.trusted_origins)
        try:
            principal = await self.ward.auth.authenticate(token)
        except (InvalidToken, SessionError):
            raise unauthorized("The bearer token is invalid, expired or revoked.") from None
        request.state.sessionward_principal = principal
        return principal

    async def session(self, request: Request) -> Session:
        return (await self.principal(request)).session

    async def user_scope(self, request: Request) -> StateScope:
        return (await self.principal(request)).session.scope("user")

    def require_role(self, role: str) -> Callable[[Request], Awaitable[Principal]]:
        """A dependency answering 403 ``forbidden`` unless the user has ``role``."""

        async def check(request: Request) -> Principal:
            principal = await self.principal(request)
            user = await self.ward.users.get(principal.user_id)
            if user is None or role not in user.roles:
                raise forbidden(role)
            return principal

        return check


class FromApp:
    """The dependencies of the :class:`SessionWard` whose lifespan runs the request's app."""

    @staticmethod
    def of(request: Request) -> Dependencies:
        found = getattr(request.app.state, "sessionward", None)
        if not isinstance(found, Dependencies):
            raise RuntimeError("No SessionWard runs this app: pass SessionWard.lifespan to it.")
        return found

    async def get_ward(self, request: Request) -> Ward:
        return self.of(request).ward

    async def client_ip(self, request: Request) -> str | None:
        return await self.of(request).client_ip(request)

    async def principal(self, request: Request) -> Principal:
        return await self.of(request).principal(request)

    async def session(self, request: Request) -> Session:
        return await self.of(request).session(request)

    async def user_scope(self, request: Request) -> StateScope:
        return await self.of(request).user_scope(request)


from_app = FromApp()


def forbidden(role: str) -> ApiError:
    challenge = f'Bearer error="insufficient_scope", scope="{role}"'
    return ApiError(
        403, "forbidden", f"The {role!r} role is required.", headers={"WWW-Authenticate": challenge}
    )
