"""Soak: one live Space held for a long time — memory, file descriptors and latency must stay flat.

A server (metrics on), a stage of `--speakers` `townhall speak` bots (each a different tone, all
heard in the mix) and `--listeners` LL-HLS listeners (`bench.swarm`, what hls.js in low-latency mode
asks) for `--minutes`. Every `--interval` seconds one row: the server's RSS, open file descriptors
and CPU share over the interval; the listeners' lateness (p50/p95: arrival − the part's media end),
stalls and errors in the interval; and from the server's own `/metrics`, the media ticks skipped,
parts published and the event loop's lag. At the end, each of RSS, descriptors and lateness p95 is
compared between the first and the last third of the rows (by median, after the first row, which
includes the listeners joining, and without a last row the end cut short; `bench.report.soak_ratio`):
a soak passes when the last third is within `--tolerance` of the first.

The issue's soak is an hour with a stage of 5 and hundreds of listeners (the defaults); a short
run checks the harness:

    .venv/bin/python -m bench.soak [--minutes 60] [--speakers 5] [--listeners 300] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.report import SOAK_TOLERANCE, soak_ratio
from bench.stage_cost import start_stage
from bench.swarm import Swarm, wait_interval
from townhall.harness import Server, cpu_seconds, rss_bytes, start_server
from townhall.loadtest.llhls import percentile
from townhall.loadtest.procs import raise_nofile

TOKEN = "soak-bench-metrics-token-0123456789"


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def scrape(server: Server) -> dict[str, float]:
    """Node-wide sums of the series the soak follows (empty if the scrape failed)."""
    try:
        response = httpx.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
    except httpx.HTTPError:
        return {}
    if response.status_code != 200:
        return {}
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


def delta(now: dict[str, float], before: dict[str, float], name: str) -> float | None:
    """How much a counter grew since the last scrape that answered; None when this one did not
    (an overloaded server may miss the scrape's deadline: the next row's delta then covers both)."""
    if not now:
        return None
    return now.get(name, 0.0) - before.get(name, 0.0)


def run(minutes: float, speakers: int, listeners: int, interval: float) -> dict[str, Any]:
    raise_nofile()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="townhall-soak-") as tmp:
        server = start_server(Path(tmp) / "server", {"TOWNHALL_METRICS_TOKEN": TOKEN})
        bots = []
        try:
            space = server.create_space("Soak")
            bots = start_stage(server, space, speakers)
            media = f"{server.url}/live/{space.id}/media.m3u8"
            pid = server.proc.popen.pid
            with Swarm("llhls", media, procs=2) as swarm:
                swarm.add(listeners, spread=min(30.0, interval))
                swarm.mark()
                before = scrape(server)
                cpu0, t0 = cpu_seconds(pid), time.monotonic()
                last = t0
                end = t0 + minutes * 60
                while time.monotonic() < end:
                    wait_interval(min(interval, max(0.0, end - time.monotonic())))
                    window = swarm.collect()
                    swarm.mark()
                    now, cpu, t = scrape(server), cpu_seconds(pid), time.monotonic()
                    row = {
                        "at_s": round(t - t0, 1),
                        "rss_mb": rss_bytes(pid) / 2**20,
                        "fds": open_fds(pid),
                        "cpu_core_share": (cpu - cpu0) / (t - last),
                        "listeners": window.listeners,
                        "requests": window.requests,
                        "lateness_p50_s": percentile(window.lateness, 50),
                        "lateness_p95_s": percentile(window.lateness, 95),
                        "stalls": window.stalls,
                        "errors": window.error_count,
                        "ticks_skipped": delta(now, before, "townhall_space_ticks_skipped_total"),
                        "parts_published": delta(
                            now, before, "townhall_space_parts_published_total"
                        ),
                        "loop_lag_s": now.get("townhall_event_loop_lag_seconds"),
                        # The machine is shared: its load explains lateness the server did not cause.
                        "load_1m": os.getloadavg()[0],
                    }
                    rows.append(row)
                    print_row(row)
                    before, cpu0, last = now or before, cpu, t
        finally:
            for bot in bots:
                bot.stop()
            server.proc.stop()
    verdict = {key: soak_ratio(rows, key, interval) for key in ("rss_mb", "fds", "lateness_p95_s")}
    return {
        "minutes": minutes,
        # Whether the soak ran above or below the machine's other work: it says what lateness means.
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "speakers": speakers,
        "listeners": listeners,
        "interval_s": interval,
        "rows": rows,
        "last_over_first_third": verdict,
        "ticks_skipped": sum(row["ticks_skipped"] or 0 for row in rows),
        "stalls": sum(row["stalls"] for row in rows),
        "errors": sum(row["errors"] for row in rows),
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_row(row: dict[str, Any]) -> None:
    print(
        f"{row['at_s']:7.0f} s  rss {row['rss_mb']:6.1f} MB  fds {row['fds']:5d}  "
        f"cpu {row['cpu_core_share']:5.0%}  listeners {row['listeners']:4d}  "
        f"late p50/p95 {_ms(row['lateness_p50_s'])}/{_ms(row['lateness_p95_s'])} ms  "
        f"stalls {row['stalls']}  errors {row['errors']}  skipped {_n(row['ticks_skipped'])}  "
        f"parts {_n(row['parts_published'])}  load {row['load_1m']:.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--speakers", type=int, default=5)
    parser.add_argument("--listeners", type=int, default=300)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds per row")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=SOAK_TOLERANCE,
        help="last third over first, at most 1 + this",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    # Stopped early (kill PID, or `timeout` past its bound): leave through the `finally` blocks,
    # so the server, the bots and the swarm's workers are stopped too, not left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args.minutes, args.speakers, args.listeners, args.interval)
    flat = True
    for key, ratio in result["last_over_first_third"].items():
        ok = ratio is not None and ratio <= 1 + args.tolerance
        flat = flat and ok
        shown = "n/a (too few rows)" if ratio is None else f"{ratio:.3f}"
        print(f"{key:16} last third / first third: {shown}  {'flat' if ok else 'GROWING'}")
    print(
        f"ticks skipped {result['ticks_skipped']:.0f}, stalls {result['stalls']}, "
        f"errors {result['errors']}: {'PASS' if flat else 'FAIL'}"
    )
    result["flat"] = flat
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
