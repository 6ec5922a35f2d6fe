"""A histogram of durations cheap enough for the 20 ms media tick and every listener request.

prometheus-client's Histogram takes a lock per observation (two, with its sum) and is built for
any thread to write at any time. Here each histogram has exactly one writer — the event loop —
so an observation is a bisect, one list increment and one float addition, with no lock; the
scrape (on the same loop) reads it between two observations and sees it whole. A reader on
another thread would at worst see the count one observation ahead of the sum.

Buckets are fixed per histogram (Prometheus needs them stable for the life of a series) and the
counts only grow, so a node's histograms stay counters across Spaces starting and stopping.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

# Seconds. A tick's work must fit in its 20 ms; the interesting range is 0.1–20 ms, and anything
# past a tick means the clock fell behind.
TICK_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
# Requests: a control read costs well under a millisecond of CPU; a blocking playlist reload is
# held up to three target durations (~6 s).
REQUEST_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Durations:
    """Counts of observations per bucket (upper bounds in `bounds`, then +Inf) and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("bucket bounds must be distinct and increasing")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le="bound").
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count of observations ≤ le) per bucket, +Inf last: Prometheus' exposition."""
        out = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out
