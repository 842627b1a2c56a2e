"""Turn the suite's figures into the tables of docs/reliability.md.

SESSIONWARD_RELIABILITY_OUT=/tmp/rel pytest tests/reliability
python -m tests.reliability.report /tmp/rel/figures.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _failed(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} x {what}" for what, n in sorted(counts.items())) or "none"


def _name(r: dict[str, Any]) -> str:
    return str(r["fault"]) + ("" if r.get("full") else " (small size)")


def store_outages(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| fault | outage | requests while down | failed, with | slowest / p99 | recovery |",
           "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if "outage_s" in r:
            d = r["during"]
            out.append(f"| {_name(r)} | {r['outage_s']:.2f} s | {d['requests']} | "
                       f"{_failed(d['failed'])} | {d['slowest_s']:.2f} / {d['p99_s']:.2f} s | "
                       f"{r['recovery_s']:.3f} s |")  # fmt: skip
    return out


def acknowledged(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| run | state writes | charges | logins | jobs | lost |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "charges" in r and "logins" in r:
            out.append(f"| {_name(r)} | {r['state_writes']} | {r['charges']} | "
                       f"{r['logins']} | {r['jobs']} | {r['lost']} |")  # fmt: skip
    return out


def kills(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| backend | survivor: requests, failed, slowest | cut off on the killed one | "
        "its jobs running again after | held jobs' attempts |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if "survivor" in r:
            s = r["survivor"]
            size = "" if r.get("full") else " (small size)"
            out.append(f"| {r['backend']}{size} | {s['requests']}, {_failed(s['failed'])}, "
                       f"{s['slowest_s']:.2f} s | {_failed(r['cut_off_on_killed'])} | "
                       f"{r['jobs_back_after_s']:.2f} s (lease {r['lease_s']} s) | "
                       f"{r['held_jobs_attempts']} |")  # fmt: skip
    return out


def soaks(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| run | requests (per s) | p50 / p99 | failed | RSS start → end, growth after "
           "warm-up, slope | fds start → end |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if "rss_start_mib" in r:
            out.append(f"| {_name(r)} | {r['requests']} ({r['rps']}) | {r['p50_s']:.3f} / "
                       f"{r['p99_s']:.3f} s | {_failed(r['failed'])} | {r['rss_start_mib']} → "
                       f"{r['rss_end_mib']} MiB, {r['rss_growth_after_warmup_mib']} MiB, "
                       f"{r['rss_slope_mib_per_min']} MiB/min | {r['fds_start']} → "
                       f"{r['fds_end']} |")  # fmt: skip
    return out


def main(path: str) -> None:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    for table in (store_outages, kills, acknowledged, soaks):
        print("\n".join(table(rows)), end="\n\n")
    for r in rows:
        if r["backend"] == "sqlite" and "survivor" not in r and "rss_start_mib" not in r:
            print(json.dumps({k: v for k, v in r.items() if k != "test"}, sort_keys=True))
        if "store_slowest_s" in r:
            print(json.dumps({k: v for k, v in r.items() if k != "test"}, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
