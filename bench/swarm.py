"""A multi-process listener swarm for capacity benches, with CPU pinning and CPU accounting.

Why separate processes: one Python event loop saturates one core at a few thousand requests per
second, and a load generator that is itself the bottleneck measures nothing. The swarm starts
`procs` worker processes (spawned, not forked: the parent holds threads), optionally pins each to a
set of cores (so the server side keeps its own core), raises each one's RLIMIT_NOFILE to the hard
limit (every LL-HLS listener holds two connections) and drives them over pipes:

- `add(n, spread)`: n more listeners, arrivals spread over `spread` seconds (a ramp step must not
  be a join storm);
- `mark()` / `collect()`: open and close a measurement window; `collect` returns what all workers
  saw in that window (`Window`) — requests, parts (or chunks), stalls, errors, lateness samples;
- `cpu_seconds()`: user + system CPU of all workers so far, read from /proc by the parent, so the
  generator's own cost is measured the same way as the server's.

Four kinds of listener:
- `"page"`: `townhall.loadtest.page.PageListener`, what the real listener page asks (the same
  listener `townhall loadtest` uses): snapshot once a second, sampled presence, one streamed
  request per segment; `url` is the Space's link (…/s/{id}); a stall is a part later than its
  media end + PART-HOLD-BACK.
- `"lean"`: the same listener on the lean HTTP client (`townhall.loadtest.wire`): the same
  requests and measurement at a fraction of the generator's CPU, for big audiences.
- `"llhls"`: `townhall.loadtest.llhls.run_listener`, what hls.js asks in low-latency mode (blocking playlist
  reload + preload-hinted part per part); a stall is a part later than its media end +
  PART-HOLD-BACK.
- `"progressive"`: one HTTP GET of a continuous stream (Icecast), bytes counted in an
  `asyncio.Protocol`. Media received = bytes / `byte_rate`; at each arrival, lateness = wall time
  since the first byte − media received before it, and a stall is lateness > `hold_back`: a player
  that started with `hold_back` of buffer would have run dry. A listener that receives nothing is
  checked at `collect` the same way, so a stream that stops cannot hide.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import resource
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

from townhall.harness import (
    Edge,
    EdgeKind,
    HostedSpace,
    Proc,
    Server,
    start_edge,
    start_server,
    start_speaker,
    wait_connected,
    wait_until,
)
from townhall.loadtest.llhls import PlayerStats, parse_playlist, percentile, run_listener
from townhall.loadtest.page import PageListener, PageStats, SpaceTarget
from townhall.loadtest.procs import (
    WorkerGroup,
    generator_process,
    process_tree,
    send_blocking,
)
from townhall.loadtest.wire import LeanClient

MAX_LISTENER_S = 3600.0  # a listener's hard deadline: every swarm is bounded in time


def listener_cap(processes: int = 1) -> int:
    """How many LL-HLS listeners the open-files hard limit allows when each of `processes` holds
    two connections per listener it serves (a margin is kept for everything else). nginx cannot
    raise its limit past the hard limit either: `live_space` gives it more workers instead."""
    return (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 1000) // 2 * processes


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of `pid` and of its descendants to `cpus`.

    `sched_setaffinity(pid)` moves one thread only; threads a server started before it was pinned
    would keep running anywhere, so each task is set."""
    for proc in process_tree(pid):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{proc}/task").iterdir():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task.name), cpus)


def core_busy_seconds(core: int) -> float:
    """Seconds core `core` has spent busy (not idle or iowait), whoever ran on it (/proc/stat):
    on a shared machine a pinned process can be starved by others on its core, and this shows it."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            ticks = [int(x) for x in line.split()[1:]]
            return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def machine() -> str:
    """One line about the machine, for the record of a run."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model or 'unknown CPU'}, Linux {os.uname().release}"


@contextlib.contextmanager
def affinity(cpus: set[int] | None) -> Iterator[None]:
    """Run the block with this process pinned to `cpus`, so the processes it spawns inherit it
    from their first instruction; the previous affinity is restored after."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@dataclass
class Window:
    """What the whole swarm saw during one measurement window."""

    listeners: int = 0  # active at collect
    requests: int = 0
    bytes: int = 0
    parts: int = 0  # parts (llhls) or received chunks (progressive)
    stalls: int = 0
    joins: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    lateness: list[float] = field(default_factory=list)

    def add(self, other: dict[str, Any]) -> None:
        self.listeners += other["listeners"]
        self.requests += other["requests"]
        self.bytes += other["bytes"]
        self.parts += other["parts"]
        self.stalls += other["stalls"]
        self.joins += other["joins"]
        self.errors.update(other["errors"])
        self.lateness.extend(other["lateness"])

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def lateness_p95(self) -> float | None:
        return percentile(self.lateness, 95)


class _Stream(asyncio.Protocol):
    """One progressive-download listener: sends a GET, counts body bytes and their lateness."""

    def __init__(self, target: str, authority: str, stats: PlayerStats, swarm: _Progressive):
        self.request = f"GET {target} HTTP/1.0\r\nHost: {authority}\r\n\r\n".encode()
        self.stats = stats
        self.swarm = swarm
        self.head = b""
        self.in_body = False
        self.first: float | None = None  # monotonic time of the first body byte
        self.received = 0
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's is no asyncio class
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > 16_384:
                    self._fail("protocol")
                return
            status = self.head.split(b" ", 2)[1]
            if status != b"200":
                self._fail(f"http_{status.decode(errors='replace')}")
                return
            self.in_body = True
            self.stats.joins += 1
            data = self.head[end + 4 :]
            if not data:
                return
        now = time.monotonic()
        if self.first is None:
            self.first = now
        else:
            late = (now - self.first) - self.received / self.swarm.byte_rate
            self.stats.lateness.append(late)
            if late > self.swarm.hold_back:
                self.stats.stalls += 1
        self.stats.parts += 1
        self.stats.bytes += len(data)
        self.received += len(data)

    def lag(self, now: float) -> float | None:
        """How far the media received is behind the wall clock since the first byte."""
        if self.first is None:
            return None
        return (now - self.first) - self.received / self.swarm.byte_rate

    def _fail(self, kind: str) -> None:
        if not self.done.done():
            self.done.set_result(kind)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result("closed")


class _Progressive:
    """The progressive listeners of one worker."""

    def __init__(self, url: str, byte_rate: float, hold_back: float, stats: PlayerStats) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.authority = parts.netloc
        self.target = parts.path or "/"
        self.byte_rate = byte_rate
        self.hold_back = hold_back
        self.stats = stats
        self.streams: set[_Stream] = set()

    async def listen(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        while time.monotonic() < until:
            stream = _Stream(self.target, self.authority, self.stats, self)
            self.stats.requests += 1
            try:
                transport, _ = await asyncio.wait_for(
                    loop.create_connection(lambda s=stream: s, self.host, self.port), 10
                )
            except (OSError, TimeoutError):
                self.stats.errors["connect"] += 1
            else:
                self.streams.add(stream)
                try:
                    kind = await stream.done
                finally:
                    self.streams.discard(stream)
                    transport.close()
                self.stats.errors[kind] += 1
            await asyncio.sleep(min(0.5, max(0.0, until - time.monotonic())))

    def silent_stalls(self) -> int:
        """Listeners whose stream has fallen behind by more than the hold-back right now."""
        now = time.monotonic()
        return sum(1 for s in self.streams if (s.lag(now) or 0.0) > self.hold_back)


LATENESS_SAMPLE = 30_000  # lateness values a worker reports per window, at most (a random sample)


def _window(stats: PlayerStats, listeners: int, extra_stalls: int) -> dict[str, Any]:
    late = stats.lateness
    if len(late) > LATENESS_SAMPLE:
        late = random.sample(late, LATENESS_SAMPLE)
    return {
        "listeners": listeners,
        "requests": stats.requests,
        "bytes": stats.bytes,
        "parts": stats.parts,
        "stalls": stats.stalls + extra_stalls,
        "joins": stats.joins,
        "errors": dict(stats.errors),
        "lateness": late,
    }


def _reset(stats: PlayerStats) -> None:
    """Start a new window in place: the running listeners keep their reference to `stats`."""
    stats.requests = stats.bytes = stats.parts = stats.stalls = stats.joins = 0
    stats.errors.clear()
    stats.lateness.clear()
    stats.part_times.clear()


async def _serve(conn: Connection, kind: str, url: str, options: dict[str, float]) -> None:
    stats = PageStats()  # a PlayerStats; page listeners also count their answers
    until = time.monotonic() + MAX_LISTENER_S
    tasks: set[asyncio.Task[None]] = set()
    progressive = (
        _Progressive(url, options["byte_rate"], options["hold_back"], stats)
        if kind == "progressive"
        else None
    )
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))

    async def arrive(delay: float) -> None:
        await asyncio.sleep(delay)
        if progressive is not None:
            await progressive.listen(until)
        elif kind == "page":
            await PageListener(SpaceTarget.parse(url), stats).run(until)
        elif kind == "lean":
            await PageListener(SpaceTarget.parse(url), stats, client=LeanClient).run(until)
        else:
            await run_listener(url, until, stats)

    while True:
        command = await commands.get()
        if command[0] == "add":
            count, spread = int(command[1]), float(command[2])
            for i in range(count):
                task = asyncio.create_task(arrive(spread * i / max(1, count)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            send_blocking(conn, ("ok", len(tasks)))
        elif command[0] == "mark":
            _reset(stats)
            send_blocking(conn, ("ok", len(tasks)))
        elif command[0] == "collect":
            silent = progressive.silent_stalls() if progressive is not None else 0
            send_blocking(conn, ("window", _window(stats, len(tasks), silent)))
        else:  # "stop"
            loop.remove_reader(conn.fileno())
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=10)
            send_blocking(conn, ("stopped", 0))
            return


def _worker(conn: Connection, kind: str, url: str, cpus: set[int] | None, options: Any) -> None:
    generator_process(cpus)(_serve(conn, kind, url, options))


class Swarm(WorkerGroup):
    """`procs` worker processes of `kind` listeners on `url`; see the module docstring."""

    def __init__(
        self,
        kind: str,
        url: str,
        procs: int,
        cpus: set[int] | None = None,
        byte_rate: float = 0.0,
        hold_back: float = 0.0,
    ) -> None:
        if kind not in ("page", "lean", "llhls", "progressive"):
            raise ValueError(kind)
        ctx = multiprocessing.get_context("spawn")
        options = {"byte_rate": byte_rate, "hold_back": hold_back}
        super().__init__()
        self.listeners = 0
        for _ in range(procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, kind, url, cpus, options), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def _ask(self, *command: Any) -> list[Any]:
        for conn in self.conns:
            conn.send(command)
        return self.replies(command[0])

    def add(self, count: int, spread: float = 1.0) -> None:
        """`count` more listeners, spread evenly over the workers and over `spread` seconds."""
        n = len(self.conns)
        for i, conn in enumerate(self.conns):
            conn.send(("add", count // n + (1 if i < count % n else 0), spread))
        self.replies("add")
        self.listeners += count

    def mark(self) -> None:
        self._ask("mark")

    def collect(self) -> Window:
        window = Window()
        for reply in self._ask("collect"):
            window.add(reply)
        return window


def wait_interval(seconds: float) -> None:
    """Let a measurement interval pass (not synchronisation: nothing is being waited for)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.5, left))


@dataclass
class LiveSpace:
    """A townhall server with one live Space and a speaker bot on it (and optionally the edge)."""

    server: Server
    space: HostedSpace
    bot: Proc
    edge: Edge | None

    def media_url(self, base: str) -> str:
        return f"{base}/live/{self.space.id}/media.m3u8"

    def part_hold_back(self) -> float:
        """PART-HOLD-BACK of the live playlist: the buffer a player keeps, hence a stall's limit."""
        text = httpx.get(self.media_url(self.server.url), timeout=10).text
        return parse_playlist(text, self.media_url(self.server.url)).part_hold_back


@contextlib.contextmanager
def live_space(
    tmp: Path,
    *,
    server_cpus: set[int] | None = None,
    bot_cpus: set[int] | None = None,
    edge: EdgeKind | None = None,
    edge_connections: int = 4096,
) -> Iterator[LiveSpace]:
    """Start a server, a live Space with one `townhall speak --tone 440` bot (so parts carry real
    audio) and, if `edge` names one, that edge with its shipped config; the server and edge pinned to
    `server_cpus`, the bot to `bot_cpus`. Everything is stopped by its own PID on exit."""
    with affinity(server_cpus):
        server = start_server(tmp / "server", within=120)  # a busy machine starts slowly
    started: list[Proc] = [server.proc]
    try:
        space = server.create_space("Density bench")
        with affinity(bot_cpus):
            bot = start_speaker(*space.host_bot_args(), "--tone", "440")
        started.append(bot)
        wait_connected(bot)
        front = None
        if edge is not None:
            with affinity(server_cpus):
                front = start_edge(
                    server.url, tmp / "edge", kind=edge, connections=edge_connections
                )
            started.append(front.proc)
        if server_cpus is not None:
            pin(server.proc.popen.pid, server_cpus)
            if front is not None:
                pin(front.proc.popen.pid, server_cpus)
        if bot_cpus is not None:
            pin(bot.popen.pid, bot_cpus)
        live = LiveSpace(server, space, bot, front)
        wait_until(
            lambda: len(parse_playlist(_text(live.media_url(server.url)), "http://x/").parts) >= 3,
            30,
            "a few parts in the live playlist",
            interval=0.2,
        )
        yield live
    finally:
        for proc in reversed(started):
            proc.stop()


def _text(url: str) -> str:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return ""
