"""One Space's live captions: the adapter between its media pipeline, the node's transcriber, its
subtitle track and the recording's captions.

On the loop, each tick: the aired program frame (None where it is not program) goes into the
`Chunker`; a closed window goes to the node's `Transcriber`; the subtitle track is published up to
where everything before is answered for (`done`: the chunker's `done_through`, or the start of the
oldest window still pending or in flight), but never more than MAX_HOLD_S behind the program. An
answer becomes cues on the media timeline (program
sample + the encoder's timeline shift), added to the track and appended to the recording.
Counted per Space: windows sent, CPU seconds the worker spent on them, audio dropped because the
worker fell behind, phrases captioned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable

from townhall.captions.chunker import Chunker, Window
from townhall.captions.store import CaptionStore
from townhall.captions.track import CaptionTrack, TrackShape
from townhall.captions.vtt import Cue
from townhall.captions.worker import Answer, Transcriber
from townhall.media.audio import SAMPLE_RATE, PcmFrame
from townhall.media.pipeline import SpaceMedia

log = logging.getLogger(__name__)

AAC_PRIMING = 1024  # the encoder's priming samples before a run's first input sample
END_WAIT_S = 5.0  # an ending Space waits this long for its last window's captions
# Subtitle segments kept downloadable (~2 min at 1.92 s): a late answer publishes many at once,
# and each stays listed for a window's time after (see `track`). Cues are small.
RETAINED_SEGMENTS = 64
# The subtitle playlist never trails the program by more than this: players that wait for every
# rendition before they play (GStreamer's hlsdemux2 does) must not wait on a slow transcriber.
# A caption that comes later still airs, at the first time still open (`CaptionTrack.late_cues`).
MAX_HOLD_S = 8.0


class SpaceCaptions:
    def __init__(
        self, media: SpaceMedia, transcriber: Transcriber, store: CaptionStore | None = None
    ) -> None:
        self.media = media
        self._transcriber = transcriber
        self._store = store
        self._key: Hashable = (media.space_id, media.packager.stream_id)
        self.chunker = Chunker(media.start_sample)
        self._track: CaptionTrack | None = None
        self._answered = asyncio.Event()
        self.windows = 0
        self.lost_windows = 0  # the worker died with it
        self.cpu_s = 0.0
        self.phrases = 0
        transcriber.register(self._key, self._on_answer)
        media.program_tap = self.on_program

    # -- the subtitle track ------------------------------------------------------------------------
    @property
    def track(self) -> CaptionTrack | None:
        """The subtitle rendition (None until the stream has its first part)."""
        if self._track is None:
            shift = self.media.timeline_shift
            if shift is None:
                return None
            packager = self.media.packager
            self._track = CaptionTrack(
                TrackShape(
                    stream_id=packager.stream_id,
                    first_msn=self.media.first_msn,
                    origin=(self.media.start_sample - AAC_PRIMING + shift) / SAMPLE_RATE,
                    segment_s=self.media.samples_per_segment / SAMPLE_RATE,
                    start_time=self.media.start_time,
                    target_duration=packager.target_duration,
                    window=packager.window_size,
                    retained=max(packager.retained_segments, RETAINED_SEGMENTS),
                    discontinuity_sequence=self.media.discontinuity_sequence,
                )
            )
        return self._track

    @property
    def dropped_s(self) -> float:
        space = self._transcriber.backlog.spaces.get(self._key)
        return space.dropped_s if space is not None else 0.0

    def _media_time(self, sample: int) -> float | None:
        shift = self.media.timeline_shift
        return None if shift is None else (sample + shift) / SAMPLE_RATE

    def _done(self) -> int:
        space = self._transcriber.backlog.spaces.get(self._key)
        oldest = space.oldest if space is not None else None
        done = self.chunker.done_through
        return done if oldest is None else min(done, oldest)

    def _advance(self) -> None:
        track, done = self.track, self._media_time(self._done())
        now = self._media_time(self.chunker.position)
        if track is not None and done is not None and now is not None:
            track.advance(max(done, now - MAX_HOLD_S), now)

    # -- on the loop -------------------------------------------------------------------------------
    def on_program(self, frame: PcmFrame | None) -> None:
        window = self.chunker.push(frame)
        if window is not None:
            self._submit(window)
        self._advance()

    def _submit(self, window: Window) -> None:
        self.windows += 1
        self._transcriber.submit(self._key, window)

    def _on_answer(self, _key: Hashable, window: Window, answer: Answer | None) -> None:
        self._answered.set()
        if answer is None:
            self.lost_windows += 1
        else:
            self.cpu_s += answer.cpu_s
            self._add(window, answer)
        self._advance()

    def _add(self, window: Window, answer: Answer) -> None:
        start = self._media_time(window.start)
        track = self.track
        if start is None or track is None:
            return
        length = len(window.pcm) / SAMPLE_RATE
        for phrase in answer.phrases:
            begin = start + max(0.0, min(phrase.start, length - 0.01))
            end = start + max(min(phrase.end, length), phrase.start + 0.01)
            if end <= begin:
                end = begin + 0.5
            cue = Cue(begin, end, phrase.text)
            track.add(cue)
            self.phrases += 1
            if self._store is not None:
                pdt = self.media.start_time + (cue.start - track.shape.origin)
                self._store.append(cue, pdt)

    async def close(self, *, ended: bool) -> None:
        """Stop captioning: the open window is transcribed (briefly waited for) when the Space
        ended, so its last words are kept; the track then ends with the stream."""
        self.media.program_tap = None
        if ended:
            window = self.chunker.flush()
            if window is not None:
                self._submit(window)
            try:
                async with asyncio.timeout(END_WAIT_S):
                    while self._transcriber.backlog.spaces.get(self._key, None) is not None and (
                        self._transcriber.backlog.spaces[self._key].oldest is not None
                    ):
                        self._answered.clear()
                        await self._answered.wait()
            except TimeoutError:
                log.info("space %s: last captions not ready at the end", self.media.space_id)
        self._transcriber.unregister(self._key)
        track, end = self.track, self._media_time(self.chunker.position)
        if track is not None and end is not None:
            track.end(end)
        if self._store is not None:
            self._store.close()
