"""The WebSocket endpoint ``GET /v1/ws`` (docs/websocket.md), a user of the guard in
:mod:`sessionward.fastapi.websocket`.

    -> {"type": "auth", "access_token": "..."}       first, within ws_auth_timeout
    <- {"type": "ready", "session_id": "..."}
    -> {"type": "message", "text": "hi"}
    <- {"type": "message", "text": "hi", "at": "2025-01-01T12:00:00.000Z"}   on every
       connection of the user, on every instance sharing the store

Authentication, the rate, the size limit and the close on revocation are the guard's; this
module only stamps each admitted message and publishes it to the user's channel.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from ..clock import iso_utc
from ..fastapi.websocket import TRY_AGAIN_LATER, GuardedWebSocket, WebSocketRefused
from ..web.ws_frames import CHAT
from .capacity import admit_websocket

router = APIRouter()


@router.websocket("/v1/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    ward = websocket.app.state.ward
    guard = GuardedWebSocket(websocket, ward, websocket.app.state.events, shapes=CHAT)
    try:
        async with guard as guarded:
            if not await admit_websocket(ward, guarded.principal):  # capacity (issue 13)
                await guarded.close(TRY_AGAIN_LATER, "over capacity")
                return
            async for message in guarded:
                at = iso_utc(ward.clock.now())
                await guarded.publish({"type": "message", "text": message["text"], "at": at})
    except WebSocketRefused:
        return  # closed with its code (1008, 4401, 1013) already
