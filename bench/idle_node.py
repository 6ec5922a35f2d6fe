"""Idle node: what a server process costs while nothing happens, and what one idle Space adds.

Most of a platform's nodes are quiet most of the time, and most Spaces are a host waiting in the
green room: that cost is paid all day. Measured on one `townhall serve` process (embedded state):

1. the empty server: CPU (share of one core) and how often its threads wake (voluntary context
   switches per second, over every thread: each timer, poller or worker that wakes is one);
2. `--idle` open Spaces nobody talks in (on air, no stage connected): the same, per Space above
   the empty server.

CPU time is the process's own (/proc utime + stime), so the figures hold under `nice` on a busy
machine; wakeups are what a quiet machine pays for in power and in the scheduler. `--src` runs a
second tree's code (e.g. the main checkout's `src`) in the same run, alternating the two, so a
change is measured against what it replaces on the same machine at the same time:

    .venv/bin/python -m bench.idle_node [--seconds 30] [--idle 5] [--src /path/to/other/src]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from townhall.harness import Server, cpu_seconds, start_server


def wakeups(pid: int) -> dict[int, int]:
    """Voluntary context switches of each thread of `pid` so far, by thread id: how often its
    threads slept and were woken (Linux /proc)."""
    counts: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    counts[int(task.name)] = int(line.split()[1])
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return counts


def woken_between(before: dict[int, int], after: dict[int, int]) -> int:
    """Wakeups from `before` to `after`: a thread's growth, or all of a new thread's (a thread
    that ended in between takes its count with it: never a negative total)."""
    return sum(count - before.get(tid, 0) for tid, count in after.items())


@dataclass(frozen=True)
class Sample:
    core_share: float  # of one core
    wakeups_per_s: float


def sample(pid: int, seconds: float) -> Sample:
    """The process's CPU share and wakeups per second over `seconds` of wall clock."""
    cpu0, wake0, t0 = cpu_seconds(pid), wakeups(pid), time.monotonic()
    deadline = t0 + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(1.0, left))  # measuring an interval, not synchronising
    elapsed = time.monotonic() - t0
    return Sample((cpu_seconds(pid) - cpu0) / elapsed, woken_between(wake0, wakeups(pid)) / elapsed)


def _env(src: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass(frozen=True)
class Row:
    label: str
    empty: Sample
    idle: int
    per_idle_space: Sample

    def line(self) -> str:
        empty, per = self.empty, self.per_idle_space
        return (
            f"{self.label}: empty server {100 * empty.core_share:.2f} % of a core, "
            f"{empty.wakeups_per_s:.0f} wakeups/s; per idle Space "
            f"{100 * per.core_share:.2f} %, {per.wakeups_per_s:.0f} wakeups/s"
        )


def measure(label: str, src: str | None, seconds: float, idle: int) -> Row:
    """Empty, then with `idle` idle Spaces: one server from `src` (None: this tree)."""
    with tempfile.TemporaryDirectory() as tmp:
        server: Server = start_server(Path(tmp), _env(src), within=120)
        try:
            time.sleep(3)  # let start-up work (migrations, first scans) pass before measuring
            empty = sample(server.proc.popen.pid, seconds)
            for i in range(idle):
                server.create_space(f"idle {i}")
            time.sleep(3)
            spaces = sample(server.proc.popen.pid, seconds)
        finally:
            server.proc.kill()
    per = Sample(
        (spaces.core_share - empty.core_share) / max(1, idle),
        (spaces.wakeups_per_s - empty.wakeups_per_s) / max(1, idle),
    )
    return Row(label, empty, idle, per)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="each measurement's length")
    parser.add_argument("--idle", type=int, default=5, help="idle open Spaces in the second step")
    parser.add_argument("--src", help="another tree's src directory, measured alternately")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows: list[Row] = []
    for _ in range(args.rounds):
        for label, src in [("this tree", None), *([(args.src, args.src)] if args.src else [])]:
            rows.append(measure(label, src, args.seconds, args.idle))
            print(rows[-1].line(), flush=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
