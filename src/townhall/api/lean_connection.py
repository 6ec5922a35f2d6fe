"""Per-connection state of the HTTP protocol, in the fewest bytes: what a connection holds while
a listener keeps it open, multiplied by every listener a process serves.

Measured (a live Space, 2,000 lean listeners on one origin, `gc` and `sys.getsizeof` in the
server; docs/architecture.md, "Memory per directly served listener"): uvicorn's httptools
protocol gives every connection three `collections.deque`s — its request pipeline, the
`asyncio.Event` of its write flow control, and the `asyncio.Event` each request cycle waits on —
and an empty deque allocates its first 64-slot block at once: 760 bytes each, 2.3 KB per
connection, for queues that hold nothing (no client pipelines) or one waiter at most.

- `LeanEvent`: `asyncio.Event`'s interface (`set`, `clear`, `is_set`, `wait`) with its waiters
  in a list made on the first wait (56 bytes) instead of a deque made up front.
- `LeanPipeline`: the deque interface uvicorn's protocol uses for pipelined requests
  (`appendleft`, `pop`, truth), as a list: a pipelined request is rare, and one waits at a time.
"""

from __future__ import annotations

import asyncio
from typing import Any


class LeanEvent:
    """An `asyncio.Event` without the preallocated deque: same semantics for its callers (a
    waiter woken by `set` returns True even if the event is cleared before it runs)."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if self._value:
            return
        self._value = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            # Cancelled before `set`: forget it (after `set` it is in no list any more).
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class LeanPipeline(list[Any]):
    """What uvicorn's protocol asks of its pipeline deque: newest in at the left, oldest out at
    the right."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)
