"""Listener density: how many listeners one core holds — townhall's origin, townhall behind each
shipped edge (`edge`: nginx, `varnish`: Varnish), and Icecast 2.4 — ramped side by side in one run
on the same machine.

Pinning: the server side runs on core 0 — the origin process (and its threads), for an edge run
the edge *and* the origin together, Icecast alone for its run; the load generator runs on core 1 —
the listener worker processes, and also the audio source (the `townhall speak --tone 440` bot, or
ffmpeg for Icecast), which count as generator side. The generator's CPU (sum over its processes,
as a share of core 1) is measured at every step; a step where it reaches 90 % is flagged
generator-limited, and a result stopped there is a lower bound.

Listeners:
- townhall (origin, edge, varnish), `--listener lean` (default): `townhall.loadtest.page`, what
  the real listener page asks — the snapshot once a second, sampled presence, one streamed request
  per segment — the same listener `townhall loadtest` uses, on the lean HTTP client
  (`townhall.loadtest.wire`, a fraction of the generator's CPU: bench/generator_cost.py); `--listener
  page`: the same listener on the asyncio-streams client (the reference); `--listener llhls`:
  `townhall.loadtest.llhls.run_listener`, what hls.js (and other LL-HLS players) ask — a blocking
  playlist reload and the preload-hinted part per part. Either way a stall is a part that arrives
  later than its media end + PART-HOLD-BACK;
- Icecast: a progressive HTTP GET of the mount, bytes counted; the same audio (a 440 Hz tone,
  AAC-LC ADTS at townhall's AAC bitrate), forwarded in chunks of one part (0.32 s); a stall is
  media received falling more than the same PART-HOLD-BACK behind the wall time since the first
  byte (burst on connect off, so no initial burst hides it).

The audience: `--sample` (300) Python listeners as above measure what a listener hears; past
them, wrk (`bench.bulk`, installed by scripts/setup.sh --bench) brings the rest of each step at
about a tenth of their CPU: the same segment and snapshot requests for townhall (an answer other
than 200, or a connection completing fewer segments than the stream made, is an error), the same
progressive GET for Icecast (a connection the server ends is an error). The generator then holds
the ~19,000 listeners one server process's open-files limit allows at about half its core
(measured against Icecast), so the figures are the server's. `--sample 0`: every listener in
Python, as before (the generator saturates near 6,000).

Ramp: for each step the listeners are added (spread over up to 3 s), left to settle, then a window
(`--hold` seconds) measures server CPU (share of core 0), RSS, stalls, errors, lateness and
requests/s. A target stops at the first step with a stall, an error or a generator-limited
window; "listeners held" is the last clean step. Listeners per core = listeners held when the
server's limit was reached (stall/error); otherwise (generator, max steps) projected linearly from
the held step's CPU share, and said so. The ratios compare listeners per core.

    .venv/bin/python -m bench.density [--max-listeners N] [--hold 8] [--targets origin,edge,varnish,icecast]
        [--procs 3] [--sample 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.bulk import Bulk, BulkWindow, Live, Unlocated
from bench.bulk import available as bulk_available
from bench.icecast import measure_byte_rate, start_icecast
from bench.swarm import (
    Swarm,
    affinity,
    core_busy_seconds,
    listener_cap,
    live_space,
    machine,
    pin,
    wait_interval,
)
from townhall.config import MediaConfig
from townhall.harness import EdgeKind
from townhall.loadtest.llhls import parse_playlist
from townhall.loadtest.page import SNAPSHOT_STREAMED_S
from townhall.loadtest.procs import tree_cpu_seconds, tree_rss_bytes

SERVER_CORE = {0}
GENERATOR_CORE = {1}
GENERATOR_LIMIT = 0.90  # of core 1: above this the generator, not the server, may be the limit
STEPS = (100, 200, 400, 700, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 10000, 12000, 15000, 18000)
SAMPLE = 300  # Python listeners measuring what a listener hears; wrk brings the rest
CORE_FULL = 0.97  # busy share of core 1 (all processes) that also counts as generator-limited
SETTLE = 2.0  # s after the last arrival of a step before its window opens
REFERENCE = 3.0  # s of the zero-listener reference window
TARGETS = ("origin", "edge", "varnish", "icecast")
EDGES: dict[str, EdgeKind] = {"edge": "nginx", "varnish": "varnish"}  # target → edge in front


@dataclass
class Target:
    name: str
    kind: str  # "llhls" | "progressive"
    url: str
    server_pids: list[int]  # core 0: what is measured as the server
    source_pids: list[int]  # core 1: the audio source, counted as generator side
    byte_rate: float = 0.0
    hold_back: float = 0.0
    locate: Callable[[], Live] | None = None  # the bulk's segment listeners: where the stream is
    access_log: Path | None = None  # the bulk's progressive listeners: where drops are logged

    def bulk(self) -> Bulk:
        if self.kind == "progressive":
            return Bulk("progressive", self.url, GENERATOR_CORE, access_log=self.access_log)
        return Bulk("segments", self.url, GENERATOR_CORE, locate=self.locate)


def server_cap() -> int:
    """Listeners one server process can hold, one connection each, under the open-files hard
    limit (which it cannot raise), with a margin for everything else it opens."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 1024


def steps_up_to(limit: int) -> list[int]:
    steps = [s for s in STEPS if s <= limit]
    return [*steps, limit] if not steps or steps[-1] != limit else steps


def _window(
    target: Target, swarm: Swarm | None, seconds: float, bulk: Bulk | None = None
) -> dict[str, Any]:
    """One measurement window: CPU of server and generator, RSS, what the listeners saw."""
    gen_pids = target.source_pids + (swarm.pids if swarm else []) + (bulk.pids if bulk else [])
    if swarm is not None:
        swarm.mark()
    if bulk is not None:
        bulk.mark()
    server0, gen0, t0 = (
        tree_cpu_seconds(target.server_pids),
        tree_cpu_seconds(gen_pids),
        time.monotonic(),
    )
    busy0 = [core_busy_seconds(c) for c in (*SERVER_CORE, *GENERATOR_CORE)]
    wait_interval(seconds)
    seen = swarm.collect() if swarm is not None else None
    crowd = bulk.collect() if bulk is not None else BulkWindow()
    wall = time.monotonic() - t0
    server = (tree_cpu_seconds(target.server_pids) - server0) / wall
    generator = (tree_cpu_seconds(gen_pids) - gen0) / wall
    core0, core1 = (
        (core_busy_seconds(c) - b) / wall
        for c, b in zip((*SERVER_CORE, *GENERATOR_CORE), busy0, strict=True)
    )
    errors = dict(seen.errors) if seen else {}
    for kind, count in (
        ("bulk_refused", crowd.refused),
        ("bulk_http", crowd.other - crowd.refused),
        ("bulk_dropped", crowd.dropped),
        ("bulk_unstarted", crowd.unstarted),
        ("bulk_behind", crowd.behind),
    ):
        if count:
            errors[kind] = count
    return {
        "listeners": (seen.listeners if seen else 0) + crowd.listeners,
        "sampled_listeners": seen.listeners if seen else 0,
        "bulk_listeners": crowd.listeners,
        "bulk_segments_per_expected": (crowd.segments / crowd.expected) if crowd.expected else None,
        "server_cpu_share": server,
        "server_rss_bytes": tree_rss_bytes(target.server_pids),
        "generator_cpu_share": generator,
        # Limited when the generator used its core, or its core was full anyway (other work on
        # a shared machine starves it just the same).
        "generator_limited": generator >= GENERATOR_LIMIT or core1 >= CORE_FULL,
        "core0_busy_share": core0,
        "core1_busy_share": core1,
        "stalls": seen.stalls if seen else 0,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        # Why a wave of the bulk could not start, if one could not.
        "unlocated": bulk.unlocated if bulk is not None and crowd.unstarted else None,
        "lateness_p95_s": seen.lateness_p95() if seen else None,
        # The bulk counts the requests it completed (a request still streaming at the window's
        # end is counted in the next one).
        "requests_per_s": ((seen.requests if seen else 0) + crowd.segments + crowd.snapshots)
        / wall,
        "parts_per_s": (seen.parts / wall) if seen else 0.0,
    }


def ramp(
    target: Target, steps: list[int], procs: int, hold: float, sample: int | None
) -> dict[str, Any]:
    """Ramp `target` through `steps`; return its per-step rows and summary. With `sample`, the
    Python listeners are that many and wrk (`bench.bulk`) brings the rest of each step."""
    print(f"\n[{target.name}] zero-listener reference ({REFERENCE:.0f} s) …", flush=True)
    reference = _window(target, None, REFERENCE)
    rows: list[dict[str, Any]] = []
    limited_by = "max_steps"
    with (
        Swarm(
            target.kind,
            target.url,
            procs,
            GENERATOR_CORE,
            byte_rate=target.byte_rate,
            hold_back=target.hold_back,
        ) as swarm,
        target.bulk() as bulk,
    ):
        for count in steps:
            sampled = count if sample is None else min(count, sample)
            added = count - swarm.listeners - bulk.listeners
            spread = min(3.0, max(0.5, added / 1000))
            if sampled > swarm.listeners:
                swarm.add(sampled - swarm.listeners, spread)
            if count > sampled:
                bulk.add(count - sampled - bulk.listeners, spread)
            wait_interval(spread + SETTLE)
            row = _window(target, swarm, hold, bulk if bulk.listeners else None)
            row["listeners"] = count
            rows.append(row)
            _print_row(target.name, row)
            if row["errors"]:
                limited_by = "error"
            elif row["generator_limited"]:
                limited_by = "generator"
            elif row["stalls"]:
                limited_by = "stall"
            else:
                continue
            break
    clean = [r for r in rows if not (r["errors"] or r["stalls"] or r["generator_limited"])]
    held = clean[-1] if clean else None
    summary: dict[str, Any] = {
        "listeners_held": held["listeners"] if held else 0,
        "limited_by": limited_by,
        "cpu_per_listener": held["server_cpu_share"] / held["listeners"] if held else None,
        "rss_per_listener_bytes": (
            (held["server_rss_bytes"] - reference["server_rss_bytes"]) / held["listeners"]
            if held
            else None
        ),
        "rss_marginal_per_listener_bytes": _marginal_rss(clean, held),
        "requests_per_s_per_listener": held["requests_per_s"] / held["listeners"] if held else None,
        "reference_cpu_share": reference["server_cpu_share"],
        "reference_rss_bytes": reference["server_rss_bytes"],
        "hold_back_s": target.hold_back or None,
    }
    if held is None:
        summary["listeners_per_core"], summary["listeners_per_core_basis"] = 0.0, "none held"
    elif limited_by in ("stall", "error"):
        summary["listeners_per_core"] = float(held["listeners"])
        summary["listeners_per_core_basis"] = "measured: the server's limit was reached"
    else:
        share = max(held["server_cpu_share"], 1e-3)
        summary["listeners_per_core"] = held["listeners"] / min(1.0, share)
        summary["listeners_per_core_basis"] = (
            f"lower bound, projected from {share * 100:.0f} % of core 0 at the held step "
            f"(stopped by {limited_by})"
        )
    reference["listeners"] = 0
    return {"summary": summary, "steps": [reference, *rows]}


def _marginal_rss(clean: list[dict[str, Any]], held: dict[str, Any] | None) -> float | None:
    """RSS per listener between the clean step nearest half the held count and the held step.

    Growth over the zero-listener reference divided by the listeners also counts what a process
    allocates once, on its first listeners: modules imported by the first requests, schemas and
    caches built on first use, allocator arenas (measured: ~13 MB over the first 300 listeners;
    docs/architecture.md); the marginal figure is what one more listener costs."""
    if held is None:
        return None
    lower = [r for r in clean if r["listeners"] <= held["listeners"] / 2]
    if not lower:
        return None
    half = lower[-1]
    return (held["server_rss_bytes"] - half["server_rss_bytes"]) / (
        held["listeners"] - half["listeners"]
    )


def _print_row(name: str, row: dict[str, Any]) -> None:
    late = row["lateness_p95_s"]
    flag = " generator-limited (lower bound)" if row["generator_limited"] else ""
    errors = f" {row['error_kinds']}" if row["errors"] else ""
    print(
        f"[{name}] {row['listeners']:>6} listeners: server {row['server_cpu_share'] * 100:5.1f}%"
        f" of core 0, RSS {row['server_rss_bytes'] / 2**20:7.1f} MB, generator"
        f" {row['generator_cpu_share'] * 100:5.1f}% of core 1 (cores busy"
        f" {row['core0_busy_share'] * 100:.0f}/{row['core1_busy_share'] * 100:.0f}%),"
        f" {row['requests_per_s']:8.0f} req/s,"
        f" stalls {row['stalls']}, errors {row['errors']}{errors}, lateness p95"
        f" {'-' if late is None else f'{late * 1000:.0f} ms'}{flag}",
        flush=True,
    )
    if row.get("unlocated"):
        print(f"[{name}]   a wave could not start: {row['unlocated']}", flush=True)


def bitrate() -> int:
    """townhall's AAC bitrate as the server under test will use it (env override included)."""
    raw = os.environ.get("TOWNHALL_AAC_BITRATE")
    return int(raw) if raw else MediaConfig().aac_bitrate


def run(
    targets: list[str],
    max_listeners: int,
    hold: float,
    procs: int,
    listener: str = "lean",
    sample: int | None = None,
) -> dict[str, Any]:
    steps = steps_up_to(max_listeners)
    results: dict[str, dict[str, Any]] = {}
    part = MediaConfig().part_seconds
    hold_back = 3 * part  # replaced by the origin's PART-HOLD-BACK when townhall runs
    with affinity(GENERATOR_CORE):  # this orchestrating process stays off the server's core
        for name in ("origin", *EDGES):
            if name not in targets:
                continue
            # A fresh server per target: an origin pushed past its limit must not leave the next
            # target a backlog or a media clock that fell behind.
            with (
                tempfile.TemporaryDirectory() as tmp,
                live_space(
                    Path(tmp),
                    server_cpus=SERVER_CORE,
                    bot_cpus=GENERATOR_CORE,
                    edge=EDGES.get(name),
                    edge_connections=2 * max_listeners + 2048,
                ) as live,
            ):
                hold_back = live.part_hold_back()
                base, pids = live.server.url, [live.server.proc.popen.pid]
                if live.edge is not None:
                    base, pids = live.edge.url, [*pids, live.edge.proc.popen.pid]
                url = (
                    f"{base}/s/{live.space.id}"
                    if listener in ("page", "lean")
                    else live.media_url(base)
                )
                target = Target(name, listener, url, pids, [live.bot.popen.pid])
                target.locate = functools.partial(
                    locate_live, base, live.media_url(live.server.url), live.space.id
                )
                results[name] = ramp(target, steps, procs, hold, sample)
        if "icecast" in targets:
            with affinity(SERVER_CORE):
                icecast = start_icecast(bitrate())
            try:
                with affinity(GENERATOR_CORE):
                    source = icecast.start_source(part)
                pin(icecast.proc.popen.pid, SERVER_CORE)
                byte_rate = measure_byte_rate(icecast.stream_url)
                target = Target(
                    "icecast",
                    "progressive",
                    icecast.stream_url,
                    [icecast.proc.popen.pid],
                    [source.popen.pid],
                    byte_rate=byte_rate,
                    hold_back=hold_back,
                    access_log=icecast.workdir / "log" / "access.log",
                )
                results["icecast"] = ramp(target, steps, procs, hold, sample)
                results["icecast"]["summary"]["byte_rate"] = byte_rate
            finally:
                icecast.stop()
    return report(results, steps, hold, procs, hold_back, listener, sample)


LOCATE_S = 10.0  # how long a wave of bulk listeners may take to find the live stream


def locate_live(base: str, media_url: str, space_id: str) -> Live:
    """Where the bulk's segment listeners start: the segment in production now (the preload
    hint of the origin's live playlist), asked through `base` (the origin or the edge).

    Asked as a player asks: a 503 or 429 is asked again after its Retry-After, for up to
    `LOCATE_S`; any other answer but 200, or none in that time, is `Unlocated`."""
    deadline = time.monotonic() + LOCATE_S
    while True:
        try:
            answer = httpx.get(media_url, timeout=max(1.0, deadline - time.monotonic()))
        except httpx.HTTPError as error:
            raise Unlocated(f"the live playlist: {error!r}") from error
        retry = answer.headers.get("retry-after", "")
        if answer.status_code not in (429, 503) or not retry.isdigit():
            break
        if time.monotonic() + int(retry) > deadline:
            raise Unlocated(f"the live playlist: {answer.status_code} for {LOCATE_S:g} s")
        time.sleep(int(retry))  # the server asked to be asked again then
    if answer.status_code != 200:
        raise Unlocated(f"the live playlist: {answer.status_code} {answer.text[:200]!r}")
    hint = parse_playlist(answer.text, media_url).hint
    if hint is None:
        raise Unlocated(f"the live playlist has no preload hint: {answer.text[-300:]!r}")
    media = MediaConfig()
    return Live(
        base=base,
        segment_prefix=urlsplit(hint.uri).path.rpartition("/")[0] + "/",
        msn=hint.msn,
        segment_s=media.part_seconds * media.parts_per_segment,
        snapshot_path=f"/api/spaces/{space_id}/snapshot",
        snapshot_s=SNAPSHOT_STREAMED_S,
    )


def _ratio(results: dict[str, dict[str, Any]], a: str, b: str) -> float | None:
    if a not in results or b not in results:
        return None
    top = results[a]["summary"]["listeners_per_core"]
    bottom = results[b]["summary"]["listeners_per_core"]
    return top / bottom if bottom else None


def report(
    results: dict[str, dict[str, Any]],
    steps: list[int],
    hold: float,
    procs: int,
    phb: float,
    listener: str = "lean",
    sample: int | None = None,
) -> dict[str, Any]:
    summary: dict[str, Any] = {name: r["summary"] for name, r in results.items()}
    summary["ratio_origin_icecast"] = _ratio(results, "origin", "icecast")
    summary["ratio_edge_icecast"] = _ratio(results, "edge", "icecast")
    summary["ratio_varnish_icecast"] = _ratio(results, "varnish", "icecast")
    notes = (
        "Core 0: the server side only (origin; nginx master+worker, or varnishd's manager and "
        "child, with the origin for the edge runs; icecast). Core 1: the load generator — listener workers "
        f"({procs} processes), the orchestrator, and the audio source (townhall speaker bot, or "
        "the ffmpeg Icecast source), all counted in generator_cpu_share. Server CPU and RSS are "
        "summed over each server's process tree; RSS per listener is growth over the "
        f"zero-listener reference. Windows of {hold:.0f} s after {SETTLE:.0f} s of settling. "
        "A step is generator-limited when generator_cpu_share ≥ 0.90 or core 1 was ≥ 97 % busy "
        "with anything (core0/1_busy_share: all processes, from /proc/stat; a core 0 busier than "
        "server_cpu_share means other work competed with the server); a target stopped there "
        "(or at the last step) is a lower bound. "
        + (
            f"Past the first {sample} listeners (Python, measuring every part's lateness), wrk "
            "brings the rest of each step (bench/bulk.py), counted with the generator: townhall "
            "— the segment in production, streamed, then the next, and the snapshot every 15 s; "
            "an answer other than 200 or a connection completing fewer segments than the stream "
            "made is an error; Icecast — the same progressive GET, a connection the server ends "
            "is an error. "
            if sample
            else ""
        )
        + "townhall listeners: "
        + (
            "the listener page's requests (townhall.loadtest.page: snapshot 1/s until the stream "
            "brings the room state, then every 15 s, sampled presence, one streamed request per "
            f"segment; {listener} HTTP client)"
            if listener in ("page", "lean")
            else "blocking playlist reload + preload-hinted part (townhall.loadtest.llhls)"
        )
        + ", stall = part later than media end + PART-HOLD-BACK. "
        "Icecast listeners: progressive GET, burst-on-connect off, stall = media received "
        f"more than {phb:.2f} s (origin PART-HOLD-BACK) behind wall time since the first byte. "
        "Ratios compare listeners per core: the held count when the server's limit was reached "
        "(stall/error), else projected from the held step's CPU share (see "
        "listeners_per_core_basis)."
    )
    return {
        "summary": summary,
        "steps": {name: r["steps"] for name, r in results.items()},
        "ramp": steps,
        "machine": machine(),
        "notes": notes,
    }


def print_summary(result: dict[str, Any]) -> None:
    summary = result["summary"]
    names = [n for n in TARGETS if n in summary]
    width = 22
    print("\n" + f"{'':<34}" + "".join(f"{n:>{width}}" for n in names))

    def line(label: str, fmt: Any) -> None:
        print(f"{label:<34}" + "".join(f"{fmt(summary[n]):>{width}}" for n in names))

    line("listeners held", lambda s: str(s["listeners_held"]))
    line("limited by", lambda s: s["limited_by"])
    line(
        "server CPU per listener",
        lambda s: (
            "-" if s["cpu_per_listener"] is None else f"{s['cpu_per_listener'] * 1e6:.0f} µcore"
        ),
    )
    line(
        "memory per listener",
        lambda s: (
            "-"
            if s["rss_per_listener_bytes"] is None
            else f"{s['rss_per_listener_bytes'] / 1024:.1f} KB"
        ),
    )
    line(
        "memory per added listener",
        lambda s: (
            "-"
            if s.get("rss_marginal_per_listener_bytes") is None
            else f"{s['rss_marginal_per_listener_bytes'] / 1024:.1f} KB"
        ),
    )
    line(
        "requests/s per listener",
        lambda s: (
            "-"
            if s["requests_per_s_per_listener"] is None
            else f"{s['requests_per_s_per_listener']:.2f}"
        ),
    )
    line("listeners per core", lambda s: f"{s['listeners_per_core']:.0f}")
    line("idle server CPU (0 listeners)", lambda s: f"{s['reference_cpu_share'] * 100:.1f}%")
    for key, label, budget in (
        ("ratio_origin_icecast", "origin / Icecast", "≥ 0.5"),
        ("ratio_edge_icecast", "edge / Icecast", "≥ 1"),
        ("ratio_varnish_icecast", "varnish / Icecast", "≥ 1"),
    ):
        value = summary[key]
        print(
            f"{label} listeners per core: {'-' if value is None else f'{value:.2f}'}  (budget {budget})"
        )
    for n in names:
        print(f"  {n}: {summary[n]['listeners_per_core_basis']}")
    print(f"machine: {result['machine']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-listeners", type=int, default=server_cap())
    parser.add_argument("--hold", type=float, default=8.0, help="measurement window per step (s)")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--procs", type=int, default=3, help="generator processes (all on core 1)")
    parser.add_argument(
        "--listener",
        choices=["lean", "page", "llhls"],
        default="lean",
        help="townhall listeners: the listener page's requests (on the lean or the streams HTTP "
        "client), or an hls.js-like LL-HLS player",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=SAMPLE if bulk_available() else 0,
        help="Python listeners measuring lateness and stalls; wrk brings the rest of each step "
        "(bench/bulk.py). 0: every listener in Python (the generator then saturates near 6,000)",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not targets or any(t not in TARGETS for t in targets):
        parser.error(f"--targets: a comma-separated subset of {','.join(TARGETS)}")
    # A Python listener holds two connections, a wrk one holds one: the server's open-files limit
    # (one process) is then the cap.
    fd_cap = listener_cap() if not args.sample else server_cap()
    if not 1 <= args.max_listeners <= fd_cap:
        parser.error(f"--max-listeners 1..{fd_cap} (open-files limit)")
    if args.sample and not bulk_available():
        parser.error("--sample needs wrk (scripts/bench.sh installs it); --sample 0 runs without")
    if not 1 <= args.hold <= 120 or not 1 <= args.procs <= 16:
        parser.error("--hold 1..120, --procs 1..16")
    if len(os.sched_getaffinity(0)) < 2:
        parser.error("needs two cores (server on core 0, generator on core 1)")
    began = time.monotonic()
    result = run(
        targets, args.max_listeners, args.hold, args.procs, args.listener, args.sample or None
    )
    result["wall_s"] = time.monotonic() - began
    print_summary(result)
    print(f"wall time {result['wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
