"""Token-bucket rate limits keyed by caller, with bounded memory.

Sans-I/O: time is passed in. When the table of callers is full the least recently seen caller is
forgotten (it simply starts again with a full bucket), so a flood of new addresses cannot grow it.
This is the in-process bucket behind `EmbeddedLiveState.take_token`; the Redis store runs the same
arithmetic in a Lua script, and the contract suite holds both to the same answers.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    per_second: float
    burst: int


def retry_after(wait: float) -> str:
    """A wait in seconds as a Retry-After value: whole seconds, at least one."""
    return str(max(1, math.ceil(wait)))


class RateLimiter:
    def __init__(self, limit: RateLimit, max_callers: int = 100_000) -> None:
        self.limit = limit
        self._max = max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = (
            OrderedDict()
        )  # caller → (tokens, at)

    def check(self, caller: str, now: float, cost: float = 1.0) -> float:
        """Take `cost` tokens for `caller` (one a request; bytes for a storage quota): 0.0 if
        allowed, else the seconds until that many are available (nothing is taken then). A
        negative cost gives tokens back (a refund), never past the burst."""
        tokens, at = self._buckets.pop(caller, (float(self.limit.burst), now))
        # Callers' clocks may differ a little (several processes): time never runs backwards.
        tokens = min(float(self.limit.burst), tokens + max(0.0, now - at) * self.limit.per_second)
        at = max(at, now)
        if tokens >= cost:
            self._buckets[caller] = (min(float(self.limit.burst), tokens - cost), at)
            wait = 0.0
        else:
            self._buckets[caller] = (tokens, at)
            wait = (cost - tokens) / self.limit.per_second
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        """Callers held now (at most `max_callers`)."""
        return len(self._buckets)
