"""bench.idle_node's own parts: what it reads of a process and how it reports it."""

from __future__ import annotations

import os
import threading

from bench.idle_node import Row, Sample, sample, wakeups, woken_between


def test_a_thread_that_sleeps_and_wakes_is_counted() -> None:
    woke = threading.Semaphore(0)
    stop = threading.Event()

    def sleeper() -> None:
        while not stop.wait(0.005):  # sleeps, then wakes on its timeout
            woke.release()

    thread = threading.Thread(target=sleeper)
    thread.start()
    try:
        assert woke.acquire(timeout=30)
        before = wakeups(os.getpid())
        for _ in range(10):
            assert woke.acquire(timeout=30)
        assert woken_between(before, wakeups(os.getpid())) >= 10  # while the thread lives
    finally:
        stop.set()
        thread.join()


def test_a_sample_of_this_process_is_a_share_of_a_core() -> None:
    got = sample(os.getpid(), 0.5)
    # At most every core (with a tick's rounding: /proc counts CPU in 10 ms ticks).
    assert 0.0 <= got.core_share <= (os.cpu_count() or 2) + 0.1
    assert got.wakeups_per_s >= 0.0


def test_a_row_reads_as_percent_of_a_core_and_wakeups() -> None:
    row = Row("main", Sample(0.0175, 128.4), 5, Sample(0.0067, 27.0))
    assert row.line() == (
        "main: empty server 1.75 % of a core, 128 wakeups/s; per idle Space 0.67 %, 27 wakeups/s"
    )


def test_a_thread_that_ended_between_two_readings_takes_its_count_with_it() -> None:
    assert woken_between({1: 5, 2: 100}, {1: 7, 3: 4}) == 2 + 4  # never 11 - 105
