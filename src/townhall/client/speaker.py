"""A speaker bot: joins a Space's stage over WebRTC, publishes a source, optionally records what it hears.

Used by `townhall speak`, by the tests (a tone in, the listener mix out) and by the benchmarks.

Theory of operation. One `connect()` is one attempt: an identity (a guest, unless a token was
given), the seat an invite offers (claimed once: a re-join is the same person already on the
roster), then a fresh peer connection and one offer/answer. `stay_on_stage()` keeps the bot on
stage for as long as it runs: a connection is *lost* when its state turns failed or closed, or when
the server's mix-minus stops arriving (a frame every 20 ms, a ready-made silent one while the
return is silence, so a return that stands still for `RETURN_TIMEOUT_S` means the server is gone long before ICE consent
gives up, ~30 s in aioice). Then it connects again, at once and afterwards with exponential
backoff and full jitter (or after the server's Retry-After), keeping the same source track, which
goes on playing in real time meanwhile. Only a definite refusal ends it (`StageRefused`: not on
the stage or banned, no such Space, Space ended, the identity rejected), or, before the first
connection ever succeeded, `CONNECT_ATTEMPTS` failures (a wrong address should not spin forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
import wave
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import httpx
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.frame import Frame
from av.packet import Packet

from townhall.media.audio import SAMPLE_RATE, downmix_interleaved

log = logging.getLogger(__name__)

_STAGE_PATH = re.compile(r"^/s/([a-z0-9]{10})(?:/stage)?/?$")

CONNECT_ATTEMPTS = 5  # before the first connection succeeded; once on stage, no limit
MAX_BACKOFF_S = 10.0
RETURN_TIMEOUT_S = (
    2.0  # no mix-minus packet for this long (one comes every 20 ms, silence included): gone
)
WATCH_INTERVAL_S = 0.5
# Answers that retrying the same request as the same person cannot change.
DEFINITE_REFUSALS = frozenset({400, 401, 403, 404, 410, 422})


def backoff(attempt: int, retry_after: str | None = None, cap: float = MAX_BACKOFF_S) -> float:
    """Seconds to wait before attempt number `attempt` (1, 2, …): exponential with full jitter
    (uniform in [0, min(cap, 0.5·2^attempt)]), so that a whole stage dropped by one crash does not
    come back in step. The server's Retry-After, when it gave one, is a floor, spread above by up
    to as much again (a crowd told to wait must not return at once either)."""
    if retry_after and retry_after.isdigit():
        told = float(retry_after)
        return told + random.uniform(0, min(told, cap))
    return random.uniform(0, min(cap, 0.5 * 2**attempt))


class SpeakerError(Exception):
    """The stage could not be reached or refused us; the message says why.

    SpeakerError            worth trying again (network, 5xx, 429, a connection that failed)
     └── StageRefused       a definite no: trying again cannot change it
    """

    def __init__(self, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StageRefused(SpeakerError):
    """Not on the stage, banned, no such Space, the Space ended, or our identity was rejected."""


def _refusal(response: httpx.Response) -> SpeakerError:
    """The error an unsuccessful answer means: definite, or worth another try (after Retry-After)."""
    if response.status_code in DEFINITE_REFUSALS:
        return StageRefused(_describe(response))
    return SpeakerError(_describe(response), response.headers.get("Retry-After"))


class Stillness:
    """Notices a counter that stopped moving: fed (value, now), says how long it has stood still.

    Sans-I/O so the rule is tested with a fake clock; `Speaker` feeds it the packets received."""

    def __init__(self, now: float) -> None:
        self._value: int | None = None
        self._since = now

    def still_for(self, value: int, now: float) -> float:
        if value != self._value:
            self._value, self._since = value, now
        return now - self._since


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


class _Feed(MediaStreamTrack):
    """What one peer connection sends: the bot's source, read through. aiortc stops a sender's
    track when its connection closes; stopping a feed leaves the source playing for the next."""

    kind = "audio"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self._source = source

    async def recv(self) -> Frame | Packet:  # type: ignore[type-arg]
        if self.readyState != "live":
            raise MediaStreamError
        return await self._source.recv()


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
        self.connected = asyncio.Event()  # of the current peer connection
        self.failed = asyncio.Event()  # of the current peer connection
        self.reconnects = 0
        self._seated = address.invite is None  # the invite's seat is claimed once, not per re-join
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def connect(self) -> None:
        """One attempt: identity and seat if still needed, a new peer connection, offer → answer.

        Raises StageRefused on a definite no, SpeakerError or httpx.HTTPError otherwise."""
        await self._drop_peer()
        base, space = self.address.base_url, self.address.space_id
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            if self.token is None:
                guest = await http.post("/api/auth/guest", json={"display_name": self.name})
                if guest.status_code != 201:
                    raise _refusal(guest)
                self.token = str(guest.json()["token"])
            if not self._seated:
                seat = await http.post(
                    f"/api/spaces/{space}/stage/join",
                    json={"invite": self.address.invite},
                    headers=self._headers,
                )
                if seat.status_code != 200:
                    raise _refusal(seat)
                self._seated = True
            ice = await http.get("/api/ice-servers")
            servers = [RTCIceServer(**s) for s in ice.json()] if ice.status_code == 200 else []
            self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=servers or None))
            connected, failed = self.connected, self.failed = asyncio.Event(), asyncio.Event()
            pc.addTransceiver(_Feed(self.source), direction="sendrecv")
            pc.on("track", self._on_track)

            @pc.on("connectionstatechange")
            def _on_state() -> None:  # this connection's own events: a replaced one stays quiet
                if pc.connectionState == "connected":
                    connected.set()
                elif pc.connectionState in ("failed", "closed"):
                    failed.set()

            await pc.setLocalDescription(await pc.createOffer())
            response = await http.post(
                f"/api/spaces/{space}/rtc",
                json={"type": "offer", "sdp": pc.localDescription.sdp},
                headers=self._headers,
            )
            if response.status_code != 200:
                raise _refusal(response)
            answer = response.json()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    def _on_track(self, track: MediaStreamTrack) -> None:
        task = asyncio.create_task(self.recorder.drain(track))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _until_connected(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await _first(self.connected.wait(), self.failed.wait())
        except TimeoutError:
            raise SpeakerError(f"no WebRTC connection within {seconds:.0f} s") from None
        if not self.connected.is_set():
            raise SpeakerError("the WebRTC connection failed (check ICE servers / network)")

    async def _packets_received(self) -> int:
        if self.pc is None:
            return 0
        total = 0
        for receiver in self.pc.getReceivers():
            for stats in (await receiver.getStats()).values():
                if stats.type == "inbound-rtp":
                    total += int(stats.packetsReceived)
        return total

    async def _until_lost(self) -> str:
        """Wait while the connection is alive; return why it no longer is."""
        watch = Stillness(time.monotonic())
        failed = self.failed
        while not failed.is_set():
            still = watch.still_for(await self._packets_received(), time.monotonic())
            if still > RETURN_TIMEOUT_S:
                return f"no audio back from the stage for {still:.1f} s"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(failed.wait(), WATCH_INTERVAL_S)
        return f"the WebRTC connection {self.pc.connectionState if self.pc else 'closed'}"

    async def stay_on_stage(self, connect_timeout: float = 20.0) -> None:
        """Connect, and whenever the connection is lost connect again, until cancelled.

        Raises StageRefused on a definite no; SpeakerError if the very first connection fails
        CONNECT_ATTEMPTS times."""
        attempt = 0
        lost_at: float | None = None
        while True:
            try:
                await self.connect()
                await self._until_connected(connect_timeout)
            except StageRefused:
                raise
            except (SpeakerError, httpx.HTTPError, OSError) as exc:
                attempt += 1
                reason = str(exc) or type(exc).__name__
                if lost_at is None and attempt >= CONNECT_ATTEMPTS:
                    raise SpeakerError(
                        f"could not join the stage ({attempt} tries): {reason}"
                    ) from exc
                delay = backoff(attempt, getattr(exc, "retry_after", None))
                log.warning("stage: %s; attempt %d in %.1f s", reason, attempt + 1, delay)
                await self._drop_peer()
                await asyncio.sleep(delay)
                continue
            if lost_at is None:
                print("connected", flush=True)
            else:
                self.reconnects += 1
                print(f"reconnected after {time.monotonic() - lost_at:.1f} s", flush=True)
            attempt = 0
            reason = await self._until_lost()
            lost_at = time.monotonic()
            log.warning("stage: lost (%s); reconnecting", reason)

    async def _drop_peer(self) -> None:
        """Close the current peer connection, if any; the source track lives on for the next one."""
        pc, self.pc = self.pc, None
        if pc is not None:
            await pc.close()
        for task in list(self._tasks):
            task.cancel()

    async def close(self) -> None:
        had_peer = self.pc is not None
        await self._drop_peer()
        self.recorder.close()
        if not had_peer:
            return
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient(base_url=self.address.base_url, timeout=5) as http:
                await http.delete(f"/api/spaces/{self.address.space_id}/rtc", headers=self._headers)


async def _first(*waits: Coroutine[Any, Any, object]) -> None:
    """Wait until the first of `waits` finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _describe(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.text[:200]}"


async def run_speaker(
    speaker: Speaker, duration: float | None, connect_timeout: float = 20.0
) -> None:
    """Stay on stage until `duration` passes (or forever), reconnecting whenever the connection
    is lost; then hang up cleanly."""
    try:
        async with asyncio.timeout(duration):
            await speaker.stay_on_stage(connect_timeout)
    except TimeoutError:
        if duration is None:
            raise
    finally:
        await speaker.close()
