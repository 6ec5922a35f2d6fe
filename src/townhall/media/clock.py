"""The node's media clock: one 20 ms timer and one encode worker for every Space it runs.

Measured on the landed code (bench.stage_cost with its py-spy breakdown): an open Space with nobody
talking spent more CPU on being woken than on its audio: each Space had its own clock task and its
own worker thread, so every 20 ms and for every Space the event loop ran a timer, handed a job to a
thread, woke that thread and was woken back through its self-pipe. One clock for all of a node's
Spaces pays that once per tick, whatever the number of Spaces.

Theory of operation
-------------------
* One task wakes on absolute 20 ms deadlines of the monotonic clock (as each Space's clock did:
  if the loop was starved it ticks again at once to catch up, up to `MAX_CATCH_UP_TICKS`; a longer
  stall is skipped, counted on the clock and on every member, rather than replayed in a burst).
  Skipped is not lost: each member's `skip_ticks` puts the skipped interval into its stream as
  silence (on the loop, through its gate) and returns the work that encodes it, which goes to the
  worker ahead of the next tick's, so every stream stays on the wall clock and in tick order.
* A tick goes through the members in the order they joined, in three steps per member:
  `begin_tick()` on the loop (mix, on-air gate, delay line: commands from the control plane land
  between two ticks), returning the work for the worker; that work (AAC, Opus) runs for every
  member in one hand-off to the single worker thread, which keeps tick order; what it returns
  runs on the loop again (package, wake listeners, return to speakers), in tick order too. A
  member whose step raises is logged and left out of this tick only: one bad Space must not
  stop the others.
* The clock does not wait for a tick's work to come back before the next tick begins (the
  round trip to a thread can exceed 20 ms on a busy machine, and waiting for it made ticks late);
  it waits only when `MAX_IN_FLIGHT` ticks are out, so a worker slower than real time is not
  outrun and the stall handling above takes over.
* While every member is idle (`Ticking.idle`: nobody connected to its stage's audio, so each tick
  mixes silence and returns nothing to anyone), the clock wakes every `IDLE_BATCH_TICKS` ticks and
  runs that many back to back in one hand-off: the same ticks in the same order, the same
  stream, five times fewer wakeups of the loop and the worker (an idle node's cost was mostly
  those wakeups: docs/architecture.md). Each part of an idle Space is published up to 80 ms later
  than at 20 ms ticks, well inside the playlist's hold-back. A member that stops being idle (a
  speaker connects) brings the 20 ms ticks back from the next wake.
* The task runs while there are members and ends with the last one, so an empty node costs nothing.
  `run_in_worker` queues other work (a Space's final flush) behind the ticks already handed over.

Encoding stays off the event loop (the loop moves bytes and decisions), and it stays in order
because there is one worker; PyAV releases the GIL inside the codecs, so the loop's own work for
the next members overlaps it on another core when there is one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol, TypeVar

from townhall.media.audio import FRAME_SECONDS
from townhall.tasks import cancel_and_wait

log = logging.getLogger(__name__)

MAX_CATCH_UP_TICKS = 25  # 500 ms: beyond this a stall is skipped, not replayed in a burst
# Ticks handed to the worker and not yet finished before the clock waits for the oldest: a tick
# need not wait for the one before it to come back (on a busy machine waking the worker and being
# woken back can take longer than 20 ms), but a worker slower than real time is not outrun.
MAX_IN_FLIGHT = 5
IDLE_BATCH_TICKS = 5  # ticks run per wake while every member is idle (100 ms)

T = TypeVar("T")
Finish = Callable[[], None]
"""What a member does on the loop once its tick's work is done."""
Work = Callable[[], Finish]
"""A member's tick work for the worker thread: returns what is left to do on the loop."""


class Ticking(Protocol):
    """What the clock needs of a member (a Space's media)."""

    @property
    def space_id(self) -> str: ...

    @property
    def idle(self) -> bool:
        """Nothing real-time depends on this member's ticks (no speaker to mix or return to):
        the clock may run its ticks a few at a time."""
        ...

    def begin_tick(self) -> Work:
        """This tick's loop-side work (mix, gate); returns the worker-side work."""
        ...

    def skip_ticks(self, missed: int) -> Work | None:
        """The clock skipped `missed` ticks after a stall: they are not mixed for anyone. Returns
        the worker-side work that still puts their interval into the member's stream (silence),
        which the clock runs before the next tick's work, or None."""
        ...


class MediaClock:
    """One tick task and one worker thread shared by every member; see the module docstring."""

    def __init__(self, *, now: Callable[[], float] = time.monotonic, name: str = "media") -> None:
        self._now = now
        self._name = name
        self._members: dict[int, Ticking] = {}  # by id(): insertion order is tick order
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None  # made when needed
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.handoffs = 0  # batches of work handed to the worker (fewer than ticks while idle)
        self.skipped_ticks = 0
        self.late_ticks = 0  # ticks that began more than a tick after their deadline

    @property
    def members(self) -> int:
        return len(self._members)

    def owns(self, member: Ticking) -> bool:
        return id(member) in self._members

    def add(self, member: Ticking) -> None:
        """Tick `member` from the next tick on (starting the task if it is not running)."""
        self._members[id(member)] = member
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"{self._name}-clock")

    def remove(self, member: Ticking) -> None:
        """Stop ticking `member`; a tick already handed to the worker still finishes for it."""
        self._members.pop(id(member), None)

    async def run_in_worker(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the worker thread after the work already queued there."""
        return await asyncio.get_running_loop().run_in_executor(self._executor(), fn)

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._worker is None:
            self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=self._name)
        return self._worker

    async def close(self) -> None:
        """Stop the task and release the worker thread; members are no longer ticked. The clock
        may be used again (a new thread is made when work comes)."""
        self._members.clear()
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self._worker is not None:
            self._worker.shutdown(wait=False)
            self._worker = None

    async def tick(self, members: list[Ticking]) -> None:
        """One tick of `members`, in order, awaited to its end (for driving members by hand)."""
        await self._submit(members)

    def _submit(self, members: list[Ticking], ticks: int = 1) -> asyncio.Future[None]:
        """Begin `ticks` ticks of `members` on the loop, in order, and hand their work to the
        worker at once; the future is done once every member has finished them on the loop."""
        started: list[tuple[Ticking, Work]] = []
        for _ in range(ticks):
            for member in members:
                try:
                    started.append((member, member.begin_tick()))
                except Exception:
                    log.exception("space %s: media tick failed", member.space_id)
        return self._hand_over(started, ticks=ticks)

    def _skip(self, members: list[Ticking], missed: int) -> asyncio.Future[None]:
        """Tell `members` that `missed` ticks were skipped and hand the work each returns (its
        skipped interval as silence) to the worker, ahead of any later tick's."""
        started: list[tuple[Ticking, Work]] = []
        for member in members:
            try:
                work = member.skip_ticks(missed)
            except Exception:
                log.exception("space %s: filling skipped ticks failed", member.space_id)
                continue
            if work is not None:
                started.append((member, work))
        return self._hand_over(started, ticks=0)

    def _hand_over(
        self, started: list[tuple[Ticking, Work]], *, ticks: int
    ) -> asyncio.Future[None]:
        """Run the members' work in one hand-off to the worker, then each one's finish on the
        loop; the future is done once all have finished. Counts as `ticks` ticks."""
        loop = asyncio.get_running_loop()
        self.handoffs += 1
        work = loop.run_in_executor(self._executor(), lambda: [_work(m, w) for m, w in started])
        done: asyncio.Future[None] = loop.create_future()

        def finish(future: asyncio.Future[list[tuple[Ticking, Finish | None]]]) -> None:
            try:
                for member, step in future.result():
                    if step is None:
                        continue
                    try:
                        step()
                    except Exception:
                        log.exception("space %s: media tick failed", member.space_id)
                self.ticks += ticks
            except BaseException:  # the worker is gone (closed): nothing to deliver
                log.exception("media clock: tick failed")
            finally:
                if not done.done():
                    done.set_result(None)

        work.add_done_callback(finish)
        return done

    async def _run(self) -> None:
        in_flight: deque[asyncio.Future[None]] = deque()
        deadline = self._now()
        while self._members:
            idle = all(member.idle for member in self._members.values())
            batch = IDLE_BATCH_TICKS if idle else 1
            deadline += batch * FRAME_SECONDS  # the deadline of the batch's last tick
            delay = deadline - self._now()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > MAX_CATCH_UP_TICKS * FRAME_SECONDS:
                missed = int(-delay / FRAME_SECONDS)
                self.skipped_ticks += missed
                deadline += missed * FRAME_SECONDS
                log.warning(
                    "media clock stalled: skipped %d ticks of %d Spaces", missed, len(self._members)
                )
                try:  # queued on the worker before this tick's work: the streams stay in order
                    in_flight.append(self._skip(list(self._members.values()), missed))
                except Exception:  # the clock must outlive any one stall
                    log.exception("media clock: filling skipped ticks failed")
            elif -delay > FRAME_SECONDS:
                self.late_ticks += 1
            while in_flight and in_flight[0].done():
                in_flight.popleft()
            if len(in_flight) >= MAX_IN_FLIGHT:  # the worker is behind: wait for it, bounded
                await asyncio.wait([in_flight.popleft()])
            try:
                in_flight.append(self._submit(list(self._members.values()), batch))
            except Exception:  # the clock must outlive any one tick
                log.exception("media clock: tick failed")


def _work(member: Ticking, work: Work) -> tuple[Ticking, Finish | None]:
    """Worker thread: one member's work, its failure confined to it."""
    try:
        return member, work()
    except Exception:
        log.exception("space %s: media tick failed", member.space_id)
        return member, None
