"""``GET /v1/me``: who the bearer of the token is."""

from __future__ import annotations

from fastapi import APIRouter

from ..body import StrictJSONRoute
from ..deps import Authenticated, WardDep
from ..errors import unauthorized
from ..models import Me

router = APIRouter(route_class=StrictJSONRoute, tags=["me"])


@router.get("/v1/me", response_model=Me)
async def me(principal: Authenticated, ward: WardDep) -> Me:
    """The user id, username, roles and session id of the request's principal.

    The principal carries the user id and session; username and roles are one read of
    the user's record (a deleted user: 401, as for a revoked session).
    """
    user = await ward.users.get(principal.user_id)
    if user is None:
        raise unauthorized("The bearer token is invalid, expired or revoked.")
    return Me(user_id=user.user_id, username=user.username, roles=list(user.roles),
              session_id=principal.session.session_id)  # fmt: skip
