"""What a simulated listener costs the load generator: the page listener on the streams client
(`page`, the reference) and on the lean client (`lean`, townhall.loadtest.wire), side by side in
one run against one live Space, and how many lean listeners one generator process holds.

Why: the capacity benches must measure the server, not the generator. The reference listener
costs ~0.25–0.3 ms of CPU per listener-second, so 20,000 listeners would need 5–6 cores of
generator on a 2-core machine.

`compare`: both kinds of listener at once (one worker process each, both pinned to core 1, the
server on core 0), `--listeners` of each; after the arrivals settle, one window measures each
worker's CPU (from /proc) per listener-second, and what its listeners saw (requests/s, parts,
stalls, errors, lateness p95) — the two must agree on the latter.

`hold` (`--hold-steps`): lean listeners in one process, ramped through the steps; a step is held
while the process stays under 90 % of a core with no stall and no error. The server is then the
Space's origin, or with `--edge varnish` the shipped Varnish edge in front of it (an origin
process holds fewer listeners than one generator process does).

`bulk` (`--bulk-steps`): the bulk of a big bench audience, wrk (`bench.bulk`), ramped against two
Icecast processes to 20,000 and more listeners: what the density bench's generator holds on core
1 (one server process holds at most ~19,000, by its open-files limit).

    .venv/bin/python -m bench.generator_cost [--listeners 300] [--window 15]
        [--hold-steps 2000,5000,10000] [--edge varnish] [--json out.json]
    .venv/bin/python -m bench.generator_cost --bulk-steps 10000,16000,22000 [--window 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bulk import Bulk
from bench.bulk import available as bulk_available
from bench.density import bitrate, server_cap
from bench.icecast import Icecast, measure_byte_rate, start_icecast
from bench.swarm import Swarm, affinity, listener_cap, live_space, wait_interval
from townhall.config import MediaConfig
from townhall.harness import EdgeKind
from townhall.loadtest.procs import tree_cpu_seconds, tree_rss_bytes

SERVER_CORE = {0}
GENERATOR_CORE = {1}
SETTLE = 4.0  # s after the last arrival: past the join burst, into steady state
PROCESS_FULL = 0.90  # share of a core above which one generator process is saturated
BULK_SAMPLE = 200  # Python listeners beside the bulk, hearing what it does


def measure(swarms: dict[str, Swarm], window: float) -> dict[str, dict[str, Any]]:
    """One window over every swarm at once: CPU per listener-second and what the listeners saw."""
    for swarm in swarms.values():
        swarm.mark()
    cpu0 = {kind: tree_cpu_seconds(s.pids) for kind, s in swarms.items()}
    t0 = time.monotonic()
    wait_interval(window)
    seen = {kind: s.collect() for kind, s in swarms.items()}
    wall = time.monotonic() - t0
    rows: dict[str, dict[str, Any]] = {}
    for kind, swarm in swarms.items():
        used = tree_cpu_seconds(swarm.pids) - cpu0[kind]
        w = seen[kind]
        listeners = max(1, w.listeners)
        rows[kind] = {
            "listeners": w.listeners,
            "cpu_share": used / wall,
            "cpu_ms_per_listener_s": used / wall / listeners * 1000,
            "rss_bytes": tree_rss_bytes(swarm.pids),
            "requests_per_listener_s": w.requests / wall / listeners,
            "parts_per_listener_s": w.parts / wall / listeners,
            "stalls": w.stalls,
            "errors": dict(w.errors),
            "lateness_p95_s": w.lateness_p95(),
        }
    return rows


def _print(label: str, row: dict[str, Any]) -> None:
    late = row["lateness_p95_s"]
    print(
        f"[{label}] {row['listeners']:>6} listeners: {row['cpu_share'] * 100:5.1f}% of a core,"
        f" {row['cpu_ms_per_listener_s'] * 1000:6.1f} µs CPU per listener-second,"
        f" RSS {row['rss_bytes'] / 2**20:6.1f} MB, {row['requests_per_listener_s']:.2f} req/s and"
        f" {row['parts_per_listener_s']:.2f} parts/s per listener, stalls {row['stalls']},"
        f" errors {row['errors'] or 0}, lateness p95"
        f" {'-' if late is None else f'{late * 1000:.0f} ms'}",
        flush=True,
    )


def run(
    listeners: int,
    window: float,
    hold_steps: list[int],
    edge: EdgeKind | None,
    hold_kind: str = "lean",
) -> Any:
    result: dict[str, Any] = {"listeners": listeners, "window_s": window, "edge": edge}
    with (
        affinity(GENERATOR_CORE),
        tempfile.TemporaryDirectory() as tmp,
        live_space(
            Path(tmp),
            server_cpus=SERVER_CORE,
            bot_cpus=GENERATOR_CORE,
            edge=edge,
            edge_connections=2 * max([listeners * 2, *hold_steps]) + 2048,
        ) as live,
    ):
        base = live.edge.url if live.edge is not None else live.server.url
        url = f"{base}/s/{live.space.id}"
        if listeners:
            with (
                Swarm("page", url, 1, GENERATOR_CORE) as page,
                Swarm("lean", url, 1, GENERATOR_CORE) as lean,
            ):
                page.add(listeners, 2.0)
                lean.add(listeners, 2.0)
                wait_interval(2.0 + SETTLE)
                rows = measure({"page": page, "lean": lean}, window)
            for kind, row in rows.items():
                _print(kind, row)
            result["compare"] = rows
            result["cpu_ratio_page_lean"] = (
                rows["page"]["cpu_ms_per_listener_s"] / rows["lean"]["cpu_ms_per_listener_s"]
            )
            print(f"page / lean CPU per listener-second: {result['cpu_ratio_page_lean']:.1f}×")
        held = 0
        steps: list[dict[str, Any]] = []
        if hold_steps:
            with Swarm(hold_kind, url, 1, GENERATOR_CORE) as swarm:
                for count in hold_steps:
                    added = count - swarm.listeners
                    spread = min(5.0, max(1.0, added / 1000))
                    swarm.add(added, spread)
                    wait_interval(spread + SETTLE)
                    row = measure({hold_kind: swarm}, window)[hold_kind]
                    _print(f"hold {count}", row)
                    steps.append(row)
                    if row["stalls"] or row["errors"] or row["cpu_share"] >= PROCESS_FULL:
                        break
                    held = count
        result["hold_steps"] = steps
        result["held_by_one_process"] = held
    if hold_steps:
        print(f"one {hold_kind} process held {held} listeners")
    return result


BULK_NOTES = (
    "wrk processes (bench/bulk.py, waves of 1,000 connections) pinned to core 1, each listener a "
    "progressive GET of an Icecast 2.4 mount read as it comes, half the audience on each of two "
    "Icecast processes (one process holds at most ~19,000: its open-files hard limit), which "
    "run on either core; 200 Python listeners on the first server count stalls as the density "
    "bench does. A step is held when wrk stays under 90 % of core 1, neither server ends a "
    "connection (their access logs) and the sample hears no stall. The same wrk listener asks "
    "townhall for segments and snapshots in the density bench, at about the same cost per "
    "listener-second."
)


def bulk_hold(steps: list[int], window: float, sample: int) -> dict[str, Any]:
    """The generator's bulk (wrk, `bench.bulk`) holding `steps` listeners on core 1.

    A server for 20,000 streaming listeners does not fit one server process here (the open-files
    hard limit is 20,000 per process and cannot be raised) nor one core (Icecast costs ~50 µs per
    listener-second): two Icecast 2.4 processes serve half each, on core 0 when they fit and on
    both cores when they do not — what is measured is the generator, pinned to core 1. A step is
    held when the wrk processes stay under 90 % of core 1, no connection is dropped by either
    server, and the Python sample (`sample` progressive listeners on the first Icecast, counting
    stalls as bench.density does) hears no stall."""
    part = MediaConfig().part_seconds
    servers: list[Icecast] = []
    result: dict[str, Any] = {"steps": [], "held": 0, "servers": 2}
    try:
        for _ in range(2):
            icecast = start_icecast(bitrate())
            servers.append(icecast)
            with affinity(GENERATOR_CORE):
                icecast.start_source(part)
        byte_rate = measure_byte_rate(servers[0].stream_url)
        bulks = [
            Bulk(
                "progressive",
                icecast.stream_url,
                GENERATOR_CORE,
                access_log=icecast.workdir / "log" / "access.log",
            )
            for icecast in servers
        ]
        with (
            Swarm(
                "progressive",
                servers[0].stream_url,
                1,
                GENERATOR_CORE,
                byte_rate=byte_rate,
                hold_back=3 * part,
            ) as swarm,
            bulks[0],
            bulks[1],
        ):
            swarm.add(sample, 1.0)
            for count in steps:
                added = count - sample - sum(b.listeners for b in bulks)
                spread = min(10.0, max(1.0, added / 2000))
                for bulk in bulks:
                    bulk.add(added // 2, spread / 2)
                wait_interval(SETTLE)
                pids = [pid for bulk in bulks for pid in bulk.pids]
                for bulk in bulks:
                    bulk.mark()
                swarm.mark()
                cpu0, sample0, t0 = (
                    tree_cpu_seconds(pids),
                    tree_cpu_seconds(swarm.pids),
                    time.monotonic(),
                )
                wait_interval(window)
                wall = time.monotonic() - t0
                seen = swarm.collect()
                crowds = [bulk.collect() for bulk in bulks]
                row = {
                    "listeners": seen.listeners + sum(c.listeners for c in crowds),
                    "bulk_listeners": sum(c.listeners for c in crowds),
                    "bulk_cpu_share": (tree_cpu_seconds(pids) - cpu0) / wall,
                    "sample_cpu_share": (tree_cpu_seconds(swarm.pids) - sample0) / wall,
                    "bulk_rss_bytes": tree_rss_bytes(pids),
                    "dropped": sum(c.dropped for c in crowds),
                    "stalls": seen.stalls,
                    "errors": dict(seen.errors),
                }
                row["cpu_us_per_listener_s"] = (
                    row["bulk_cpu_share"] / max(1, row["bulk_listeners"]) * 1e6
                )
                result["steps"].append(row)
                print(
                    f"[bulk] {row['listeners']:>6} listeners: wrk {row['bulk_cpu_share'] * 100:.1f}%"
                    f" of core 1 ({row['cpu_us_per_listener_s']:.1f} µs per listener-second),"
                    f" RSS {row['bulk_rss_bytes'] / 2**20:.0f} MB, dropped {row['dropped']},"
                    f" sample stalls {row['stalls']}, errors {row['errors'] or 0}",
                    flush=True,
                )
                if row["dropped"] or row["stalls"] or row["errors"]:
                    break
                if row["bulk_cpu_share"] + row["sample_cpu_share"] >= PROCESS_FULL:
                    break
                result["held"] = row["listeners"]
    finally:
        for icecast in servers:
            icecast.stop()
    print(f"the generator held {result['held']} listeners")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--listeners", type=int, default=300, help="of each kind, compared")
    parser.add_argument("--window", type=float, default=15.0, help="measurement window (s)")
    parser.add_argument("--hold-steps", default="", help="e.g. 2000,5000,10000 (lean, 1 process)")
    parser.add_argument("--edge", choices=["nginx", "varnish"], default=None)
    parser.add_argument("--hold-kind", choices=["lean", "page"], default="lean")
    parser.add_argument(
        "--bulk-steps",
        default="",
        help="e.g. 10000,22000: wrk listeners held against two Icecast processes (needs wrk)",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    steps = [int(s) for s in args.hold_steps.split(",") if s.strip()]
    bulk_steps = [int(s) for s in args.bulk_steps.split(",") if s.strip()]
    if bulk_steps:
        top = 2 * server_cap()
        if not bulk_available() or any(not BULK_SAMPLE < s <= top for s in bulk_steps):
            parser.error(f"--bulk-steps needs wrk, and steps {BULK_SAMPLE + 1}..{top}")
        result = bulk_hold(bulk_steps, args.window, BULK_SAMPLE)
        if args.json:
            Path(args.json).write_text(json.dumps({"bulk": result, "notes": BULK_NOTES}, indent=2))
        return
    cap = listener_cap()
    if not 0 <= args.listeners <= cap // 2 or any(not 1 <= s <= cap for s in steps):
        parser.error(f"listeners and steps up to the open-files limit ({cap})")
    result = run(args.listeners, args.window, steps, args.edge, args.hold_kind)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
