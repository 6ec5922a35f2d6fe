"""Load-generator processes: started, pinned, accounted and stopped the same way everywhere.

Why separate processes: one Python event loop saturates one core at a few thousand requests per
second, and a load generator that is itself the bottleneck measures nothing. These helpers are
shared by `townhall loadtest` and the benches (bench/swarm.py): open-files limits raised (every
listener holds connections), uvloop when installed, CPU read from /proc for a process and its
descendants so the generator's own cost is measured the way the server's is, and workers stopped
by their own PID if they hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Self

from townhall.harness import cpu_seconds, rss_bytes


def raise_nofile() -> int:
    """Raise this process's open-files limit to its hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (Linux /proc), so a server's workers are counted and pinned."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 10_000:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(child) for child in children)
    return found


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU used so far by these processes and their descendants (processes gone count 0)."""
    total = 0.0
    for pid in pids:
        for proc in process_tree(pid):
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += cpu_seconds(proc)
    return total


def tree_rss_bytes(pids: list[int]) -> int:
    """Resident memory of these processes and their descendants."""
    total = 0
    for pid in pids:
        for proc in process_tree(pid):
            with contextlib.suppress(OSError, ValueError):
                total += rss_bytes(proc)
    return total


def send_blocking(conn: Connection, message: Any) -> None:
    """Send on the pipe in blocking mode: the event loop's reader made the fd non-blocking, and a
    report can be larger than the pipe's buffer."""
    os.set_blocking(conn.fileno(), True)
    conn.send(message)


def generator_process(cpus: set[int] | None) -> Any:
    """Set up this load-generator process: pinned to `cpus`, its open-files limit raised. Returns
    how to run its event loop: uvloop's when installed (the generator's CPU is the limit)."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    raise_nofile()
    try:
        import uvloop

        return uvloop.run
    except ImportError:
        return asyncio.run


def end_processes(procs: list[Any], conns: list[Connection]) -> None:
    """Wait for worker processes told to stop (each killed by its own PID if it hangs), then
    close their pipes."""
    for proc in procs:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    for conn in conns:
        conn.close()


REPLY_TIMEOUT = 60.0  # s a worker may take to answer a command


class WorkerGroup:
    """Worker processes driven over pipes (`conns[i]` talks to `procs[i]`): what every load
    generator shares — asking all of them, their CPU, and stopping them by their own PID."""

    def __init__(self) -> None:
        self.conns: list[Connection] = []
        self.procs: list[Any] = []

    def replies(self, command: str) -> list[Any]:
        """Each worker's answer to `command` (already sent), in worker order."""
        answers = []
        for conn in self.conns:
            if not conn.poll(REPLY_TIMEOUT):
                raise TimeoutError(f"a load-generator worker did not answer {command}")
            answers.append(conn.recv()[1])
        return answers

    @property
    def pids(self) -> list[int]:
        return [int(p.pid) for p in self.procs]

    def cpu_seconds(self) -> float:
        """CPU the workers used so far (the generator's own cost, to tell it from the server's)."""
        return tree_cpu_seconds(self.pids)

    def close(self) -> None:
        """Stop the listeners, then the workers (by their own PID, killed if they hang)."""
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for conn in self.conns:
            with contextlib.suppress(OSError, EOFError):
                if conn.poll(20):
                    conn.recv()
        end_processes(self.procs, self.conns)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
