"""docs/benchmarks.md from the results."""

from __future__ import annotations

from .jobs import RAW_NOTIFY, JobResults
from .limits import BASELINE, RateLimitResults, Row
from .measure import Result

NOTES = [
    "## Reading the figures",
    "",
    "- SQLite's raw read runs in the calling thread with no transaction; ours hands the call",
    "  to a connection thread and back (the event loop must not block), which is most of the",
    "  gap at one task. With 32 tasks the calls batch per wake-up, hence the higher ops/s.",
    "- Redis validate is a plain GET of the session plus the manager's checks; create and",
    "  update are Lua scripts (one round trip each) and create also writes the token route.",
    "- 32-task latencies are queueing: 32 callers share one writer thread (SQLite) or the",
    "  pool (Redis 50, PostgreSQL 10 connections) on a 2-vCPU machine.",
    "- Authentication costs one JWT check (about 3 µs: verified tokens are cached) and one",
    "  session read in the store, which every request makes so that revocation is immediate.",
    "  Measured in-process, the session read on Redis is the raw redis-py GET plus about",
    "  3 µs; what remains of the overhead is that round trip, with the app server and Redis",
    "  sharing CPU 1. Caching session validity would remove it but delay revocation, so",
    "  the Redis figure is reported as it is.",
]

RAW = {"sqlite": "raw PK read", "redis": "raw GET", "postgresql": "raw SELECT 1"}


def render(
    machine: str,
    pinning: str,
    all_results: dict[str, dict[str, list[Result]]],
    ratelimit: RateLimitResults | None = None,
    jobs: dict[str, JobResults] | None = None,
) -> str:
    results = all_results["sessions"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks`); every figure below comes from one run.",
        "",
        f"- Machine: {machine}",
        f"- Pinning: {pinning}",
    ]
    if results:
        lines += [
            "- Each backend's raw-driver round trip is measured in the same run; *vs raw* is",
            "  our p50 latency divided by the raw p50 at the same concurrency (1.0 = no overhead).",
            "",
            "## Sessions and state",
            "",
            "| backend | operation | tasks | ops/s | p50 µs | p99 µs | vs raw (p50) |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
    for backend, rows in results.items():
        raw = {r.tasks: r for r in rows if r.name == RAW.get(backend)}
        for r in rows:
            base = raw.get(r.tasks) or raw.get(1)
            ratio = f"{r.p50_us / base.p50_us:.2f}x" if base and r.name != base.name else ""
            lines.append(
                f"| {backend} | {r.name} | {r.tasks} | {r.ops_per_s:,.0f} | "
                f"{r.p50_us:,.0f} | {r.p99_us:,.0f} | {ratio} |"
            )
    lines += auth_section(all_results["auth"])
    lines += budget_section(all_results.get("budget", {}))
    lines += ratelimit_section(ratelimit)
    lines += jobs_section(jobs or {})
    lines += ["", "## Targets", "", *targets(results), *auth_targets(all_results["auth"])]
    lines += [*ratelimit_targets(ratelimit), *jobs_targets(jobs or {}), ""]
    if results or all_results["auth"]:
        lines += [*NOTES, ""]
    if ratelimit is not None:
        lines += [*RATE_NOTES, ""]
    return "\n".join(lines)


def budget_section(results: dict[str, list[Result]]) -> list[str]:
    if not results:
        return []
    lines = [
        "",
        "## Budgets",
        "",
        "Charges through `ward.budgets.charge` (one atomic step each: liveness, budget,",
        "idempotency key, ledger line and totals), one task and 32 tasks, all on one session",
        "(contending for its budget row) or spread over 1,000 sessions. `verify()` is run",
        "after each backend: the books balanced every time.",
        "",
        "| backend | charges | tasks | charges/s | p50 µs | p99 µs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for backend, rows in results.items():
        for r in rows:
            lines.append(f"| {backend} | {r.name.removeprefix('charge, ')} | {r.tasks} | "
                         f"{r.ops_per_s:,.0f} | {r.p50_us:,.0f} | {r.p99_us:,.0f} |")  # fmt: skip
    return lines


def auth_section(results: dict[str, list[Result]]) -> list[str]:
    if not results:
        return []
    lines = [
        "",
        "## Authentication through the running service",
        "",
        "One client, keep-alive HTTP/1.1 (httpx), the server (uvicorn, one worker) on CPU 1.",
        "*GET with auth* verifies the JWT and checks the session in the store, as every",
        "authenticated endpoint does; *GET no auth* is the same trivial route without it.",
        "",
        "| backend | request | ops/s | p50 µs | p99 µs | auth overhead (p50) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for backend, rows in results.items():
        plain = _find(rows, "GET no auth", 1)
        for r in rows:
            extra = ""
            if r.name == "GET with auth" and plain:
                extra = f"+{(r.p50_us / plain.p50_us - 1) * 100:.0f} %"
            lines.append(f"| {backend} | {r.name} | {r.ops_per_s:,.1f} | {r.p50_us:,.0f} | "
                         f"{r.p99_us:,.0f} | {extra} |")  # fmt: skip
    return lines


def auth_targets(results: dict[str, list[Result]]) -> list[str]:
    out = []
    for backend in ("redis", "sqlite"):
        rows = results.get(backend, [])
        plain, authed = _find(rows, "GET no auth", 1), _find(rows, "GET with auth", 1)
        if plain and authed:
            extra = authed.p50_us / plain.p50_us - 1
            verdict = "met" if extra <= 0.25 else "MISSED"
            out.append(f"- Auth adds <= 25 % to a trivial endpoint on {backend}: "
                       f"{plain.p50_us:.0f} µs -> {authed.p50_us:.0f} µs = +{extra * 100:.0f} %, "
                       f"{verdict}.")  # fmt: skip
    return out


def _find(rows: list[Result], name: str, tasks: int) -> Result | None:
    return next((r for r in rows if r.name == name and r.tasks == tasks), None)


def targets(results: dict[str, list[Result]]) -> list[str]:
    out = []
    redis = results.get("redis", [])
    ours, raw = _find(redis, "validate", 1), _find(redis, "raw GET", 1)
    if ours and raw:
        ratio = ours.p50_us / raw.p50_us
        verdict = "met" if ratio <= 1.5 else "MISSED"
        out.append(
            f"- Redis validate within 1.5x of one raw GET round trip (one task, p50): "
            f"{ours.p50_us:.0f} µs vs {raw.p50_us:.0f} µs = {ratio:.2f}x, {verdict}."
        )
    sqlite = results.get("sqlite", [])
    best = max((r for r in sqlite if r.name == "validate"), key=lambda r: r.ops_per_s, default=None)
    if best:
        verdict = "met" if best.ops_per_s >= 20_000 else "MISSED"
        out.append(
            f"- SQLite validate >= 20,000/s from one process: {best.ops_per_s:,.0f}/s "
            f"({best.tasks} tasks), {verdict}."
        )
    return out


# rate limiting

RATE_NOTES = [
    "## Reading the rate-limit figures",
    "",
    "- sessionward's `hit` returns a decision (allowed, remaining, reset and retry times, for",
    "  every limit of the policy, all consumed or none); `limits`' `hit` returns a bool. The",
    "  *+ window stats* row adds the `get_window_stats` call that a middleware sending",
    "  RateLimit headers makes as well.",
    "- On memory a single-limit decision is made by `DirectLimiter` under the store's lock:",
    "  from the async API with nothing awaited, and from a SyncWard in the calling thread",
    "  (no trip through its event-loop portal), as `limits`' blocking limiters do.",
    "- Threads share CPU 0 and the GIL: 8 threads measure contention, not parallelism.",
    "- On the hot key the algorithms part: the moving window admits 1,000 in any second, GCRA",
    "  a burst of 1,000 that refills at 1,000 a second, also while the other contenders run;",
    "  so a slower contender, or GCRA, sees more of its hot-key decisions allowed.",
    "- `limits`' memory moving window prepends one entry object per admitted hit to a list per",
    "  key, and a timer thread prunes expired entries every 10 ms; its fixed window and sliding",
    "  window counter keep counters. GCRA keeps one timestamp per key and limit.",
    "- On Redis every contender sends at most one EVALSHA per decision, so one task measures",
    "  the round trip (client on CPU 0, Redis on CPU 1) and the client's own work; `limits`",
    "  is shown through redis-py (sessionward's client) and coredis (its default async client).",
    "- sessionward's Redis client has a 5 s socket timeout and a bounded pool (50 connections,",
    "  5 s wait); `limits`' redis-py client has neither. On Python 3.11 redis-py sends through",
    "  `asyncio.wait_for` (a task per command) when a socket timeout is set, and the bounded",
    "  pool takes an `asyncio.Condition`: more event-loop turns per decision. The row",
    "  *sessionward's pool and timeouts* gives `limits` the same client settings. sessionward's",
    "  decisions keep one pooled connection between calls (`stores.redis.connection.Lease`:",
    "  one watchdog timer keeps the socket timeout) and decisions made while a call is in",
    "  flight go together in the next EVALSHA (`GcraLane`, each still atomic and all-or-none on",
    "  its own), so 32 tasks need fewer round trips than decisions.",
    "- A memory store, either library's, belongs to one process: 4 processes admit up to 4x",
    "  the limit. A shared store (an SQLite file, Redis) holds it exactly.",
]


def ratelimit_section(rate: RateLimitResults | None) -> list[str]:
    if rate is None:
        return []
    lines = [
        "",
        "## Rate limiting",
        "",
        f"sessionward's GCRA limiter (`ward.limits.hit`) beside the `limits` library, one run "
        f"({rate.versions}).",
        'Both decide the policy "1000/second" (parsed once) over a pool of 1,000 keys (call *i*',
        "uses key *i* mod 1000: nearly all allowed) or one hot key (*allowed* shows how often",
        "the limit bound); the contenders alternate in blocks.",
        "*vs limits MW* is decisions/s divided by `limits`' moving window's at the same store,",
        f"keys and concurrency ({BASELINE['memory']!r} on memory, {BASELINE['redis']!r} on",
        "Redis).",
    ]
    if rate.rows:
        lines += [
            "",
            "| store | keys | contender | concurrency | decisions/s | p50 µs | p99 µs | allowed "
            "| vs limits MW |",
            "|---|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for row in rate.rows:
            r, base = row.result, _baseline(rate.rows, row)
            ratio = f"{r.ops_per_s / base.result.ops_per_s:.2f}x" if base else ""
            lines.append(
                f"| {row.store} | {row.keys} | {row.name} | {row.workers} | {r.ops_per_s:,.0f} | "
                f"{r.p50_us:,.1f} | {r.p99_us:,.1f} | {_share(row.allowed)} | {ratio} |"
            )
    if rate.commands or rate.commands_note:
        lines += ["", "### Redis commands per decision", "", rate.commands_note]
    if rate.commands:
        lines += [
            "*Round trips* are the commands the client sent (MONITOR); EVALSHA calls and the",
            "time Redis spent in each are `INFO commandstats` deltas; the last column is what",
            "the script ran inside Redis.",
            "",
            "| contender | round trips / decision | sent | EVALSHA / decision "
            "| µs in Redis / EVALSHA | run in the script |",
            "|---|---:|---|---:|---:|---|",
        ]
        for c in rate.commands:
            inside = f"{c.in_script:.2f}: {c.script_commands}"
            lines.append(f"| {c.name} | {c.round_trips:.2f} | {c.sent} | {c.evalsha:.2f} | "
                         f"{c.script_us:.1f} | {inside} |")  # fmt: skip
    if rate.footprint:
        lines += [
            "",
            "### Bytes per key",
            "",
            'Policy "100/hour" (nothing expires while measured), after one decision per key and',
            "after 100 (a full window).",
            "",
            "| store | contender | decisions per key | bytes per key | measured as |",
            "|---|---|---:|---:|---|",
        ]
        for f in rate.footprint:
            lines.append(f"| {f.store} | {f.name} | {f.decisions} | {f.bytes_per_key:,.0f} | "
                         f"{f.how} |")  # fmt: skip
    if rate.exactness:
        e = rate.exactness[0]
        lines += [
            "",
            "### Exactness across processes",
            "",
            f"{e.processes} OS processes, released together, each try {e.attempts // e.processes}",
            f"decisions on one key limited to {e.limit} an hour.",
            "",
            "| contender | store | processes | limit | attempts | allowed |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for e in rate.exactness:
            lines.append(f"| {e.name} | {e.store} | {e.processes} | {e.limit} | {e.attempts} | "
                         f"{e.allowed} |")  # fmt: skip
    return lines


def _share(allowed: float) -> str:
    return f"{allowed * 100:.0f} %" if allowed >= 0.095 else f"{allowed * 100:.1f} %"


def _baseline(rows: list[Row], row: Row) -> Row | None:
    return next(
        (b for b in rows if b.store == row.store and b.keys == row.keys
         and b.result.tasks == row.result.tasks and b.name == BASELINE[row.store]),
        None,
    )  # fmt: skip


def _rate_row(rows: list[Row], store: str, name: str, workers: int) -> Row | None:
    return next(
        (r for r in rows if r.store == store and r.keys == "1,000 keys" and r.name == name
         and r.result.tasks == workers),
        None,
    )  # fmt: skip


def ratelimit_targets(rate: RateLimitResults | None) -> list[str]:
    if rate is None:
        return []
    out = []
    memory = (("sessionward, async API", 1, "one task"), ("sessionward, SyncWard", 1, "one thread"),
              ("sessionward, SyncWard", 8, "8 threads"))  # fmt: skip
    for name, workers, how in memory:
        ours = _rate_row(rate.rows, "memory", name, workers)
        theirs = _rate_row(rate.rows, "memory", "limits moving window", workers)
        if ours and theirs:
            ratio = ours.result.ops_per_s / theirs.result.ops_per_s
            verdict = "met" if ratio >= 1.5 else "MISSED"
            out.append(f"- Memory >= 1.5x `limits`' moving window ({name.split(', ')[1]}, {how}, "
                       f"1,000 keys): {ours.result.ops_per_s:,.0f}/s vs "
                       f"{theirs.result.ops_per_s:,.0f}/s = {ratio:.2f}x, {verdict}.")  # fmt: skip
    ours_c = next((c for c in rate.commands if c.name == "sessionward"), None)
    if ours_c:
        one = abs(ours_c.round_trips - 1) < 1e-9 and abs(ours_c.evalsha - 1) < 1e-9
        others = "; ".join(f"{c.name} {c.round_trips:.2f}" for c in rate.commands
                           if c.name != "sessionward")  # fmt: skip
        out.append(f"- Redis: one round trip per decision: {ours_c.round_trips:.2f} "
                   f"({ours_c.sent}; EVALSHA {ours_c.evalsha:.2f} by commandstats), "
                   f"{'met' if one else 'MISSED'} (`limits`: {others}).")  # fmt: skip
    for workers in (1, 32):
        ours = _rate_row(rate.rows, "redis", "sessionward", workers)
        moving = [
            r
            for r in rate.rows
            if r.store == "redis" and r.keys == "1,000 keys" and r.result.tasks == workers
            and r.name.startswith("limits moving window")
        ]  # fmt: skip
        if ours and moving:
            best = max(moving, key=lambda r: r.result.ops_per_s)
            ratio = ours.result.ops_per_s / best.result.ops_per_s
            each = ", ".join(
                f"{ours.result.ops_per_s / m.result.ops_per_s:.2f}x vs "
                f"{m.name.removeprefix('limits moving window (').removesuffix(')')}"
                for m in moving
            )
            verdict = "met" if ratio >= 1.2 else "MISSED"
            out.append(f"- Redis >= 1.2x `limits`' moving window ({ours.workers}, 1,000 keys, "
                       f"against its faster client): {ours.result.ops_per_s:,.0f}/s vs "
                       f"{best.result.ops_per_s:,.0f}/s = {ratio:.2f}x ({each}), "
                       f"{verdict}.")  # fmt: skip
    shared = [e for e in rate.exactness if e.name == "sessionward" and "memory" not in e.store]
    if shared:
        exact = all(e.allowed == e.limit for e in shared)
        each = ", ".join(f"{e.store} {e.allowed}" for e in shared)
        theirs = next((e for e in rate.exactness if e.name != "sessionward"
                       and e.store == "memory://"), None)  # fmt: skip
        seen = (f"; `limits`' memory storage let {theirs.allowed} through, "
                f"{theirs.allowed / theirs.limit:.1f}x the limit" if theirs else "")  # fmt: skip
        verdict = "met" if exact else "MISSED"
        out.append(f"- Exact across {shared[0].processes} processes on a shared store (limit "
                   f"{shared[0].limit}): {each}, {verdict}{seen}.")  # fmt: skip
    return out


# background jobs

JOB_NOTES = [
    "",
    "*Submit to start* is one job at a time with free slots, from the `submit` call to the",
    "handler's first line. *Same instance*: the worker beside the submitter, woken in-process.",
    "*Other instance*: submitter and worker are two wards with their own event hubs (as two",
    "servers), so the worker hears of the job through the store's notifications (Redis",
    "pub/sub, PostgreSQL LISTEN/NOTIFY); SQLite has none between processes, so that worker",
    "finds the job at its next poll (`job_poll_interval`, 1 s; here nearly all of it, as",
    "each submit comes 20 ms after the worker's last claim).",
    "The raw rows are a bare PUBLISH or NOTIFY from one connection to another, the floor of",
    "the other-instance figure. Each sample waits until the previous job has finished and",
    "its worker has settled (20 ms), so no job is picked up by the claim after a finish.",
    "",
    "*No-op jobs* are submitted by 32 tasks per instance (over 200 users) while each",
    "instance's worker runs them, with the default limits (8 running in the deployment, 3 per",
    "user); each instance is its own process, and both share CPU 0 on this machine. Per job:",
    "a submit (one store write, two event publishes), a claim, a finish, and the running and",
    "finished pushes to the owner's channel.",
    "",
    "*Cancel* is from the `cancel` call to `cancelled` in the store, for a running job: on",
    "the worker's own instance (an async job is interrupted; a thread job stops at its next",
    "check, here every 2 ms) and from another instance (the event; on SQLite, with no events",
    "between processes, the worker's next heartbeat: up to `job_heartbeat`, 1 s).",
]


def jobs_section(results: dict[str, JobResults]) -> list[str]:
    if not results:
        return []
    lines = [
        "",
        "## Background jobs",
        "",
        "| backend | measure | p50 ms | p99 ms |",
        "|---|---|---:|---:|",
    ]
    for backend, r in results.items():
        for x in r.latency:
            lines.append(f"| {backend} | {x.name} | {x.p50_us / 1000:,.2f} | "
                         f"{x.p99_us / 1000:,.2f} |")  # fmt: skip
    lines += ["", "| backend | throughput | jobs | seconds | jobs/s |", "|---|---|---:|---:|---:|"]
    for backend, r in results.items():
        for x in r.throughput:
            lines.append(f"| {backend} | {x.name} | {x.ops:,} | {x.seconds:.2f} | "
                         f"{x.ops_per_s:,.0f} |")  # fmt: skip
    lines += ["", "| backend | cancel of a running job | cancels | p50 ms | p99 ms | worst ms |",
              "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for backend, r in results.items():
        for x in r.cancel:
            what = x.name.removeprefix("cancel, ")
            p50, p99, worst = x.p50_us / 1000, x.p99_us / 1000, r.worst_cancel_ms[what]
            lines.append(f"| {backend} | {what} | {x.ops} | {p50:,.1f} | {p99:,.1f} | "
                         f"{worst:,.1f} |")  # fmt: skip
    return lines + JOB_NOTES


def jobs_targets(results: dict[str, JobResults]) -> list[str]:
    out = []
    for backend in ("redis", "postgresql"):
        if backend not in results:
            continue
        rows = {x.name: x for x in results[backend].latency}
        same = rows.get("submit to start, same instance")
        other = rows.get("submit to start, other instance")
        raw = rows.get(RAW_NOTIFY[backend])
        if same and other:
            verdict = "met" if same.p50_us < 50_000 and other.p50_us < 50_000 else "MISSED"
            floor = f"; raw notification {raw.p50_us / 1000:.2f} ms" if raw else ""
            out.append(f"- Submit to start p50 < 50 ms on {backend}: same instance "
                       f"{same.p50_us / 1000:.2f} ms, other instance (notified) "
                       f"{other.p50_us / 1000:.2f} ms{floor}, {verdict}.")  # fmt: skip
    if "redis" in results:
        one = next((x for x in results["redis"].throughput if x.tasks == 1), None)
        if one:
            verdict = "met" if one.ops_per_s >= 500 else "MISSED"
            out.append(f"- >= 500 no-op jobs/s on Redis from one instance: "
                       f"{one.ops_per_s:,.0f}/s, {verdict}.")  # fmt: skip
    worst = [(ms, backend, name) for backend, r in results.items()
             for name, ms in r.worst_cancel_ms.items()]  # fmt: skip
    if worst:
        ms, backend, name = max(worst)
        verdict = "met" if ms < 2000 else "MISSED"
        out.append(f"- A running job cancelled within 2 s: worst {ms:,.0f} ms ({backend}, "
                   f"{name}), {verdict}.")  # fmt: skip
    return out
