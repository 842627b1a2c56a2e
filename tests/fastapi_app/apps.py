"""Apps built on sessionward.fastapi for the tests, driven through httpx's ASGI transport."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie

import httpx
from fastapi import FastAPI

from sessionward import Settings
from sessionward.fastapi import SessionWard, install_handlers

PASSWORD = "a long enough password"
SETTINGS = Settings.defaults(
    secret_key="a test secret of at least thirty-two chars",
    argon2_time_cost=1, argon2_memory_cost=8, argon2_parallelism=1, login_max_failures=3,
)  # fmt: skip


def new_name() -> str:
    return f"u{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def serving(
    sw: SessionWard, build: Callable[[FastAPI], None], base_url: str = "https://app.example"
) -> AsyncIterator[httpx.AsyncClient]:
    """``build(app)`` adds routes; the client talks to the app with its lifespan running."""
    app = FastAPI(lifespan=sw.lifespan)
    install_handlers(app)
    build(app)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


def set_cookies(response: httpx.Response) -> dict[str, dict[str, str | bool]]:
    """Each Set-Cookie of ``response``: its value and attributes (lowercase names)."""
    out: dict[str, dict[str, str | bool]] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            attrs: dict[str, str | bool] = {k: v for k, v in morsel.items() if v}
            attrs["value"] = morsel.value
            attrs["flags"] = ";".join(p.strip().lower() for p in header.split(";")[1:])
            out[name] = attrs
    return out


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}
