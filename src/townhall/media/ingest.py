"""Speaker ingest: one aiortc peer connection per speaker, Opus in, mix-minus Opus out.

Every received track is drained for as long as it exists (aiortc's receive queue is unbounded), and
every frame is converted to the mixer's 48 kHz mono 20 ms format on arrival. A speaker who connects
again replaces their previous connection without touching anyone else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from townhall.config import IceServer
from townhall.media.audio import FRAME_SAMPLES, SAMPLE_RATE, SpeakerId, downmix_interleaved
from townhall.media.pipeline import SpaceMedia

log = logging.getLogger(__name__)

MAX_SDP_BYTES = 32_768


class SdpError(ValueError):
    """The offer cannot be used: not SDP, no audio, or too large. The message says which."""


def check_offer(sdp: str) -> None:
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise SdpError(f"offer is larger than {MAX_SDP_BYTES} bytes")
    if not sdp.startswith("v=0"):
        raise SdpError("offer is not SDP (must start with v=0)")
    if "\nm=audio " not in sdp.replace("\r\n", "\n"):
        raise SdpError("offer has no audio section")


class _PcmAdapter:
    """Anything aiortc decodes → 960-sample mono int16 frames, keeping the sender's pts when it can."""

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._carry = np.zeros(0, dtype=np.int16)

    def convert(self, frame: av.AudioFrame) -> list[tuple[np.ndarray, int | None]]:
        if (
            frame.format.name == "s16"
            and frame.sample_rate == SAMPLE_RATE
            and frame.samples == FRAME_SAMPLES
        ):
            channels = len(frame.layout.channels)
            packed: np.ndarray = frame.to_ndarray()
            return [(downmix_interleaved(packed, channels), frame.pts)]
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        pieces = [self._carry] + [
            f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)
        ]
        samples = np.concatenate(pieces).astype(np.int16, copy=False)
        whole = len(samples) // FRAME_SAMPLES * FRAME_SAMPLES
        self._carry = samples[whole:]
        return [(samples[i : i + FRAME_SAMPLES], None) for i in range(0, whole, FRAME_SAMPLES)]


class SpeakerConnection:
    """One speaker's WebRTC session with the Space's media engine."""

    def __init__(
        self, media: SpaceMedia, speaker: SpeakerId, ice_servers: tuple[IceServer, ...]
    ) -> None:
        self.media = media
        self.speaker = speaker
        servers = [RTCIceServer(**s.as_dict()) for s in ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers or None))
        self._drains: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()
        self._on_stage = False  # in the mix (answered): closing takes the speaker out of it
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    async def accept(self, offer_sdp: str) -> None:
        """Take the offer, touching nothing of the Space yet; SdpError if it cannot be used.

        Whatever aiortc raises on an offer it cannot use (a negative port, no rtpmap, hundreds
        of m-lines: its parser's errors are of many kinds) is the offer's fault, so it is an
        SdpError (400), never a 500."""
        check_offer(offer_sdp)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # see the docstring
            raise SdpError(f"offer cannot be used: {exc or type(exc).__name__}") from None

    async def answer(self) -> str:
        """Join the mix and answer the accepted offer."""
        self._on_stage = True
        return_track = self.media.add_speaker(self.speaker)
        self.pc.addTrack(return_track)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:  # no answer to that offer: the offer is at fault
            raise SdpError(f"offer cannot be answered: {exc or type(exc).__name__}") from None
        return str(self.pc.localDescription.sdp)

    def _on_track(self, track: MediaStreamTrack) -> None:
        task = asyncio.create_task(self._drain(track), name=f"drain-{self.speaker}")
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _drain(self, track: MediaStreamTrack) -> None:
        """Read every frame of the track until it ends; audio goes to the mixer, video is discarded."""
        adapter = _PcmAdapter()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind != "audio" or not isinstance(frame, av.AudioFrame):
                continue
            for pcm, pts in adapter.convert(frame):
                self.media.push(self.speaker, pcm, pts)

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            await self.close()

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if self._on_stage:
            self.media.remove_speaker(self.speaker)
        with contextlib.suppress(Exception):
            await self.pc.close()
        for task in list(self._drains):
            task.cancel()


class Ingest:
    """The live speaker connections of one Space, at most one per speaker."""

    def __init__(self, media: SpaceMedia, ice_servers: tuple[IceServer, ...]) -> None:
        self.media = media
        self.ice_servers = ice_servers
        self.connections: dict[SpeakerId, SpeakerConnection] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    async def connect(self, speaker: SpeakerId, offer_sdp: str) -> str:
        """Connect `speaker` with this offer, replacing their connection if they have one: but
        only once the offer is known to be usable, so a bad offer (SdpError) leaves the speaker
        on air as they were."""
        check_offer(offer_sdp)
        connection = SpeakerConnection(self.media, speaker, self.ice_servers)
        try:
            await connection.accept(offer_sdp)
        except BaseException:
            await connection.close()
            raise
        previous = self.connections.pop(speaker, None)
        if previous is not None:
            await previous.close()
        try:
            answer = await connection.answer()
        except BaseException:
            await connection.close()
            raise
        self.connections[speaker] = connection
        watcher = asyncio.create_task(self._forget_when_closed(connection))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return answer

    async def _forget_when_closed(self, connection: SpeakerConnection) -> None:
        await connection.closed.wait()
        if self.connections.get(connection.speaker) is connection:
            del self.connections[connection.speaker]

    async def close(self) -> None:
        for connection in list(self.connections.values()):
            await connection.close()
        self.connections.clear()
