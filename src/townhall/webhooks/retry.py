"""When to try a failed webhook delivery again: growing waits with jitter, then give up.

Waits of 10 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h (± 20 %): a receiver that is down for a few
hours still gets every event; after MAX_ATTEMPTS the delivery is kept as failed for inspection.
"""

from __future__ import annotations

import random

SCHEDULE_S = (10, 30, 120, 600, 1800, 3600, 7200)
MAX_ATTEMPTS = len(SCHEDULE_S) + 1


def next_attempt_at(
    attempts_made: int, now: float, rng: random.Random | None = None
) -> float | None:
    """After `attempts_made` failed attempts: when to try again, or None to give up."""
    if attempts_made < 1:
        raise ValueError("attempts_made counts failed attempts, starting at 1")
    if attempts_made >= MAX_ATTEMPTS:
        return None
    wait = SCHEDULE_S[attempts_made - 1]
    return now + wait * (rng or random).uniform(0.8, 1.2)
