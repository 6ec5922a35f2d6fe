"""What the transcriber does next when it cannot keep up: bounded, fair, merge-then-drop.

Sans-I/O. One worker process transcribes one window at a time for every captioned Space of a node;
each Space has at most one window *in flight* and one *pending*. A window that arrives while one is
pending is merged into it (one longer window, the silence between them kept, so Whisper's times
stay right) as long as the merge stays within `max_pending_s`; past that the pending audio is
dropped (counted in seconds) and the new window waits instead, so captions skip what they cannot
transcribe in time rather than fall further and further behind. Spaces take turns (round robin),
so a busy Space cannot starve a quiet one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from townhall.captions.chunker import Window
from townhall.media.audio import SAMPLE_RATE

__all__ = ["Backlog", "SpaceBacklog"]

K = TypeVar("K", bound=Hashable)


@dataclass
class SpaceBacklog:
    pending: Window | None = None
    in_flight: Window | None = None
    merged: int = 0  # windows merged into a pending one
    dropped_s: float = 0.0  # audio dropped because transcription fell behind
    submitted: int = 0  # windows handed to the worker

    @property
    def oldest(self) -> int | None:
        """The earliest program sample not yet answered for (None: nothing outstanding)."""
        starts = [w.start for w in (self.in_flight, self.pending) if w is not None]
        return min(starts) if starts else None


@dataclass
class Backlog(Generic[K]):
    max_pending_s: float = 10.0
    spaces: dict[K, SpaceBacklog] = field(default_factory=dict)
    _turns: deque[K] = field(default_factory=deque)
    busy: bool = False  # the worker has a window

    def add(self, key: K, window: Window) -> None:
        space = self.spaces.setdefault(key, SpaceBacklog())
        pending = space.pending
        if pending is None:
            space.pending = window
            self._turns.append(key)
            return
        if (window.end - pending.start) / SAMPLE_RATE <= self.max_pending_s:
            gap = np.zeros(max(0, window.start - pending.end), np.int16)
            space.pending = Window(pending.start, np.concatenate([pending.pcm, gap, window.pcm]))
            space.merged += 1
        else:
            space.dropped_s += len(pending.pcm) / SAMPLE_RATE
            space.pending = window

    def next(self) -> tuple[K, Window] | None:
        """The window the idle worker takes now (marks it in flight), or None."""
        if self.busy:
            return None
        while self._turns:
            key = self._turns.popleft()
            space = self.spaces.get(key)
            if space is None or space.pending is None:
                continue
            window, space.pending = space.pending, None
            space.in_flight = window
            space.submitted += 1
            self.busy = True
            return key, window
        return None

    def answered(self, key: K) -> Window | None:
        """The worker finished the window in flight for `key`; returns it."""
        self.busy = False
        space = self.spaces.get(key)
        if space is None:
            return None
        window, space.in_flight = space.in_flight, None
        return window

    def forget(self, key: K) -> None:
        """The Space stopped: its pending window goes; an answer in flight is ignored."""
        self.spaces.pop(key, None)
