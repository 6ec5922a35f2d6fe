"""Program encoder: 48 kHz mono PCM in, AAC-LC in fragmented MP4 (CMAF) out, one fragment per part.

Sans-I/O: `encode(frame)` returns the parts that became complete. PyAV's mp4 muxer writes into an
in-memory sink; `frag_duration` set just under N AAC frames makes it close a fragment every N frames
(it flushes before writing the frame that would overrun, so a part appears one AAC frame — 21 ms —
after its last sample). Each fragment is a moof+mdat pair: exactly one LL-HLS part.
"""

from __future__ import annotations

import fractions
import io
from typing import Any

import av

from townhall.media.audio import SAMPLE_RATE, PcmFrame
from townhall.media.fmp4 import BoxSplitter, fragment_decode_time, fragment_sample_count
from townhall.media.packager import EncodedPart

AAC_FRAME_SAMPLES = 1024
AAC_LC_MONO_CODECS = "mp4a.40.2"


class _Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.pending: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.pending.append(bytes(b))
        return len(b)


class AacFmp4Encoder:
    """Turns a continuous run of PCM frames into an init section and AAC parts."""

    def __init__(
        self, *, frames_per_part: int = 15, bitrate: int = 64_000, start_sample: int = 0
    ) -> None:
        """`start_sample`: where on the Space's timeline this run's first sample lies. A stream
        that continues an earlier run of the same Space (a restart, a take-over) starts there, so
        its fragments' decode times (tfdt) carry on from the earlier run's instead of going back
        to 0, which players that ignore discontinuities (ffmpeg) would read as time running back."""
        if frames_per_part < 1:
            raise ValueError("frames_per_part must be at least 1")
        if start_sample < 0:
            raise ValueError("start_sample must not be negative")
        self.frames_per_part = frames_per_part
        self.part_seconds = frames_per_part * AAC_FRAME_SAMPLES / SAMPLE_RATE
        self._sink = _Sink()
        self._splitter = BoxSplitter()
        # Just under N frames: the muxer closes the fragment when the next frame would pass it.
        frag_us = int((frames_per_part - 0.5) * AAC_FRAME_SAMPLES / SAMPLE_RATE * 1_000_000)
        movflags = "empty_moov+default_base_moof+cmaf+skip_trailer"
        if start_sample > 0:
            # Without frag_discont the muxer rebases the first fragment's decode time to 0.
            movflags += "+frag_discont"
        self._container = av.open(
            self._sink,
            "w",
            format="mp4",
            options={
                "movflags": movflags,
                "frag_duration": str(frag_us),
                "flush_packets": "1",
            },
        )
        self._stream = self._container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        self._stream.bit_rate = bitrate
        self._time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._samples_in = start_sample
        self._start_sample = start_sample
        self._shift: int | None = None
        self._moof: bytes | None = None
        self._container.start_encoding()
        self._init = self._take_init()

    @property
    def init_section(self) -> bytes:
        return self._init

    def _take_init(self) -> bytes:
        boxes = self._drain()
        init = b"".join(data for kind, data in boxes if kind in ("ftyp", "moov"))
        if not init:
            raise RuntimeError("muxer wrote no init section")
        return init

    def _drain(self) -> list[tuple[str, bytes]]:
        data = b"".join(self._sink.pending)
        self._sink.pending.clear()
        return self._splitter.feed(data)

    def encode(self, pcm: PcmFrame) -> list[EncodedPart]:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._samples_in
        frame.time_base = self._time_base
        self._samples_in += pcm.shape[0]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._parts()

    def flush(self) -> list[EncodedPart]:
        """Encode what is buffered and close the last (possibly short) part; the encoder is done."""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._parts()

    @property
    def timeline_shift(self) -> int | None:
        """Where input sample `s` plays in the fragments' timeline: at `s + timeline_shift` (None
        before the first fragment). The first packet holds the encoder's priming (1024 samples
        before the first input sample); measured with PyAV's muxer, a run from 0 is shifted so
        that packet starts at 0 (+1024), a run continuing at `start_sample` (frag_discont) is not
        (0). Read from the first fragment rather than assumed, so a muxer change cannot skew it."""
        return self._shift

    def _parts(self) -> list[EncodedPart]:
        boxes = self._drain()
        parts: list[EncodedPart] = []
        for kind, data in boxes:
            if kind == "moof":
                self._moof = data
            elif kind == "mdat" and self._moof is not None:
                fragment = self._moof + data
                samples = fragment_sample_count(fragment) * AAC_FRAME_SAMPLES
                if self._shift is None:
                    first_input = self._start_sample - AAC_FRAME_SAMPLES
                    self._shift = fragment_decode_time(fragment) - first_input
                parts.append(EncodedPart(fragment, samples / SAMPLE_RATE, independent=True))
                self._moof = None
        return parts
