"""The node's media clock: one task and one worker tick every Space in turn, and one bad Space or a
stalled loop does not stop the others' audio."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from townhall.config import MediaConfig
from townhall.harness import wait_until_async
from townhall.media.clock import IDLE_BATCH_TICKS, MAX_IN_FLIGHT, Finish, MediaClock, Work
from townhall.media.pipeline import SpaceMedia


class Member:
    """Counts its ticks and where each step ran; `fail` makes a step raise."""

    def __init__(self, name: str, fail: str = "", *, idle: bool = False) -> None:
        self.space_id = name
        self.idle = idle
        self.fail = fail
        self.ticks = 0
        self.skipped = 0
        self.worker_threads: set[str] = set()
        self.begun = 0
        # What ran on the worker, in order: tick n as n, a fill given after n ticks as n - 0.5.
        self.worker_log: list[float] = []

    def begin_tick(self) -> Work:
        if self.fail == "begin":
            raise RuntimeError("bad mix")
        n = self.begun
        self.begun += 1

        def work() -> Finish:
            self.worker_threads.add(threading.current_thread().name)
            self.worker_log.append(n)
            if self.fail == "work":
                raise RuntimeError("bad encode")
            return self.finish

        return work

    def finish(self) -> None:
        if self.fail == "finish":
            raise RuntimeError("bad delivery")
        self.ticks += 1

    def skip_ticks(self, missed: int) -> Work:
        self.skipped += missed
        after = self.begun

        def fill() -> Finish:
            self.worker_log.append(after - 0.5)
            return lambda: None

        return fill


async def test_one_clock_ticks_every_space_on_one_worker_thread() -> None:
    clock = MediaClock(name="node")
    spaces = [Member(f"s{i}") for i in range(5)]
    try:
        for space in spaces:
            clock.add(space)
        await wait_until_async(
            lambda: all(s.ticks >= 10 for s in spaces), 30, "every Space ticking"
        )
        assert {name for s in spaces for name in s.worker_threads} == {"node_0"}
        # Added in one loop step, so they tick together.
        assert max(s.ticks for s in spaces) - min(s.ticks for s in spaces) <= 1
    finally:
        await clock.close()


async def test_an_idle_node_runs_its_ticks_five_to_a_wake_and_a_speaker_brings_back_20_ms() -> None:
    clock = MediaClock()
    quiet, other = Member("quiet", idle=True), Member("other", idle=True)
    try:
        clock.add(quiet)
        clock.add(other)
        await wait_until_async(lambda: clock.ticks >= 5 * IDLE_BATCH_TICKS, 30, "idle ticks")
        assert clock.ticks % IDLE_BATCH_TICKS == 0  # they finish five at a time
        assert clock.handoffs * IDLE_BATCH_TICKS >= clock.ticks
        assert quiet.worker_log == list(range(len(quiet.worker_log)))  # every tick, in order
        other.idle = False  # a speaker connected
        ticks, handoffs = clock.ticks, clock.handoffs
        await wait_until_async(lambda: clock.ticks >= ticks + 60, 30, "ticks at 20 ms")
        # One tick per hand-off now; only batches handed over before it (at most MAX_IN_FLIGHT,
        # and the one under way) ran five at a time.
        batched = IDLE_BATCH_TICKS * (MAX_IN_FLIGHT + 1)
        assert clock.ticks - ticks <= clock.handoffs - handoffs + batched
        assert quiet.worker_log == list(range(len(quiet.worker_log)))
    finally:
        await clock.close()


@pytest.mark.parametrize("step", ["begin", "work", "finish"])
async def test_a_failing_space_does_not_stop_the_others(step: str) -> None:
    clock = MediaClock()
    good, bad = Member("good"), Member("bad", fail=step)
    try:
        clock.add(bad)
        clock.add(good)
        await wait_until_async(lambda: good.ticks >= 10, 30, "the good Space to keep ticking")
        assert bad.ticks == 0
    finally:
        await clock.close()


async def test_the_clock_task_ends_with_its_last_space_and_starts_with_a_new_one() -> None:
    clock = MediaClock()
    first = Member("first")
    try:
        clock.add(first)
        await wait_until_async(lambda: first.ticks >= 3, 30, "ticks")
        clock.remove(first)
        await wait_until_async(
            lambda: clock._task is None or clock._task.done(), 30, "the task to end"
        )
        stopped_at = first.ticks
        second = Member("second")
        clock.add(second)
        await wait_until_async(lambda: second.ticks >= 3, 30, "the clock to start again")
        assert first.ticks == stopped_at
    finally:
        await clock.close()


async def test_a_stall_is_skipped_for_every_space_alike() -> None:
    away = [0.0]  # how far the clock's time is ahead of the real one
    clock = MediaClock(now=lambda: time.monotonic() + away[0])
    spaces = [Member("a"), Member("b")]
    try:
        for space in spaces:
            clock.add(space)
        await wait_until_async(lambda: all(s.ticks >= 2 for s in spaces), 30, "ticks")
        away[0] += 2.0  # the loop was away for 2 s: 100 ticks
        await wait_until_async(lambda: clock.skipped_ticks >= 95, 30, "the stall to be noticed")
        assert all(s.skipped == clock.skipped_ticks for s in spaces)
        # Each Space's skipped interval is filled on the worker between the ticks around it.
        await wait_until_async(
            lambda: all(
                any(entry % 1 for entry in s.worker_log) and s.worker_log[-1] % 1 == 0
                for s in spaces
            ),
            30,
            "the fill on the worker, and a tick after it",
        )
        for space in spaces:
            assert any(entry % 1 for entry in space.worker_log)
            assert space.worker_log == sorted(space.worker_log)
    finally:
        await clock.close()


async def test_spaces_on_one_clock_each_publish_their_own_stream(tmp_path: Path) -> None:
    clock = MediaClock()
    config = MediaConfig(aac_frames_per_part=5, recordings_dir=tmp_path)
    spaces = [SpaceMedia(f"space{i}", config, media_clock=clock) for i in range(3)]
    try:
        for space in spaces:
            space.start()
        await wait_until_async(
            lambda: all(s.packager.next_part >= (1, 3) for s in spaces), 30, "parts from each"
        )
        assert len({s.packager.stream_id for s in spaces}) == 3
        assert all(s.silent_frames_reused > 0 for s in spaces)
        with pytest.raises(RuntimeError, match="clock"):
            await spaces[0].tick()
    finally:
        for space in spaces:
            await space.stop()
        await clock.close()
    assert all(s.packager.ended for s in spaces)
    assert clock.members == 0


async def test_a_stopped_space_stays_stopped_while_the_others_tick() -> None:
    clock = MediaClock()
    config = MediaConfig(aac_frames_per_part=5)
    kept = SpaceMedia("kept", config, media_clock=clock)
    ended = SpaceMedia("gone", config, media_clock=clock)
    try:
        kept.start()
        ended.start()
        await wait_until_async(lambda: ended.ticks >= 5, 30, "ticks")
        await ended.stop()
        at_end = ended.ticks
        await wait_until_async(lambda: kept.ticks >= at_end + 20, 30, "the other Space to go on")
        assert ended.ticks == at_end
        assert ended.packager.ended
        assert not kept.packager.ended
    finally:
        await kept.stop()
        await clock.close()
