"""The service app plus two trivial routes, identical but for authentication.

``/bench/plain`` answers at once; ``/bench/authed`` first does what every authenticated
endpoint does (verify the JWT, check the session in the store). Their difference is the cost
of authentication. Run: ``uvicorn --factory benchmarks.auth_app:create``.
"""

from __future__ import annotations

from fastapi import FastAPI

from sessionward.service import create_app
from sessionward.service.deps import Authenticated


def create() -> FastAPI:
    app = create_app()

    @app.get("/bench/plain")
    async def plain() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/bench/authed")
    async def authed(principal: Authenticated) -> dict[str, bool]:
        return {"ok": True}

    return app
