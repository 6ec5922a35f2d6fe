"""The bulk audience's window: a connection that falls behind the stream, a wrk thread whose edge
stops, a refused answer and a dropped connection each count as errors; a kept pace does not."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.bulk import Bulk, BulkWindow, Live, Unlocated

SEGMENT_S = 1.92


def test_a_kept_pace_is_no_error() -> None:
    window = BulkWindow(listeners=1000, segments=4000, expected=4000, snapshots=250)
    assert window.behind == 0
    assert window.errors == 0


def test_completions_short_of_the_edge_are_listeners_behind() -> None:
    window = BulkWindow(listeners=1000, segments=3000, expected=4000)
    assert window.behind == 250
    assert window.errors == 250


def test_a_small_shortfall_at_the_window_edges_is_tolerated() -> None:
    assert BulkWindow(listeners=1000, segments=3500, expected=4000).behind == 0


def test_refusals_drops_and_stalled_threads_all_count() -> None:
    window = BulkWindow(listeners=2000, segments=2000, expected=2000, stalled=1000)
    assert window.behind == 1000
    window = BulkWindow(listeners=10, other=3, refused=2, dropped=4)
    assert window.errors == 7


@pytest.fixture
def idle_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process standing in for a wrk process (its counters are written by the test)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def _bulk(procs: list[tuple[subprocess.Popen[bytes], int, Path]]) -> Iterator[Bulk]:
    with Bulk("segments", "http://127.0.0.1:1", {0}) as bulk:
        bulk.live = Live("http://127.0.0.1:1", "/live/x/1/", 10, SEGMENT_S, "/api/spaces/x", 15.0)
        bulk._procs = procs
        bulk.listeners = sum(size for _, size, _ in procs)
        yield bulk


def test_collect_reads_each_wrk_process_counters(
    tmp_path: Path, idle_process: subprocess.Popen[bytes]
) -> None:
    moving, stuck = tmp_path / "a.txt", tmp_path / "b.txt"
    with _bulk([(idle_process, 100, moving), (idle_process, 50, stuck)]) as bulk:
        moving.write_text("500 0 10 520 20 0\n")
        stuck.write_text("250 0 5 260 20 0\n")
        bulk.mark()
        # The first thread moved four segments on meanwhile, the second none.
        moving.write_text("900 2 12 930 24 1\n")
        window = bulk.collect()
    assert window.listeners == 150
    assert window.segments == 400
    # One segment's completions may be published after the edge that counts it: not expected.
    assert window.expected == 300
    assert window.other == 2
    assert window.refused == 1
    assert window.snapshots == 2
    # The window lasted well under a segment here, so neither thread can be judged stalled.
    assert window.stalled == 0
    assert window.errors == 2


def test_a_thread_that_made_no_progress_for_segments_is_stalled(
    tmp_path: Path, idle_process: subprocess.Popen[bytes]
) -> None:
    counters = tmp_path / "c.txt"
    counters.write_text("100 0 0 100 7 0\n")
    with _bulk([(idle_process, 80, counters)]) as bulk:
        bulk.mark()
        assert bulk._mark is not None
        t0, before, ended = bulk._mark
        bulk._mark = (t0 - 4 * SEGMENT_S, before, ended)  # as if four segments' time had passed
        window = bulk.collect()
    assert window.stalled == 80
    assert window.behind == 80


def test_an_ended_wrk_process_drops_its_listeners(tmp_path: Path) -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    with _bulk([(ended, 30, tmp_path / "d.txt")]) as bulk:
        bulk.mark()
        window = bulk.collect()
    assert window.listeners == 0
    assert window.dropped == 30


def test_a_window_closing_inside_a_burst_is_not_called_behind(
    tmp_path: Path, idle_process: subprocess.Popen[bytes]
) -> None:
    """The edge moved at a burst's first completion, the burst's other completions not yet
    published when the window closed: the listeners kept the pace all the same."""
    counters = tmp_path / "e.txt"
    counters.write_text("1000 0 0 1000 10 0\n")
    with _bulk([(idle_process, 100, counters)]) as bulk:
        bulk.mark()
        counters.write_text("1301 0 0 1301 14 0\n")  # 3 segments each, and 1 of the 4th
        kept_pace = bulk.collect()
        bulk.mark()
        counters.write_text("1451 0 0 1451 18 0\n")  # half the listeners missed segments
        fell_behind = bulk.collect()
    assert kept_pace.behind == 0
    assert fell_behind.behind == 50


def test_a_wave_that_cannot_find_the_stream_is_listeners_not_taken(tmp_path: Path) -> None:
    def unlocated() -> Live:
        raise Unlocated("timed out")

    with Bulk("segments", "http://127.0.0.1:1", {0}, locate=unlocated) as bulk:
        bulk.add(30, 0)
        bulk.mark()
        window = bulk.collect()
    assert bulk.listeners == 0
    assert window.unstarted == 30
    assert window.errors == 30
