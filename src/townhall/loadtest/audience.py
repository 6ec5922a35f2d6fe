"""A synthetic audience of page listeners (`page.PageListener`) in several processes.

The parent (`Audience`) starts one worker process per core it is given (spawned, not forked: the
parent may hold threads), and drives them over pipes:

- `arrive(n, spread)`: n more listeners, arriving evenly over `spread` seconds (a ramp), or all
  within one second (a join storm);
- `act(reactions, hands)`: this many reactions and raised hands in the next second, done by
  whichever listeners are free (each signs in as a guest first, as the page does on a first click);
- `sample()`: what every worker saw so far (`Sample`: cumulative counts, and the lateness and
  time-to-first-audio samples since the last call).

Every listener has a hard deadline (`until`), so the audience stops by itself even if the parent
dies; `close` stops the workers by their own PID if they do not answer.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from townhall.loadtest.page import Actions, PageListener, PageStats, SpaceTarget
from townhall.loadtest.procs import WorkerGroup, generator_process, send_blocking
from townhall.loadtest.wire import CLIENTS

SAMPLES_PER_REPLY = 5_000  # lateness values a worker reports per sample, at most (random sample)
ACTION_BACKLOG = 200  # reactions or hands waiting for a free listener, per worker, at most


@dataclass
class Sample:
    """What the whole audience did so far; lateness and first-audio are since the last sample."""

    arrived: int = 0  # listeners started
    active: int = 0  # listeners still running (joined or trying to)
    playing: int = 0  # listeners whose stream flows now
    joins: int = 0
    requests: int = 0
    parts: int = 0
    stalls: int = 0
    reactions: int = 0
    hands: int = 0
    retry_after_honoured: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    lateness: list[float] = field(default_factory=list)
    first_audio: list[float] = field(default_factory=list)

    def add(self, part: dict[str, Any]) -> None:
        for name in (
            "arrived",
            "active",
            "playing",
            "joins",
            "requests",
            "parts",
            "stalls",
            "reactions",
            "hands",
            "retry_after_honoured",
        ):
            setattr(self, name, getattr(self, name) + int(part[name]))
        self.sent.update(part["sent"])
        self.answers.update(part["answers"])
        self.errors.update(part["errors"])
        self.lateness.extend(part["lateness"])
        self.first_audio.extend(part["first_audio"])


async def _serve(conn: Connection, url: str, until: float, client: str) -> None:
    """One worker: listeners on this process's event loop, commands from the parent's pipe."""
    target = SpaceTarget.parse(url)
    stats = PageStats()
    actions = Actions()
    tasks: set[asyncio.Task[None]] = set()
    arrived = 0
    reported_audio = 0
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))

    async def listener(delay: float, number: int) -> None:
        await asyncio.sleep(delay)
        await PageListener(
            target, stats, actions, guest_name=f"Rehearsal {number}", client=CLIENTS[client]
        ).run(until)

    while True:
        command = await commands.get()
        if command[0] == "arrive":
            count, spread = int(command[1]), float(command[2])
            for i in range(count):
                arrived += 1
                task = asyncio.create_task(listener(spread * i / max(1, count), arrived))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            send_blocking(conn, ("ok", len(tasks)))
        elif command[0] == "act":
            for queue, count in ((actions.reactions, command[1]), (actions.hands, command[2])):
                for _ in range(int(count)):
                    if queue.qsize() < ACTION_BACKLOG:
                        queue.put_nowait(None)
            send_blocking(conn, ("ok", len(tasks)))
        elif command[0] == "sample":
            late = list(stats.lateness)  # a copy: the window starts again below
            if len(late) > SAMPLES_PER_REPLY:
                late = random.sample(late, SAMPLES_PER_REPLY)
            reply = {
                "arrived": arrived,
                "active": len(tasks),
                "playing": stats.playing,
                "joins": stats.joins,
                "requests": stats.requests,
                "parts": stats.parts,
                "stalls": stats.stalls,
                "reactions": stats.reactions,
                "hands": stats.hands,
                "retry_after_honoured": stats.retry_after_honoured,
                "sent": dict(stats.sent),
                "answers": dict(stats.answers),
                "errors": dict(stats.errors),
                "lateness": late,
                "first_audio": stats.first_audio[reported_audio:],
            }
            reported_audio = len(stats.first_audio)
            stats.lateness.clear()
            send_blocking(conn, ("sample", reply))
        else:  # "stop"
            loop.remove_reader(conn.fileno())
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=10)
            send_blocking(conn, ("stopped", 0))
            return


def _worker(
    conn: Connection, url: str, until_in: float, cpus: set[int] | None, client: str
) -> None:
    run = generator_process(cpus)
    run(_serve(conn, url, time.monotonic() + until_in, client))


class Audience(WorkerGroup):
    """`processes` workers of page listeners on the Space at `url`, all gone after `max_s`;
    `client` names their HTTP client (`wire.CLIENTS`: "lean" by default, "streams")."""

    def __init__(
        self,
        url: str,
        processes: int,
        max_s: float,
        cpus: set[int] | None = None,
        client: str = "lean",
    ) -> None:
        SpaceTarget.parse(url)  # refuse a bad link here, not in every worker
        if client not in CLIENTS:
            raise ValueError(f"client: one of {', '.join(CLIENTS)}")
        super().__init__()
        ctx = multiprocessing.get_context("spawn")
        for _ in range(max(1, processes)):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, url, max_s, cpus, client), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def _spread(self, command: str, *counts: int, extra: tuple[Any, ...] = ()) -> None:
        """Send each worker its share of `counts` (the remainder to the first ones)."""
        n = len(self.conns)
        for i, conn in enumerate(self.conns):
            shares = [c // n + (1 if i < c % n else 0) for c in counts]
            conn.send((command, *shares, *extra))
        self.replies(command)

    def arrive(self, count: int, spread: float) -> None:
        if count > 0:
            self._spread("arrive", count, extra=(spread,))

    def act(self, reactions: int, hands: int) -> None:
        if reactions > 0 or hands > 0:
            self._spread("act", reactions, hands)

    def sample(self) -> Sample:
        for conn in self.conns:
            conn.send(("sample",))
        total = Sample()
        for reply in self.replies("sample"):
            total.add(reply)
        return total
