"""A process that stops leaves nothing running behind it: its background loops (webhooks,
reminders, sweeps) are stopped before the stores they read close. A loop cancelled inside a
query still hands its connection back through the store's own thread; with the store closed
first, that never completes, and the event loop's last sweep then waits on it forever (a test
client's exit, or a server's shutdown, hung)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from townhall.app import create_app
from townhall.config import load


async def test_stopping_leaves_no_task_of_the_app_running(tmp_path: Path) -> None:
    before = asyncio.all_tasks()
    # The loops' first sweeps run at start: stopping at a spread of moments after it lands
    # some stops inside their queries.
    for attempt in range(12):
        app = create_app(load({}, data_dir=tmp_path / str(attempt)))
        async with app.router.lifespan_context(app):
            await asyncio.sleep(attempt * 0.003)
        left = [
            task.get_name() + " " + repr(task.get_coro())
            for task in asyncio.all_tasks() - before
            if not task.done()
        ]
        assert left == [], left
