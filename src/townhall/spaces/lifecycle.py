"""The Space lifecycle: the states a Space passes through and the actions that move it on.

Theory of operation
===================

A Space is always in exactly one `SpaceState` (model.py)::

    scheduled ──OPEN──> green_room ──GO_LIVE──> live ──END──> ended
        │                   │
        └──CANCEL / END─────┴──CANCEL / END──> cancelled

scheduled
    Has a title and a start time; people can ask to be reminded. No audio exists yet.
green_room
    The host has opened it. The stage connects, sound-checks and talks; listeners who arrive
    hear silence and see "starting soon". Nothing said here reaches listeners or the recording:
    the Space is OFF AIR. An instant Space is created straight into this state.
live
    The host pressed Go live: the program mix goes to listeners (after the broadcast delay) and
    to the recording. ON AIR. `started_at` is stamped here.
ended, cancelled
    Terminal: no action leaves them. `ended_at` is stamped on the way in.

Every change goes through `transition()`, which looks the (state, action) pair up in
`TRANSITIONS`. A pair that is not in the table raises `IllegalTransition` with a message that
says what *is* possible — never a silent no-op — so that, say, a second "end" from another tab
is visible to the caller, who decides whether that is harmless.

Decisions this table makes:

* **"Ended" means "there was a broadcast".** END on a Space that never went on air (scheduled or
  green room) cancels it: it has no replay and listeners never heard it, and webhooks and the
  browse page must not announce a replay of nothing. So END and CANCEL are the same move there,
  and a host whose green room times out (see `should_auto_end`) gets a cancelled Space.
* **CANCEL is not END.** A Space that has been on air can only end; cancelling it would rewrite
  history (its replay and its `started_at` exist).
* **No way back.** Nothing returns a Space to an earlier state: live never goes back to the green
  room (going off air mid-Space is ending it), and an ended Space is never reopened — a new
  Space is created instead.
* **No skipping the green room.** GO_LIVE is only legal from the green room. The service may
  OPEN and GO_LIVE in one request if a host asks for that, but the stage always passes through
  OFF AIR, which is the whole point of the green room (SPEC: the 2023-05-24 hot mic).

The table knows states, not clocks or people: *who* may press which button is rules.py's job
(the host alone may end or go live), and *when* a scheduled Space may be opened is `is_due`'s.
The helpers below are pure too: the time is passed in as `now` (UNIX seconds, like every
timestamp on `Space`), so the adapter that owns the timers asks them and tests feed them numbers.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Final

from townhall.spaces.model import IllegalTransition, Space, SpaceState

__all__ = [
    "DEFAULT_EARLY_OPEN_S",
    "DEFAULT_HOST_ABSENT_LIMIT_S",
    "DEFAULT_MAX_AHEAD_S",
    "DEFAULT_NO_SHOW_LIMIT_S",
    "SCHEDULE_GRACE_S",
    "TRANSITIONS",
    "IllegalTransition",
    "LifecycleAction",
    "ScheduleError",
    "allowed_actions",
    "auto_end_at",
    "is_due",
    "should_auto_cancel",
    "should_auto_end",
    "transition",
    "validate_schedule",
]


class LifecycleAction(enum.StrEnum):
    OPEN = "open"  # open a scheduled Space's green room
    GO_LIVE = "go_live"  # green room → on air
    END = "end"  # stop the Space; cancels it if it never went on air
    CANCEL = "cancel"  # call off a Space that never went on air


_S = SpaceState
_A = LifecycleAction

# state → action → next state. A pair that is missing is illegal.
TRANSITIONS: Final[Mapping[SpaceState, Mapping[LifecycleAction, SpaceState]]] = {
    _S.SCHEDULED: {
        _A.OPEN: _S.GREEN_ROOM,
        _A.CANCEL: _S.CANCELLED,
        _A.END: _S.CANCELLED,  # never on air: ending it is calling it off
    },
    _S.GREEN_ROOM: {
        _A.GO_LIVE: _S.LIVE,
        _A.CANCEL: _S.CANCELLED,
        _A.END: _S.CANCELLED,  # never on air: ending it is calling it off
    },
    _S.LIVE: {
        _A.END: _S.ENDED,
    },
    _S.ENDED: {},
    _S.CANCELLED: {},
}

# Not over yet (scheduled, green room, live): the states a Space can still leave. What a host's
# cap on open Spaces counts.
NOT_OVER: Final[frozenset[SpaceState]] = frozenset(s for s, moves in TRANSITIONS.items() if moves)

# Why a common wrong move is wrong, in words a host or an API client can act on.
_WHY_NOT: Final[Mapping[tuple[SpaceState, LifecycleAction], str]] = {
    (_S.SCHEDULED, _A.GO_LIVE): "open its green room first",
    (_S.GREEN_ROOM, _A.OPEN): "it is already open",
    (_S.LIVE, _A.OPEN): "it is already open and on air",
    (_S.LIVE, _A.GO_LIVE): "it is already on air",
    (_S.LIVE, _A.CANCEL): "it has been on air, so it can only be ended",
}


def allowed_actions(state: SpaceState) -> tuple[LifecycleAction, ...]:
    """The actions legal in `state`, in declaration order (empty for a Space that is over)."""
    return tuple(a for a in LifecycleAction if a in TRANSITIONS[state])


def transition(space: Space, action: LifecycleAction, now: float) -> Space:
    """Return `space` after `action` at `now`; raise IllegalTransition if the state forbids it.

    `started_at` is stamped when the Space goes live, `ended_at` when it ends or is cancelled.
    """
    next_state = TRANSITIONS[space.state].get(action)
    if next_state is None:
        raise IllegalTransition(_explain(space, action))
    return space.with_state(next_state, now)


def _explain(space: Space, action: LifecycleAction) -> str:
    why = _WHY_NOT.get((space.state, action))
    if why is None and space.state.is_over:
        why = f"it is {space.state.value}, and nothing changes a Space that is over"
    elif why is None:
        legal = ", ".join(a.value for a in allowed_actions(space.state))
        why = f"it is {space.state.value}; what it allows is: {legal}"
    return f"cannot {action.value.replace('_', ' ')} Space {space.id}: {why}"


# --- Timers -------------------------------------------------------------------------------------

# A host whose connection dropped gets this long to come back before their Space ends by itself.
# Long enough for a phone to switch networks or a browser to be restarted, short enough that an
# audience is not left listening to a stage with nobody in charge (nobody can mute or remove).
DEFAULT_HOST_ABSENT_LIMIT_S: Final = 15 * 60.0


def auto_end_at(space: Space, host_last_seen: float, host_absent_limit_s: float) -> float | None:
    """When `space` ends by itself if its host stays away, or None if it is not running.

    `host_last_seen` is the last moment the host was connected (the adapter passes the current
    time while they are). The Space ends once strictly more than `host_absent_limit_s` has passed
    since then — this is the deadline for the adapter's timer, as in aioquic's `get_timer()`.
    """
    if space.state not in (SpaceState.GREEN_ROOM, SpaceState.LIVE):
        return None
    return host_last_seen + host_absent_limit_s


def should_auto_end(
    space: Space, host_last_seen: float, now: float, host_absent_limit_s: float
) -> bool:
    """True when a live or green-room Space's host has been gone longer than the limit.

    The caller then applies `LifecycleAction.END` (which cancels a Space still in the green room).
    A scheduled Space has no host to be absent; a Space that is over has nothing left to end.
    """
    deadline = auto_end_at(space, host_last_seen, host_absent_limit_s)
    return deadline is not None and now > deadline


# --- Scheduling ---------------------------------------------------------------------------------

# The host may open a scheduled Space's green room this long before its start (see `is_due`).
DEFAULT_EARLY_OPEN_S: Final = 30 * 60.0
# How far ahead a Space may be scheduled; Twitter Spaces allows 30 days.
DEFAULT_MAX_AHEAD_S: Final = 30 * 24 * 3600.0
# A scheduled Space not opened this long after its start is abandoned (`should_auto_cancel`), so
# "upcoming" never fills with Spaces that will not happen.
DEFAULT_NO_SHOW_LIMIT_S: Final = 24 * 3600.0
# A start time this far in the past is still "now": date pickers have minute resolution and the
# client's clock may be a little off, so "today, this minute" must not be refused as the past.
SCHEDULE_GRACE_S: Final = 120.0


class ScheduleError(ValueError):
    """A start time the service will not accept; `code` is the machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def is_due(space: Space, now: float, early_open_s: float) -> bool:
    """True when the host may open this scheduled Space's green room now.

    The rule: from `early_open_s` before the scheduled start onwards, with no upper bound — a
    host who is late may still open it (until `should_auto_cancel` calls it off). Before that
    window the Space is not due: a green room opened days early would surprise everyone who set a
    reminder for the announced time. A host who wants to start much earlier edits the start time
    (which `validate_schedule` checks) and the Space becomes due. A scheduled Space without a
    start time has nothing to wait for and is due. Any other state is not due: it is already open
    or over.
    """
    if space.state is not SpaceState.SCHEDULED:
        return False
    if space.scheduled_start is None:
        return True
    return now >= space.scheduled_start - early_open_s


def should_auto_cancel(space: Space, now: float, no_show_limit_s: float) -> bool:
    """True when a scheduled Space's host has not opened it `no_show_limit_s` after its start.

    The caller then applies `LifecycleAction.CANCEL`.
    """
    if space.state is not SpaceState.SCHEDULED or space.scheduled_start is None:
        return False
    return now > space.scheduled_start + no_show_limit_s


def validate_schedule(
    start: float, now: float, max_ahead_s: float, *, grace_s: float = SCHEDULE_GRACE_S
) -> None:
    """Raise ScheduleError unless `start` (UNIX seconds) is a sensible start time at `now`.

    Accepted: from `grace_s` in the past up to `max_ahead_s` in the future, both ends included.
    Used when a Space is scheduled and when its start time is edited.
    """
    if not math.isfinite(start):
        raise ScheduleError("invalid_start", "the start time must be a finite UNIX time")
    if start < now - grace_s:
        raise ScheduleError("start_in_past", "the start time is in the past")
    if start > now + max_ahead_s:
        days = max_ahead_s / 86_400
        raise ScheduleError(
            "start_too_far_ahead", f"a Space can be scheduled at most {days:g} days ahead"
        )
