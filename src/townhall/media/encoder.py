"""Program encoder: 48 kHz mono PCM in, AAC-LC in fragmented MP4 (CMAF) out, one fragment per part.

Sans-I/O: `encode(frame)` returns the parts that became complete. PyAV's mp4 muxer writes into an
in-memory sink; `frag_duration` set just under N AAC frames makes it close a fragment every N frames
(it flushes before writing the frame that would overrun, so a part appears one AAC frame — 21 ms —
after its last sample). Each fragment is a moof+mdat pair: exactly one LL-HLS part.

Silence is encoded once. Most of the time an open Space is silent, and AAC-encoding silence was
most of an idle Space's cost. Once the codec has been fed `SETTLE_FRAMES` all-zero AAC frames in a
row, its output for another all-zero frame is the same access unit every time, and its state no
longer changes (measured: the packets after a silent stretch are the same whatever its length), so
further all-zero frames skip the codec and mux a copy of the access unit it last produced. The
stream is byte for byte what encoding every frame gives (`reuse_silence=False`, tested), because:

* the encoder frames the audio itself (960-sample ticks into 1024-sample AAC frames), so the
  codec sees whole frames whose boundaries do not depend on which ones were skipped;
* every packet is stamped here (`start_sample - 1024 + 1024 * n` for the n-th, the codec's own
  priming delay), not by the codec, whose clock stops while it is skipped;
* the codec runs with `bitexact`: otherwise it writes its name in a data element every 256th frame,
  counted in frames it encoded, which would move once frames are skipped. Decoders ignore that
  element, so listeners hear no difference from before.
"""

from __future__ import annotations

import fractions
import io
from typing import Any

import av
import numpy as np
from av.codec.context import Flags

from townhall.media.audio import SAMPLE_RATE, PcmFrame
from townhall.media.fmp4 import BoxSplitter, fragment_decode_time, fragment_sample_count
from townhall.media.packager import EncodedPart

AAC_FRAME_SAMPLES = 1024
AAC_LC_MONO_CODECS = "mp4a.40.2"
# All-zero AAC frames the codec must have been fed in a row before it is skipped for more: the
# access unit settles after 2 (the codec looks one frame ahead); the rest is margin for its rate
# control, whose state was measured unchanged from 2 on (tests/media/test_encoder.py proves the
# output identical either way).
SETTLE_FRAMES = 8


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
        self,
        *,
        frames_per_part: int = 15,
        bitrate: int = 64_000,
        start_sample: int = 0,
        reuse_silence: bool = True,
    ) -> None:
        """`start_sample`: where on the Space's timeline this run's first sample lies. A stream
        that continues an earlier run of the same Space (a restart, a take-over) starts there, so
        its fragments' decode times (tfdt) carry on from the earlier run's instead of going back
        to 0, which players that ignore discontinuities (ffmpeg) would read as time running back.
        `reuse_silence=False` encodes every frame (the reference the reuse is tested against)."""
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
        self._codec = self._stream.codec_context
        self._codec.flags |= Flags.bitexact  # see the module docstring
        self._time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._frames_in = 0  # AAC frames handed to the codec or skipped
        self._start_sample = start_sample
        self._pending = np.zeros(0, dtype=np.int16)  # samples short of a whole AAC frame
        self._reuse_silence = reuse_silence
        self._zero_run = 0  # all-zero AAC frames the codec was fed in a row, up to SETTLE_FRAMES
        self._silent_unit: bytes | None = None  # the codec's last access unit of settled silence
        self._packets_out = 0
        self.frames_reused = 0  # AAC frames of silence that skipped the codec
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
        pending = np.concatenate((self._pending, pcm)) if self._pending.size else pcm
        whole = pending.shape[0] // AAC_FRAME_SAMPLES * AAC_FRAME_SAMPLES
        for start in range(0, whole, AAC_FRAME_SAMPLES):
            self._encode_frame(pending[start : start + AAC_FRAME_SAMPLES])
        self._pending = pending[whole:].copy()
        return self._parts()

    def _encode_frame(self, samples: PcmFrame) -> None:
        """One whole AAC frame of input: the codec, or the settled silent access unit again."""
        silent = not samples.any()
        self._frames_in += 1
        if silent and self._silent_unit is not None:
            self.frames_reused += 1
            self._mux(av.Packet(self._silent_unit))
            return
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._start_sample + (self._frames_in - 1) * AAC_FRAME_SAMPLES
        frame.time_base = self._time_base
        packets = self._codec.encode(frame)
        for packet in packets:
            self._mux(packet)
        if not silent:
            self._zero_run, self._silent_unit = 0, None
            return
        self._zero_run = min(self._zero_run + 1, SETTLE_FRAMES)
        if self._reuse_silence and self._zero_run == SETTLE_FRAMES and packets:
            self._silent_unit = bytes(packets[-1])

    def _mux(self, packet: av.Packet) -> None:  # type: ignore[type-arg]
        """Stamp the n-th packet with its place on the timeline (the codec's priming delay of one
        frame before it) and hand it to the muxer."""
        packet.pts = packet.dts = self._start_sample + (self._packets_out - 1) * AAC_FRAME_SAMPLES
        if not packet.duration:  # the codec's own (its last may be short); ours: a whole frame
            packet.duration = AAC_FRAME_SAMPLES
        packet.time_base = self._time_base
        packet.is_keyframe = True
        packet.stream = self._stream
        self._packets_out += 1
        self._container.mux(packet)

    def flush(self) -> list[EncodedPart]:
        """Encode what is buffered and close the last (possibly short) part; the encoder is done."""
        if self._pending.size:  # the codec pads the last frame: hand it the samples left
            frame = av.AudioFrame.from_ndarray(
                self._pending.reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = SAMPLE_RATE
            frame.pts = self._start_sample + self._frames_in * AAC_FRAME_SAMPLES
            frame.time_base = self._time_base
            self._pending = self._pending[:0]
            for packet in self._codec.encode(frame):
                self._mux(packet)
        for packet in self._codec.encode(None):
            self._mux(packet)
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
