"""FastAPI dependencies bound to one :class:`SessionWard`.

    Me = Annotated[Principal, Depends(sw.principal)]

    @app.get("/me")
    async def me(who: Me) -> dict[str, str]:
        return {"user_id": who.user_id}

Every one is ``async def``: FastAPI runs a plain ``def`` dependency in a threadpool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request

from ..auth.manager import Principal
from ..errors import InvalidToken, SessionError
from ..sessions import Session
from ..stores.records import StateScope
from ..ward import Ward
from ..web.errors import ApiError, unauthorized


def access_token(request: Request, cookie: str | None) -> str | None:
    """The bearer token, else (if the app chose a cookie) the cookie's value."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(cookie) if cookie else None


class Dependencies:
    """The ward, the principal, its session, its state scope; ``require_role``.

    :class:`SessionWard` provides ``ward`` and ``cookie``.
    """

    cookie: str | None

    @property
    def ward(self) -> Ward:
        raise NotImplementedError

    async def get_ward(self) -> Ward:
        return self.ward

    async def principal(self, request: Request) -> Principal:
        # session, user_scope and require_role all start here: authenticate once a request
        known: Principal | None = getattr(request.state, "sessionward_principal", None)
        if known is not None:
            return known
        token = access_token(request, self.cookie)
        if token is None:
            raise unauthorized()
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


def forbidden(role: str) -> ApiError:
    challenge = f'Bearer error="insufficient_scope", scope="{role}"'
    return ApiError(
        403, "forbidden", f"The {role!r} role is required.", headers={"WWW-Authenticate": challenge}
    )
