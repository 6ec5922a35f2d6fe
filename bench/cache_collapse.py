"""Cache collapse: origin requests per second behind each shipped edge (nginx and Varnish) with
100, 1,000 and 10,000 simulated LL-HLS listeners, and how much later than a direct listener a
listener behind each edge gets the live edge. The SPEC budgets: origin requests constant in
audience size; lateness behind the edge vs direct p95 ≤ +100 ms.

One server, one live Space with a `townhall speak --tone 440` bot, and every edge in front of it
(started with harness.start_edge from deploy/nginx/townhall.conf or deploy/varnish/townhall.vcl,
sized for the largest audience × 2 connections). First the smallest audience plays straight from
the origin (the lateness reference) and through every edge, all at the same time, so that a busy
machine weighs on each alike; then each larger audience plays through each edge in turn. The listeners
(`townhall.loadtest.llhls.run_listener`: blocking playlist reload + preload-hinted part per part) run in several
generator processes; after they have joined and settled, a window of `--window` seconds is counted
by the edge itself (`Edge.counts`: nginx's access log, Varnish's statistics): client requests,
origin requests, cache hits.

Reported per edge and scale: edge and origin requests/s, origin requests per part published (the
ideal is 2: one blocking reload and one part per part, however many listen), hit ratio (share of
edge requests answered without an origin request), stalls and lateness p95 (how far behind the
part's media end it arrived) and, against the direct reference, how much later that is; and the
generator's CPU. No pinning here: the generator may use both cores and shares them with the server
and the edge, so at 10,000 listeners it may not keep every player at the live edge — then achieved
edge requests/s falls short of the expected ~2 per part per listener, and the row says so; the
origin figure is still what the cache let through.

    .venv/bin/python -m bench.cache_collapse [--scales 100,1000,10000] [--edges nginx,varnish]
        [--window 20] [--procs 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.swarm import Swarm, listener_cap, live_space, machine, wait_interval
from townhall.config import MediaConfig
from townhall.harness import EDGE_KINDS, Edge, EdgeCounts, EdgeKind, start_edge
from townhall.loadtest.procs import tree_cpu_seconds

SETTLE = 3.0  # s after the last arrival before the window opens


Audience = tuple[str, Edge | None]  # a media playlist URL, and the edge it goes through (if any)


def play(
    audiences: list[Audience], listeners: int, window: float, procs: int
) -> list[dict[str, Any]]:
    """`listeners` players on each audience's URL, all at the same time (so that each meets the
    same machine); one window's figures for each (edge counts where there is an edge)."""
    with contextlib.ExitStack() as stack:
        swarms = [stack.enter_context(Swarm("llhls", url, procs)) for url, _ in audiences]
        spread = min(5.0, max(0.5, listeners / 2000))
        for swarm in swarms:
            swarm.add(listeners, spread)
        wait_interval(spread + SETTLE)
        for swarm in swarms:
            swarm.mark()
        before = [edge.counts() if edge else EdgeCounts(0, 0, 0) for _, edge in audiences]
        gen0, t0 = [swarm.cpu_seconds() for swarm in swarms], time.monotonic()
        wait_interval(window)
        seen = [swarm.collect() for swarm in swarms]
        wall = time.monotonic() - t0
        gen_cpu = sum(swarm.cpu_seconds() for swarm in swarms) - sum(gen0)
        after = [edge.counts() if edge else EdgeCounts(0, 0, 0) for _, edge in audiences]
    published = wall / MediaConfig().part_seconds
    rows = []
    for (_, edge), window_seen, first, last in zip(audiences, seen, before, after, strict=True):
        counts = last - first
        row: dict[str, Any] = {
            "edge": edge.kind if edge is not None else "direct",
            "listeners": listeners,
            "alongside": len(audiences),  # audiences playing at the same time
            "stalls": window_seen.stalls,
            "errors": dict(window_seen.errors),
            "lateness_p95_s": window_seen.lateness_p95(),
            "generator_cpu_share": gen_cpu / wall,  # all audiences; of one core, up to 2.0
            "expected_edge_rps": listeners * 2 / MediaConfig().part_seconds,
            "client_requests_per_s": window_seen.requests / wall,
            "window_s": wall,
        }
        if edge is not None:
            row |= {
                "edge_rps": counts.client / wall,
                "origin_rps": counts.origin / wall,
                "origin_requests_per_part": counts.origin / published,
                "hit_ratio": 1 - counts.origin / counts.client if counts.client else None,
                "cache_status_hit_share": counts.hits / counts.client if counts.client else None,
            }
        rows.append(row)
    return rows


def run(scales: list[int], edges: list[EdgeKind], window: float, procs: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        live_space(Path(tmp)) as live,
        contextlib.ExitStack() as running,
    ):
        fronts: list[Edge] = []
        for kind in edges:  # all in front of the same origin; an idle edge costs nothing
            connections = 2 * max(scales) + 4096
            fronts.append(
                start_edge(live.server.url, Path(tmp) / kind, kind=kind, connections=connections)
            )
            running.callback(fronts[-1].proc.stop)
        # Lateness: the smallest audience straight from the origin and through every edge, all
        # at the same time, so a busy machine weighs on each alike.
        direct, *behind = play(
            [
                (live.media_url(live.server.url), None),
                *((live.media_url(e.url), e) for e in fronts),
            ],
            min(scales),
            window,
            max(1, procs // (len(fronts) + 1)),
        )
        for row in [direct, *behind]:
            late, ref = row["lateness_p95_s"], direct["lateness_p95_s"]
            if row is not direct and late is not None and ref is not None:
                row["lateness_p95_vs_direct_s"] = late - ref
            rows.append(row)
            _print_row(row)
        # Flatness: each larger audience through each edge in turn.
        for listeners in scales[1:]:
            for edge in fronts:
                (row,) = play([(live.media_url(edge.url), edge)], listeners, window, procs)
                rows.append(row)
                _print_row(row)
        server_cpu = tree_cpu_seconds([live.server.proc.popen.pid])
    part = MediaConfig().part_seconds
    notes = (
        f"Edges: {', '.join(f'{k} with deploy/{k}/' for k in edges)}townhall config, all in "
        f"front of the same origin. At {min(scales):,} listeners the origin itself (direct, the "
        "lateness reference) and every edge each had that audience at the same time "
        "(alongside = how many audiences played at once); larger audiences played through each "
        f"edge in turn. {procs} generator processes (shared among audiences playing at once), "
        "not pinned (both cores, shared with the server, the speaker bot and the edges); windows of {window:.0f} s after the listeners "
        f"joined and settled {SETTLE:.0f} s. Counts from the edge itself (nginx: its access log, "
        "a line with an upstream address is an origin request; Varnish: varnishstat's "
        "client_req, backend_req + s_pipe, cache_hit). "
        f"Parts published = window / {part:.2f} s. hit_ratio = 1 − origin/edge requests. "
        "Lateness = when the part (and the blocking reload that lists it) arrived − the part's "
        "media end; vs direct = p95 behind the edge − p95 direct. "
        "expected_edge_rps = 2 requests (blocking reload + hinted part) per part per listener; "
        "where edge_rps falls short, the generator could not keep all listeners at live (see "
        f"generator_cpu_share and lateness_p95_s). Server CPU total {server_cpu:.0f} s. "
        f"Machine: {machine()}."
    )
    return {"rows": rows, "notes": notes}


def _print_row(row: dict[str, Any]) -> None:
    late = row["lateness_p95_s"]
    extra = row.get("lateness_p95_vs_direct_s")
    print(
        f"{row['edge']:>8} {row['listeners']:>7} {row.get('edge_rps', 0):>9.0f}"
        f" {row['expected_edge_rps']:>9.0f} {row.get('origin_rps', 0):>9.1f}"
        f" {row.get('origin_requests_per_part', 0):>11.2f}"
        f" {(row.get('hit_ratio') or 0) * 100:>8.2f}% {row['stalls']:>7}"
        f" {'-' if late is None else f'{late * 1000:.0f} ms':>9}"
        f" {'-' if extra is None else f'{extra * 1000:+.0f} ms':>9}"
        f" {row['generator_cpu_share'] * 100:>8.0f}%  {row['errors'] or ''}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", default="100,1000,10000")
    parser.add_argument("--edges", default=",".join(EDGE_KINDS), help="nginx,varnish or one")
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    fd_cap = listener_cap(args.procs)  # the origin sees only the edge's upstream connections
    if not scales or any(not 1 <= s <= fd_cap for s in scales):
        parser.error(f"--scales: listener counts 1..{fd_cap} (open-files limit)")
    edges = [e.strip() for e in args.edges.split(",") if e.strip()]
    if not edges or any(e not in EDGE_KINDS for e in edges):
        parser.error(f"--edges: one or more of {', '.join(EDGE_KINDS)}")
    if not 1 <= args.window <= 300 or not 1 <= args.procs <= 32:
        parser.error("--window 1..300, --procs 1..32")
    began = time.monotonic()
    print(
        f"{'edge':>8} {'listen':>7} {'edge r/s':>9} {'expected':>9} {'origin r/s':>9} {'origin/part':>11}"
        f" {'hit':>9} {'stalls':>7} {'late p95':>9} {'vs direct':>9} {'gen CPU':>9}"
    )
    result = run(scales, [e for e in EDGE_KINDS if e in edges], args.window, args.procs)
    result["wall_s"] = time.monotonic() - began
    print("budget (SPEC): origin requests constant in audience size (≈ 2 per part published)")
    print("budget (SPEC): lateness behind the edge vs direct p95 ≤ +100 ms")
    print(f"wall time {result['wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
