"""The bulk of a big bench audience, run by wrk: thousands of listeners at a few tens of
microseconds of CPU per listener-second, where the Python listeners cost about a tenth of a
millisecond.

Why: one generator core must hold more listeners than the server under test can serve, or the
density figures measure the generator. The Python listeners (`bench.swarm`) measure what a listener
hears — the lateness of every part, stalls, errors — and stay as a sample of the audience; the
bulk makes the same requests and checks only that they are answered at the pace of the stream.

- `"segments"` (townhall, straight or behind an edge): `bench/wrk_listener.lua` — the segment being
  produced, streamed as the origin writes it, then the next one, and the snapshot every 15 s: a
  listener page's steady state. Each wrk process publishes its counters to a small file; a window
  counts the segments completed, and a connection that completed fewer than its share fell behind.
- `"progressive"` (Icecast): a plain GET of the mount, read as it comes. wrk reconnects a dropped
  connection at once, so the server's access log (one line per ended client) counts the drops.

Each `add` starts wrk processes of at most `PER_PROCESS` connections, spread over the step's
arrival time (wrk connects all its connections at once), pinned to the generator's cores. Every
process is bounded by its `-d` duration and is stopped by its PID on exit.
"""

from __future__ import annotations

import contextlib
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SCRIPT = Path(__file__).with_name("wrk_listener.lua")
PER_PROCESS = 1000  # connections per wrk process: one step's arrivals come in several waves
BEHIND = 0.85  # a window's completed segments below this share of the expected: fell behind
MAX_S = 3600  # every wrk process ends by itself after this long

BulkKind = Literal["segments", "progressive"]


def available() -> bool:
    return shutil.which("wrk") is not None


@dataclass
class BulkWindow:
    """What the bulk listeners did in one window."""

    listeners: int = 0
    segments: int = 0  # segments completed ("segments")
    # Completions if every listener had each segment its thread moved past, but one.
    expected: int = 0
    stalled: int = 0  # listeners of a wrk process that moved past fewer segments than were made
    snapshots: int = 0
    other: int = 0  # answers other than 200
    refused: int = 0  # of which 503 or 429 (the server shedding load)
    dropped: int = 0  # connections the server ended ("progressive") or a wrk process that ended
    unstarted: int = 0  # listeners whose wave could not start: the server did not say where

    @property
    def behind(self) -> int:
        """Listeners that fell behind the stream in the window (0 when the pace was kept)."""
        if not self.expected or self.segments >= BEHIND * self.expected:
            return self.stalled
        moving = self.listeners - self.stalled
        return self.stalled + round((self.expected - self.segments) / self.expected * moving)

    @property
    def errors(self) -> int:
        return self.other + self.dropped + self.unstarted + self.behind


class Unlocated(Exception):
    """The live stream's position could not be read (the server did not answer in time): a wave
    that cannot start is listeners the server could not take."""


@dataclass
class Live:
    """Where the bulk asks: the live stream's segment prefix and the segment in production."""

    base: str  # scheme://host:port of the server or edge
    segment_prefix: str  # path up to the segment name, ending in "/"
    msn: int
    segment_s: float
    snapshot_path: str
    snapshot_s: float


class Bulk:
    """wrk processes holding `listeners` connections to one target, pinned to `cpus`."""

    def __init__(
        self,
        kind: BulkKind,
        url: str,
        cpus: set[int],
        *,
        locate: Callable[[], Live] | None = None,
        access_log: Path | None = None,
    ) -> None:
        self.kind, self.url, self.cpus = kind, url, cpus
        self.locate = locate
        self.live: Live | None = None  # where the newest wave started
        self.access_log = access_log
        self.listeners = 0
        self.unstarted = 0  # listeners whose wave could not start (`Unlocated`), all so far
        self.unlocated: str | None = None  # why the last such wave could not start
        self._procs: list[tuple[subprocess.Popen[bytes], int, Path]] = []
        self._dir = Path(tempfile.mkdtemp(prefix="bulk-"))
        self._mark: tuple[float, list[tuple[int, ...]], int] | None = None

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc, _, _ in self._procs]

    def add(self, count: int, spread: float) -> None:
        """`count` more listeners in waves of at most PER_PROCESS over `spread` seconds; each wave
        of segment listeners starts at the segment in production then (`locate`)."""
        waves = max(1, -(-count // PER_PROCESS))
        for wave in range(waves):
            size = count // waves + (1 if wave < count % waves else 0)
            self._start(size)
            if wave + 1 < waves:
                time.sleep(spread / waves)  # arrivals spread over the step, as the swarm's are

    def _start(self, size: int) -> None:
        counters = self._dir / f"wrk-{len(self._procs)}.txt"
        cpus = ",".join(str(c) for c in sorted(self.cpus))
        _, files = resource.getrlimit(resource.RLIMIT_NOFILE)
        # prlimit and taskset exec wrk in turn: the PID is wrk's, with the hard open-files limit
        # (a wave holds PER_PROCESS connections; the usual soft limit is 1,024) and its cores.
        command = ["prlimit", f"--nofile={files}:{files}", "taskset", "-c", cpus]
        command += ["wrk", "-t", "1", "-c", str(size), "-d", f"{MAX_S}s", "--timeout", "30s"]
        if self.kind == "segments":
            if self.locate is None:
                raise ValueError("a segments bulk needs to locate the live stream")
            try:
                live = self.live = self.locate()
            except Unlocated as error:
                self.unstarted += size
                self.unlocated = str(error)
                return
            command += ["-s", str(SCRIPT), live.base, "--", live.segment_prefix, str(live.msn)]
            command += [live.snapshot_path, f"{live.snapshot_s}", str(size)]
            command.append(str(counters))
        else:
            command.append(self.url)
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._procs.append((proc, size, counters))
        self.listeners += size

    def _counters(self) -> list[tuple[int, ...]]:
        """Each wrk process's published counters: segments, other answers, snapshots, requests,
        the segment its thread is at, refusals (zeros before its first answer)."""
        readings: list[tuple[int, ...]] = []
        for _, _, counters in self._procs:
            values: tuple[int, ...] = (0, 0, 0, 0, 0, 0)
            with contextlib.suppress(OSError, ValueError):
                read = tuple(int(x) for x in counters.read_text().split())
                values = read if len(read) == len(values) else values
            readings.append(values)
        return readings

    def _ended(self) -> int:
        if self.access_log is None:
            return 0
        with contextlib.suppress(OSError), self.access_log.open("rb") as log:
            return sum(1 for _ in log)
        return 0

    def mark(self) -> None:
        self._mark = (time.monotonic(), self._counters(), self._ended())

    def collect(self) -> BulkWindow:
        if self._mark is None:
            raise RuntimeError("collect() without mark()")
        t0, before, ended0 = self._mark
        after, ended = self._counters(), self._ended()
        wall = time.monotonic() - t0
        window = BulkWindow(dropped=ended - ended0, unstarted=self.unstarted)
        made = wall / self.live.segment_s if self.live is not None else 0.0
        for (proc, size, _), old, new in zip(self._procs, before, after, strict=False):
            if proc.poll() is not None:
                window.dropped += size  # a wrk process that ended took its listeners with it
                continue
            window.listeners += size
            window.segments += new[0] - old[0]
            window.other += new[1] - old[1]
            window.snapshots += new[2] - old[2]
            window.refused += new[5] - old[5]
            if self.kind == "segments":
                moved = new[4] - old[4]
                # A thread publishes the edge it moved at the first completion of a burst, the
                # rest of the burst a moment later: a window that closes (or opens) in between
                # sees one segment's completions missing (or extra). So one segment's worth is
                # not expected: a listener that fell behind misses more than that.
                window.expected += size * max(0, moved - 1)
                if moved < made - 1.5:  # the thread's edge fell behind the stream's
                    window.stalled += size
        return window

    def close(self) -> None:
        for proc, _, _ in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _, _ in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Bulk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
