"""The HTTP-under-load part of docs/benchmarks.md, and splicing a marked block into it."""

from __future__ import annotations

import re

from .http_load import HttpResults, Load

RAW_NAME = {"redis": "raw redis-py GET", "postgresql": "raw psycopg SELECT"}


def block(name: str, lines: list[str]) -> str:
    return "\n".join([f"<!-- {name}:begin -->", *lines, f"<!-- {name}:end -->"])


def splice(text: str, name: str, new_block: str) -> str:
    """``text`` with its ``name`` block replaced by ``new_block`` (appended if absent)."""
    pattern = re.compile(rf"<!-- {name}:begin -->.*?<!-- {name}:end -->", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: new_block, text, count=1)
    return text.rstrip("\n") + "\n\n" + new_block + "\n"


def carried(old: str, name: str) -> str | None:
    found = re.search(rf"<!-- {name}:begin -->.*?<!-- {name}:end -->", old, re.S)
    return found.group(0) if found else None


def http_lines(r: HttpResults, busy: str) -> list[str]:
    bare = r.find("-", "bare")
    lines = [
        "## HTTP under load (issue 12)",
        "",
        f"{r.wrk}; `benchmarks/wrk_count.lua` sets the Bearer header (the cookie for the",
        "baselines) and counts non-2xx responses: 0 in every row (the section fails otherwise).",
        "Every server is one uvicorn worker (uvloop + httptools) pinned to CPU 1 (with Redis",
        "and PostgreSQL), wrk on CPU 0; the service's rate limits are 10,000,000/s, so nothing",
        "is refused but every decision is still made. A 1 s warm-up precedes each row.",
        busy,
        "",
        "| endpoint | store | req/s | p50 ms | p99 ms | vs bare | vs raw driver, same store |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for x in r.loads:
        raw = r.find(x.backend, "raw") if x.kind not in ("raw", "bare", "health") else None
        vs_bare = f"{x.rps / bare.rps:.2f}" if bare else ""
        vs_raw = f"{x.rps / raw.rps:.2f}" if raw else ""
        lines.append(f"| {x.name} | {x.backend} | {x.rps:,.0f} | {x.p50_us / 1000:.1f} | "
                     f"{x.p99_us / 1000:.1f} | {vs_bare} | {vs_raw} |")  # fmt: skip
    if r.trips:
        lines += [
            "",
            "### Store round trips per request",
            "",
            "Counted by a loopback proxy between the service and the store (a client write",
            "after a reply is one round trip), over sequential requests, minus an idle window",
            "of the same length (the worker's and sweeper's own queries). The commands are",
            "the Redis commands the proxy saw, per request. SQLite has no wire: there the",
            "service runs in-process and the store's counter of calls handed to its",
            "connection threads (`SqliteStore.calls`) is read the same way.",
            "",
            "| store | endpoint | round trips / request | commands / request |",
            "|---|---|---:|---|",
        ]
        for t in r.trips:
            lines.append(f"| {t.backend} | {t.kind} | {t.per_request:.2f} | {t.commands} |")
    if r.cpu_us:
        lines += ["", "### Server CPU per request (user + system, under the same wrk load)", ""]
        lines += [f"- {name}: {us:,.0f} µs" for name, us in r.cpu_us.items()]
    if r.profile:
        lines += [
            "",
            "### Where the time goes: `GET /v1/state/user/doc` on Redis (py-spy)",
            "",
            "py-spy (`record --format raw --nonblocking`, 200 Hz) on the server while wrk",
            "drives the Redis state read. *Own share*: samples whose innermost recognised",
            "frame is in that part (the event loop only when nothing else is on the stack);",
            "times the server's CPU per request it gives µs per request. *Inclusive* counts",
            "every sample with the part anywhere on the stack, so the middlewares, which wrap",
            "the whole app, show most of the request there.",
            "",
            *r.profile,
        ]
    lines += reading(r)
    lines += ["", "### Targets (issue 12, ratios from this run)", "", *http_targets(r)]
    return [*lines, *r.notes]


def _ratio(a: Load | None, b: Load | None) -> float | None:
    return a.rps / b.rps if a and b else None


def http_targets(r: HttpResults) -> list[str]:
    out = []
    bare = r.find("-", "bare")
    for backend in ("sqlite", "redis", "postgresql"):
        ratio = _ratio(r.find(backend, "me"), bare)
        if ratio is not None:
            verdict = "met" if ratio >= 0.7 else f"MISSED by {(0.7 - ratio) / 0.7 * 100:.0f} %"
            out.append(f"- `/v1/me` >= 0.7x bare FastAPI on {backend}: {ratio:.2f}x, {verdict}.")
    checks = (("redis", "raw", 0.8, "the raw-GET route"), ("sqlite", "bare", 0.5, "bare FastAPI"),
              ("postgresql", "raw", 0.5, "the raw-SELECT route"))  # fmt: skip
    for backend, base_kind, goal, what in checks:
        base = bare if base_kind == "bare" else r.find(backend, "raw")
        ratio = _ratio(r.find(backend, "state read"), base)
        if ratio is not None:
            verdict = "met" if ratio >= goal else f"MISSED by {(goal - ratio) / goal * 100:.0f} %"
            out.append(f"- State read on {backend} >= {goal}x {what}: {ratio:.2f}x, {verdict}.")
    for backend in ("sqlite", "redis", "postgresql"):
        me = r.find(backend, "me")
        if me and bare:
            ratio = me.p99_us / bare.p99_us
            verdict = "met" if ratio <= 2 else "MISSED"
            out.append(f"- `/v1/me` p99 <= 2x the bare route's on {backend}: "
                       f"{me.p99_us / 1000:.1f} ms vs {bare.p99_us / 1000:.1f} ms = "
                       f"{ratio:.1f}x, {verdict}.")  # fmt: skip
    for t in r.trips:
        if t.kind != "health":
            verdict = "met" if t.per_request <= 1.0 + 1e-9 else "MISSED"
            out.append(f"- At most one store round trip per authenticated request, {t.backend} "
                       f"{t.kind}: {t.per_request:.2f}, {verdict}.")  # fmt: skip
    return out


_OURS = ("rate limit (web/limits.py, the limiter)", "authentication (JWT check, session read)",
         "state read (state.py)", "store: sessionward's Redis layer",
         "request metrics (service/metrics.py)", "body limit (service/body.py)")  # fmt: skip


def reading(r: HttpResults) -> list[str]:
    """Where the time goes, in words, with this run's figures."""
    us, bare = r.profile_us, r.cpu_us.get("bare")
    trips = next((t for t in r.trips if t.backend == "redis" and t.kind == "state read"), None)
    if not us or not bare or trips is None:
        return []
    total = us["total"]
    redis_py = us.get("redis-py (commands, parsing, pool)", 0.0)
    framework = us.get("FastAPI: dependencies, validation, serialisation", 0.0)
    server = us.get("uvicorn + httptools (HTTP protocol)", 0.0) + us.get(
        "Starlette: routing, middleware stack", 0.0)  # fmt: skip
    ours = sum(us.get(name, 0.0) for name in _OURS)
    per_trip = redis_py / trips.per_request if trips.per_request else 0.0
    me = next((t for t in r.trips if t.backend == "redis" and t.kind == "me"), None)
    return [
        "",
        "### Where the time goes, in short (this run)",
        "",
        f"- Server CPU: {total:,.0f} µs per Redis state read against {bare:,.0f} µs for the",
        f"  bare route ({total / bare:.1f}x); one core caps an instance at about",
        f"  {1e6 / total:,.0f} such requests/s, whatever the store does.",
        f"- redis-py, client side: {redis_py:,.0f} µs for {trips.per_request:.0f} round trips",
        f"  (~{per_trip:,.0f} µs each: command packing, the pool, the socket-timeout",
        "  `wait_for`, reply parsing). The largest part; a request that needs one round",
        "  trip instead of three (issue 12's target) saves about two thirds of it.",
        f"- FastAPI: {framework:,.0f} µs: solving the route's dependencies (the principal,",
        "  the ward, the path parameters) and validating and serialising the response model.",
        f"- uvicorn + httptools + Starlette: {server:,.0f} µs, of which the bare route's",
        f"  whole request ({bare:,.0f} µs) is most; the three pure-ASGI middlewares add",
        "  their frames but little own time.",
        "- sessionward's own code (rate-limit middleware, JWT check, session and state",
        f"  reads, the Redis layer, body limit, metrics): {ours:,.0f} µs in all.",
        "- The round trips per request: rate limit (EVALSHA), session (GET), then the",
        "  endpoint's own read (EVALSHA for a document, MGET of the user record for",
        "  `/v1/me`, two EVALSHA for the budget).",
        *(
            [
                f"- `/v1/me` makes {me.per_request:.0f}: the principal holds only the user id and",
                "  the session, so username and roles are one more read. Reading nothing but the",
                "  principal needs them carried in the session (or the token), and role changes",
                "  then reaching live sessions: left to the design review.",
            ]
            if me
            else []
        ),
        "- Figures taken while other work ran on both CPUs are low for every row,",
        "  baselines included (CPU 1 is shared by the server, Redis, PostgreSQL and that",
        "  work); compare ratios within one run, not absolute rates between runs.",
    ]
