"""A Space's life: scheduled → green room → live → ended, and the timers around it."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from townhall.spaces.lifecycle import (
    IllegalTransition,
    LifecycleAction,
    ScheduleError,
    allowed_actions,
    auto_end_at,
    is_due,
    should_auto_cancel,
    should_auto_end,
    transition,
    validate_schedule,
)
from townhall.spaces.model import Space, SpaceId, SpaceState, UserId

S = SpaceState
A = LifecycleAction
T0 = 1_700_000_000.0
HOUR = 3600.0

# Every (state, action) pair, by hand; None means the move is illegal.
EXPECTED: dict[tuple[SpaceState, LifecycleAction], SpaceState | None] = {
    (S.SCHEDULED, A.OPEN): S.GREEN_ROOM,
    (S.SCHEDULED, A.GO_LIVE): None,
    (S.SCHEDULED, A.END): S.CANCELLED,
    (S.SCHEDULED, A.CANCEL): S.CANCELLED,
    (S.GREEN_ROOM, A.OPEN): None,
    (S.GREEN_ROOM, A.GO_LIVE): S.LIVE,
    (S.GREEN_ROOM, A.END): S.CANCELLED,
    (S.GREEN_ROOM, A.CANCEL): S.CANCELLED,
    (S.LIVE, A.OPEN): None,
    (S.LIVE, A.GO_LIVE): None,
    (S.LIVE, A.END): S.ENDED,
    (S.LIVE, A.CANCEL): None,
    (S.ENDED, A.OPEN): None,
    (S.ENDED, A.GO_LIVE): None,
    (S.ENDED, A.END): None,
    (S.ENDED, A.CANCEL): None,
    (S.CANCELLED, A.OPEN): None,
    (S.CANCELLED, A.GO_LIVE): None,
    (S.CANCELLED, A.END): None,
    (S.CANCELLED, A.CANCEL): None,
}


def a_space(state: SpaceState, *, scheduled_start: float | None = T0 + HOUR) -> Space:
    return Space(
        SpaceId("abcdefghij"),
        "Town hall",
        UserId("u-000000000001"),
        created_at=T0,
        state=state,
        scheduled_start=scheduled_start,
        started_at=T0 + 10 if state in (S.LIVE, S.ENDED) else None,
        ended_at=T0 + 20 if state.is_over else None,
    )


def test_the_expected_table_has_every_pair() -> None:
    assert set(EXPECTED) == set(itertools.product(SpaceState, LifecycleAction))


@pytest.mark.parametrize(
    ("state", "action", "after"),
    [(s, a, after) for (s, a), after in EXPECTED.items() if after is not None],
)
def test_a_legal_move_reaches_the_next_state(
    state: SpaceState, action: LifecycleAction, after: SpaceState
) -> None:
    before = a_space(state)
    moved = transition(before, action, T0 + 100)
    assert moved.state is after
    # Nothing but the state and its timestamps changes.
    assert (
        dataclasses.replace(
            moved, state=state, started_at=before.started_at, ended_at=before.ended_at
        )
        == before
    )
    assert allowed_actions(state) == tuple(a for a in A if EXPECTED[state, a] is not None)


@pytest.mark.parametrize(
    ("state", "action"), [(s, a) for (s, a), after in EXPECTED.items() if after is None]
)
def test_an_illegal_move_raises_and_says_why(state: SpaceState, action: LifecycleAction) -> None:
    with pytest.raises(IllegalTransition, match="abcdefghij") as caught:
        transition(a_space(state), action, T0 + 100)
    assert action.value.replace("_", " ") in str(caught.value)


def test_going_live_stamps_started_at_and_nothing_else() -> None:
    live = transition(a_space(S.GREEN_ROOM), A.GO_LIVE, T0 + 100)
    assert (live.started_at, live.ended_at) == (T0 + 100, None)


def test_opening_the_green_room_stamps_nothing() -> None:
    opened = transition(a_space(S.SCHEDULED), A.OPEN, T0 + 100)
    assert (opened.started_at, opened.ended_at) == (None, None)


def test_ending_a_live_space_stamps_ended_at_and_keeps_started_at() -> None:
    ended = transition(a_space(S.LIVE), A.END, T0 + 100)
    assert (ended.started_at, ended.ended_at) == (T0 + 10, T0 + 100)


@pytest.mark.parametrize("state", [S.SCHEDULED, S.GREEN_ROOM])
@pytest.mark.parametrize("action", [A.END, A.CANCEL])
def test_a_space_that_never_went_on_air_is_cancelled_not_ended(
    state: SpaceState, action: LifecycleAction
) -> None:
    over = transition(a_space(state), action, T0 + 100)
    assert over.state is S.CANCELLED
    assert (over.started_at, over.ended_at) == (None, T0 + 100)


def test_a_live_space_cannot_be_cancelled_only_ended() -> None:
    with pytest.raises(IllegalTransition, match="can only be ended"):
        transition(a_space(S.LIVE), A.CANCEL, T0)


def test_ending_twice_is_an_error_not_a_silent_no_op() -> None:
    ended = transition(a_space(S.LIVE), A.END, T0 + 100)
    with pytest.raises(IllegalTransition, match="over"):
        transition(ended, A.END, T0 + 101)


def test_a_scheduled_space_cannot_skip_the_green_room() -> None:
    with pytest.raises(IllegalTransition, match="green room first"):
        transition(a_space(S.SCHEDULED), A.GO_LIVE, T0)


@given(st.lists(st.sampled_from(list(LifecycleAction)), max_size=12))
def test_any_sequence_of_actions_keeps_the_record_coherent(
    actions: list[LifecycleAction],
) -> None:
    space = a_space(S.SCHEDULED, scheduled_start=None)
    went_live = False
    order = [S.SCHEDULED, S.GREEN_ROOM, S.LIVE]
    now = T0
    for action in actions:
        now += 1
        before = space
        try:
            space = transition(space, action, now)
        except IllegalTransition:
            assert space == before
            continue
        # Never backwards, never out of an end.
        assert not before.state.is_over
        if not space.state.is_over:
            assert order.index(space.state) > order.index(before.state)
        went_live = went_live or space.state is S.LIVE
        assert (space.started_at is not None) == went_live
        assert (space.ended_at is not None) == space.state.is_over
        # "Ended" means there was a broadcast; a Space that never aired is cancelled.
        if space.state is S.ENDED:
            assert went_live
        if space.state is S.CANCELLED:
            assert not went_live


# --- The host who walked away --------------------------------------------------------------------

LIMIT = 300.0


@pytest.mark.parametrize("state", [S.GREEN_ROOM, S.LIVE])
def test_a_running_space_ends_once_its_host_is_gone_longer_than_the_limit(
    state: SpaceState,
) -> None:
    space = a_space(state)
    seen = T0 + 1000
    assert auto_end_at(space, seen, LIMIT) == seen + LIMIT
    assert not should_auto_end(space, seen, seen, LIMIT)
    assert not should_auto_end(space, seen, seen + LIMIT, LIMIT)
    assert should_auto_end(space, seen, seen + LIMIT + 0.001, LIMIT)


@pytest.mark.parametrize("state", [S.SCHEDULED, S.ENDED, S.CANCELLED])
def test_a_space_that_is_not_running_never_auto_ends(state: SpaceState) -> None:
    space = a_space(state)
    assert auto_end_at(space, T0, LIMIT) is None
    assert not should_auto_end(space, T0, T0 + 100 * LIMIT, LIMIT)


def test_a_green_room_whose_host_left_is_called_off() -> None:
    space = a_space(S.GREEN_ROOM)
    assert should_auto_end(space, T0, T0 + LIMIT + 1, LIMIT)
    assert transition(space, A.END, T0 + LIMIT + 1).state is S.CANCELLED


# --- Scheduling ----------------------------------------------------------------------------------

EARLY = 1800.0


def test_a_scheduled_space_is_due_from_the_early_open_window_onwards() -> None:
    space = a_space(S.SCHEDULED, scheduled_start=T0 + HOUR)
    assert not is_due(space, T0, EARLY)
    assert not is_due(space, T0 + HOUR - EARLY - 0.001, EARLY)
    assert is_due(space, T0 + HOUR - EARLY, EARLY)
    assert is_due(space, T0 + HOUR, EARLY)
    assert is_due(space, T0 + 5 * HOUR, EARLY)  # the host is late: still theirs to open


def test_a_scheduled_space_without_a_start_time_is_due_at_once() -> None:
    assert is_due(a_space(S.SCHEDULED, scheduled_start=None), T0, EARLY)


@pytest.mark.parametrize("state", [S.GREEN_ROOM, S.LIVE, S.ENDED, S.CANCELLED])
def test_only_a_scheduled_space_can_be_due(state: SpaceState) -> None:
    assert not is_due(a_space(state), T0 + HOUR, EARLY)


def test_a_scheduled_space_nobody_opened_is_called_off_after_the_no_show_limit() -> None:
    space = a_space(S.SCHEDULED, scheduled_start=T0)
    assert not should_auto_cancel(space, T0 + 24 * HOUR, 24 * HOUR)
    assert should_auto_cancel(space, T0 + 24 * HOUR + 1, 24 * HOUR)
    assert not should_auto_cancel(a_space(S.GREEN_ROOM, scheduled_start=T0), T0 + 48 * HOUR, HOUR)
    assert not should_auto_cancel(a_space(S.SCHEDULED, scheduled_start=None), T0 + HOUR, 1.0)


MAX_AHEAD = 30 * 24 * HOUR


@pytest.mark.parametrize(
    "start", [T0, T0 - 120, T0 - 60, T0 + 60, T0 + HOUR, T0 + MAX_AHEAD], ids=repr
)
def test_a_start_time_from_just_now_to_the_horizon_is_accepted(start: float) -> None:
    validate_schedule(start, T0, MAX_AHEAD)


def test_a_start_time_in_the_past_is_refused() -> None:
    with pytest.raises(ScheduleError, match="past") as caught:
        validate_schedule(T0 - 121, T0, MAX_AHEAD)
    assert caught.value.code == "start_in_past"


def test_the_grace_for_the_past_is_adjustable() -> None:
    validate_schedule(T0 - 500, T0, MAX_AHEAD, grace_s=600)
    with pytest.raises(ScheduleError):
        validate_schedule(T0 - 1, T0, MAX_AHEAD, grace_s=0)


def test_a_start_time_beyond_the_horizon_is_refused() -> None:
    with pytest.raises(ScheduleError, match="30 days") as caught:
        validate_schedule(T0 + MAX_AHEAD + 1, T0, MAX_AHEAD)
    assert caught.value.code == "start_too_far_ahead"


@pytest.mark.parametrize("start", [math.nan, math.inf, -math.inf])
def test_a_start_time_that_is_not_a_number_is_refused(start: float) -> None:
    with pytest.raises(ScheduleError) as caught:
        validate_schedule(start, T0, MAX_AHEAD)
    assert caught.value.code == "invalid_start"


def test_a_schedule_error_is_a_value_error() -> None:
    assert issubclass(ScheduleError, ValueError)
