"""Opus encoding of the mix-minus each speaker hears back.

One encoder per distinct mix (see `Mixer`: everyone who is silent hears the same program mix), so a
stage of 13 with one person talking costs two encodes per tick, not thirteen. The packets are shared
by every speaker's outgoing track, which restamps them into its own timeline.
"""

from __future__ import annotations

import fractions
import functools

import av

from townhall.media.audio import SAMPLE_RATE, PcmFrame, silence

TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


class OpusMixEncoder:
    def __init__(self, bitrate: int = 32_000) -> None:
        self._codec = av.CodecContext.create("libopus", "w")
        self._codec.sample_rate = SAMPLE_RATE
        self._codec.layout = "mono"
        self._codec.format = "s16"
        self._codec.bit_rate = bitrate
        self._codec.time_base = TIME_BASE
        self._codec.options = {"application": "voip", "frame_duration": "20"}
        self._pts = 0

    def encode(self, pcm: PcmFrame) -> list[bytes]:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        self._pts += pcm.shape[0]
        return [bytes(packet) for packet in self._codec.encode(frame)]


@functools.cache
def silent_packet(bitrate: int) -> bytes:
    """One Opus packet of 20 ms of digital silence, encoded once per process: what a speaker whose
    return is silence is sent now and then (see `pipeline.ReturnTrack`), so that their client
    still sees audio arrive and does not take the quiet for a dead server."""
    encoder = OpusMixEncoder(bitrate)
    packets: list[bytes] = []
    while len(packets) < 3:  # past the codec's start-up: a steady silent frame
        packets += encoder.encode(silence())
    return packets[-1]
