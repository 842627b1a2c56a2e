"""The example in ``sessionward.web.limits``'s docstring is code that runs."""

from __future__ import annotations

import textwrap

import httpx
import pytest
from fastapi import FastAPI

from sessionward import open_ward
from sessionward.web import limits as web_limits

pytestmark = pytest.mark.anyio


def _example() -> str:
    doc = web_limits.__doc__ or ""
    block = doc.split("\n\n")[1]  # the indented block after the first line
    assert block.startswith("    app = FastAPI()")
    return textwrap.dedent(block)


async def test_the_docstring_example_runs() -> None:
    async with open_ward("memory://", sweep=False) as ward:
        names = {"FastAPI": FastAPI, "ward": ward, **vars(web_limits)}
        exec(_example(), names)
        app = names["app"]
        assert isinstance(app, FastAPI)

        @app.get("/v1/auth/ping")
        async def ping() -> dict[str, bool]:
            return {"ok": True}

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            answer = await client.get("/v1/auth/ping")
    assert answer.status_code == 200
    assert answer.headers["RateLimit-Policy"].startswith('"ip-1s";q=20')
