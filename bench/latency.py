"""Glass-to-glass latency: a speaker plays clicks; a second speaker, a Python LL-HLS player and the
real listener page (in headless Chromium) hear them.

Method (all on loopback, one machine, one clock: Python's `time.time()`):
- `clicks.wav` (written by this bench: 48 kHz mono, 12 s, looped) holds a click every 1.0 s. Click k
  is 2 × (k mod 4) + 1 bursts of 10 ms of 1 kHz, 60 ms apart: the first burst's onset is "the
  click", the number of bursts names it, so a listener more than one period behind still matches
  the right emission (unambiguous up to 4 s of latency). The counts are odd: a burst lost or
  gained in playback (a glitch under load) makes an even count, and that click is dropped and
  counted rather than matched to a neighbour's emission a whole period off. It is played by a speaker bot built from the
  product's own client (`townhall.client.speaker.Speaker` with its `FileTrack`, the code behind
  `townhall speak --file`), run in this process so that the instant each click leaves the bot is
  known exactly: the paced track hands out frame N at start + N × 20 ms, so a click's emission =
  that hand-out time + its offset in the frame.
- (a) stage → stage: a second bot (invited speaker, publishing silence) timestamps every frame of its
  mix-minus on arrival; a click's delay = arrival of the 20 ms frame holding its onset − emission.
  Reference, in the same run, process and event loop, at the same time (so under the same load):
  the same two bot ends (TimedClicks sender, TimedReturn receiver, same aiortc/Opus code) connected
  peer to peer with no server (aiortc to aiortc, host candidates only). Server-added = via-server − direct, as the difference of the
  percentiles (the two click streams are independent, so there is no per-click pairing). Error:
  frame quantisation (+0…20 ms on both, which largely cancels in the difference) and both bots' Opus
  encode/decode and aiortc's receive jitter buffer (in both, so they cancel too: what remains is the
  server's ingest, jitter buffer, mixing tick, mix-minus encode and the extra hop).
- (b) speaker → listener, Python: the LL-HLS player of townhall/loadtest/llhls.py (blocking reloads + preload
  hints) decodes each part with PyAV as it arrives and finds the click in it. Measured: the click's
  media time on the server clock (EXT-X-PROGRAM-DATE-TIME + durations + its sample offset) and the
  arrival of the part holding it. Modelled: the player's buffer, PART-HOLD-BACK (hls.js in
  low-latency mode targets about that far behind the live edge). Reported:
      server → ear  = part arrival − click PDT time + PART-HOLD-BACK
      mouth → ear   = part arrival − click emission + PART-HOLD-BACK     (conservative: the click
                      plays a full buffer after the part holding it arrived)
      mouth → PDT   = click PDT time − click emission (how the server's clock relates to the mouth)
  Error: AAC priming/encoder delay (1024 samples, no edit list: decoded audio sits ~21–40 ms late
  relative to its PDT, which inflates the figures slightly) and part granularity for "arrival".
- (c) speaker → listener, the page: the Space's real listener page (`/s/<space>`, the page users
  open: its live segment loader with its own target latency and catch-up) in headless Chromium
  (bench/latency_browser.py), Play pressed as a user would. An init script taps the page's own
  MediaElementSource into an AudioWorklet (no product code changes; the browser context bypasses
  the page's CSP only so the worklet can load from a blob: URL) that finds each burst onset to the
  sample on the AudioContext timeline; the page maps it to its wall clock with
  `getOutputTimestamp()` (when that frame leaves for the output device, Chromium's own estimate of
  output latency included: `outputLatency` is reported). Browser and Python clocks are compared by
  round trips (offset ± half the best round trip, ~1 ms, corrected). mouth → ear = that instant −
  the click's emission; the burst count picks the emission.
  Included: server, packaging, HTTP, the player's buffering, live sync and stalls (counted: it raises
  its target after each, so latency moves in steps), MSE decode, the media element's renderer and
  its hand-off into Web Audio (the page's graph). Excluded: a real sound card and speaker (headless
  Chromium, muted by Playwright, has none: its output is a fake sink, whose latency is only what
  `outputLatency` says),
  and acoustic distance. Error: the onset is the first sample over the threshold after AAC (the
  same rule as the Python player), at the context's rate (44.1 kHz here: resampled). Also
  reported: the same onsets at render time (when the worklet ran them: a lower bound) and the
  player's own latency estimate (live edge − playhead, which leaves out mouth → PDT and the renderer).
  The page's requests to the origin for playlists and media (`/live/…`, from Playwright's request
  events) are counted over the listening window: requests/s per listener is SPEC's cost measure.
The Python player and the page listen to the same Space at the same time (two listeners cost the
origin nothing noticeable; the Chromium process competes for the 2 cores with the bots and the
server, so absolute figures on a loaded machine are pessimistic, for all rows alike). Stage rows
count every click since the bots connected; listener rows count the clicks heard within the
listening window (--seconds), which starts once the page is playing. Default run ≈ 70 s.

    .venv/bin/python -m bench.latency [--seconds 60] [--no-browser] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from playwright.async_api import Error as PlaywrightError

from bench.latency_browser import CHROMIUM, ChromiumListener, Heard, requests_per_second
from townhall.client.sources import FileTrack, ToneTrack
from townhall.client.speaker import ReturnRecorder, Speaker, parse_stage_url
from townhall.harness import start_server
from townhall.loadtest.llhls import PartRef, PlayerStats, parse_playlist, percentile, run_listener
from townhall.media.audio import SAMPLE_RATE, downmix_interleaved

PERIOD = 1.0  # s between clicks
FIRST = 0.5  # s into the file of the first click
CLICK = 0.010  # s: one burst
BURST_SPACING = 0.060  # s between the bursts of one click
CODES = 4  # click k has 2 × (k mod CODES) + 1 bursts: odd counts, so one burst more or less shows
LOOP_CLICKS = 12  # the file's length in clicks: a multiple of CODES, so codes cycle across loops
CLUSTER_GAP = 0.3  # s: bursts closer than this belong to one click
THRESHOLD = 0.08  # of full scale: a click is at 0.5, the rest of the mix is silence
CONNECT_DEADLINE_S = 30.0
BUDGET_STAGE_P95 = 0.150
BUDGET_EAR_P95 = 2.0
AIM_EAR = 1.2


def bursts(code: int) -> int:
    """How many bursts make the click named `code`."""
    return 2 * code + 1


def write_clicks(path: Path, clicks: int) -> list[int]:
    """The click WAV; returns the onset sample (first burst) of each click."""
    pcm = np.zeros(clicks * int(PERIOD * SAMPLE_RATE), dtype=np.int16)
    n = int(CLICK * SAMPLE_RATE)
    burst = (0.5 * 32767 * np.sin(2 * np.pi * 1000 * np.arange(n) / SAMPLE_RATE)).astype(np.int16)
    onsets = [int((FIRST + k * PERIOD) * SAMPLE_RATE) for k in range(clicks)]
    for k, onset in enumerate(onsets):
        for b in range(bursts(k % CODES)):
            at = onset + int(b * BURST_SPACING * SAMPLE_RATE)
            pcm[at : at + n] = burst
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.tobytes())
    return onsets


class TimedClicks(FileTrack):
    """The WAV, looped, noting the wall-clock instant (and code) each click is handed to WebRTC."""

    def __init__(self, path: Path, onsets: list[int]) -> None:
        super().__init__(str(path), loop=True)
        self.onsets = onsets
        self.length = len(self._pcm)
        self.emitted: list[float] = []
        self.codes: list[int] = []

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        handed_out = time.time()
        assert isinstance(frame, av.AudioFrame)
        start = (frame.pts or 0) % self.length
        for k, onset in enumerate(self.onsets):
            if start <= onset < start + frame.samples:
                self.emitted.append(handed_out + (onset - start) / SAMPLE_RATE)
                self.codes.append(k % CODES)
        return frame


class OnsetDetector:
    """Finds click onsets (first bursts) in a stream of PCM chunks, each placed on some time axis."""

    def __init__(self) -> None:
        self.last = -1e18
        self.onsets: list[tuple[float, float]] = []  # (time of onset on the chunk's axis, tag)

    def feed(self, pcm: np.ndarray, start: float, tag: float) -> None:
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > THRESHOLD * 32767)
        for index in loud:
            at = start + index / SAMPLE_RATE
            if at - self.last > PERIOD / 2:
                self.onsets.append((at, tag))
            self.last = at


class TimedReturn:
    """Stands in for the bot's ReturnRecorder: drains the mix-minus, stamping each frame's arrival."""

    def __init__(self) -> None:
        self.detector = OnsetDetector()

    async def drain(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            arrived = time.time()
            if not isinstance(frame, av.AudioFrame):
                continue
            pcm = downmix_interleaved(frame.to_ndarray(), len(frame.layout.channels))
            # Axis = arrival; tag = arrival of the frame (the onset is playable when its frame is in).
            self.detector.feed(pcm, arrived, arrived)

    def close(self) -> None:
        pass


class DirectPair:
    """The stage bots' two ends wired peer to peer, no server: the reference the server adds to.

    Both ends are what `Speaker` builds (one sendrecv audio transceiver each, every received track
    drained); ICE has host candidates only (no STUN: `iceServers=[]`), so the path stays on this host.
    """

    def __init__(self, clicks: TimedClicks) -> None:
        self.clicks = clicks
        self.heard = TimedReturn()
        self.mouth = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.ear = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._tasks: set[asyncio.Task[None]] = set()

    def _drain(self, drain: Any) -> Any:
        def on_track(track: MediaStreamTrack) -> None:
            task = asyncio.create_task(drain(track))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return on_track

    async def connect(self) -> None:
        self.mouth.addTransceiver(self.clicks, direction="sendrecv")
        self.ear.addTransceiver(ToneTrack(440, 0.0), direction="sendrecv")
        self.mouth.on("track", self._drain(ReturnRecorder(None).drain))
        self.ear.on("track", self._drain(self.heard.drain))
        await self.mouth.setLocalDescription(await self.mouth.createOffer())
        await self.ear.setRemoteDescription(self.mouth.localDescription)
        await self.ear.setLocalDescription(await self.ear.createAnswer())
        await self.mouth.setRemoteDescription(self.ear.localDescription)

    async def connected(self) -> None:
        """Poll both ends' connection state (deadline: the caller's timeout)."""
        while not all(pc.connectionState == "connected" for pc in (self.mouth, self.ear)):
            if any(pc.connectionState == "failed" for pc in (self.mouth, self.ear)):
                raise RuntimeError("the direct peer-to-peer connection failed")
            await asyncio.sleep(0.05)  # poll interval; the caller's timeout bounds the wait

    async def close(self) -> None:
        await asyncio.gather(self.mouth.close(), self.ear.close())
        for task in list(self._tasks):
            task.cancel()


class PartDecoder:
    """Decodes LL-HLS parts in order with one AAC decoder, finding clicks on the PDT axis."""

    def __init__(self) -> None:
        self.init = b""
        self.codec: Any = None
        self.detector = OnsetDetector()

    def on_init(self, data: bytes) -> None:
        self.init = data

    def on_part(self, part: PartRef, data: bytes, arrived: float) -> None:
        with av.open(io.BytesIO(self.init + data), "r") as container:
            stream = container.streams.audio[0]
            if self.codec is None:
                self.codec = av.CodecContext.create(stream.codec_context.name, "r")
                self.codec.extradata = stream.codec_context.extradata
            chunks = [
                frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)
                for packet in container.demux(stream)
                if packet.size
                for frame in self.codec.decode(packet)
            ]
        if chunks:
            pcm = np.concatenate(chunks)
            if pcm.dtype.kind == "f":  # fltp from the AAC decoder
                pcm = pcm * 32767
            self.detector.feed(pcm, part.start, arrived)


def match_after(emitted: list[float], at: float) -> float | None:
    """The latest emission before `at`, within one click period."""
    before = [e for e in emitted if e <= at]
    return before[-1] if before and at - before[-1] < PERIOD else None


def match_nearest(emitted: list[float], at: float) -> float | None:
    near = [e for e in emitted if abs(e - at) < PERIOD / 2]
    return near[0] if near else None


def match_code(clicks: TimedClicks, at: float, code: int) -> float | None:
    """The latest emission of the click named `code` before `at` (unambiguous within CODES periods)."""
    before = [e for e, c in zip(clicks.emitted, clicks.codes, strict=True) if c == code and e <= at]
    return before[-1] if before and at - before[-1] < CODES * PERIOD else None


def clicks_heard(onsets: list[float]) -> tuple[list[tuple[float, int]], int]:
    """Burst onsets → (click onset, code) and how many clicks had a count no code has (a burst
    lost or gained). The first click heard may have begun before playback did, so it is left out."""
    groups: list[list[float]] = []
    for at in sorted(onsets):
        if groups and at - groups[-1][-1] < CLUSTER_GAP:
            groups[-1].append(at)
        else:
            groups.append([at])
    codes = {bursts(code): code for code in range(CODES)}
    heard = [(g[0], codes[len(g)]) for g in groups[1:] if len(g) in codes]
    return heard, len(groups[1:]) - len(heard)


def hlsjs_delays(clicks: TimedClicks, onsets: list[float], start: float, end: float) -> list[float]:
    """mouth → ear for every click the page played within [start, end] (Python's clock)."""
    return [
        at - e
        for at, code in clicks_heard(onsets)[0]
        if start <= at <= end and (e := match_code(clicks, at, code)) is not None
    ]


async def measure(seconds: float, tmp: Path, browser: bool) -> dict[str, Any]:
    onsets = write_clicks(tmp / "clicks.wav", LOOP_CLICKS)
    server = await asyncio.to_thread(start_server, tmp / "server")
    listener: ChromiumListener | None = None
    page: Heard | None = None
    browser_error = None if browser else "not run (--no-browser, or no Chromium)"
    try:
        space = await asyncio.to_thread(server.create_space, "Latency")
        invite = await asyncio.to_thread(server.invite, space)
        clicks = TimedClicks(tmp / "clicks.wav", onsets)
        sender = Speaker(parse_stage_url(space.stage_url, space.host_token), clicks, name="Clicks")
        receiver = Speaker(parse_stage_url(invite), ToneTrack(440, 0.0), name="Ear")
        heard = TimedReturn()
        receiver.recorder = heard  # type: ignore[assignment]
        direct = DirectPair(TimedClicks(tmp / "clicks.wav", onsets))
        await asyncio.gather(sender.connect(), receiver.connect(), direct.connect())
        async with asyncio.timeout(CONNECT_DEADLINE_S):
            await asyncio.gather(
                sender.connected.wait(), receiver.connected.wait(), direct.connected()
            )
        if browser:
            listener = ChromiumListener(space.listen_url, THRESHOLD)
            try:
                await listener.start()
            except (PlaywrightError, TimeoutError) as exc:  # the other rows are still worth having
                browser_error = f"the listener page did not play: {exc}"
                print(browser_error, flush=True)
                await listener.close()
                listener = None
        media_url = f"{server.url}/live/{space.id}/media.m3u8"
        decoder = PartDecoder()
        stats = PlayerStats()
        window_start, until = time.time(), time.monotonic() + seconds
        await asyncio.gather(
            run_listener(media_url, until, stats, on_part=decoder.on_part, on_init=decoder.on_init),
            listener.listen(until) if listener else asyncio.sleep(0),
        )
        window_end = time.time()
        if listener is not None:
            page, listener = await listener.stop(), None
        await asyncio.gather(sender.close(), receiver.close(), direct.close())
        from townhall.loadtest.http import Client

        probe = Client(media_url)
        playlist = parse_playlist((await probe.get(media_url)).content.decode(), media_url)
        probe.close()
    finally:
        if listener is not None:
            await listener.close()
        await asyncio.to_thread(server.proc.stop)
    phb = playlist.part_hold_back
    stage = [
        at - e
        for at, _ in heard.detector.onsets
        if (e := match_after(clicks.emitted, at)) is not None
    ]
    stage_direct = [
        at - e
        for at, _ in direct.heard.detector.onsets
        if (e := match_after(direct.clicks.emitted, at)) is not None
    ]
    server_ear, mouth_ear, mouth_pdt = [], [], []
    for media_at, arrived in decoder.detector.onsets:
        server_ear.append(arrived - media_at + phb)
        e = match_nearest(clicks.emitted, media_at)
        if e is not None:
            mouth_ear.append(arrived - e + phb)
            mouth_pdt.append(media_at - e)
    result: dict[str, Any] = {
        "seconds": seconds,
        "clicks_sent": len(clicks.emitted),
        "part_hold_back_s": phb,
        "part_target_s": playlist.part_target,
        "stage_to_stage_s": stage,
        "stage_direct_s": stage_direct,
        "server_to_ear_s": server_ear,
        "mouth_to_ear_s": mouth_ear,
        "mouth_to_pdt_s": mouth_pdt,
        "hlsjs_mouth_to_ear_s": [],
        "player": stats.summary(),
        "hlsjs": None,
        "hlsjs_error": browser_error,
    }
    if page is not None:
        result["hlsjs_mouth_to_ear_s"] = hlsjs_delays(clicks, page.played, window_start, window_end)
        rendered = hlsjs_delays(clicks, page.rendered, window_start, window_end)
        result["hlsjs"] = {
            "rendered_mouth_to_ear_s": rendered,
            "requests_per_s": requests_per_second(page.requests, window_start, window_end),
            "requests_in_window": sum(window_start <= t <= window_end for t in page.requests),
            "other_requests_per_s": requests_per_second(
                page.other_requests, window_start, window_end
            ),
            "stalls_in_window": sum(window_start <= t <= window_end for t in page.waiting),
            "clicks_heard": len(clicks_heard(page.played)[0]),
            "clicks_rejected": clicks_heard(page.played)[1],
            "window_s": window_end - window_start,
            "reported_latency_p50_s": percentile(page.reported_latency, 50),
            "clock_offset_s": page.clock_offset_s,
            "clock_uncertainty_s": page.clock_uncertainty_s,
            "audio_context": page.audio,
            "bursts_heard": len(page.played),
            "page_errors": page.errors[:20],
        }
    result["summary"] = summarise(result)
    result["notes"] = notes(result)
    return result


def summarise(result: dict[str, Any]) -> dict[str, float | None]:
    """The headline figures (seconds; None if not measured)."""

    def p(key: str, q: float) -> float | None:
        return percentile(result[key], q)

    def minus(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    hlsjs = result["hlsjs"] or {}
    return {
        "hlsjs_mouth_to_ear_p50_s": p("hlsjs_mouth_to_ear_s", 50),
        "hlsjs_mouth_to_ear_p95_s": p("hlsjs_mouth_to_ear_s", 95),
        "python_mouth_to_ear_p50_s": p("mouth_to_ear_s", 50),
        "python_mouth_to_ear_p95_s": p("mouth_to_ear_s", 95),
        "stage_via_server_p50_s": p("stage_to_stage_s", 50),
        "stage_via_server_p95_s": p("stage_to_stage_s", 95),
        "stage_direct_p50_s": p("stage_direct_s", 50),
        "stage_direct_p95_s": p("stage_direct_s", 95),
        "stage_added_p50_s": minus(p("stage_to_stage_s", 50), p("stage_direct_s", 50)),
        "stage_added_p95_s": minus(p("stage_to_stage_s", 95), p("stage_direct_s", 95)),
        "hlsjs_requests_per_s": hlsjs.get("requests_per_s"),
    }


def notes(result: dict[str, Any]) -> str:
    """Method and error terms, in words, for whoever reads the JSON without this file."""
    hlsjs = result["hlsjs"]
    text = (
        "Percentiles are nearest-rank. stage_added_* = percentile(via server) − percentile(direct "
        "P2P), the difference of percentiles (the two click streams run at the same time but are "
        "independent, so no per-click pairing); 20 ms frame quantisation and both bots' Opus and "
        "aiortc jitter buffers are in both and largely cancel. python_mouth_to_ear models the "
        "player buffer as PART-HOLD-BACK after the part arrived (AAC priming adds ~21–40 ms). "
    )
    if hlsjs is None:
        return text + f"The listener page in Chromium was not measured: {result['hlsjs_error']}."
    audio = hlsjs["audio_context"]
    return text + (
        "hlsjs_mouth_to_ear: the real listener page in headless Chromium, onsets found to the "
        "sample by an AudioWorklet on the page's own MediaElementSource, placed on the wall clock "
        "with AudioContext.getOutputTimestamp() (Chromium's output-latency estimate included; "
        f"baseLatency {audio.get('baseLatency')} s, outputLatency {audio.get('outputLatency')} s, "
        f"{audio.get('sampleRate')} Hz); headless has no sound card, so a real device's latency "
        "is not included. Browser↔Python clock offset "
        f"{hlsjs['clock_offset_s'] * 1000:.2f} ms ± {hlsjs['clock_uncertainty_s'] * 1000:.2f} ms "
        "(corrected). Render-time onsets (lower bound) are in hlsjs.rendered_mouth_to_ear_s. "
        "Only clicks played within the Python player's listening window count; the page and the "
        "Python player listened to the same Space at once. hlsjs_requests_per_s counts the "
        "page's /live/ requests (playlists, parts, init) in that window; hlsjs.stalls_in_window "
        "counts the element's 'waiting' events (the player raises its target latency after each); "
        "hlsjs.clicks_rejected counts clicks heard with a burst lost or gained (left out)."
    )


def _row(name: str, values: list[float], budget: str) -> str:
    p50, p95 = percentile(values, 50), percentile(values, 95)
    return _line(name, str(len(values)), p50, p95, budget)


def _line(name: str, n: str, p50: float | None, p95: float | None, budget: str) -> str:
    return f"{name:<38} {n:>6} {_ms(p50):>9} {_ms(p95):>9}  {budget}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def report(result: dict[str, Any]) -> None:
    summary = result["summary"]
    ear_budget = f"p95 ≤ {BUDGET_EAR_P95:.1f} s, aim ≤ {AIM_EAR:.1f} s"
    print(f"{'path':<38} {'clicks':>6} {'p50':>9} {'p95':>9}  budget (SPEC)")
    print(_row("stage → stage via server (WebRTC bots)", result["stage_to_stage_s"], ""))
    print(_row("stage → stage direct P2P (no server)", result["stage_direct_s"], ""))
    print(
        _line(
            "stage: added by the server",
            "",
            summary["stage_added_p50_s"],
            summary["stage_added_p95_s"],
            f"p95 ≤ {BUDGET_STAGE_P95 * 1000:.0f} ms (difference of percentiles)",
        )
    )
    print(
        _row(
            "server clock → ear (LL-HLS, Python)",
            result["server_to_ear_s"],
            "(part arrival − click PDT + PART-HOLD-BACK)",
        )
    )
    print(_row("mouth → ear (LL-HLS, Python)", result["mouth_to_ear_s"], ear_budget))
    print(_row("mouth → ear (listener page, Chromium)", result["hlsjs_mouth_to_ear_s"], ear_budget))
    print(_row("mouth → PDT (server clock offset)", result["mouth_to_pdt_s"], ""))
    print(
        f"clicks sent {result['clicks_sent']}; PART-HOLD-BACK {result['part_hold_back_s']:.3f} s "
        f"(modelled buffer), PART-TARGET {result['part_target_s']:.3f} s; player {result['player']}"
    )
    hlsjs = result["hlsjs"]
    if hlsjs is not None:
        rendered = hlsjs["rendered_mouth_to_ear_s"]
        rate = hlsjs["requests_per_s"]
        print(
            f"listener page: {_ms(percentile(rendered, 50))} p50 at render time (lower bound); "
            f"its player's own latency estimate p50 {_ms(hlsjs['reported_latency_p50_s'])}; "
            f"{'-' if rate is None else f'{rate:.2f}'} requests/s to /live/ "
            f"({hlsjs['requests_in_window']} in {hlsjs['window_s']:.1f} s; SPEC: aim ≤ 2/s); "
            f"{hlsjs['stalls_in_window']} stalls; {hlsjs['clicks_rejected']} clicks dropped "
            "(a burst lost or gained); "
            f"clock offset {hlsjs['clock_offset_s'] * 1000:.2f} ± "
            f"{hlsjs['clock_uncertainty_s'] * 1000:.2f} ms; audio {hlsjs['audio_context']}"
        )
        if hlsjs["page_errors"]:
            print(f"page errors: {hlsjs['page_errors'][:3]}")
    else:
        print(f"listener page: {result['hlsjs_error']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="listening time (5..600)")
    parser.add_argument(
        "--no-browser", action="store_true", help="skip the listener page in Chromium"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if not 5 <= args.seconds <= 600:
        parser.error("--seconds must be within 5..600")
    browser = not args.no_browser and CHROMIUM.exists()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(measure(args.seconds, Path(tmp), browser))
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
