"""Builds `report.md`, `report.json` and the plots from the figures the benchmarks wrote.

Every budget of the spec gets one row: the figure measured in this run, met or missed, and for a
miss the reason and the fix as far as the measurements show them. The reasons are written here, by
people who read the figures; the figures are only ever read from the run's own files, so a rebuilt
report can never show a number that run did not measure.

    .venv/bin/python -m bench.report [--out bench]     # rebuild from <out>/results/*.json
    .venv/bin/python -m bench.report --section soak    # only that section (and its plot), in place

A benchmark outside the suite (the hour-long `bench.soak`) is added to a report with `--section`:
its section is written from its own results file and every other section stays as it was.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

Results = dict[str, Any]

SPEC_LISTENER_KB = 20
GENERATOR_GOAL = 20_000  # listeners the load generator must hold, so density is the server's
SPEC_JOINS_PER_S = 5000
SPEC_JOIN_P99_S = 0.250
SIGNED_IN_STORM_WHY = (
    "A signed-in join is three uncacheable calls (guest sign-in, the Space with a bearer, me, "
    "about 0.4 ms of CPU each alone) before the cached media, so 5,000 in a second ask two API "
    "processes for more CPU than two cores have. The Varnish edge now lets each node have at most "
    "64 API calls in flight and answers the rest 503 + Retry-After itself at once (before: the "
    "refusals queued behind the nodes' saturated loops and none came within a second). What is "
    "left is this machine: the two API processes, the media process, Redis, PostgreSQL, Varnish "
    "and the four generator processes share two cores, saturated through the storm (the "
    "generator itself started arrivals up to a few hundred ms late, which counts against the "
    "second). Measuring the claim needs the API processes on cores of their own."
)
# Why a storm behind an edge misses the join budget, by edge (measured; see the join storm table).
EDGE_STORM_WHY = {
    "nginx edge": "First audio is the newest part, which the player waits for (the preload hint: "
    "up to a part, 0.32 s) and which nginx's cache lock hands to its waiters only when it has "
    "polled (every 500 ms): the p99 is mostly those two waits. At the p50 each cached request "
    "of the join took 20-25 ms and the Space's own (not cached: it reaches the origin, busy "
    "with the storm) about 250 ms; see the per-request row of the join storm table. Varnish "
    "streams an in-flight fill to every waiter with no polling.",
    "varnish edge": "Varnish holds a worker thread for each client connection in use; 5,000 "
    "arriving in a second on this 2-core machine, shared with the origin and the four "
    "generator processes, saturated both cores (the edge's and origin's CPU and the "
    "generators' together exceeded the wall time) and every request waited its turn for a "
    "thread and a core. nginx's event loop answered the same storm at a fraction of the CPU. "
    "An edge on cores of its own, or nginx in front for joins, is the fix here.",
}
# The reference request's CPU on the machine of an earlier whole report, to read absolute figures
# across machines (the report at that commit has the rest of that run).
EARLIER_REFERENCE = (0.46, "the 2-core Intel Xeon of the report at commit 6565b1f")
SPEC_FAILOVER_GAP_S = 5.0
SPEC_EDGE_LATE_S = 0.100  # lateness behind the edge vs direct, p95
DRAIN_GAP_S = 1.0  # restarting one node at a time: no audible gap longer than a second
SOAK_TOLERANCE = 0.10  # flat: the last third of a soak's rows within 10 % of the first third
FLAT_FACTOR = (
    1.5  # "constant in audience size": origin req/s at the largest audience ≤ 1.5 × smallest
)


@dataclass(frozen=True)
class Verdict:
    """One budget of the spec against this run."""

    what: str
    budget: str
    figure: str
    met: bool | None  # None: not measured in this run
    note: str = ""

    @property
    def mark(self) -> str:
        return {True: "met", False: "**missed**", None: "not measured"}[self.met]


def _get(data: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(data, dict) and isinstance(key, str):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def _t(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.0f} ms" if abs(seconds) < 1 else f"{seconds:.2f} s"


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.1f} %"


def _ms(value: float | None) -> str:
    """A CPU time per request, in milliseconds (given in milliseconds)."""
    return "–" if value is None else f"{value:.2f} ms"


def _num(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _latency(r: Results) -> list[Verdict]:
    s = _get(r, "latency", "summary") or {}
    # The browser is the listener the budget names; the Python player stands in when it did not run.
    source, who = "hlsjs", "hls.js in Chromium"
    if s.get("hlsjs_mouth_to_ear_p95_s") is None:
        source, who = "python", "Python LL-HLS player"
    p95, p50 = s.get(f"{source}_mouth_to_ear_p95_s"), s.get(f"{source}_mouth_to_ear_p50_s")
    figure = f"p95 {_t(p95)}, p50 {_t(p50)} ({who})"
    added = s.get("stage_added_p95_s")
    page = _get(r, "latency", "hlsjs") or {}
    stalls = page.get("stalls_in_window")
    stream, other = page.get("requests_per_s"), page.get("other_requests_per_s")
    both = None if stream is None or other is None else stream + other
    return [
        Verdict(
            "speaker mouth → listener ear, the real listener page",
            "p95 ≤ 1.2 s, no stalls",
            figure + ("" if stalls is None else f", {stalls} stalls"),
            None if p95 is None else p95 <= 1.2 and not stalls,
            "A listener plays PART-HOLD-BACK (3 parts of 0.32 s = 0.96 s) behind the newest part, "
            "and a part is published only when its 0.32 s are encoded; the page's own player "
            "takes each part as it is written (one streamed request per segment) and plays "
            "closer to live than the hold-back.",
        ),
        Verdict(
            "requests/s of one listener page (stream + room state)",
            "≤ 1.5 (stream ≤ 1.0; issue 11)",
            "–"
            if both is None
            else f"{both:.2f} ({stream:.2f} to /live/, {other:.2f} snapshot, presence and API; "
            "hls.js in Chromium)",
            None if both is None else both <= 1.5 and stream <= 1.0,
            "",
        ),
        Verdict(
            "speaker → other speakers, added by the server",
            "p95 ≤ 150 ms",
            f"p95 {_t(added)} (via server {_t(s.get('stage_via_server_p95_s'))} − direct "
            f"peer-to-peer {_t(s.get('stage_direct_p95_s'))})",
            None if added is None else added <= 0.150,
            "The server holds each speaker's audio in a jitter buffer before mixing and mixes on a "
            "20 ms clock, then Opus-encodes each mix-minus; the buffer depth is the largest term. "
            "An adaptive jitter buffer that shrinks to the measured jitter on loopback/LAN would "
            "cut it.",
        ),
    ]


def _stage_cost(r: Results) -> list[Verdict]:
    s = _get(r, "stage_cost", "summary") or {}
    share = s.get("full_stage_cpu_core_share")
    return [
        Verdict(
            "a full stage (13 speakers) ingested, mixed, encoded, packaged, mix-minus returned",
            "≤ 60 % of one core",
            f"{_pct(share)} of one core (idle Space {_pct(s.get('idle_space_cpu_core_share'))})",
            None if share is None else share <= 0.60,
            "Most of it is per-speaker WebRTC work in aiortc (SRTP, Opus decode of every "
            "speaker, Opus encode of every mix-minus) — see the breakdown.",
        )
    ]


SPACE_GOALS = (  # issue 17: what an open Space may cost, by kind (share of one core each)
    ("idle", "an open Space with nobody talking", 0.005),
    ("one_voice", "a live Space with one speaker", 0.05),
)
SPACES_PER_CORE_GOAL = 50  # issue 17: mixed population (80 % idle, 15 % one voice, 5 % stage of 5)


def _spaces_per_core(r: Results) -> list[Verdict]:
    s = _get(r, "spaces_per_core", "summary") or {}
    per = s.get("per_space") or {}
    out = [
        Verdict(
            what,
            f"≤ {goal * 100:g} % of a core each (issue 17)",
            f"{_pct(per.get(kind))} each",
            None if per.get(kind) is None else per[kind] <= goal,
            "Above the empty server's CPU, from the first steps of the spaces_per_core ramp.",
        )
        for kind, what, goal in SPACE_GOALS
    ]
    most, by_cost = s.get("most_on_time"), s.get("spaces_per_core_from_costs")
    server = s.get("server_core_share_at_most")
    out.append(
        Verdict(
            "open Spaces one core holds with audio on time (80 % idle, 15 % one voice, "
            "5 % stage of 5)",
            f"≥ {SPACES_PER_CORE_GOAL} (issue 17)",
            f"{_num(most)} on time in the ramp, the server at {_pct(server)} of a core"
            + ("" if s.get("ended_late") else " (the ramp's end, not a limit)")
            + f"; {_num(by_cost)} per core by the measured cost of each kind",
            None if by_cost is None else by_cost >= SPACES_PER_CORE_GOAL,
            "The ramp's speakers run in one process on the same machine; when it ends before "
            "the server uses a whole core, the cost per kind gives the per-core figure.",
        )
    )
    return out


def _density(r: Results) -> list[Verdict]:
    s = _get(r, "density", "summary") or {}

    def held(target: str) -> str:
        n = _get(s, target, "listeners_held")
        limit = _get(s, target, "limited_by")
        return f"{_num(n)} ({limit})" if limit else _num(n)

    def ceiling(target: str) -> float | None:
        """A generous estimate of what a target stopped by the generator could hold on its core:
        its marginal CPU per listener at the held step, extended to the whole core."""
        t = s.get(target) or {}
        held, per, ref = (
            t.get("listeners_held"),
            t.get("cpu_per_listener"),
            t.get("reference_cpu_share"),
        )
        if not held or per is None or ref is None or per * held <= ref:
            return None
        return float(held * (1 - ref) / (per * held - ref))

    def ratio_verdict(target: str, label: str, need: float, note: str) -> Verdict:
        ratio = s.get(f"ratio_{target}_icecast")
        met = None if ratio is None else ratio >= need
        figure = f"{held(target)} vs Icecast {held('icecast')}: {_num(ratio, 2)} ×"
        if _get(s, target, "limited_by") == "generator" and met is False:
            # A lower bound that falls short proves nothing, unless even the generous ceiling
            # falls short of what Icecast was seen to hold.
            top, ice = ceiling(target), _get(s, "icecast", "listeners_held")
            met = None
            if top is not None and ice:
                figure += f"; at most ≈ {top:,.0f} per core by its CPU, vs ≥ {ice:,} for Icecast"
                met = False if top / ice < need else None
        return Verdict(label, f"≥ {need:g} × Icecast 2.4 on the same core", figure, met, note)

    rss = _get(s, "origin", "rss_per_listener_bytes")
    return [
        ratio_verdict(
            "origin",
            "listeners held per core, straight from one origin process",
            1.0,
            "A listener page is about half a request per second to /live/ (one streamed request "
            "per 1.92 s segment) plus its snapshot every 15 s and sampled presence. One origin "
            "process holds the figure above on its core: each part is framed once and written "
            "to every listener's open response by the stream's fan-out, the segment request and "
            "the snapshot are answered by the HTTP protocol itself with no task per request, "
            "and a big audience is written a turn of the event loop at a time (docs/architecture.md). "
            "One step further its core is saturated and listeners fall behind. Where its CPU "
            "goes (user and system time of each server read from /proc, 4,000 listeners, same "
            "run setup): the system calls cost what Icecast's do, about 45 µs per "
            "listener-second (the same three part writes a second to each listener, which on "
            "loopback also pay the receiving side), and the gap is the origin's Python, about 30 "
            "µs against Icecast's 2-3 µs of user time: each segment's request parsed, admitted, "
            "counted and subscribed (half a request a second per listener; Icecast has one "
            "request per listener in all), and each part's per-listener checks around its write. "
            "Found and fixed for this report: a snapshot request arriving while that second's "
            "snapshot was being built went through the framework to wait for the build (40 % of "
            "them at 4,000 listeners; now the last one built is given meanwhile), each segment's "
            "final chunk took a write of its own (now it goes with the last part), and the "
            "bench's wrk threads, seeing a segment's completions spread out by a server near its "
            "pace, moved their edge twice and asked for a segment not yet open, an overload that "
            "kept itself going (now a segment is known by its decode time): 8,000 held before, "
            "the figure above after. Then tried: a listener's segment request taken from its "
            "bytes before it is parsed (the parser's callbacks, its scope and a header deadline "
            "were over half of the request's cost: 26 → 11 µs per request in isolation; user "
            "time 46 → 41 µs per listener-second in runs of the code before and after, "
            "alternated at 8,000 and 11,000 listeners), a gain smaller than a step of the ramp "
            "(12,000 held, 15,000 not, as before). What is left is Python around each write "
            "and each request (docs/architecture.md); a request and write path in C is what "
            "would close it. The load generator is no longer the limit "
            "(300 Python listeners timing every part, wrk bringing the rest: see its "
            "section). The origin is not meant to face the audience alone: an edge or a CDN "
            "answers it from its cache (the cache-collapse section: origin requests flat in "
            "audience size).",
        ),
        ratio_verdict(
            "edge",
            "listeners held per core, origin behind the nginx edge",
            2.0,
            "nginx hands a segment still being written by the origin to its first requester "
            "only; every other listener waits on proxy_cache_lock (re-checked every 500 ms) for "
            "the complete segment, so with one streamed request per segment listeners behind "
            "nginx fall seconds behind live and count as stalls at once. Use the Varnish edge "
            "(deploy/varnish/townhall.vcl), which streams a fill in progress to every waiter; "
            "the nginx config stays for the request-per-part players (hls.js) it serves well.",
        ),
        ratio_verdict(
            "varnish",
            "listeners held per core, origin behind the Varnish edge (the recommended one)",
            2.0,
            "Varnish serves the audience from its cache, streaming each segment to every "
            "listener as the origin writes it, a worker thread per streamed response (a wake-up "
            "and a write per listener per part, and the thread's stack: about 100 KB of memory "
            "per listener). It stops at the figure above: at the next step a few parts reached "
            "listeners later than PART-HOLD-BACK, lateness having grown with the audience (the "
            "table), with the core it shares with the origin about two-thirds busy. Not its "
            "threads (tried: pools of up to 10,000 threads each, 5,000 started up front, "
            "instead of the bench's 2,000: 4,000 listeners stalled the same, lateness p95 "
            "0.69 s, 3,000 held at 0.53 s, with threads to spare). What grows is the time "
            "from a part's arrival at the edge to its write to the last listener: every "
            "streaming thread is woken for each chunk the fill brings, and they take their "
            "turns on the core. It costs "
            "more CPU per listener than the origin alone (the table): its value is the "
            "origin's load staying flat whatever the audience, on machines of its own, not "
            "density on the origin's core.",
        ),
        Verdict(
            "memory per directly served listener",
            f"≤ {SPEC_LISTENER_KB} KB",
            "–" if rss is None else f"{rss / 1024:.1f} KB (origin RSS growth ÷ listeners)",
            None if rss is None else rss <= SPEC_LISTENER_KB * 1024,
            "A listener holds one or two connections and about one streamed segment response "
            "at a time; Icecast keeps one socket and a queue position. Measured in the server: "
            "the growth is live Python objects (pymalloc's blocks grew as much as RSS; no "
            "garbage waiting, little held by malloc), mostly the held response's chain of "
            "suspended coroutines and closures and each connection's protocol state (7.2 KB, "
            "now 4.3 KB: no empty deques, a shared-key instance dict). A streamed segment now "
            "holds no coroutine (27 at first, then 18, then 6): the HTTP protocol answers it "
            "and the fan-out holds the connection until the segment is complete "
            "(docs/architecture.md).",
        ),
    ]


def _cache_rows(r: Results, edge: str) -> list[dict[str, Any]]:
    """One edge's rows of the cache-collapse bench, smallest audience first ("direct": the
    origin alone; runs from before Varnish was measured name no edge and were nginx)."""
    rows = _get(r, "cache_collapse", "rows") or []
    return sorted(
        (row for row in rows if row.get("edge", "nginx") == edge), key=lambda row: row["listeners"]
    )


def _cache_edges(r: Results) -> list[str]:
    return sorted(
        {row.get("edge", "nginx") for row in _get(r, "cache_collapse", "rows") or []} - {"direct"}
    )


def _generator(r: Results) -> list[Verdict]:
    data = _get(r, "generator_cost", "bulk") or {}
    steps = data.get("steps") or []
    held = data.get("held")
    top = next((row for row in reversed(steps) if row.get("listeners") == held), None)
    figure = "–"
    if top is not None:
        figure = (
            f"{held:,} held by wrk on core 1 at {_pct(top.get('bulk_cpu_share'))} of it "
            f"({top.get('cpu_us_per_listener_s', 0):.0f} µs per listener-second), none dropped, "
            "no stall in the Python sample"
        )
    return [
        Verdict(
            "listeners the load generator holds on this machine",
            f"≥ {GENERATOR_GOAL:,} (issue 11)",
            figure,
            None if held is None else held >= GENERATOR_GOAL,
            "The step after the figure failed: see the section for whether wrk ran out of its "
            "core (the generator) or a server dropped or stalled its listeners (the servers, on "
            "the same two cores).",
        )
    ]


def _cache_collapse(r: Results) -> list[Verdict]:
    what, budget = "origin requests with an HTTP cache in front", "constant in audience size"
    edges = _cache_edges(r)
    if not edges:
        return [Verdict(what, budget, "–", None)]
    return [v for edge in edges for v in (_flat(r, edge), _lateness(r, edge))]


def _flat(r: Results, edge: str) -> Verdict:
    rows = _cache_rows(r, edge)
    kept_up = [row for row in rows if not row.get("stalls")]
    what = f"origin requests with an HTTP cache in front ({edge})"
    budget = "constant in audience size"
    if not rows:
        return Verdict(what, budget, "–", None)
    ratio = None
    if len(kept_up) >= 2:
        small, large = kept_up[0], kept_up[-1]
        ratio = large["origin_rps"] / small["origin_rps"] if small["origin_rps"] else None
    figure = ", ".join(
        f"{_num(row.get('origin_rps'), 1)}/s at {row['listeners']:,}" for row in kept_up
    )
    behind = [row for row in rows if row.get("stalls")]
    note = (
        f"Counted as flat when the largest audience that kept up with live costs the origin ≤ "
        f"{FLAT_FACTOR} × the smallest one's requests; not measured when fewer than two "
        "audiences kept up (the generator shares both cores with the edge in this run)."
    )
    if behind:
        figure += ("; " if figure else "") + ", ".join(
            f"{_num(row.get('origin_rps'), 1)}/s at {row['listeners']:,} whose listeners fell behind "
            f"live (the generator made {_num(row.get('edge_rps'))} of "
            f"{_num(row.get('expected_edge_rps'))} requests/s)"
            for row in behind
        )
    return Verdict(what, budget, figure, None if ratio is None else ratio <= FLAT_FACTOR, note)


def _lateness(r: Results, edge: str) -> Verdict:
    """How much later than a direct listener one behind the edge gets each part, judged at the
    audience the direct reference played with (the smallest)."""
    what, budget = f"lateness behind the edge vs direct ({edge})", f"p95 ≤ +{_t(SPEC_EDGE_LATE_S)}"
    direct = _cache_rows(r, "direct")
    same = [
        row for row in _cache_rows(r, edge) if direct and row["listeners"] == direct[0]["listeners"]
    ]
    extra = same[0].get("lateness_p95_vs_direct_s") if same else None
    if extra is None:
        return Verdict(what, budget, "–", None)
    figure = (
        f"+{_t(extra)} (p95 {_t(same[0].get('lateness_p95_s'))} vs "
        f"{_t(direct[0].get('lateness_p95_s'))} direct, {direct[0]['listeners']:,} listeners)"
    )
    note = {
        "nginx": "proxy_cache_lock waiters re-check the cache every 500 ms (hard-coded in nginx), "
        "so most listeners waiting for the next part or the playlist that lists it get it up "
        "to half a second after the origin produced it. Varnish hands a fill in progress to "
        "every waiter as it arrives (deploy/varnish/townhall.vcl), the recommended edge.",
        "varnish": "Varnish answers every request parked on a fill in progress once the origin's "
        "answer arrives, but each client connection in use holds a worker thread: at 1,000 "
        "listeners about 2,000 threads wake per part, and on a busy 2-core machine the last of "
        "them were answered ~115 ms (p95) after the origin's answer (varnishncsa timestamps); "
        "the Python load generator, taking 2,000 answers in the same instant, adds more. More "
        "edges (or a CDN) per audience, and fewer requests per listener, are the fixes.",
    }.get(edge, "")
    return Verdict(what, budget, figure, extra <= SPEC_EDGE_LATE_S, note)


def _join_storm(r: Results) -> list[Verdict]:
    rows = _get(r, "join_storm", "rows") or []
    origin = next((row for row in rows if row.get("target") == "origin"), None)
    if origin is None:
        return [
            Verdict("join storm", f"≥ {SPEC_JOINS_PER_S:,} joins/s per process", "–", None),
        ]
    polite = {"http_503", "http_429"}
    kinds = {kind for row in rows for kind in row.get("errors", {})}
    alive = all(row.get("server_alive_after") for row in rows)
    impolite = sorted(kinds - polite)
    arrived, answered = origin.get("listeners") or 0, origin.get("answered_within_1s") or 0
    timeouts = (origin.get("errors") or {}).get("timeout", 0)
    return [
        Verdict(
            "join storm at one origin process (everything a listener's page does before it hears "
            "audio; issue 11)",
            "every arrival joined or told 503 + Retry-After within 1 s; 0 timeouts",
            f"{answered:,} of {arrived:,} within 1 s (first answer p99 "
            f"{_t(origin.get('first_word_p99_s'))}), {timeouts:,} timeouts; "
            f"{_num(origin.get('joins_per_s'))} joins/s, first audio p99 "
            f"{_t(origin.get('ttfa_p99_s'))} after Retry-After",
            bool(arrived) and answered == arrived and not timeouts,
            "One origin process serves a few hundred to a thousand joins a second on its core (a "
            "join is six requests); the rest wait in the kernel's accept queue, where no code of "
            "ours sees them. A connection that waited there longer than "
            "TOWNHALL_ACCEPT_WAIT_MAX_MS (500 ms) is answered 503 + Retry-After the moment it is "
            "accepted (api/accept.py; the kernel tells its age), at a tenth of a served join's "
            "cost, so the queue drains and the others are served.",
        ),
        *(_edge_storm(row) for row in rows if str(row.get("target", "")).endswith(" edge")),
        Verdict(
            "… beyond capacity",
            "503/429 + Retry-After, never a crash",
            f"errors seen: {', '.join(sorted(kinds)) or 'none'}; server alive after: {alive}",
            alive and not impolite,
            ""
            if not impolite
            else f"Failures other than a polite refusal: {', '.join(impolite)} (by target in "
            "the table below).",
        ),
        *_signed_in_storm(rows),
    ]


def _edge_storm(row: dict[str, Any]) -> Verdict:
    """The SPEC's join budget, behind an edge: 5,000 arriving in 1 s all joined with p99 ≤ 250 ms
    (the joins/s figure cannot pass the arrival rate: joined ÷ time to the last one's audio)."""
    arrived, joined, p99 = row.get("listeners") or 0, row.get("joined") or 0, row.get("ttfa_p99_s")
    return Verdict(
        f"join storm behind the {row.get('target')} (one origin process)",
        f"≥ {SPEC_JOINS_PER_S:,} joins/s, p99 ≤ {_t(SPEC_JOIN_P99_S)}",
        f"{joined:,} of {arrived:,} joined, {_num(row.get('joins_per_s'))} joins/s, first audio "
        f"p50 {_t(row.get('ttfa_p50_s'))}, p99 {_t(p99)}; {row.get('answered_within_1s', 0):,} "
        "within 1 s",
        None if p99 is None else bool(arrived) and joined == arrived and p99 <= SPEC_JOIN_P99_S,
        EDGE_STORM_WHY.get(str(row.get("target")), ""),
    )


def _signed_in_storm(rows: list[dict[str, Any]]) -> list[Verdict]:
    """Issue 12's storm: signed-in listeners at two API processes, each served or politely
    refused within a second."""
    cluster = next((row for row in rows if row.get("target") == "cluster"), None)
    if cluster is None:
        return []
    arrived, answered = cluster.get("listeners") or 0, cluster.get("answered_within_1s") or 0
    return [
        Verdict(
            "join storm of signed-in listeners (guest sign-in, Space, me, first audio) on two "
            "API processes behind the Varnish edge",
            "every one served, or told 503/429 + Retry-After, within 1 s",
            f"{answered:,} of {arrived:,} within 1 s; first answer p99 "
            f"{_t(cluster.get('first_word_p99_s'))}, first audio p99 "
            f"{_t(cluster.get('ttfa_p99_s'))}; errors: "
            f"{', '.join(f'{k} {v}' for k, v in (cluster.get('errors') or {}).items()) or 'none'}",
            bool(arrived) and answered == arrived,
            SIGNED_IN_STORM_WHY,
        )
    ]


def _failover(r: Results) -> list[Verdict]:
    data = _get(r, "failover") or {}
    p50, p95 = data.get("gap_p50_s"), data.get("gap_p95_s")
    statuses = data.get("listener_statuses") or {}
    failed = {k: v for k, v in statuses.items() if not str(k).startswith("2")}
    rounds = len(data.get("rounds") or [])
    figure = (
        f"p50 {_t(p50)}, p95 {_t(p95)} over {rounds} kills; stage back after p50 "
        f"{_t(data.get('reconnect_p50_s'))}; listener answers other than 2xx: "
        f"{', '.join(f'{k}: {v}' for k, v in failed.items()) or 'none'}"
    )
    drain50, drain95 = data.get("drain_gap_p50_s"), data.get("drain_gap_p95_s")
    return [
        Verdict(
            "kill -9 of a Space's media node: silence at the listener",
            f"≤ {SPEC_FAILOVER_GAP_S:.0f} s, same link, nothing recorded lost but the gap",
            figure if p95 is not None else "–",
            None if p95 is None else p95 <= SPEC_FAILOVER_GAP_S and not failed,
            "The gap is the lease's time to live (2.5 s) plus a scan, the new owner's first part "
            "and the speaker's reconnection; a shorter lease would cut it at the price of "
            "take-overs after long event-loop stalls.",
        ),
        Verdict(
            "… a SIGTERM drain (one node restarted at a time)",
            f"no audible gap longer than {DRAIN_GAP_S:.0f} s",
            f"p50 {_t(drain50)}, p95 {_t(drain95)}" if drain95 is not None else "–",
            None if drain95 is None else drain95 <= DRAIN_GAP_S,
            "A drain hands the lease over at once, but the stage's WebRTC connections are on the "
            "old node: the new owner's stream is silent until the speakers have reconnected to "
            "it. Bringing the new owner up first and moving each speaker with a renegotiation "
            "(or keeping the old mix flowing to the new owner until they arrive) would close it.",
        ),
    ]


CONTROL_DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
REDIS_LIVE_GOAL_MS = 1.0
REDIS_LIVE_WHY = (
    "With Redis each call adds its round trips to the live state (a reaction's counter, a hand's "
    "standing and its event in the Space's stream, a beacon's key), each a command written and "
    "an answer parsed by redis-py on the event loop, on top of what the same call costs with "
    "the embedded store (the rows above)."
)
# The goal rows of issue 12: (group in bench.control_cost, what, goal in ms of server CPU per
# request, and why a call costs more than the reference app: what the code does per request).
CONTROL_GOALS: tuple[tuple[str, str, float, str], ...] = (
    (
        "read",
        "server CPU per authenticated read (/me, Space lookup)",
        0.5,
        "Each call verifies the bearer token, then reads the Space and the caller's standing in "
        "it (seat, hand, ban) in separate queries, each its own session; the reference app's one "
        "indexed query on the same driver is the floor beside it.",
    ),
    (
        "live",
        "server CPU per reaction, hand, presence (live state, embedded store)",
        0.5,
        "A reaction or a hand takes the caller's standing from the kept roster (no SQL) and "
        "writes live state; what is left is the framework's path (its layers, the route walk, "
        "dependency solving: most of the profile) and, with more guests calling one process than "
        "it keeps verified tokens (8,192), the token's decode on every call. A hand also appends "
        "its event, which the kept roster follows (docs/architecture.md, 'What a hand costs'). "
        "Presence, with no identity, shows what the path costs without them.",
    ),
    ("guest", "server CPU per guest sign-in", 1.0, "Minting and verifying the identity token."),
    (
        "cheap",
        "server CPU per health check and cached snapshot",
        0.15,
        "The reference app's constant JSON is the framework's floor on this core; what townhall "
        "adds is its middleware on every request (admission, trusted proxy headers).",
    ),
    (
        "stage",
        "server CPU per stage command (host mutes/unmutes themself)",
        3.0,
        "A stage command is a durable write of the member with its event in the same "
        "transaction, then the event's delivery to the live log.",
    ),
)


def _control_cost(r: Results) -> list[Verdict]:
    summary = _get(r, "control_cost", "summary") or {}
    out = []
    for group, what, goal, why in CONTROL_GOALS:
        figures, met = [], []
        for db, label in CONTROL_DATABASES.items():
            judged = _get(summary, db, "groups", group)
            if judged is None:
                figures.append(f"{label}: not measured")
                met.append(None)
                continue
            calls = ", ".join(f"{call} {_ms(ms)}" for call, ms in judged["calls"].items())
            floor = "reference_constant_ms" if group == "cheap" else "reference_query_ms"
            invalid = judged["invalid_calls"]
            valid = f" (not valid: {', '.join(invalid)}; see the table)" if invalid else ""
            figures.append(f"{label}: {calls} (reference {_ms(_get(summary, db, floor))}){valid}")
            # One validly measured call over the goal is a miss; met needs every call valid.
            worst = judged["worst_valid_ms"]
            if worst is not None and worst > goal:
                met.append(False)
            else:
                met.append(None if invalid or worst is None else True)
        verdict = False if False in met else (True if all(m is True for m in met) else None)
        out.append(
            Verdict(
                what,
                f"≤ {goal:g} ms on SQLite and on PostgreSQL (issue 12)",
                "; ".join(figures),
                verdict,
                why,
            )
        )
    redis = _get(summary, "redis", "groups", "live")
    if redis is not None:
        worst, invalid = redis["worst_valid_ms"], redis["invalid_calls"]
        calls = ", ".join(f"{call} {_ms(ms)}" for call, ms in redis["calls"].items())
        out.append(
            Verdict(
                "server CPU per reaction, hand, presence (live state on Redis, as in a cluster)",
                f"≤ {REDIS_LIVE_GOAL_MS:g} ms (issue 12)",
                calls + (f" (not valid: {', '.join(invalid)})" if invalid else ""),
                None
                if worst is None
                else (False if worst > REDIS_LIVE_GOAL_MS else (None if invalid else True)),
                REDIS_LIVE_WHY,
            )
        )
    return out


BUDGETS: tuple[Callable[[Results], list[Verdict]], ...] = (
    _latency,
    _stage_cost,
    _spaces_per_core,
    _density,
    _generator,
    _cache_collapse,
    _join_storm,
    _failover,
    _control_cost,
)


def verdicts(results: Results) -> list[Verdict]:
    """Every budget of the spec, in the spec's order, judged on this run's figures."""
    return [v for judge in BUDGETS for v in judge(results)]


def load(out: Path) -> Results:
    results: Results = {}
    folder = out / "results"
    for path in sorted(folder.glob("*.json")):
        try:
            results[path.stem] = json.loads(path.read_text())
        except ValueError:
            results[path.stem] = {"error": f"{path.name} is not valid JSON"}
    return results


def _machine_lines(runs: Results) -> list[str]:
    m = runs.get("machine") or {}
    versions = m.get("versions") or {}
    memory = m.get("memory_gib")
    lines = [
        f"- CPU: {m.get('cpu', '?')}, {m.get('cores', '?')} cores"
        + (f", {memory:.0f} GiB RAM" if memory else ""),
        f"- OS: {m.get('os', '?')}, kernel {m.get('kernel', '?')}, Python {m.get('python', '?')}",
        f"- townhall commit {m.get('townhall_commit', '?')}",
        "- " + ", ".join(f"{name} {value}" for name, value in versions.items()),
    ]
    return lines


def _speed_line(results: Results) -> list[str]:
    """How fast this machine is, by a yardstick measured in the same run, so that absolute figures
    from different machines can be read side by side (the spec: ratios are measured in one run on
    one machine, absolute figures are for orientation)."""
    reference = _get(results, "control_cost", "summary", "sqlite", "reference_query_ms")
    if reference is None:
        return []
    return [
        f"- Speed: a minimal FastAPI request reading one SQLite row (bench/reference_app.py) "
        f"costs {reference:.2f} ms of CPU here, measured in the control cost run. CPU shares "
        "and times below are this machine's; the spec's absolute figures are for orientation, "
        "and every ratio is measured side by side in one run."
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _section_latency(r: Results) -> list[str]:
    s = _get(r, "latency", "summary") or {}
    rows = [
        [
            "mouth → ear, hls.js in Chromium",
            _t(s.get("hlsjs_mouth_to_ear_p50_s")),
            _t(s.get("hlsjs_mouth_to_ear_p95_s")),
        ],
        [
            "mouth → ear, Python LL-HLS player (+ PART-HOLD-BACK)",
            _t(s.get("python_mouth_to_ear_p50_s")),
            _t(s.get("python_mouth_to_ear_p95_s")),
        ],
        [
            "stage → stage via the server (WebRTC)",
            _t(s.get("stage_via_server_p50_s")),
            _t(s.get("stage_via_server_p95_s")),
        ],
        [
            "stage → stage direct, peer to peer (reference)",
            _t(s.get("stage_direct_p50_s")),
            _t(s.get("stage_direct_p95_s")),
        ],
        [
            "stage → stage, added by the server",
            _t(s.get("stage_added_p50_s")),
            _t(s.get("stage_added_p95_s")),
        ],
    ]
    lines = _table(["path", "p50", "p95"], rows)
    if s.get("hlsjs_requests_per_s") is not None:
        lines += ["", f"hls.js made {s['hlsjs_requests_per_s']:.1f} requests/s to the origin."]
    return lines


def _section_stage_cost(r: Results) -> list[str]:
    rows = _get(r, "stage_cost", "rows") or []
    categories: list[str] = []
    for row in rows:
        for name in row.get("breakdown") or {}:
            if name not in categories:
                categories.append(name)
    table = [
        [
            str(row.get("speakers")),
            _pct(row.get("cpu_core_share")),
            f"{row.get('rss_mb', 0):.0f} MB",
            *[_pct((row.get("breakdown") or {}).get(name)) for name in categories],
        ]
        for row in rows
    ]
    return _table(["speakers", "server CPU", "RSS", *categories], table)


def _section_spaces_per_core(r: Results) -> list[str]:
    result = r.get("spaces_per_core") or {}
    s = result.get("summary") or {}
    if not s:
        return ["Nothing measured."]
    before = _get(result, "reference", "summary", "per_space") or {}
    per = s.get("per_space") or {}
    names = {
        "idle": "nobody talking",
        "one_voice": "one speaker",
        "stage5": "stage of 5, all talking",
    }
    lines = _table(
        ["an open Space", "before (% of a core)", "now (% of a core)"],
        [[names[k], _pct(before.get(k)), _pct(per.get(k))] for k in names],
    )
    lines += [
        "",
        f"Each above the empty server ({_pct(s.get('floor_core_share'))}); 'before' is the same "
        "bench run against the code before issue 17, on the same machine, just before.",
        "",
    ]
    rows = [
        [
            str(row["step"]),
            str(row["spaces"]),
            "/".join(str(row["kinds"][k]) for k in names),
            _pct(row["server_core_share"]),
            _pct(row["voices_core_share"]),
            f"{row['worst_lag_s']:.2f} s (+{row.get('fell_behind_s', 0):.2f})",
            str(row["stalls"]),
            "yes" if row["on_time"] else "**late**",
        ]
        for row in result.get("rows") or []
    ]
    return lines + _table(
        [
            "step",
            "Spaces",
            "idle/1 voice/stage",
            "server CPU",
            "speakers' CPU",
            "worst lag (+ in the step)",
            "stalls",
            "on time",
        ],
        rows,
    )


def _section_density(r: Results) -> list[str]:
    s = _get(r, "density", "summary") or {}
    rows = []
    for target in ("origin", "edge", "varnish", "icecast"):
        t = s.get(target) or {}
        if target == "varnish" and not t:
            continue  # runs from before Varnish was measured
        rss = t.get("rss_per_listener_bytes")
        rows.append(
            [
                target,
                _num(t.get("listeners_held")),
                str(t.get("limited_by", "–")),
                "–"
                if t.get("cpu_per_listener") is None
                else f"{t['cpu_per_listener'] * 1e6:.0f} µs/s",
                "–" if rss is None else f"{rss / 1024:.1f} KB",
                _num(t.get("requests_per_s_per_listener"), 1),
            ]
        )
    table = _table(
        [
            "server",
            "listeners held (one core)",
            "stopped by",
            "CPU per listener",
            "memory per listener",
            "requests/s per listener",
        ],
        rows,
    )
    return [
        *table,
        "",
        f"Ratios: origin / Icecast {_num(s.get('ratio_origin_icecast'), 2)} ×, "
        f"edge (nginx) / Icecast {_num(s.get('ratio_edge_icecast'), 2)} ×, "
        f"varnish / Icecast {_num(s.get('ratio_varnish_icecast'), 2)} ×. "
        "CPU per listener is the server's core time per second of listening.",
    ]


def _section_generator(r: Results) -> list[str]:
    data = _get(r, "generator_cost", "bulk") or {}
    return _table(
        ["listeners", "wrk CPU (core 1)", "per listener-second", "wrk memory", "dropped", "stalls"],
        [
            [
                f"{row['listeners']:,}",
                _pct(row.get("bulk_cpu_share")),
                f"{row.get('cpu_us_per_listener_s', 0):.1f} µs",
                f"{row.get('bulk_rss_bytes', 0) / 2**20:.0f} MB",
                _num(row.get("dropped")),
                _num(row.get("stalls")),
            ]
            for row in data.get("steps") or []
        ],
    )


def _section_cache(r: Results) -> list[str]:
    rows = [row for edge in ["direct", *_cache_edges(r)] for row in _cache_rows(r, edge)]
    return _table(
        [
            "edge",
            "listeners",
            "edge req/s (expected)",
            "origin req/s",
            "origin req per part",
            "hit ratio",
            "stalls",
            "lateness p95",
            "vs direct",
            "generator CPU",
        ],
        [
            [
                row.get("edge", "nginx"),
                f"{row['listeners']:,}",
                f"{_num(row.get('edge_rps'))} ({_num(row.get('expected_edge_rps'))})",
                _num(row.get("origin_rps"), 1),
                _num(row.get("origin_requests_per_part"), 2),
                _pct(row.get("hit_ratio")),
                _num(row.get("stalls")),
                _t(row.get("lateness_p95_s")),
                "–"
                if row.get("lateness_p95_vs_direct_s") is None
                else f"+{_t(row['lateness_p95_vs_direct_s'])}",
                _pct(row.get("generator_cpu_share")),
            ]
            for row in rows
        ],
    )


def _section_join(r: Results) -> list[str]:
    rows = _get(r, "join_storm", "rows") or []

    def existing(row: dict[str, Any], when: str) -> str:
        window = _get(row, "existing", when) or {}
        return f"{window.get('stalls', '–')} stalls, p95 late {_t(window.get('lateness_p95_s'))}"

    return _table(
        [
            "target",
            "arriving in 1 s",
            "joined",
            "joins/s",
            "first audio p50",
            "p99",
            "answered ≤ 1 s",
            "errors",
            "existing listeners before",
            "during",
        ],
        [
            [
                str(row.get("target")),
                _num(row.get("listeners")),
                _num(row.get("joined")),
                _num(row.get("joins_per_s")),
                _t(row.get("ttfa_p50_s")),
                _t(row.get("ttfa_p99_s")),
                _num(row.get("answered_within_1s")),
                ", ".join(f"{k} {v}" for k, v in (row.get("errors") or {}).items()) or "none",
                existing(row, "before"),
                existing(row, "during"),
            ]
            for row in rows
        ],
    )


def _section_failover(r: Results) -> list[str]:
    rows = _get(r, "failover", "rounds") or []
    return _table(
        [
            "node stopped by",
            "silence at the listener",
            "new stream listed after",
            "stage back after",
        ],
        [
            [
                f"{'SIGTERM' if row.get('how') == 'drain' else 'kill -9'} #{row.get('round')}",
                _t(row.get("gap_s")),
                _t(row.get("takeover_s")),
                _t(row.get("reconnect_s")),
            ]
            for row in rows
        ],
    )


def _section_control_cost(r: Results) -> list[str]:
    data = _get(r, "control_cost") or {}
    lines: list[str] = []
    tables = {**CONTROL_DATABASES, "redis": "SQLite records, live state on Redis"}
    for db, label in tables.items():
        result = _get(data, "databases", db)
        if result is None:
            continue
        pg = db != "sqlite"  # a database server of its own: its CPU per request is shown apart
        reference = result.get("reference") or {}
        rows = [*(result.get("rows") or []), *reference.values()]
        table = []
        for row in rows:
            flags = [] if row.get("valid") else ["not valid"]
            if row.get("generator_limited"):
                flags.append("generator-limited")
            table.append(
                [
                    str(row.get("label")) + (f" ({', '.join(flags)})" if flags else ""),
                    _num(row.get("requests")),
                    f"{row.get('ok', 0)}/{row.get('limited_429', 0)}/{row.get('other', 0)}",
                    _ms(row.get("ms_per_request")),
                    "–" if row.get("goal_ms") is None else f"{row['goal_ms']:g} ms",
                    _ms(row.get("reference_ms_per_request")),
                    *([_ms(row.get("db_ms_per_request"))] if pg else []),
                    _num(row.get("requests_per_s")),
                    _pct(row.get("server_cpu_share")),
                    "/".join(_pct(s) for s in row.get("generator_cpu_shares") or []),
                    _pct(row.get("others_on_server_core")),
                ]
            )
        lines += [
            f"**{label}** ({data.get('concurrency', '?')} connections, "
            f"{data.get('seconds', '?')} s windows)",
            "",
        ]
        lines += _table(
            [
                "call",
                "requests",
                "2xx/429/other",
                "server CPU per request",
                "goal",
                "reference",
                *([f"{'Redis' if db == 'redis' else 'PostgreSQL'} CPU per request"] if pg else []),
                "requests/s",
                "server's core",
                "generator's core",
                "others on the server's core",
            ],
            table,
        )
        lines.append("")
    return lines[:-1] if lines else ["Nothing measured."]


def _section_captions(r: Results) -> list[str]:
    s = _get(r, "captions", "summary") or {}
    if not s:
        return ["Nothing measured."]
    rows = [
        [
            "speech → caption readable by a listener, from the phrase's start",
            _t(s.get("delay_from_start_p50_s")),
            _t(s.get("delay_from_start_p95_s")),
        ],
        [
            "… from the phrase's end",
            _t(s.get("delay_from_end_p50_s")),
            _t(s.get("delay_from_end_p95_s")),
        ],
    ]
    lines = _table(["caption delay", "p50", "p95"], rows)
    lines += [
        "",
        f"CPU per captioned Space (server and its transcriber worker, speech all the time): "
        f"{_pct(s.get('cpu_per_captioned_space_share'))} of a core; "
        f"{_num(s.get('cues'))} cues read over {_num(s.get('seconds'))} s, "
        f"{_num(s.get('spaces'))} Space(s).",
    ]
    return lines


def soak_judged(rows: list[dict[str, Any]], interval_s: float) -> list[dict[str, Any]]:
    """The rows a soak is judged on: not the first (the audience joining), nor a last one that
    covers under half an interval (the run's end cut it short; its listeners may be stopping)."""
    judged = rows[1:]
    if len(judged) >= 2 and judged[-1]["at_s"] - judged[-2]["at_s"] < interval_s / 2:
        judged = judged[:-1]
    return judged


def soak_thirds(
    rows: list[dict[str, Any]], key: str, interval_s: float
) -> tuple[float | None, float | None]:
    """Medians of the first and the last third of the judged rows. Medians, not means: on a
    shared machine a starved minute drops listeners' connections (descriptors fall by hundreds
    for a row) or stretches lateness, and one such row must not decide the verdict; a leak moves
    the whole last third, which the median shows."""
    values = [row[key] for row in soak_judged(rows, interval_s) if row.get(key) is not None]
    third = len(values) // 3
    if third == 0:
        return None, None
    return statistics.median(values[:third]), statistics.median(values[-third:])


def soak_ratio(rows: list[dict[str, Any]], key: str, interval_s: float) -> float | None:
    """Last third over first third (`soak_thirds`): flat when at most 1 + SOAK_TOLERANCE."""
    first, last = soak_thirds(rows, key, interval_s)
    return None if first is None or last is None or not first else last / first


SOAK_SERIES = (  # what must stay flat: (row key, label, format)
    ("rss_mb", "server memory (RSS)", lambda v: f"{v:.1f} MB"),
    ("fds", "server file descriptors", lambda v: f"{v:.0f}"),
    ("lateness_p95_s", "listener lateness p95", lambda v: _t(v)),
)


def _section_soak(r: Results) -> list[str]:
    data = _get(r, "soak") or {}
    rows = data.get("rows") or []
    if not rows:
        return ["No rows were recorded."]
    interval = float(data.get("interval_s") or 60)
    printed = data.get("last_over_first_third") or {}
    lines = [
        f"One live Space, a stage of {data.get('speakers')} speaker bots and "
        f"{data.get('listeners')} LL-HLS listeners (what hls.js asks in low-latency mode) for "
        f"{data.get('minutes'):.0f} minutes; a row every {interval:.0f} s. Flat: the median of "
        f"the last third of the rows within {SOAK_TOLERANCE:.0%} of the first third's (the first "
        "row, the audience joining, and a last row the end cut short left out).",
        "",
    ]
    table = []
    for key, label, show in SOAK_SERIES:
        first, last = soak_thirds(rows, key, interval)
        ratio = soak_ratio(rows, key, interval)
        flat = ratio is not None and ratio <= 1 + SOAK_TOLERANCE
        table.append(
            [
                label,
                "–" if first is None else show(first),
                "–" if last is None else show(last),
                "–" if ratio is None else f"{ratio:.3f}",
                "flat" if flat else "**growing**",
            ]
        )
    lines += _table(["what", "first third", "last third", "last / first", "verdict"], table)
    differing = {
        key: value
        for key, value in printed.items()
        if value is not None
        and (value <= 1 + SOAK_TOLERANCE)
        != ((soak_ratio(rows, key, interval) or 0.0) <= 1 + SOAK_TOLERANCE)
    }
    if differing:  # a run made before the verdict took medians of the judged rows
        lines += [
            "",
            "The run's own printout judged otherwise, from the means of every row after the "
            "first (the last included): "
            + ", ".join(f"`{key}` {value:.3f}" for key, value in differing.items())
            + ". The rows below show which minutes moved those means.",
        ]
    loads = [row["load_1m"] for row in rows if row.get("load_1m") is not None]
    load_first, load_last = soak_thirds(rows, "load_1m", interval)
    lines += [
        "",
        f"In all: {data.get('ticks_skipped', 0):,.0f} media ticks skipped, "
        f"{data.get('stalls', 0):,} listener stalls, {data.get('errors', 0):,} listener errors.",
    ]
    nice = data.get("nice", 15)
    if loads and nice < 0:
        lines += [
            "",
            f"The machine was shared (2 cores, other developers' tests and benches at `nice 15`) and "
            f"the soak ran above them at `nice {nice}`: first in line for the CPU, though not alone "
            f"with the caches, so lateness, stalls and skipped ticks are largely the server's own. "
            f"Its 1-minute load average was "
            f"{sum(loads) / len(loads):.1f} on average, at most {max(loads):.1f}.",
        ]
    elif loads:
        lines += [
            "",
            f"The machine is shared (2 cores, other developers' tests and benches; the soak ran "
            f"under `nice -n {nice}`): its 1-minute load average was {sum(loads) / len(loads):.1f} on "
            f"average, at most {max(loads):.1f}"
            + (
                f", {load_first:.1f} in the first third and {load_last:.1f} in the last"
                if load_first is not None and load_last is not None
                else ""
            )
            + ". Lateness, stalls and skipped ticks follow that load (the server got what CPU "
            "was left); memory and descriptors are what a leak would show.",
        ]
    step = max(1, len(rows) // 12)
    step_s = (data.get("interval_s") or 60) * step
    shown = rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])
    lines += [
        "",
        *_table(
            [
                "at",
                "RSS",
                "fds",
                "server CPU",
                "lateness p50 / p95",
                "stalls",
                "errors",
                "ticks skipped",
                "load",
            ],
            [
                [
                    f"{row['at_s'] / 60:.0f} min" if step_s >= 60 else f"{row['at_s']:.0f} s",
                    f"{row['rss_mb']:.1f} MB",
                    f"{row['fds']}",
                    _pct(row.get("cpu_core_share")),
                    f"{_t(row.get('lateness_p50_s'))} / {_t(row.get('lateness_p95_s'))}",
                    f"{row.get('stalls', 0):,}",
                    f"{row.get('errors', 0):,}",
                    _num(row.get("ticks_skipped")),
                    _num(row.get("load_1m"), 1),
                ]
                for row in shown
            ],
        ),
    ]
    return lines


SECTIONS: tuple[tuple[str, str, Callable[[Results], list[str]], str], ...] = (
    ("latency", "Glass-to-glass latency", _section_latency, "latency.png"),
    ("stage_cost", "Stage cost", _section_stage_cost, "stage_cost.png"),
    (
        "spaces_per_core",
        "Spaces per core: a mixed population ramped until late (issue 17)",
        _section_spaces_per_core,
        "",
    ),
    (
        "density",
        "Listener density: townhall vs nginx edge vs Icecast",
        _section_density,
        "density.png",
    ),
    (
        "generator_cost",
        "Load generator: listeners held (issue 11)",
        _section_generator,
        "",
    ),
    ("cache_collapse", "Cache collapse behind the edge", _section_cache, "cache_collapse.png"),
    ("join_storm", "Join storm", _section_join, "join_storm.png"),
    ("failover", "Failover: kill -9 of the Space's media node", _section_failover, "failover.png"),
    ("captions", "Live captions: delay and CPU (issue 15)", _section_captions, ""),
    (
        "control_cost",
        "Control cost: server CPU per audience call (issue 12)",
        _section_control_cost,
        "control_cost.png",
    ),
    (
        "soak",
        "Soak: one hour, a stage of 5 and hundreds of listeners (issue 13)",
        _section_soak,
        "soak.png",
    ),
)


def render(results: Results, runs: Results, made: list[str]) -> str:
    """The report as Markdown."""
    status = {run["name"]: run for run in runs.get("runs", [])}
    lines = ["# townhall benchmarks", "", *_provenance(runs), ""]
    lines += [
        "## Machine",
        "",
        *_machine_lines(runs),
        *_speed_line(results),
        "",
        "## Budgets (from the spec)",
        "",
    ]
    judged = verdicts(results)
    lines += _table(
        ["what", "budget", "measured", "verdict"],
        [[v.what, v.budget, v.figure, v.mark] for v in judged],
    )
    missed = [v for v in judged if v.met is False]
    if missed:
        lines += ["", "### Why the missed budgets are missed, and what would fix them", ""]
        reference = _get(results, "control_cost", "summary", "sqlite", "reference_query_ms")
        if reference is not None:
            was, where = EARLIER_REFERENCE
            lines += [
                f"Budgets in CPU or time are this machine's: the reference request costs "
                f"{reference:.2f} ms here, {was:.2f} ms on {where}, where the stage, one-voice, "
                "control-call and stage → stage budgets were met by the code of then (see that "
                "report); the ratios (listeners per core against Icecast, lateness behind an "
                "edge against direct listeners) were measured side by side and do not depend on "
                "it.",
                "",
            ]
        lines += [f"- **{v.what}** ({v.budget}; measured {v.figure}): {v.note}" for v in missed]
    for name, *_ in SECTIONS:
        lines += ["", *_render_section(name, results, status.get(name), made)]
    return "\n".join(lines) + "\n"


def _provenance(runs: Results) -> list[str]:
    """Where the figures come from: one run of the whole suite, or (after `--only` runs) which
    module was measured when."""
    command = runs.get("command", "scripts/bench.sh")
    each = runs.get("runs", [])
    finished = {run.get("finished") for run in each if run.get("finished")}
    if len(finished) <= 1 or "--only" not in command:
        return [
            f"Measured {runs.get('finished', '?')} by `{command}` in "
            f"{runs.get('wall_s', 0) / 60:.1f} minutes. Every figure below comes from that one "
            "run, but the hour-long soak's, which the suite does not run (its section says so); "
            "the raw figures are in `report.json` and `results/`."
        ]
    return [
        "Measured by `scripts/bench.sh`, some benchmarks again later with `--only`; each section "
        "says when its figures were taken, at which commit and how loaded the machine was. The "
        "raw figures are in `report.json` and `results/`.",
    ]


def _own_run(name: str, results: Results) -> Results | None:
    """How a benchmark outside the suite ran, from its own results (the soak's parameters)."""
    data = results.get(name)
    if name != "soak" or not isinstance(data, dict) or "rows" not in data:
        return None
    args = ["--minutes", "--speakers", "--listeners", "--interval"]
    values = [data.get(k) for k in ("minutes", "speakers", "listeners", "interval_s")]
    rows = data["rows"]
    return {
        "status": "ok",
        "args": [f"{a} {v:g}" for a, v in zip(args, values, strict=True) if v is not None],
        "wall_s": rows[-1]["at_s"] if rows else 0.0,
        "outside": True,
    }


def _render_section(name: str, results: Results, run: Results | None, made: list[str]) -> list[str]:
    """One benchmark's section: its title, figures, plot, method and how it ran."""
    title, section, plot = next((t, s, p) for n, t, s, p in SECTIONS if n == name)
    lines = [f"## {title}", ""]
    run = run or _own_run(name, results)
    if run is None:
        return [*lines, "Not run in this report."]
    if run["status"] != "ok":
        lines += [
            f"**This benchmark did not finish: {run['status']}.** See `results/{name}.txt`.",
            "",
        ]
    if name in results:
        lines += section(results)
    if plot in made:
        lines += ["", f"![{title}](plots/{plot})"]
    notes = _get(results, name, "notes")
    if notes:
        lines += ["", f"Method: {notes}"]
    when = ""
    if run.get("finished"):
        load = run.get("load_average") or ["?", "?"]
        when = (
            f" (finished {run['finished']}, commit {run.get('commit', '?')}, load average "
            f"{load[0]} before, {load[-1]} after)"
        )
    if run.get("outside"):
        when = (
            " on its own, not in the suite's run: an earlier measurement, maybe at another commit "
            f"or on another machine (`git log bench/results/{name}.json` says when)"
        )
    lines += [
        "",
        f"Ran `python -m bench.{name} {' '.join(run['args'])}` in {run['wall_s']:.0f} s{when}; "
        f"its printed tables: `results/{name}.txt`.",
    ]
    return lines


def replace_section(markdown: str, heading: str, section: list[str]) -> str:
    """`markdown` with the section under `heading` (up to the next `## `) replaced by `section`,
    or `section` appended when the report has none yet."""
    lines = markdown.rstrip("\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line == heading), None)
    if start is None:
        return "\n".join([*lines, "", *section]) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    after = ["", *lines[end:]] if end < len(lines) else []
    return "\n".join([*lines[:start], *section, *after]) + "\n"


def build_section(out: Path, name: str) -> None:
    """Write one benchmark's section (and its plot) into the existing `out/report.md`, leaving
    every other section, plot and report.json as they are."""
    from bench import plots

    results = load(out)
    runs = results.pop("runs", {})
    status = {run["name"]: run for run in runs.get("runs", [])}
    _, title, _, plot = next(s for s in SECTIONS if s[0] == name)
    made = plots.draw(results, out / "plots", only=[plot] if plot else [])
    report = out / "report.md"
    section = _render_section(name, results, status.get(name), made)
    report.write_text(replace_section(report.read_text(), f"## {title}", section))


def build(out: Path) -> None:
    """Write report.md, report.json and plots/ under `out` from `out/results/`."""
    from bench import plots  # matplotlib comes with the bench extra; the verdicts need none of it

    results = load(out)
    runs = results.pop("runs", {})
    made = plots.draw(results, out / "plots")
    (out / "report.md").write_text(render(results, runs, made))
    (out / "report.json").write_text(
        json.dumps(
            {
                "run": runs,
                "budgets": [asdict(v) | {"verdict": v.mark} for v in verdicts(results)],
                "results": results,
            },
            indent=2,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent))
    names = [name for name, *_ in SECTIONS]
    parser.add_argument("--section", choices=names, help="rewrite only this section, in place")
    args = parser.parse_args()
    if args.section:
        build_section(Path(args.out), args.section)
    else:
        build(Path(args.out))
    print(f"wrote {Path(args.out) / 'report.md'}")


if __name__ == "__main__":
    main()
