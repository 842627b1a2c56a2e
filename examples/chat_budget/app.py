"""A chat with a budget: log in, talk to everyone in the room, order tests paid from your
session's budget. Run: ``uvicorn app:app`` (README.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, WebSocket
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel

from sessionward import Principal, Settings
from sessionward.errors import BudgetExceeded, InvalidArgument, StorageError
from sessionward.fastapi import GuardedWebSocket, SessionWard, by_ip, install_handlers

PRICE = 250  # cents per ordered test
ROOM = "room:lobby"
settings = Settings.from_env(
    secret_key=os.environ.get("APP_SECRET", "change me: at least 32 random characters!"),
    budget_default=int(os.environ.get("APP_BUDGET", "1000")),
    ws_rate_limit=os.environ.get("APP_CHAT_RATE", "2/second;30/minute"),
)
sw = SessionWard(os.environ.get("APP_STORE", "sqlite:///chat.db"), settings=settings, events=True)
app = FastAPI(lifespan=sw.lifespan)
install_handlers(app)
Me = Annotated[Principal, Depends(sw.principal)]


class Credentials(BaseModel):
    username: str
    password: str


@app.get("/")
async def page() -> FileResponse:
    return FileResponse(Path(__file__).parent / "static" / "index.html")


REGISTER_RATE = os.environ.get("APP_REGISTER_RATE", "5/minute")


@app.post("/register", status_code=201, dependencies=[Depends(sw.limit(REGISTER_RATE, key=by_ip))])
async def register(body: Credentials) -> dict[str, str]:
    user = await sw.ward.auth.register(body.username, body.password)
    return {"user_id": user.user_id}


@app.post("/login")  # lockout after failed logins: 429 locked_out with Retry-After
async def login(body: Credentials) -> dict[str, str]:
    pair = await sw.ward.auth.login(body.username, body.password)
    return {"access_token": pair.access_token, "session_id": pair.session_id}


@app.post("/logout", status_code=204)
async def logout(me: Me) -> Response:
    await sw.ward.auth.logout(me)  # closes this session's sockets on every instance
    return Response(status_code=204)


CHAT_SHAPES = {"say": frozenset({"text"}), "order": frozenset({"test", "order_id"})}


@app.websocket("/ws")
async def chat(websocket: WebSocket) -> None:
    async with sw.websocket(websocket, shapes=CHAT_SHAPES, channels=[ROOM]) as guarded:
        try:
            user = await sw.ward.users.get(guarded.user_id)
            await send_budget(guarded)
        except StorageError:
            await guarded.close(1013, "the store is unavailable")  # try again later
            return
        name = user.username if user else "?"
        async for message in guarded:  # authenticated, within the rate, of a known shape
            try:
                if message["type"] == "say":
                    event = {"type": "chat", "from": name, "text": message["text"]}
                    await guarded.publish(event, channel=ROOM)
                else:
                    await order(guarded, message["test"], message["order_id"])
            except StorageError:
                await guarded.send_json({"type": "error", "code": "store_unavailable"})


async def order(guarded: GuardedWebSocket, test: str, order_id: str) -> None:
    """Charge one test; the order id is the idempotency key, so a resent order is free."""
    try:
        done = await sw.ward.budgets.charge(guarded.session, PRICE, order_id, f"test: {test}")
    except BudgetExceeded as exc:
        refused = {"type": "error", "code": "budget_exceeded", "remaining": exc.remaining}
        await guarded.send_json(refused)
        return
    except InvalidArgument:  # an empty or overlong order id
        await guarded.send_json({"type": "error", "code": "invalid_message"})
        return
    ordered = {"type": "ordered", "test": test, "order_id": order_id, "replayed": done.replayed}
    await guarded.send_json(ordered)
    await send_budget(guarded)


async def send_budget(guarded: GuardedWebSocket) -> None:
    budget = await sw.ward.budgets.get(guarded.session)
    await guarded.send_json(
        {"type": "budget", "remaining": budget.remaining, "limit": budget.limit}
    )
