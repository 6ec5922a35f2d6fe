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

    .venv/bin/python -m bench.generator_cost [--listeners 300] [--window 15]
        [--hold-steps 2000,5000,10000] [--edge varnish] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.swarm import Swarm, affinity, listener_cap, live_space, wait_interval
from townhall.harness import EdgeKind
from townhall.loadtest.procs import tree_cpu_seconds, tree_rss_bytes

SERVER_CORE = {0}
GENERATOR_CORE = {1}
SETTLE = 4.0  # s after the last arrival: past the join burst, into steady state
PROCESS_FULL = 0.90  # share of a core above which one generator process is saturated


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--listeners", type=int, default=300, help="of each kind, compared")
    parser.add_argument("--window", type=float, default=15.0, help="measurement window (s)")
    parser.add_argument("--hold-steps", default="", help="e.g. 2000,5000,10000 (lean, 1 process)")
    parser.add_argument("--edge", choices=["nginx", "varnish"], default=None)
    parser.add_argument("--hold-kind", choices=["lean", "page"], default="lean")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    steps = [int(s) for s in args.hold_steps.split(",") if s.strip()]
    cap = listener_cap()
    if not 0 <= args.listeners <= cap // 2 or any(not 1 <= s <= cap for s in steps):
        parser.error(f"listeners and steps up to the open-files limit ({cap})")
    result = run(args.listeners, args.window, steps, args.edge, args.hold_kind)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
