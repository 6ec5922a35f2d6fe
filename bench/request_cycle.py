"""Request cycle: what a listener's request for the open segment costs the origin's protocol and
fan-out, taken from its bytes (whole in one read) against the same request parsed (the same bytes
in two reads, so the parser has it).

A micro-benchmark, run by hand (not part of `bench.run`): the figures are tens of microseconds,
which a whole-server bench on a shared machine resolves only roughly (docs/architecture.md, "The
segment request taken before it is parsed"). Connections on in-memory transports (no sockets, no
system calls), one `ListenerProtocol` each, a real `SpaceMedia` whose encoder is fed silence by
hand; every round each connection asks for the segment being produced, then the segment's parts
are produced and fanned out. CPU time (`time.process_time`), with the collector off, as the
server runs with its startup objects frozen (node/collector.py).

    .venv/bin/python -m bench.request_cycle [--connections 2000] [--rounds 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from townhall.api.admission import Admission, AdmissionLimits
from townhall.api.listener_protocol import ListenerProtocol
from townhall.config import MediaConfig
from townhall.delivery.fanout import SegmentFanout
from townhall.delivery.segment_front import OpenSegmentFront
from townhall.media.audio import FRAME_SAMPLES
from townhall.media.pipeline import SpaceMedia
from townhall.telemetry.requests import RequestStats

SPACE = "benchspace"


class MemoryTransport(asyncio.Transport):
    """A connection that takes every write and counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.writes += 1

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _unreached(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError(f"the app was asked for {scope.get('path')}: the front should answer it")


def _produce(media: SpaceMedia) -> None:
    """One more part: silence through the Space's encoder, its listeners woken."""
    silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    while True:
        parts = media._encoder.encode(silence)
        for part in parts:
            media.packager.add_part(part)
        if parts:
            media._notify()
            return


async def measure(connections: int, rounds: int, pieces: int) -> dict[str, float]:
    """CPU per request (its bytes to its subscription) and per listener-segment (the request,
    the segment's parts written, the response completed), each request sent in `pieces` reads."""
    media = SpaceMedia(SPACE, MediaConfig())  # never started: no clock, parts made by hand
    front = OpenSegmentFront(
        lambda space: media if space == SPACE else None,
        SegmentFanout(),
        lambda _space: True,
        Admission(AdmissionLimits()),
        RequestStats(),
    )
    config = uvicorn.Config(_unreached, log_level="critical", lifespan="off")
    config.load()
    state = ServerState()
    protocols = []
    for _ in range(connections):
        protocol = ListenerProtocol(config=config, server_state=state, app_state={}, segments=front)
        protocol.connection_made(MemoryTransport())
        protocols.append(protocol)
    _produce(media)
    while media.packager.next_part[1] != 1:  # start at a fresh segment's first part
        _produce(media)
    stream = media.packager.stream_id
    requests = whole = 0.0
    for round_ in range(rounds + 1):  # the first round warms up
        msn = media.packager.next_part[0]
        request = (
            f"GET /live/{SPACE}/{stream}/s{msn}.m4s HTTP/1.1\r\nHost: origin\r\n"
            "User-Agent: player\r\nAccept: */*\r\n\r\n"
        ).encode()
        cut = len(request) // pieces
        reads = [request[:cut], request[cut:]] if pieces == 2 else [request]
        started = time.process_time()
        for protocol in protocols:
            for data in reads:
                protocol.data_received(data)
        asked = time.process_time()
        while media.packager.next_part[1] != 1 or media.packager.next_part[0] == msn:
            _produce(media)
            for _ in range(3):  # the pump's turns
                await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)
        done = time.process_time()
        if round_:
            requests += asked - started
            whole += done - started
    served = front.stats.counts.get(("/live/{space}/{stream}/{name}", "GET", 200), 0)
    if served != connections * (rounds + 1):
        raise RuntimeError(f"{served} segments served, {connections * (rounds + 1)} asked")
    count = connections * rounds
    return {"request_us": 1e6 * requests / count, "listener_segment_us": 1e6 * whole / count}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    if not 1 <= args.connections <= 20_000 or not 1 <= args.rounds <= 100:
        parser.error("--connections 1..20000, --rounds 1..100")
    gc.disable()
    taken = asyncio.run(measure(args.connections, args.rounds, pieces=1))
    parsed = asyncio.run(measure(args.connections, args.rounds, pieces=2))
    print(f"{'':32} {'per request':>12} {'per listener-segment':>22}")
    for name, figures in (("taken from its bytes", taken), ("parsed (two reads)", parsed)):
        print(
            f"{name:32} {figures['request_us']:>9.1f} µs {figures['listener_segment_us']:>19.1f} µs"
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"taken": taken, "parsed": parsed, **vars(args)}, out, indent=2)


if __name__ == "__main__":
    main()
