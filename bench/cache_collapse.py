"""Cache collapse: origin requests per second behind the nginx edge with 100, 1,000 and 10,000
simulated LL-HLS listeners. The SPEC budget: constant in audience size.

One server, one live Space with a `townhall speak --tone 440` bot, the shipped nginx edge
(deploy/nginx/townhall.conf via harness.start_edge, with worker_connections raised for 10,000
listeners × 2 connections). For each scale the listeners (`bench.llhls.run_listener`: blocking
playlist reload + preload-hinted part per part) play through the edge in several generator
processes; after they have joined and settled, a window of `--window` seconds is read from the
edge's access log (`$upstream_addr $upstream_cache_status …` per line): every line is an edge
request, a line with an upstream address is an origin request.

Reported per scale: edge and origin requests/s, origin requests per part published (the ideal is
2: one blocking reload and one part per part, however many listen), hit ratio (share of edge
requests answered without an origin request), stalls and lateness p95 (how far behind live parts
arrived), and the generator's CPU. No pinning here: the generator may use both cores and shares
them with the server and nginx, so at 10,000 listeners it may not keep every player at the live
edge — then achieved edge requests/s falls short of the expected ~2 per part per listener, and the
row says so; the origin figure is still what the cache let through.

    .venv/bin/python -m bench.cache_collapse [--scales 100,1000,10000] [--window 20] [--procs 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.swarm import Swarm, listener_cap, live_space, machine, tree_cpu_seconds, wait_interval
from townhall.config import MediaConfig

SETTLE = 3.0  # s after the last arrival before the window opens


def _log_offset(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _count(path: Path, start: int, end: int) -> dict[str, int]:
    """Edge requests, origin requests and cache hits among the access-log lines in [start, end)."""
    with path.open("rb") as log:
        log.seek(start)
        chunk = log.read(max(0, end - start))
    edge = origin = hits = 0
    for line in chunk.splitlines():
        edge += 1
        fields = line.split(b" ", 2)
        if fields[0] != b"-":
            origin += 1
        if len(fields) > 1 and fields[1] == b"HIT":
            hits += 1
    return {"edge": edge, "origin": origin, "hits": hits}


def run(scales: list[int], window: float, procs: int) -> dict[str, Any]:
    part = MediaConfig().part_seconds
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        live_space(Path(tmp), edge=True, edge_connections=2 * max(scales) + 4096) as live,
    ):
        assert live.edge is not None
        log = live.edge.access_log
        url = live.media_url(live.edge.url)
        for listeners in scales:
            with Swarm("llhls", url, procs) as swarm:
                spread = min(5.0, max(0.5, listeners / 2000))
                swarm.add(listeners, spread)
                wait_interval(spread + SETTLE)
                swarm.mark()
                start, gen0, t0 = _log_offset(log), swarm.cpu_seconds(), time.monotonic()
                wait_interval(window)
                seen = swarm.collect()
                end, wall = _log_offset(log), time.monotonic() - t0
                gen_cpu = (swarm.cpu_seconds() - gen0) / wall
            counts = _count(log, start, end)
            published = wall / part
            row = {
                "listeners": listeners,
                "edge_rps": counts["edge"] / wall,
                "origin_rps": counts["origin"] / wall,
                "origin_requests_per_part": counts["origin"] / published,
                "hit_ratio": 1 - counts["origin"] / counts["edge"] if counts["edge"] else None,
                "cache_status_hit_share": counts["hits"] / counts["edge"]
                if counts["edge"]
                else None,
                "stalls": seen.stalls,
                "errors": dict(seen.errors),
                "lateness_p95_s": seen.lateness_p95(),
                "generator_cpu_share": gen_cpu,  # of one core; up to 2.0 on this machine
                "expected_edge_rps": listeners * 2 / part,
                "client_requests_per_s": seen.requests / wall,
                "window_s": wall,
            }
            rows.append(row)
            _print_row(row)
        server_cpu = tree_cpu_seconds([live.server.proc.popen.pid])
    notes = (
        f"Edge = nginx with deploy/nginx/townhall.conf; {procs} generator processes, not pinned "
        "(both cores, shared with the server, the speaker bot and nginx); windows of "
        f"{window:.0f} s after the listeners joined and settled {SETTLE:.0f} s. Counts from the "
        "edge access log: a line with an upstream address is an origin request. "
        f"Parts published = window / {part:.2f} s. hit_ratio = 1 − origin/edge requests. "
        "expected_edge_rps = 2 requests (blocking reload + hinted part) per part per listener; "
        "where edge_rps falls short, the generator could not keep all listeners at live (see "
        f"generator_cpu_share and lateness_p95_s). Server CPU total {server_cpu:.0f} s. "
        f"Machine: {machine()}."
    )
    return {"rows": rows, "notes": notes}


def _print_row(row: dict[str, Any]) -> None:
    late = row["lateness_p95_s"]
    print(
        f"{row['listeners']:>7} {row['edge_rps']:>9.0f} {row['expected_edge_rps']:>9.0f}"
        f" {row['origin_rps']:>9.1f} {row['origin_requests_per_part']:>11.2f}"
        f" {(row['hit_ratio'] or 0) * 100:>8.2f}% {row['stalls']:>7}"
        f" {'-' if late is None else f'{late * 1000:.0f} ms':>9}"
        f" {row['generator_cpu_share'] * 100:>8.0f}%  {row['errors'] or ''}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", default="100,1000,10000")
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    fd_cap = listener_cap(args.procs)  # the origin sees only the edge's upstream connections
    if not scales or any(not 1 <= s <= fd_cap for s in scales):
        parser.error(f"--scales: listener counts 1..{fd_cap} (open-files limit)")
    if not 1 <= args.window <= 300 or not 1 <= args.procs <= 32:
        parser.error("--window 1..300, --procs 1..32")
    began = time.monotonic()
    print(
        f"{'listen':>7} {'edge r/s':>9} {'expected':>9} {'origin r/s':>9} {'origin/part':>11}"
        f" {'hit':>9} {'stalls':>7} {'late p95':>9} {'gen CPU':>9}"
    )
    result = run(scales, args.window, args.procs)
    result["wall_s"] = time.monotonic() - began
    print("budget (SPEC): origin requests constant in audience size (≈ 2 per part published)")
    print(f"wall time {result['wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
