"""Join storm: N listeners arrive within one second; what got in, how fast, and who suffered.

Each join is what a listener's page does before it hears audio, on its own keep-alive connection:
`GET /api/spaces/{id}`, `GET /api/spaces/{id}/snapshot`, `GET /live/{id}/index.m3u8`,
`GET media.m3u8`, `GET init.mp4`, and the newest part (first audio). Arrivals are spread evenly over
one second and over several load-generator processes (so the generator is not what saturates
first; its CPU is measured and printed). A 503/429 with Retry-After is obeyed with jitter, up to
three attempts per join; a 503/429 without Retry-After, a timeout or a connection error is counted
by kind. Meanwhile M listeners already playing (townhall/loadtest/llhls.py players in another process) report
stalls and part lateness before vs during the storm.

The same storm runs against (a) the origin directly and (b) the shipped edge in front of it
(`--edges`: nginx and Varnish, each in turn),
in one run, side by side with the SPEC budget (≥ 5,000 joins/s per process, p99 ≤ 250 ms; beyond
capacity 503/429 + Retry-After, never a crash).

`cluster` (issue 12's storm of signed-in listeners): a cluster of two API processes
(`--role api`) and one media process on Redis and PostgreSQL, behind the shipped Varnish edge
taking the API nodes in turn. Each arrival first signs in as a guest (`POST /api/auth/guest`, from
an address of its own in `X-Forwarded-For`, which the nodes trust from the edge on loopback), then
asks for the Space and `GET /api/spaces/{id}/me` with its bearer (never cached), then the media
as above (the edge's cache answers it). Budget: every arrival served, or told 503/429 with
Retry-After, within 1 s.

    .venv/bin/python -m bench.join_storm --listeners 2000 [--procs 4] [--existing 50]
        [--targets origin,edge,cluster] [--json out.json]

On a 2-core machine the server, the edge and the generators share the cores: read the generator's CPU
next to the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from townhall.harness import (
    EDGE_KINDS,
    EdgeKind,
    Proc,
    free_port,
    redis_url_of,
    start_edge,
    start_postgres,
    start_redis,
    start_server,
    wait_until,
)
from townhall.loadtest.http import Client, HTTPFailure
from townhall.loadtest.llhls import PlayerStats, parse_playlist, percentile, run_listener
from townhall.loadtest.procs import tree_cpu_seconds

BUDGET_JOINS_PER_S = 5000
BUDGET_P99 = 0.250
ATTEMPTS = 3
WARM = 4.0  # s the existing listeners play before the storm
TAIL = 6.0  # s after the last arrival that counts as "during"
STORM_DEADLINE = 90.0  # s: joins still unfinished then are cancelled and counted


class Refused(Exception):
    def __init__(self, kind: str, retry_after: float | None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry_after = retry_after


STEPS = ("guest", "space", "me", "snapshot", "index", "media", "init", "part")
TARGETS = ("origin", "edge", "cluster")
SIGNED_IN_BUDGET_S = 1.0  # cluster: every arrival served or refused politely within this


async def _ok(
    http: Client,
    url: str,
    errors: Counter[str],
    steps: dict[str, list[float]],
    step: str,
    byte_range: str | None = None,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    began = time.monotonic()
    sent = dict(headers or {})
    if byte_range is not None:
        sent["Range"] = f"bytes={byte_range}"
    try:
        response = await http.request(method, url, headers=sent, body=body)
    except HTTPFailure as failure:
        errors[failure.kind] += 1
        raise Refused(failure.kind, None) from None
    steps[step].append(time.monotonic() - began)
    if response.status == 206 if byte_range is not None else 200 <= response.status < 300:
        return response.content
    raw = response.headers.get("retry-after")
    kind = f"http_{response.status}" + ("" if raw else "_no_retry_after")
    if response.status not in (429, 503):
        kind = f"http_{response.status}"
    errors[kind] += 1
    try:
        retry = float(raw) if raw else None
    except ValueError:
        retry = None
    raise Refused(kind, retry)


def _address(n: int) -> str:
    """The n-th simulated person's address (only ever a header value, never a destination)."""
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


async def _sign_in(
    http: Client,
    base: str,
    space: str,
    n: int,
    errors: Counter[str],
    steps: dict[str, list[float]],
) -> None:
    """What a signed-in listener's page asks before the media: a guest identity, then the Space
    and what this person may do in it, with the bearer (never from a cache)."""
    forwarded = {"X-Forwarded-For": _address(n)}
    body = json.dumps({"display_name": f"Listener {n}"}).encode()
    answer = await _ok(
        http,
        f"{base}/api/auth/guest",
        errors,
        steps,
        "guest",
        method="POST",
        headers={**forwarded, "Content-Type": "application/json"},
        body=body,
    )
    bearer = {**forwarded, "Authorization": f"Bearer {json.loads(answer)['token']}"}
    await _ok(http, f"{base}/api/spaces/{space}", errors, steps, "space", headers=bearer)
    await _ok(http, f"{base}/api/spaces/{space}/me", errors, steps, "me", headers=bearer)


async def _join(
    base: str,
    space: str,
    errors: Counter[str],
    steps: dict[str, list[float]],
    signed_in: int | None = None,
) -> None:
    """One listener's join; `signed_in`: sign in first as the guest with that number."""
    http = Client(base, timeout=10.0)
    try:
        if signed_in is None:
            await _ok(http, f"{base}/api/spaces/{space}", errors, steps, "space")
            await _ok(http, f"{base}/api/spaces/{space}/snapshot", errors, steps, "snapshot")
        else:
            await _sign_in(http, base, space, signed_in, errors, steps)
        index_url = f"{base}/live/{space}/index.m3u8"
        index = (await _ok(http, index_url, errors, steps, "index")).decode()
        media_uri = next(line for line in index.splitlines() if line and not line.startswith("#"))
        media_url = f"{base}/live/{space}/{media_uri}"
        text = await _ok(http, media_url, errors, steps, "media")
        playlist = parse_playlist(text.decode(), media_url)
        await _ok(http, playlist.init_uri, errors, steps, "init")
        first = playlist.parts[-1] if playlist.parts else playlist.hint
        if first is not None:
            await _ok(http, first.uri, errors, steps, "part", first.byte_range)
    finally:
        http.close()


async def _storm(
    base: str, space: str, arrivals: list[float], numbers: list[int] | None
) -> dict[str, Any]:
    errors: Counter[str] = Counter()
    steps: dict[str, list[float]] = {step: [] for step in STEPS}
    done: list[tuple[float, float]] = []  # (scheduled arrival, first audio), monotonic
    lag: list[float] = []  # how late the generator started a join vs its schedule
    # Per arrival: seconds until it had its first audio or a polite refusal (503/429 with
    # Retry-After); None: neither (a timeout, an error, or still waiting at the deadline).
    first_word: list[float | None] = []
    gave_up = 0

    async def one(at: float, number: int | None) -> None:
        nonlocal gave_up
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        lag.append(time.monotonic() - at)
        answered = False
        for attempt in range(ATTEMPTS):
            try:
                await _join(base, space, errors, steps, number)
            except Refused as refused:
                if not answered:
                    answered = True
                    polite = refused.retry_after is not None
                    first_word.append(time.monotonic() - at if polite else None)
                if refused.retry_after is None or attempt == ATTEMPTS - 1:
                    gave_up += 1
                    return
                await asyncio.sleep(refused.retry_after * (1 + random.random()))
            except (StopIteration, ValueError, IndexError):
                errors["bad_playlist"] += 1
                gave_up += 1
                return
            else:
                done.append((at, time.monotonic()))
                if not answered:
                    first_word.append(time.monotonic() - at)
                return

    started = time.process_time()
    tasks = [
        asyncio.ensure_future(one(at, None if numbers is None else numbers[i]))
        for i, at in enumerate(arrivals)
    ]
    _, late = await asyncio.wait(tasks, timeout=STORM_DEADLINE)  # bounded in time, whatever happens
    for task in late:
        task.cancel()
    errors["unfinished_at_deadline"] += len(late)
    first_word += [None] * (len(arrivals) - len(first_word))
    return {
        "steps": steps,
        "done": done,
        "errors": dict(errors),
        "gave_up": gave_up,
        "lag": lag,
        "first_word": first_word,
        "cpu": time.process_time() - started,
    }


def storm_worker(
    base: str, space: str, arrivals: list[float], numbers: list[int] | None
) -> dict[str, Any]:
    return asyncio.run(_storm(base, space, arrivals, numbers))


def existing_worker(media_url: str, listeners: int, until: float) -> dict[str, Any]:
    async def play() -> list[PlayerStats]:
        each = [PlayerStats() for _ in range(listeners)]
        await asyncio.gather(*(run_listener(media_url, until, s) for s in each))
        return each

    started = time.process_time()
    each = asyncio.run(play())
    total = PlayerStats()
    for stats in each:
        total.merge(stats)
    return {
        "part_times": total.part_times,
        "lateness": total.lateness,
        "phb_stalls": total.stalls,
        "errors": dict(total.errors),
        "cpu": time.process_time() - started,
    }


def _window(existing: dict[str, Any], start: float, end: float, phb: float) -> dict[str, Any]:
    late = [
        lt
        for at, lt in zip(existing["part_times"], existing["lateness"], strict=True)
        if start <= at < end
    ]
    return {
        "parts": len(late),
        "stalls": sum(1 for lt in late if lt > phb),
        "lateness_p95_s": percentile(late, 95),
    }


def run_target(
    name: str,
    base: str,
    space: str,
    listeners: int,
    procs: int,
    existing: int,
    server_pids: list[int],
    pool: Any,
    signed_in: bool = False,
) -> dict[str, Any]:
    media_url = f"{base}/live/{space}/media.m3u8"
    probe = asyncio.run(_probe(media_url))
    phb = probe.part_hold_back
    t0 = time.monotonic()
    storm_start = t0 + WARM
    storm_end = storm_start + 1.0
    until = storm_end + TAIL
    background = (
        pool.apply_async(existing_worker, (media_url, existing, until)) if existing else None
    )
    arrivals = [storm_start + i / listeners for i in range(listeners)]
    shares = [arrivals[i::procs] for i in range(procs)]
    numbers = [list(range(listeners))[i::procs] if signed_in else None for i in range(procs)]
    time.sleep(max(0.0, storm_start - 0.5 - time.monotonic()))
    server_cpu0 = tree_cpu_seconds(server_pids)
    wall0 = time.monotonic()
    results = [
        pool.apply_async(storm_worker, (base, space, share, numbers[i]))
        for i, share in enumerate(shares)
    ]
    outcomes = [r.get(timeout=STORM_DEADLINE + 30) for r in results]
    server_cpu = tree_cpu_seconds(server_pids) - server_cpu0
    wall = time.monotonic() - wall0
    old = background.get(timeout=STORM_DEADLINE + 30) if background else None
    done = [d for o in outcomes for d in o["done"]]
    errors: Counter[str] = Counter()
    for o in outcomes:
        errors.update(o["errors"])
    ttfa = [audio - at for at, audio in done]
    last = max((audio for _, audio in done), default=storm_start)
    absorbed_per_s = len(done) / max(1e-3, last - storm_start)
    first_word = [w for o in outcomes for w in o["first_word"]]
    row: dict[str, Any] = {
        "target": name,
        "signed_in": signed_in,
        "listeners": listeners,
        "answered_within_1s": sum(
            1 for w in first_word if w is not None and w <= SIGNED_IN_BUDGET_S
        ),
        "first_word_p99_s": percentile([w for w in first_word if w is not None], 99),
        "joined": len(done),
        "gave_up": sum(o["gave_up"] for o in outcomes),
        "joins_per_s": absorbed_per_s,
        "ttfa_p50_s": percentile(ttfa, 50),
        "ttfa_p99_s": percentile(ttfa, 99),
        "errors": {k: v for k, v in errors.items() if v},
        "step_p50_s": {
            step: percentile([x for o in outcomes for x in o["steps"][step]], 50) for step in STEPS
        },
        "generator_cpu_s": sum(o["cpu"] for o in outcomes),
        "generator_start_lag_p99_s": percentile([x for o in outcomes for x in o["lag"]], 99),
        "server_cpu_s": server_cpu,
        "wall_s": wall,
        "part_hold_back_s": phb,
    }
    if old is not None:
        row["existing"] = {
            "listeners": existing,
            "before": _window(old, t0 + 1.5, storm_start, phb),
            "during": _window(old, storm_start, until, phb),
            "errors": old["errors"],
            "cpu_s": old["cpu"],
        }
    return row


def _settle(media_url: str, quick: float = 0.2, limit: float = 60.0) -> float:
    """Wait (bounded) until the origin answers a playlist quickly again: requests abandoned by
    timed-out joins may still be queued there, and the next target must not inherit them."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        asked = time.monotonic()
        try:
            asyncio.run(_probe(media_url))
        except (HTTPFailure, ValueError):
            pass
        else:
            if time.monotonic() - asked < quick:
                break
        time.sleep(0.5)  # poll interval
    _wait_for_parts(media_url, 3)  # and a few more parts for the next target's existing listeners
    return time.monotonic() - began


def _wait_for_parts(media_url: str, count: int, limit: float = 30.0) -> None:
    """Wait (bounded) until the live playlist lists `count` more parts than it does now."""

    def parts() -> int:
        try:
            playlist = asyncio.run(_probe(media_url))
        except (HTTPFailure, ValueError):
            return -1
        return playlist.media_sequence * 1000 + len(playlist.parts)  # grows with every part

    start = parts()
    published = 0

    def advanced() -> bool:
        nonlocal published, start
        now = parts()
        if now > start:
            published, start = published + 1, now
        return published >= count

    wait_until(advanced, limit, f"{count} parts to be published", interval=0.1)


async def _probe(media_url: str) -> Any:
    http = Client(media_url)
    try:
        return parse_playlist((await http.get(media_url)).content.decode(), media_url)
    finally:
        http.close()


def run(
    listeners: int,
    procs: int,
    existing: int,
    targets: list[str],
    edges: tuple[EdgeKind, ...] = EDGE_KINDS,
) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(procs + 1) as pool:
            single = [t for t in targets if t != "cluster"]
            if single:
                rows += _run_one_process(
                    listeners, procs, existing, single, Path(tmp), pool, list(edges)
                )
            if "cluster" in targets:
                rows.append(_run_cluster(listeners, procs, existing, Path(tmp) / "cluster", pool))
    return {
        "listeners": listeners,
        "procs": procs,
        "existing": existing,
        "edges": list(edges),
        "budget": {"joins_per_s": BUDGET_JOINS_PER_S, "p99_s": BUDGET_P99},
        "rows": rows,
    }


def _run_one_process(
    listeners: int,
    procs: int,
    existing: int,
    targets: list[str],
    tmp: Path,
    pool: Any,
    edges: list[EdgeKind],
) -> list[dict[str, Any]]:
    """The storm at one `townhall serve` process: straight at it, then through each edge in turn
    (rows "origin", "nginx edge", "varnish edge")."""
    rows = []
    server = start_server(tmp / "server")
    try:
        space = server.create_space("Join storm")
        _wait_for_parts(f"{server.url}/live/{space.id}/media.m3u8", 3)
        runs: list[tuple[str, EdgeKind | None]] = [
            (t, None) if t == "origin" else (f"{kind} edge", kind)
            for t in targets
            for kind in ([None] if t == "origin" else edges)
        ]
        for name, kind in runs:
            edge = None
            if kind is not None:
                edge = start_edge(
                    server.url,
                    tmp / name.replace(" ", "-"),
                    kind=kind,
                    connections=2 * (listeners + existing),
                )
            try:
                base = server.url if edge is None else edge.url
                pids = [server.proc.popen.pid] + ([edge.proc.popen.pid] if edge else [])
                row = run_target(name, base, space.id, listeners, procs, existing, pids, pool)
            finally:
                if edge is not None:
                    edge.proc.stop()
            rows.append(row)
            alive = server.proc.popen.poll() is None
            row["server_alive_after"] = alive
            if not alive:
                break
            row["settle_s"] = _settle(f"{server.url}/live/{space.id}/media.m3u8")
    finally:
        server.proc.stop()
    return rows


def _run_cluster(
    listeners: int, procs: int, existing: int, root: Path, pool: Any
) -> dict[str, Any]:
    """The storm of signed-in listeners at two API processes and a media process (Redis,
    PostgreSQL) behind the Varnish edge."""
    postgres = start_postgres()
    running: list[Proc] = []
    try:
        redis = start_redis(free_port(), root / "redis")
        running.append(redis)
        env = {
            "TOWNHALL_REDIS_URL": redis_url_of(redis),
            "TOWNHALL_DATABASE_URL": postgres.create_database("join_storm"),
            "TOWNHALL_SECRET": "join-storm-bench-" + "s" * 40,
            "TOWNHALL_RECORDINGS_DIR": str(root / "recordings"),
            "TOWNHALL_TRUSTED_PROXIES": "127.0.0.1",
        }
        media = start_server(root / "media", env={**env, "TOWNHALL_ROLE": "media"}, within=60)
        running.append(media.proc)
        apis = []
        for n in range(2):
            api = start_server(root / f"api-{n}", env={**env, "TOWNHALL_ROLE": "api"}, within=60)
            running.append(api.proc)
            apis.append(api)
        edge = start_edge(
            [api.url for api in apis], root / "edge", kind="varnish", connections=2 * listeners
        )
        running.append(edge.proc)
        space = apis[0].create_space("Join storm")
        _wait_for_parts(f"{edge.url}/live/{space.id}/media.m3u8", 3)
        nodes = [api.proc for api in apis] + [media.proc]
        row = run_target(
            "cluster",
            edge.url,
            space.id,
            listeners,
            procs,
            existing,
            [proc.popen.pid for proc in [*nodes, edge.proc]],
            pool,
            signed_in=True,
        )
        row["server_alive_after"] = all(proc.popen.poll() is None for proc in nodes)
        row["nodes"] = "2 API + 1 media (Redis, PostgreSQL), Varnish edge"
        return row
    finally:
        for proc in reversed(running):
            proc.stop()
        postgres.stop()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def print_table(result: dict[str, Any]) -> None:
    rows = result["rows"]
    lines: list[tuple[str, list[str], str]] = [
        ("joins arriving in 1 s", [str(r["listeners"]) for r in rows], ""),
        ("joined (got first audio)", [str(r["joined"]) for r in rows], "all, or 503/429"),
        ("gave up", [str(r["gave_up"]) for r in rows], ""),
        (
            "answered within 1 s",
            [f"{r['answered_within_1s']}/{r['listeners']}" for r in rows],
            "cluster: all (first audio, or 503/429 + Retry-After)",
        ),
        ("first answer p99", [_ms(r["first_word_p99_s"]) for r in rows], "cluster: ≤ 1000 ms"),
        (
            "joins absorbed per second",
            [f"{r['joins_per_s']:.0f}" for r in rows],
            f"≥ {BUDGET_JOINS_PER_S:,} per process",
        ),
        ("time to first audio p50", [_ms(r["ttfa_p50_s"]) for r in rows], ""),
        (
            "time to first audio p99",
            [_ms(r["ttfa_p99_s"]) for r in rows],
            f"≤ {BUDGET_P99 * 1000:.0f} ms",
        ),
        (
            "errors by kind",
            [", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "none" for r in rows],
            "only 503/429 + Retry-After",
        ),
        (
            "p50 per request: " + "/".join(STEPS),
            ["/".join(f"{(r['step_p50_s'][s] or 0) * 1000:.0f}" for s in STEPS) for r in rows],
            "ms",
        ),
        ("server alive after", [str(r.get("server_alive_after")) for r in rows], "never a crash"),
        (
            "server side CPU during storm",
            [f"{r['server_cpu_s']:.2f} s / {r['wall_s']:.1f} s" for r in rows],
            "",
        ),
        (
            "generator CPU (all procs)",
            [f"{r['generator_cpu_s']:.2f} s" for r in rows],
            "must not be the bottleneck",
        ),
        (
            "generator start lag p99",
            [_ms(r["generator_start_lag_p99_s"]) for r in rows],
            "≈ 0 if the generator kept up",
        ),
    ]
    if all("existing" in r for r in rows):
        lines += [
            (
                "existing: stalls before/during",
                [
                    f"{r['existing']['before']['stalls']}/{r['existing']['during']['stalls']}"
                    for r in rows
                ],
                "0/0",
            ),
            (
                "existing: lateness p95 bef/dur",
                [
                    f"{_ms(r['existing']['before']['lateness_p95_s'])}/"
                    f"{_ms(r['existing']['during']['lateness_p95_s'])}"
                    for r in rows
                ],
                "< PART-HOLD-BACK",
            ),
            (
                "existing: errors",
                [
                    ", ".join(f"{k} {v}" for k, v in r["existing"]["errors"].items()) or "none"
                    for r in rows
                ],
                "",
            ),
        ]
    width = 30
    print(f"{'':<33}" + "".join(f"{r['target']:>{width}}" for r in rows) + "   budget (SPEC)")
    for label, values, budget in lines:
        print(f"{label:<33}" + "".join(f"{v:>{width}}" for v in values) + f"   {budget}")
    print(
        f"{result['procs']} generator processes; {result['existing']} listeners already playing; "
        f"PART-HOLD-BACK {rows[0]['part_hold_back_s']:.3f} s"
        if rows
        else ""
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--listeners", type=int, default=2000, help="joins within one second")
    parser.add_argument("--procs", type=int, default=4, help="load-generator processes")
    parser.add_argument("--existing", type=int, default=50, help="listeners already playing")
    parser.add_argument(
        "--targets", default="origin,edge", help="any of origin,edge,cluster (comma-separated)"
    )
    parser.add_argument(
        "--edges", default=",".join(EDGE_KINDS), help="the edge target's edges, each in turn"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if not 1 <= args.listeners <= 50_000 or not 1 <= args.procs <= 16:
        parser.error("--listeners 1..50000, --procs 1..16")
    if not 0 <= args.existing <= 2000:
        parser.error("--existing 0..2000")
    targets = [t for t in args.targets.split(",") if t]
    if not targets or any(t not in TARGETS for t in targets):
        parser.error(f"--targets: any of {', '.join(TARGETS)}")
    edges = tuple(e for e in EDGE_KINDS if e in args.edges.split(","))
    if not edges:
        parser.error(f"--edges: any of {', '.join(EDGE_KINDS)}")
    result = run(args.listeners, args.procs, args.existing, targets, edges)
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
