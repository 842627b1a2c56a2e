from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ...auth.manager import TokenPair
from ...errors import InvalidArgument
from ..body import StrictJSONRoute
from ..deps import Authenticated, ClientIp, WardDep
from ..errors import invalid
from ..models import Credentials, RefreshRequest, Registered, Registration, Tokens

router = APIRouter(prefix="/v1/auth", route_class=StrictJSONRoute, tags=["auth"])


def _tokens(pair: TokenPair) -> Tokens:
    return Tokens(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
        session_id=pair.session_id,
    )


@router.post("/register", status_code=201, response_model=Registered)
async def register(body: Registration, ward: WardDep) -> Registered:
    """Create an account. 409 ``username_taken``; 422 for a bad username or password."""
    try:
        user = await ward.auth.register(body.username, body.password)
    except InvalidArgument as exc:
        field = "password" if "password" in str(exc) else "username"
        raise invalid(field, str(exc)) from None
    return Registered(user_id=user.user_id, username=user.username)


@router.post("/login", response_model=Tokens)
async def login(body: Credentials, request: Request, ward: WardDep, ip: ClientIp) -> Tokens:
    """Tokens for a new session. 401 ``invalid_credentials``; 429 ``locked_out``."""
    agent = request.headers.get("user-agent", "")[:512] or None
    pair = await ward.auth.login(body.username, body.password, ip=ip, user_agent=_clean(agent))
    return _tokens(pair)


@router.post("/refresh", response_model=Tokens)
async def refresh(body: RefreshRequest, ward: WardDep) -> Tokens:
    """A new pair for the same session. 401 ``invalid_token`` or ``token_reused``."""
    return _tokens(await ward.auth.refresh(body.refresh_token))


@router.post("/logout", status_code=204, response_class=Response)
async def logout(principal: Authenticated, ward: WardDep) -> Response:
    await ward.auth.logout(principal)
    return Response(status_code=204)


@router.post("/logout-all", status_code=204, response_class=Response)
async def logout_all(principal: Authenticated, ward: WardDep) -> Response:
    await ward.auth.logout_all(principal)
    return Response(status_code=204)


def _clean(agent: str | None) -> str | None:
    if agent is None:
        return None
    return "".join(c if c.isprintable() else "?" for c in agent)
