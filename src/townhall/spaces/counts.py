"""What listeners are shown of the audience's figures, computed the same way wherever it is shown (the
snapshot in `api.live_routes`, the room state in the stream in `media.director`): the reaction
window, the approximate listener count and the share of listeners asked to beacon.

The count is approximate by design: a sample of listeners (`presence_sample` of them) send a
presence beacon every 30 s, and the count is the distinct beacons in the last minute divided by
the rate that was asked for.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "MODERATION_EVENTS",
    "MODERATION_KEPT",
    "MODERATION_WINDOW_S",
    "PRESENCE_TARGET",
    "REACTION_WINDOW_S",
    "estimate_listeners",
    "presence_sample",
]

PRESENCE_TARGET: Final = 10_000  # beacons per minute per Space we are willing to take
REACTION_WINDOW_S: Final = 10  # reaction totals shown: the last this many seconds
MODERATION_WINDOW_S: Final = 60  # how long a removal or ban is shown for its person to see
MODERATION_KEPT: Final = 100  # at most this many shown per Space (a flood of bans drops the oldest)
# What a listener's page is told about itself, by user id, in the snapshot and in the stream's room
# state alike. An invitation rides along: the host invites from the audience list, and the
# listener's page has no other way to hear of it (no per-listener push); it offers "Join the stage".
MODERATION_EVENTS: Final = {
    "user.removed": "removed",
    "user.banned": "banned",
    "stage.invited": "invited",
}


def presence_sample(listeners: int) -> float:
    """The share of listeners asked to beacon: all of them until the target, then fewer."""
    if listeners <= PRESENCE_TARGET:
        return 1.0
    return round(PRESENCE_TARGET / listeners, 4)


def estimate_listeners(sampled: int, previous: int | None) -> int:
    """The listener count from `sampled` distinct beacons, when the last estimate shown (and so
    the rate asked of listeners since) was `previous` (None: none yet, everyone beacons)."""
    rate = presence_sample(previous) if previous is not None else 1.0
    return round(sampled / rate)
