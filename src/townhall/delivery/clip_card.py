"""What a clip's share page says about it: the Space's title, who was on stage, when and how long.

A clip is an `.m4a` kept beside its Space's recording (`<recordings_dir>/<space>/clips/<clip>.m4a`,
see `api.recording_routes`). Its card is a small JSON file next to it, written once when the clip is
made (temp file + rename, so a reader never sees half of one), read by the share page `/c/{clip}`
to fill its title, text and Open Graph / Twitter card tags, so that a link pasted into a chat shows
a preview without the crawler running any script. Retention deletes it with the clip. A clip made
before cards existed has none: its page says less, and still plays.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from townhall.delivery.storage import CLIPS_DIR

__all__ = ["ClipCard", "read_card", "write_card"]

CARD_SUFFIX = ".json"
CARD_MAX_BYTES = (
    64 * 1024
)  # a title, a stage of names and a few numbers; anything bigger is not ours


@dataclass(frozen=True)
class ClipCard:
    clip_id: str
    space_id: str
    title: str
    speakers: tuple[str, ...]  # who was on stage when it was clipped, host first
    recorded_at: float | None  # UNIX seconds of the clip's first sample; None if unknown
    seconds: float
    visibility: str  # the Space's, when clipped: only a public Space's clip page may be indexed


def _path(root: Path, space_id: str, clip_id: str) -> Path:
    return root / space_id / CLIPS_DIR / f"{clip_id}{CARD_SUFFIX}"


def write_card(root: Path, card: ClipCard) -> None:
    """Blocking (a file): call it on a worker thread."""
    path = _path(root, card.space_id, card.clip_id)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**asdict(card), "speakers": list(card.speakers)}))
    os.replace(tmp, path)


def read_card(root: Path, space_id: str, clip_id: str) -> ClipCard | None:
    """The clip's card, or None if it has none (or an unreadable one). Blocking: a file."""
    path = _path(root, space_id, clip_id)
    try:
        with path.open("rb") as file:
            raw = json.loads(file.read(CARD_MAX_BYTES + 1))
        recorded_at = raw["recorded_at"]
        return ClipCard(
            clip_id=clip_id,
            space_id=space_id,
            title=str(raw["title"]),
            speakers=tuple(str(name) for name in raw["speakers"]),
            recorded_at=float(recorded_at) if recorded_at is not None else None,
            seconds=float(raw["seconds"]),
            visibility=str(raw["visibility"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
