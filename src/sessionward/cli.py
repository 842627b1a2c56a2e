"""The ``sessionward`` command: run the service and look after the store.

    sessionward serve [--store URL] [--host H] [--port P] [--workers N] [--shutdown-timeout S]
    sessionward users create NAME [--admin] [--password-stdin] | list | disable NAME
    sessionward users admin NAME [--revoke]
    sessionward sessions list [--user NAME] | revoke ID | revoke --user NAME
    sessionward cleanup
    sessionward doctor

Settings come from ``SESSIONWARD_*`` variables; ``--store`` overrides ``SESSIONWARD_STORE``.
Errors are one sentence on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import anyio
import typer
from rich.console import Console
from rich.table import Table

from .config import Settings
from .errors import SessionwardError
from .sessions import Session
from .users import User
from .ward import Ward, open_ward

T = TypeVar("T")
app = typer.Typer(help="Sessions, state and tokens that stay correct under load.",
                  no_args_is_help=True, pretty_exceptions_enable=False)  # fmt: skip
users_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
sessions_app = typer.Typer(help="Inspect and revoke sessions.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(sessions_app, name="sessions")
out = Console()
err = Console(stderr=True)

StoreOption = Annotated[
    str | None, typer.Option("--store", help="Storage URL (default: SESSIONWARD_STORE).")
]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def settings_for(store: str | None, **values: Any) -> Settings:
    overrides = {"store": store} if store else {}
    try:
        return Settings.from_env(**overrides, **values)
    except SessionwardError as exc:
        fail(str(exc), 2)


def with_ward(store: str | None, action: Callable[[Ward], Awaitable[T]]) -> T:
    settings = settings_for(store)

    async def run() -> T:
        async with open_ward(settings.store, settings=settings, sweep=False) as ward:
            return await action(ward)

    try:
        return anyio.run(run)
    except SessionwardError as exc:
        fail(str(exc))


@app.command()
def serve(
    store: StoreOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    shutdown_timeout: Annotated[
        int,
        typer.Option(
            min=1,
            max=3600,
            help="On shutdown, seconds to let requests finish "
            "before the rest (open job event streams) are cut off.",
        ),
    ] = 5,
) -> None:
    """Run the HTTP service (default 127.0.0.1:8000 on sqlite:///sessionward.db)."""
    values = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = settings_for(store, **values)
    if settings.store.backend == "memory" and workers > 1:
        fail("a memory:// store lives in one process; use --workers 1, or a sqlite, "
             "redis or postgresql store", 2)  # fmt: skip
    # Open the store once here, so that an unreachable store or a missing driver is one
    # sentence and a non-zero exit, not a traceback from every worker's lifespan.
    with _quiet("psycopg.pool"):  # its per-attempt warnings would bury the one sentence
        with_ward(store, lambda ward: ward.ping())
    import uvicorn

    from .service.logs import log_config

    _fresh_metrics_dir()
    # Workers are separate processes that build their own app from the environment.
    if store:
        os.environ["SESSIONWARD_STORE"] = store
    where = f"http://{settings.host}:{settings.port}"
    store_shown = settings.store.redacted()
    out.print(f"sessionward listening on {where} with {workers} worker(s), store {store_shown}",
              highlight=False)  # fmt: skip
    uvicorn.run(
        "sessionward.service:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        access_log=False,
        # uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 and rewrite the
        # client address before we see it; SESSIONWARD_TRUSTED_PROXIES is the only authority.
        proxy_headers=False,
        server_header=False,
        # a job's event stream lasts as long as the job: without a bound, shutdown waits for it
        timeout_graceful_shutdown=shutdown_timeout,
    )


def _fresh_metrics_dir() -> None:
    """prometheus-client's multiprocess mode wants its directory emptied before the workers
    start: files left by an earlier run would count as live workers (uvicorn has no hook
    to mark a dead worker's files, so a restart is the point where they are cleared)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


@users_app.command("create")
def users_create(
    name: str,
    admin: Annotated[bool, typer.Option("--admin", help="Give the admin role.")] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Create an account."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else _ask_password()
    roles = ("admin",) if admin else ()
    user = with_ward(store, lambda ward: ward.users.create(name, password, roles=roles))
    out.print(f"created {user.username} ({user.user_id}){' as admin' if admin else ''}")


def _ask_password() -> str:
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        fail("the passwords differ")
    return first


async def everyone(ward: Ward) -> list[User]:
    found: list[User] = []
    after = None
    while page := await ward.users.page(after=after, limit=500):
        found += page
        after = page[-1].username
    return found


@users_app.command("list")
def users_list(store: StoreOption = None) -> None:
    """List accounts."""

    table = Table("username", "user id", "roles", "disabled", "created")
    for user in with_ward(store, everyone):
        table.add_row(user.username, user.user_id, ",".join(user.roles),
                      "yes" if user.disabled else "", _when(user.created_at))  # fmt: skip
    out.print(table)


@users_app.command("disable")
def users_disable(name: str, store: StoreOption = None) -> None:
    """Disable an account and revoke all its sessions."""

    async def disable(ward: Ward) -> User:
        user = await ward.users.find(name)
        if user is None:
            fail(f"no user named {name!r}")
        assert user is not None
        return await ward.users.set_disabled(user.user_id)

    user = with_ward(store, disable)
    out.print(f"disabled {user.username}; their sessions are revoked")


@users_app.command("admin")
def users_admin(
    name: str,
    revoke: Annotated[bool, typer.Option("--revoke", help="Take the admin role away.")] = False,
    store: StoreOption = None,
) -> None:
    """Grant the admin role to an account (the dashboard, /metrics), or take it away."""

    async def change(ward: Ward) -> User:
        user = await ward.users.find(name)
        if user is None:
            fail(f"no user named {name!r}")
        assert user is not None
        others = tuple(r for r in user.roles if r != "admin")
        return await ward.users.set_roles(user.user_id, others if revoke else (*others, "admin"))

    user = with_ward(store, change)
    out.print(f"{user.username}: roles {','.join(user.roles) or '(none)'}")


@sessions_app.command("list")
def sessions_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's.")] = None,
    store: StoreOption = None,
) -> None:
    """List active sessions (of one user, or of every user)."""

    async def collect(ward: Ward) -> list[tuple[str, Session]]:
        people = [await ward.users.find(user)] if user else await everyone(ward)
        if user and people == [None]:
            fail(f"no user named {user!r}")
        found = []
        for person in [p for p in people if p is not None]:
            found += [(person.username, s) for s in await ward.sessions.list_active(person.user_id)]
        return found

    table = Table("user", "session id", "created", "last seen", "ip", "user agent")
    for username, s in with_ward(store, collect):
        table.add_row(username, s.session_id, _when(s.created_at), _when(s.last_seen_at),
                      s.ip or "", (s.user_agent or "")[:40])  # fmt: skip
    out.print(table)


@sessions_app.command("revoke")
def sessions_revoke(
    session_id: Annotated[str | None, typer.Argument(help="The session to revoke.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Revoke all of a user's.")] = None,
    store: StoreOption = None,
) -> None:
    """Revoke one session by id, or every session of a user."""
    if (session_id is None) == (user is None):
        fail("give a session id or --user NAME (one of them)", 2)

    async def revoke(ward: Ward) -> int:
        if user is not None:
            person = await ward.users.find(user)
            if person is None:
                fail(f"no user named {user!r}")
            assert person is not None
            return await ward.sessions.revoke_all(person.user_id)
        # the store finds the owner by an index on the session id: no walk over the users
        return int(await ward.sessions.revoke_by_id(session_id or ""))

    count = with_ward(store, revoke)
    if count == 0 and session_id:
        fail(f"no active session {session_id!r}")
    out.print(f"revoked {count} session(s)")


@app.command()
def cleanup(store: StoreOption = None) -> None:
    """Delete expired sessions and limiter keys now."""
    report = with_ward(store, lambda ward: ward.cleanup())
    out.print(f"removed {report.sessions} expired session(s), {report.limits} limiter key(s)")


@app.command()
def doctor(store: StoreOption = None) -> None:
    """Connect to the store and report backend, version, latency and pool."""

    async def check(ward: Ward) -> tuple[str, float, Any, list[Any]]:
        version, latency = await ward.store.server_version(), await ward.ping()
        return version, latency, ward.pool_stats(), await ward.budgets.verify()

    settings = settings_for(store)
    version, latency, pool, problems = with_ward(store, check)
    table = Table("check", "result", show_header=False)
    table.add_row("store", settings.store.redacted())
    table.add_row("backend", settings.store.backend)
    table.add_row("server version", version)
    table.add_row("round trip", f"{latency * 1000:.2f} ms")
    table.add_row("pool", f"{pool.in_use} in use, {pool.idle} idle, {pool.waiting} waiting, "
                          f"max {pool.max_size}")  # fmt: skip
    table.add_row("budgets", "the ledger balances" if not problems else
                  f"{len(problems)} budget(s) disagree with their ledger")  # fmt: skip
    out.print(table)
    for p in problems[:20]:
        where = f"{p.user_id}/{p.session_id}"
        out.print(f"  {where}: {p.field} is {p.recorded}, the ledger says {p.actual}",
                  highlight=False)  # fmt: skip
    if problems:
        fail("the ledger and the budget totals disagree")
    out.print("[green]ok[/green]")


def _when(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def main() -> None:
    app()
