"""Recording storage: what a Space's recording costs on disk, and deleting it when retention ends.

Everything a Space leaves is under `<recordings_dir>/<space_id>/`: its runs (see `recording`) and
its clips (`clips/<clip_id>.m4a`). Accounting walks that directory (the clip quota per Space walks
its clips); retention deletes it.

Theory of operation (retention):

* A recording is due when its Space ended more than the retention period ago (0 keeps forever).
  The sweep asks the records when each Space on disk ended (`EndedAt`); a Space still open, or one
  the records do not know, is never touched.
* Deleting writes the marker `expired.json` (temp file + rename) *first*, then removes everything
  else. A crash half-way leaves the marker, so the Space already answers 410 and the next sweep
  finishes the deletion; the marker stays so the shared replay URL keeps answering 410, not 404.
* Reading the marker is one `stat`: the origin checks it on the replay path of ended Spaces only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from townhall.delivery.recording import load_runs
from townhall.spaces.model import is_space_id

__all__ = [
    "CLIPS_DIR",
    "DAY_S",
    "EXPIRED_NAME",
    "EndedAt",
    "RecordingUsage",
    "clips_bytes",
    "expire",
    "expired",
    "is_due",
    "sweep",
    "usage",
]

log = logging.getLogger(__name__)

EXPIRED_NAME = "expired.json"
CLIPS_DIR = "clips"
DAY_S = 86_400

EndedAt = Callable[[str], Awaitable[float | None]]  # space id → when it ended, None if not over


@dataclass(frozen=True, slots=True)
class RecordingUsage:
    bytes: int  # every file under the Space's directory: runs and clips
    seconds: float  # the recording's length (runs back to back)
    runs: int  # stream runs with recorded audio (a restart adds one)


def _space_dir(root: Path, space_id: str) -> Path | None:
    return root / space_id if is_space_id(space_id) else None


def usage(root: Path, space_id: str) -> RecordingUsage:
    """What the Space's recording holds on disk now (blocking: walks its directory)."""
    directory = _space_dir(root, space_id)
    if directory is None:
        return RecordingUsage(0, 0.0, 0)
    runs = load_runs(directory)
    return RecordingUsage(_bytes_under(directory), sum(r.duration for r in runs), len(runs))


def clips_bytes(root: Path, space_id: str) -> int:
    """What the Space's clips take on disk (blocking: walks its clips directory). The clip quota
    per Space is checked against it before a clip is made."""
    directory = _space_dir(root, space_id)
    return 0 if directory is None else _bytes_under(directory / CLIPS_DIR)


def _bytes_under(directory: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(directory):
        for name in files:
            if name == EXPIRED_NAME:
                continue
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:  # deleted while we walked (a run's temp file renamed)
                continue
    return total


def expired(root: Path, space_id: str) -> bool:
    """True once retention deleted the Space's recording (one stat)."""
    directory = _space_dir(root, space_id)
    return directory is not None and (directory / EXPIRED_NAME).is_file()


def is_due(ended_at: float | None, now: float, retention_days: int) -> bool:
    if retention_days <= 0 or ended_at is None:
        return False
    return now - ended_at > retention_days * DAY_S


def expire(root: Path, space_id: str, now: float) -> int:
    """Delete the Space's recording and clips, leaving the marker; returns the bytes freed."""
    directory = _space_dir(root, space_id)
    if directory is None or not directory.is_dir():
        return 0
    freed = usage(root, space_id).bytes
    marker = directory / EXPIRED_NAME
    if not marker.is_file():
        tmp = directory / (EXPIRED_NAME + ".tmp")
        tmp.write_text(json.dumps({"expired_at": now}))
        os.replace(tmp, marker)
    for child in directory.iterdir():
        if child.name == EXPIRED_NAME:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    return freed


def _has_leftovers(directory: Path) -> bool:
    return any(p.name != EXPIRED_NAME for p in directory.iterdir())


def _space_dirs(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.is_dir()]


async def sweep(
    root: Path,
    ended_at: EndedAt,
    retention_days: int,
    now: float,
    *,
    on_expired: Callable[[str], None] | None = None,
) -> list[str]:
    """Delete every recording past retention under `root`; returns the Spaces expired now."""
    if retention_days <= 0:
        return []
    try:
        names = await asyncio.to_thread(_space_dirs, root)
    except FileNotFoundError:
        return []
    done = []
    for space_id in names:
        if not is_space_id(space_id):
            continue
        if await asyncio.to_thread(expired, root, space_id):
            if await asyncio.to_thread(
                _has_leftovers, root / space_id
            ):  # a sweep that died half-way: finish it
                await asyncio.to_thread(expire, root, space_id, now)
            continue
        if not is_due(await ended_at(space_id), now, retention_days):
            continue
        freed = await asyncio.to_thread(expire, root, space_id, now)
        log.info("space %s: recording deleted after retention (%d bytes freed)", space_id, freed)
        if on_expired is not None:
            on_expired(space_id)
        done.append(space_id)
    return done
