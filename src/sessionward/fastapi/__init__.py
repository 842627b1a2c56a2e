"""sessionward in your own FastAPI or Starlette app (docs/fastapi.md).

sw = SessionWard("sqlite:///app.db", settings=Settings(secret_key="..."))
app = FastAPI(lifespan=sw.lifespan)
install_handlers(app)
"""

from __future__ import annotations

from .app_ward import SessionWard
from .deps import access_token
from .errors import install_handlers
from .limits import by_ip, by_session, by_user
from .websocket import GuardedWebSocket, WebSocketRefused

__all__ = [
    "GuardedWebSocket",
    "SessionWard",
    "WebSocketRefused",
    "access_token",
    "by_ip",
    "by_session",
    "by_user",
    "install_handlers",
]
