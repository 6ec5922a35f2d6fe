"""The way a command's event reaches the live log: refused before anything changes, or delivered.

Theory of operation. A command (spaces/control.py) changes the records, then appends one event to
the Space's log in LiveState; the media node and stage clients follow the log. Two stores, no
shared transaction, so this module keeps them from disagreeing:

1. Before a command writes any record it calls `ready()`: held events (below) are appended first,
   then the live store must answer a PING. If the store is down the command fails with the
   driver's error (503 at the API) and nothing has changed.
2. After the records are written, `append` sends the event. If the store fails in the short window
   since `ready()`, the change is already committed and cannot be taken back, so the event is
   *held*: kept in order in memory and, with a spool directory, as one JSON line in this process's
   spool file (flushed and fsynced before `append` returns). A task retries every `retry_s` until
   the store takes them all, in order; events this process emits meanwhile queue behind them, so
   its events reach the log in the order it committed them.
3. A process that dies while holding events leaves its spool file behind. `recover()` (at start)
   adopts the spool files of dead processes: each file is locked (flock) by the process writing
   it, so only a file whose writer is gone can be taken, and by one process only.

Delivery is at least once: a crash between an append and the spool's rewrite repeats an event.
That is harmless because events carry the state they set (a member's mute flags, the Space's
state), not a toggle. What this does not order is a held event against events *other* processes
appended while it was held; a transactional outbox table written in the records' own transaction
would, at the price of a schema migration.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from townhall.state.live import LiveState
from townhall.state.unavailable import UNAVAILABLE_ERRORS, is_unavailable

log = logging.getLogger(__name__)

SPOOL_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class HeldEvent:
    space_id: str
    type: str
    data: Mapping[str, Any]
    at: float


class EventOutbox:
    """Appends commands' events to `live`, holding them (see the module docstring) when it fails."""

    def __init__(self, live: LiveState, spool_dir: Path | None = None, *, retry_s: float = 1.0):
        self.live = live
        self._spool_dir = spool_dir
        self._retry_s = retry_s
        self._held: deque[HeldEvent] = deque()
        self._spool: IO[str] | None = None  # this process's file, open and locked while it exists
        self._order = asyncio.Lock()  # appends and flushes one at a time: the order is kept
        self._retrying: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def held(self) -> int:
        """Events committed but not yet in the live log (a gauge; 0 in normal operation)."""
        return len(self._held)

    async def ready(self) -> None:
        """Return when the live store takes events again; raise the store's error if it does not."""
        await self.flush()
        await self.live.ping()

    async def append(self, space_id: str, type: str, data: Mapping[str, Any], at: float) -> None:
        """Append one event of a change already committed; held if the store fails (never raises
        for an unreachable store: the change stands, so its event must follow)."""
        event = HeldEvent(space_id, type, dict(data), at)
        async with self._order:
            if not self._held:
                try:
                    await self.live.append(space_id, type, event.data, at)
                    return
                except UNAVAILABLE_ERRORS as exc:
                    if not is_unavailable(exc):
                        raise
                    log.warning(
                        "event %s of %s held: live store unreachable: %s", type, space_id, exc
                    )
            await self._hold([event])
        self._retry_soon()

    async def flush(self) -> None:
        """Append every held event in order; raise the store's error (keeping the rest) if it fails."""
        async with self._order:
            sent = 0
            try:
                while self._held:
                    event = self._held[0]
                    await self.live.append(event.space_id, event.type, event.data, event.at)
                    self._held.popleft()
                    sent += 1
            finally:
                if sent:
                    await asyncio.to_thread(self._rewrite_spool)
                    log.info("%d held event(s) delivered, %d still held", sent, len(self._held))

    async def recover(self) -> None:
        """Adopt the spool files that processes which died left behind (at start)."""
        if self._spool_dir is None or not self._spool_dir.is_dir():
            return
        for path in sorted(self._spool_dir.glob(f"*{SPOOL_SUFFIX}")):
            if self._spool is not None and path.name == Path(self._spool.name).name:
                continue
            async with self._order:
                adopted = await asyncio.to_thread(self._adopt, path)
                self._held.extend(adopted)
            if adopted:
                log.warning("adopted %d held event(s) from %s", len(adopted), path.name)
        self._retry_soon()

    async def close(self) -> None:
        """Stop retrying. Held events stay in the spool file for the next start to adopt."""
        self._closed = True
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
        async with self._order:
            if self._spool is not None:
                if not self._held:
                    _remove(Path(self._spool.name))
                self._spool.close()  # releases the lock: the next start may adopt it
                self._spool = None

    # -- holding --------------------------------------------------------------------------------

    async def _hold(self, events: list[HeldEvent]) -> None:
        """Keep `events` after those held already (caller holds `_order`)."""
        self._held.extend(events)
        if self._spool_dir is not None:
            await asyncio.to_thread(self._write_spool, events)

    def _retry_soon(self) -> None:
        if self._held and not self._closed and (self._retrying is None or self._retrying.done()):
            self._retrying = asyncio.create_task(self._retry(), name="event-outbox")

    async def _retry(self) -> None:
        while self._held and not self._closed:
            await asyncio.sleep(self._retry_s)  # the store is down: wait before asking again
            try:
                await self.flush()
            except UNAVAILABLE_ERRORS as exc:
                if not is_unavailable(exc):
                    log.exception("delivering held events failed")
            except Exception:  # keep retrying whatever one attempt hit
                log.exception("delivering held events failed")

    # -- the spool file (worker thread) ---------------------------------------------------------

    def _open_spool(self) -> IO[str]:
        if self._spool is None:
            assert self._spool_dir is not None
            self._spool_dir.mkdir(parents=True, exist_ok=True)
            path = self._spool_dir / f"{os.getpid()}-{secrets.token_hex(4)}{SPOOL_SUFFIX}"
            spool = path.open("a+", encoding="utf-8")
            fcntl.flock(spool, fcntl.LOCK_EX)  # ours while this process lives
            self._spool = spool
        return self._spool

    def _write_spool(self, events: list[HeldEvent]) -> None:
        spool = self._open_spool()
        for event in events:
            spool.write(json.dumps(asdict(event), separators=(",", ":")) + "\n")
        spool.flush()
        os.fsync(spool.fileno())

    def _adopt(self, path: Path) -> list[HeldEvent]:
        """Move a dead process's held events into our spool; [] if its writer still lives.

        The orphan stays locked until its events are in our (fsynced) spool and it is removed, so
        no two processes adopt the same file; a crash in between repeats events, never loses them.
        """
        try:
            orphan = path.open("r", encoding="utf-8")
        except FileNotFoundError:
            return []
        with orphan:
            try:
                fcntl.flock(orphan, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return []  # its process is alive and delivers them itself
            try:
                if os.stat(path).st_ino != os.fstat(orphan.fileno()).st_ino:
                    return []  # adopted and removed by another process meanwhile
            except FileNotFoundError:
                return []
            events = []
            for line in orphan:
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                    events.append(HeldEvent(raw["space_id"], raw["type"], raw["data"], raw["at"]))
                except (ValueError, KeyError, TypeError):
                    log.error("%s: skipping an unreadable held event: %r", path.name, line[:200])
            if events:
                self._write_spool(events)
            _remove(path)
        return events

    def _rewrite_spool(self) -> None:
        """The spool now holds exactly what is still held (truncated in place: the lock stays)."""
        if self._spool is None:
            return
        self._spool.seek(0)
        self._spool.truncate()
        remaining = list(self._held)
        if remaining:
            self._write_spool(remaining)
        else:
            self._spool.flush()
            os.fsync(self._spool.fileno())


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
