"""Exception handlers for sessionward's own errors, and nothing else.

    install_handlers(app)

A :class:`SessionwardError` (a rate limit, a lockout, a write conflict ...) and an
:class:`ApiError` raised by a dependency become the problem shape of docs/http-api.md. The
app's own 404s, validation errors and crashes stay the app's. A socket the WebSocket guard
refused (:class:`WebSocketRefused`, already closed) ends its route without a log line.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from ..errors import SessionwardError
from ..web.errors import ApiError, respond, to_api_error
from .websocket import WebSocketRefused


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return respond(exc)


async def _sessionward_error(request: Request, exc: Exception) -> Response:
    try:
        return respond(to_api_error(exc))
    except LookupError:
        raise exc from None  # not in the table: the app's own error handling decides


async def _refused(websocket: WebSocket, exc: Exception) -> None:
    assert isinstance(exc, WebSocketRefused)  # the guard has closed the socket already


def install_handlers(app: Starlette) -> None:
    app.add_exception_handler(WebSocketRefused, _refused)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(SessionwardError, _sessionward_error)
