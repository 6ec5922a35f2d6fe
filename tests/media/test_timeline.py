"""Where a run of a Space's stream starts on the Space's timeline (media.timeline)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from townhall.media.timeline import MARGIN_SEGMENTS, run_start

SEGMENT = 1.92
EPOCH = 1_700_000_000.0


def test_a_space_that_just_opened_starts_after_the_margin() -> None:
    start = run_start(EPOCH, EPOCH + 0.5, SEGMENT)
    assert start.first_msn == MARGIN_SEGMENTS
    assert start.discontinuity_sequence == start.first_msn


def test_decode_times_match_the_sequence_numbers() -> None:
    start = run_start(EPOCH, EPOCH + 100, SEGMENT)
    assert start.start_sample(92_160) == start.first_msn * 92_160


@given(
    first=st.floats(min_value=0, max_value=30 * 86_400),
    ran=st.floats(min_value=0, max_value=86_400),
    dead=st.floats(min_value=0, max_value=600),
    stale=st.integers(min_value=0, max_value=1),
)
def test_a_later_run_never_goes_back_behind_what_an_earlier_run_can_have_published(
    first: float, ran: float, dead: float, stale: int
) -> None:
    """An earlier run started at `first` and published for `ran` seconds (one segment per
    SEGMENT, plus the one it was writing), last reporting its position up to a segment before its
    end (`stale`); the next run started `dead` later, knowing that report."""
    earlier = run_start(EPOCH, EPOCH + first, SEGMENT)
    last_published = earlier.first_msn + int(ran // SEGMENT)
    reported = max(earlier.first_msn, last_published - stale)
    later = run_start(EPOCH, EPOCH + first + ran + dead, SEGMENT, reported)
    assert later.first_msn > last_published
    assert later.discontinuity_sequence > earlier.discontinuity_sequence


@given(
    first=st.floats(min_value=0, max_value=30 * 86_400),
    ran=st.floats(min_value=0, max_value=86_400),
    dead=st.floats(min_value=SEGMENT, max_value=600),
)
def test_without_a_report_a_segment_of_time_between_runs_keeps_them_apart(
    first: float, ran: float, dead: float
) -> None:
    """A restarted single process knows no report; its restart takes longer than a segment."""
    earlier = run_start(EPOCH, EPOCH + first, SEGMENT)
    last_published = earlier.first_msn + int(ran // SEGMENT)
    later = run_start(EPOCH, EPOCH + first + ran + dead, SEGMENT)
    assert later.first_msn > last_published


def test_a_clock_behind_the_epoch_still_gives_a_valid_start() -> None:
    assert run_start(EPOCH, EPOCH - 50, SEGMENT).first_msn == MARGIN_SEGMENTS
