"""Telemetry cost: what `/metrics` bookkeeping adds to a media tick and to an HTTP request.

A micro-benchmark, run by hand (not part of `bench.run`: its figures are a few hundred
nanoseconds, far below what a whole-server bench can resolve on a shared machine). CPU time
(`time.process_time`), not wall clock, so other processes on the machine do not inflate it.

* per tick: what `SpaceMedia` adds to each 20 ms tick (three clock reads, one of them on the
  encoder thread, and two observations into the node's lock-free histograms), next to one
  observation into prometheus-client's own Histogram (which takes locks) for comparison;
* per request: `telemetry.requests.RequestTelemetry` around a bare ASGI app that answers at once,
  without and with the access log's request id and log call (the handler switched off, so the
  figure is the middleware's, not the log sink's).

    .venv/bin/python -m bench.telemetry_cost [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import timeit
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from townhall.telemetry.durations import TICK_BUCKETS, Durations
from townhall.telemetry.requests import RequestStats, RequestTelemetry

CALLS = 300_000


def per_call_ns(work: Callable[[], object]) -> float:
    """Best of three runs, in CPU nanoseconds per call."""
    return min(timeit.repeat(work, number=CALLS, repeat=3, timer=time.process_time)) / CALLS * 1e9


def tick_costs() -> dict[str, float]:
    node = Durations(TICK_BUCKETS)

    def tick_added() -> None:
        started = time.perf_counter()
        node.observe(time.perf_counter() - started)  # the mix, on the loop
        node.observe(time.perf_counter() - started)  # the encode (timed on its thread)

    locked = Histogram("h", "h", registry=CollectorRegistry(), buckets=TICK_BUCKETS)
    return {
        "tick_added_ns": per_call_ns(tick_added),
        "observe_lock_free_ns": per_call_ns(lambda: node.observe(0.003)),
        "observe_prometheus_client_ns": per_call_ns(lambda: locked.observe(0.003)),
    }


class _Route:
    path = "/{space}/media.m3u8"


async def _answer(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"#EXTM3U\n"})


async def _per_request_ns(app: ASGIApp) -> float:
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/live/abcdefghij/media.m3u8",
        "headers": [],
        "route": _Route(),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(_: Message) -> None:
        return None

    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(CALLS):
            await app(scope, receive, send)
        best = min(best, (time.process_time() - started) / CALLS * 1e9)
    return best


async def request_costs() -> dict[str, float]:
    logging.getLogger("townhall.requests").disabled = True
    bare = await _per_request_ns(_answer)
    counted = await _per_request_ns(RequestTelemetry(_answer, RequestStats()))
    logged = await _per_request_ns(RequestTelemetry(_answer, RequestStats(), log_requests=True))
    return {
        "request_bare_ns": bare,
        "request_added_ns": counted - bare,
        "request_added_with_access_log_ns": logged - bare,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    result: dict[str, Any] = {**tick_costs(), **asyncio.run(request_costs())}
    for name, value in result.items():
        print(f"{name:40} {value:8.0f} ns")
    print(f"{'share of a core, one Space (50 ticks/s)':40} {result['tick_added_ns'] * 50e-9:.6%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
