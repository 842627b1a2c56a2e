"""A cookie-mode app for the browser test: ``uvicorn --factory tests.fastapi_app.cookie_app:create``
(store from ``APP_STORE``; plain http on localhost, so the cookie is not Secure)."""

from __future__ import annotations

import os

from fastapi import FastAPI

from sessionward.fastapi import RefreshCookie, SessionWard, install_handlers

from .apps import SETTINGS


def create() -> FastAPI:
    sw = SessionWard(os.environ["APP_STORE"], settings=SETTINGS)
    app = FastAPI(lifespan=sw.lifespan)
    install_handlers(app)
    app.include_router(sw.auth_router(cookie=RefreshCookie(secure=False)), prefix="/auth")
    return app
