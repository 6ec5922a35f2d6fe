"""A speaker bot: joins a Space's stage over WebRTC, publishes a source, optionally records what it hears.

Used by `townhall speak`, by the tests (a tone in, the listener mix out) and by the benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import wave
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import av
import httpx
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from townhall.media.audio import SAMPLE_RATE, downmix_interleaved

_STAGE_PATH = re.compile(r"^/s/([a-z0-9]{10})(?:/stage)?/?$")


CONNECT_ATTEMPTS = 5


def backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds to wait before trying again: the server's Retry-After if it gave one, else
    exponential; either way with full jitter so that a crowd told to wait does not return at once."""
    base = float(retry_after) if retry_after and retry_after.isdigit() else 0.5 * 2**attempt
    return base + random.uniform(0, base)


class SpeakerError(Exception):
    """The stage refused us or could not be reached; the message says why."""


@dataclass(frozen=True)
class StageAddress:
    base_url: str
    space_id: str
    token: str | None  # an identity already on the stage (bearer), or None: join as a guest
    invite: str | None  # an invite link's token: claims a seat before connecting


def parse_stage_url(url: str, token: str | None = None) -> StageAddress:
    """`http://HOST/s/SPACE/stage#invite=I` (an invite link, as the host shares it), or a Space
    link plus `token`, the identity of someone already on that stage."""
    parts = urlsplit(url)
    match = _STAGE_PATH.match(parts.path)
    if parts.scheme not in ("http", "https") or not parts.netloc or match is None:
        raise SpeakerError(f"not a Space link: {url!r} (want http://HOST/s/SPACE/stage#invite=…)")
    invite = (
        parts.fragment.removeprefix("invite=") if parts.fragment.startswith("invite=") else None
    )
    if not token and not invite:
        raise SpeakerError("no way onto the stage: use an invite link or pass --token")
    return StageAddress(f"{parts.scheme}://{parts.netloc}", match.group(1), token, invite)


class ReturnRecorder:
    """Drains the mix-minus the server sends back and writes it as 48 kHz mono WAV."""

    def __init__(self, path: Path | None) -> None:
        self._wav: wave.Wave_write | None = None
        if path is not None:
            self._wav = wave.open(str(path), "wb")  # noqa: SIM115 - closed by close(), lives as long as the call
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(SAMPLE_RATE)
        self.frames = 0

    async def drain(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.frames += 1
            if self._wav is not None and isinstance(frame, av.AudioFrame):
                pcm = downmix_interleaved(frame.to_ndarray(), len(frame.layout.channels))
                self._wav.writeframes(pcm.tobytes())

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None


class Speaker:
    def __init__(
        self,
        address: StageAddress,
        source: MediaStreamTrack,
        record_return: Path | None = None,
        name: str = "Speaker bot",
    ) -> None:
        self.address = address
        self.name = name
        self.token = address.token
        self.source = source
        self.recorder = ReturnRecorder(record_return)
        self.pc: RTCPeerConnection | None = None
        self.connected = asyncio.Event()
        self.failed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def connect(self) -> None:
        base, space = self.address.base_url, self.address.space_id
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            if self.token is None:
                guest = await http.post("/api/auth/guest", json={"display_name": self.name})
                if guest.status_code != 201:
                    raise SpeakerError(_describe(guest))
                self.token = str(guest.json()["token"])
            if self.address.invite is not None:
                seat = await http.post(
                    f"/api/spaces/{space}/stage/join",
                    json={"invite": self.address.invite},
                    headers=self._headers,
                )
                if seat.status_code != 200:
                    raise SpeakerError(_describe(seat))
            ice = await http.get("/api/ice-servers")
            servers = [RTCIceServer(**s) for s in ice.json()] if ice.status_code == 200 else []
            self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers or None))
            self.pc.addTransceiver(self.source, direction="sendrecv")
            self.pc.on("track", self._on_track)
            self.pc.on("connectionstatechange", self._on_state)
            await self.pc.setLocalDescription(await self.pc.createOffer())
            for attempt in range(CONNECT_ATTEMPTS):
                response = await http.post(
                    f"/api/spaces/{space}/rtc",
                    json={"type": "offer", "sdp": self.pc.localDescription.sdp},
                    headers=self._headers,
                )
                if response.status_code not in (429, 503) or attempt == CONNECT_ATTEMPTS - 1:
                    break
                await asyncio.sleep(backoff(attempt, response.headers.get("Retry-After")))
            if response.status_code != 200:
                raise SpeakerError(_describe(response))
            answer = response.json()
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=answer["sdp"], type="answer")
            )

    def _on_track(self, track: MediaStreamTrack) -> None:
        task = asyncio.create_task(self.recorder.drain(track))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_state(self) -> None:
        assert self.pc is not None
        if self.pc.connectionState == "connected":
            self.connected.set()
        elif self.pc.connectionState in ("failed", "closed"):
            self.failed.set()

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        for task in list(self._tasks):
            task.cancel()
        self.recorder.close()
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient(base_url=self.address.base_url, timeout=5) as http:
                await http.delete(f"/api/spaces/{self.address.space_id}/rtc", headers=self._headers)


def _describe(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.text[:200]}"


async def run_speaker(
    speaker: Speaker, duration: float | None, connect_timeout: float = 20.0
) -> None:
    """Connect, publish until `duration` passes (or forever), then hang up cleanly."""
    try:
        await speaker.connect()
        async with asyncio.timeout(connect_timeout):
            await asyncio.wait(
                [
                    asyncio.ensure_future(speaker.connected.wait()),
                    asyncio.ensure_future(speaker.failed.wait()),
                ],
                return_when=asyncio.FIRST_COMPLETED,
            )
        if speaker.failed.is_set() and not speaker.connected.is_set():
            raise SpeakerError("the WebRTC connection failed (check ICE servers / network)")
        print("connected", flush=True)
        waiter = asyncio.ensure_future(speaker.failed.wait())
        try:
            await asyncio.wait_for(waiter, timeout=duration)
            raise SpeakerError("the connection to the stage was lost")
        except TimeoutError:
            pass
    finally:
        await speaker.close()
