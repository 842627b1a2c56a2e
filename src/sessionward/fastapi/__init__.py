"""sessionward in your own FastAPI or Starlette app (docs/fastapi.md).

sw = SessionWard("sqlite:///app.db", settings=Settings(secret_key="..."))
app = FastAPI(lifespan=sw.lifespan)
install_handlers(app)
app.include_router(sw.auth_router(), prefix="/auth")
"""

from __future__ import annotations

from .app_ward import SessionWard
from .auth import auth_router, sessions_router
from .cookies import RefreshCookie
from .deps import access_token, from_app
from .errors import install_handlers
from .limits import by_ip, by_session, by_user
from .websocket import GuardedWebSocket, WebSocketRefused

__all__ = [
    "GuardedWebSocket",
    "RefreshCookie",
    "SessionWard",
    "WebSocketRefused",
    "access_token",
    "auth_router",
    "by_ip",
    "by_session",
    "by_user",
    "from_app",
    "install_handlers",
    "sessions_router",
]
