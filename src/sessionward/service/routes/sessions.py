from __future__ import annotations

from fastapi import APIRouter, Response

from ..body import StrictJSONRoute
from ..deps import Authenticated, WardDep
from ..errors import NOT_FOUND
from ..models import SessionList, SessionOut, iso

router = APIRouter(prefix="/v1/sessions", route_class=StrictJSONRoute, tags=["sessions"])


@router.get("", response_model=SessionList)
async def list_sessions(principal: Authenticated, ward: WardDep) -> SessionList:
    """The caller's own active sessions."""
    sessions = await ward.sessions.list_active(principal.user_id)
    current = principal.session.session_id
    return SessionList(
        sessions=[
            SessionOut(
                session_id=s.session_id,
                created_at=iso(s.created_at),
                last_seen_at=iso(s.last_seen_at),
                expires_at=iso(s.idle_expires_at),
                ip=s.ip,
                user_agent=s.user_agent,
                current=s.session_id == current,
            )
            for s in sessions
        ]
    )


@router.delete("/{session_id}", status_code=204, response_class=Response)
async def delete_session(session_id: str, principal: Authenticated, ward: WardDep) -> Response:
    """Revoke one of the caller's sessions; 404 for anyone else's (never revealed)."""
    if len(session_id) > 255 or not await ward.sessions.revoke(principal.user_id, session_id):
        raise NOT_FOUND
    return Response(status_code=204)
