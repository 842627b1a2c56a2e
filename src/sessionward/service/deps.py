"""Dependencies: the Ward, the client's address, and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..auth.manager import Principal
from ..errors import InvalidToken, SessionError
from ..fastapi.deps import access_token
from ..ward import Ward
from ..web.client import client_ip
from .errors import unauthorized


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a
# threadpool, a thread hop (~100 µs here) on every request.
async def get_ward(request: Request) -> Ward:
    ward: Ward = request.app.state.ward
    return ward


WardDep = Annotated[Ward, Depends(get_ward)]


async def get_client_ip(request: Request, ward: WardDep) -> str | None:
    return client_ip(request, ward.settings.trusted_proxies)


ClientIp = Annotated[str | None, Depends(get_client_ip)]


async def get_principal(request: Request, ward: WardDep) -> Principal:
    """The bearer token's principal; every request checks the session, not just the JWT."""
    token = access_token(request, cookie=None)
    if token is None:
        raise unauthorized()
    try:
        return await ward.auth.authenticate(token)
    except (InvalidToken, SessionError):
        raise unauthorized("The bearer token is invalid, expired or revoked.") from None


Authenticated = Annotated[Principal, Depends(get_principal)]
