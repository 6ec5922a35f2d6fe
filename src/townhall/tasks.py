"""Stopping a background task for good.

`task.cancel()` asks once, and the request can be lost on its way out: redis-py's asyncio client
swallows a CancelledError that arrives at the wrong moment of a command (on this machine about one
cancel in three while a transaction pipeline is in flight, one in two hundred for a single
command). The task then carries on, its `cancelling()` count stays up, and an `await task` after
that single cancel waits for ever: a server whose shutdown never ends, a Space that never stops.
So every loop of the server is stopped here: cancelled, and cancelled again while it runs on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

log = logging.getLogger(__name__)

# How long a cancelled task may take to end (its `finally` cleanup included) before it is asked
# again: long enough for any cleanup of ours, short enough that a lost request costs little.
ASK_AGAIN_S: Final = 0.25


async def cancel_and_wait(
    *tasks: asyncio.Task[Any], within: float | None = None
) -> set[asyncio.Task[Any]]:
    """Cancel `tasks` and wait until each has ended, cancelling again every `ASK_AGAIN_S` one
    that carries on. Returns those still running after `within` seconds (None: wait as long as
    it takes). A task that ended with an error other than its cancellation is logged, not
    raised: stopping goes on. The caller's own cancellation is not held up."""
    running = {task for task in tasks if task is not asyncio.current_task()}
    loop = asyncio.get_running_loop()
    deadline = None if within is None else loop.time() + within
    while running:
        for task in running:
            task.cancel()
        wait = ASK_AGAIN_S if deadline is None else min(ASK_AGAIN_S, deadline - loop.time())
        if wait <= 0:
            break
        done, running = await asyncio.wait(running, timeout=wait)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.warning("task %s had failed", task.get_name(), exc_info=task.exception())
    return running
