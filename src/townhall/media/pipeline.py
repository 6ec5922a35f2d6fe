"""One live Space's audio engine: the 20 ms clock that drives mixer → encoders → packager.

This is the asyncio adapter around the sans-I/O cores. Theory of operation:

* The node's `MediaClock` (one task and one worker thread for all of its Spaces, see `clock`) ticks
  every 20 ms; each tick calls `Mixer.tick()`, which always returns a frame, so the stream never
  waits for a speaker. A starved loop catches up (bounded); a longer stall is skipped and counted
  (`skip_ticks`). Skipped ticks are not mixed, but their interval still enters the program as
  silence, encoded on the clock's worker before the next tick, so the stream's media time —
  samples, decode times, PROGRAM-DATE-TIME — never falls behind the wall clock, however starved
  the machine: skip and count, never drift. (Silence rather than a timeline jump with a
  discontinuity: see docs/architecture.md, "The media clock under load".) A SpaceMedia given no
  clock makes its own.
* The listener program goes through the `ProgramGate` (on-air gate, then broadcast delay line; see
  `delay`) on the event loop, in the same step as the mixer tick, so a command from the control
  plane (Go live, set the delay, dump) lands between two ticks and applies to the next one. The
  gate is touched only on the loop; the worker gets the frame it returns, which nobody writes to.
  The mix-minus returns bypass the gate: the stage hears itself live, on air or not.
* Room state rides the same path (see `roomstate`): each tick the stage's side of the room (on
  air, stage, who the mixer found speaking) enters the delay line as a `Cue` beside the program
  frame, and what leaves the line with the frame goes into the `RoomTimeline`; each finished part
  gets an `emsg` box in front of its `moof` with the room as it is during that part's audio.
* Encoding (AAC for listeners, Opus for each distinct mix-minus) runs on the clock's worker thread
  so the event loop only moves bytes and decisions; the one thread keeps tick order.
* Finished parts go into the LL-HLS packager and wake the HTTP requests blocked on them, and to the
  optional `on_part` observer (the recorder) as `PackagedPart`s, on the loop; Opus packets
  go to each speaker's return track, a bounded queue that drops the oldest packet when a speaker's
  connection cannot keep up.
* The program as it leaves the gate — what listeners hear, after the delay line — also goes,
  frame by frame on the loop, to the optional `program_tap` (live captions: see
  `townhall.captions`), which is given None for a frame that is not program (off air, dumped,
  inserted or filled silence), so dumped audio can never be transcribed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from townhall.config import MediaConfig
from townhall.media.audio import FRAME_SAMPLES, SAMPLE_RATE, SILENCE, PcmFrame, SpeakerId
from townhall.media.clock import Finish, MediaClock, Work
from townhall.media.delay import ProgramGate, ProgramStats
from townhall.media.encoder import AAC_LC_MONO_CODECS, AacFmp4Encoder
from townhall.media.fmp4 import EventMessage, emsg_box, fragment_decode_time
from townhall.media.mixer import Mixer, MixKey, MixResult
from townhall.media.opus_return import TIME_BASE, OpusMixEncoder, silent_packet
from townhall.media.packager import EncodedPart, LlHlsPackager, PackagedPart, PackagerConfig
from townhall.media.roomstate import SCHEME_ID_URI, Audience, Cue, RoomTimeline, Seat
from townhall.media.timeline import RunStart
from townhall.telemetry.durations import TICK_BUCKETS, Durations

log = logging.getLogger(__name__)

FIRST_MEDIA_SEQUENCE = 1
ProgramTap = Callable[[PcmFrame | None], None]
# A skipped stall still enters the stream, as silence, up to this much (30 s: the longest broadcast
# delay, so delayed program is never lost to a skip); a longer stall (a suspended machine) is the
# one case where the stream's timeline falls behind the wall clock, by the excess.
MAX_FILL_TICKS = 1_500
MISSED: PcmFrame = SILENCE  # what a skipped tick puts into the program (shared, read-only)
RETURN_QUEUE_PACKETS = 10  # 200 ms of return audio per speaker at most


class ReturnTrack(MediaStreamTrack):
    """A speaker's mix-minus as already-encoded Opus packets, restamped into this track's timeline.

    While a speaker's mix is digital silence (a lone speaker hears nobody; a silent stage hears
    silence) nothing is encoded for them: each tick sends the one ready-made silent packet
    instead. Not fewer packets, as Opus DTX would: sent every 400 ms, the gaps made a receiver's
    jitter buffer hold the next voice back (speaker to speaker rose from ~0.2 s to ~0.7 s with
    aiortc clients, bench.latency), while sending costs little beside encoding."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[tuple[bytes, int]] = deque(maxlen=RETURN_QUEUE_PACKETS)
        self._ready = asyncio.Event()
        self._first_tick: int | None = None
        self.dropped = 0

    def offer(self, packet: bytes, tick: int) -> None:
        """The packet of the mixer's tick `tick` (ticks only grow)."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        if self._first_tick is None:
            self._first_tick = tick
        self._queue.append((packet, tick))
        self._ready.set()

    async def recv(self) -> av.Packet:  # type: ignore[type-arg]
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        data, tick = self._queue.popleft()
        packet = av.Packet(data)
        packet.pts = (tick - (self._first_tick or 0)) * FRAME_SAMPLES
        packet.time_base = TIME_BASE
        return packet

    def stop(self) -> None:
        super().stop()
        self._ready.set()


@dataclass
class _EncodeResult:
    tick: int
    parts: list[EncodedPart]
    returns: dict[SpeakerId, MixKey]
    packets: dict[MixKey, list[bytes]] = field(default_factory=dict)
    seconds: float = 0.0  # the worker's time on it (AAC and every Opus encode)


@dataclass
class TickTimings:
    """Where media ticks spend their time: mixing and gating (on the loop), encoding (worker).

    One per node, shared by its Spaces so the histograms outlive any one Space (`/metrics`).
    Written on the event loop only (the worker's time comes back with its result), so the
    histograms need no lock (see `telemetry.durations`)."""

    mix: Durations = field(default_factory=lambda: Durations(TICK_BUCKETS))
    encode: Durations = field(default_factory=lambda: Durations(TICK_BUCKETS))


IDLE_ENCODER_TICKS = 500  # a mix nobody has heard for 10 s gives its Opus encoder back


class SpaceMedia:
    """Mixer, encoders and packager of one Space, driven by its own clock task.

    A new SpaceMedia is ON AIR unless created with `on_air=False` (the green room); the control
    plane calls `set_on_air(True)` on Go live.
    """

    def __init__(
        self,
        space_id: str,
        config: MediaConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_air: bool = True,
        on_part: Callable[[PackagedPart], None] | None = None,
        run: RunStart | None = None,
        may_publish: Callable[[], bool] | None = None,
        media_clock: MediaClock | None = None,
        timings: TickTimings | None = None,
    ) -> None:
        """`run`: where this run starts on the Space's timeline (see `timeline`); None starts a
        stream of its own at sequence 1. `may_publish`: asked before each finished part is
        packaged or recorded; False (this node's lease on the Space may have lapsed) drops the
        part, so an ex-owner never publishes beside the Space's new owner. `media_clock`: the
        node's shared clock; None makes one for this Space alone, reading `clock`. `timings`:
        where to count each tick's mix and encode time (the node's, for `/metrics`)."""
        self.space_id = space_id
        self._may_publish = may_publish
        self._on_part = on_part
        self.config = config
        self.mixer = Mixer()
        self._gate = ProgramGate(on_air=on_air)
        self._clock = clock
        samples_per_segment = config.aac_frames_per_part * config.parts_per_segment * 1024
        start_sample = run.start_sample(samples_per_segment) if run is not None else 0
        self.samples_per_segment = samples_per_segment
        self.start_sample = start_sample  # program position of the run's first sample
        self.first_msn = run.first_msn if run is not None else FIRST_MEDIA_SEQUENCE
        self.discontinuity_sequence = run.discontinuity_sequence if run is not None else None
        # Called on the loop with each tick's aired program frame, None where it is not program.
        self.program_tap: ProgramTap | None = None
        self._encoder = AacFmp4Encoder(
            frames_per_part=config.aac_frames_per_part,
            bitrate=config.aac_bitrate,
            start_sample=start_sample,
        )
        self._room = RoomTimeline(start_sample)
        self._stage: tuple[Seat, ...] = ()
        self._audience: Audience | None = None
        self._cue = Cue(on_air, frozenset(), ())
        self._ending = False  # the parts flushed at the end say the Space ended
        self._messages = 0  # emsg ids: one per part of this run
        start_time = time.time()
        self._start_time = start_time  # PDT of a part: start_time + the durations before it
        self._elapsed = 0.0
        self.packager = LlHlsPackager(
            PackagerConfig(
                part_target=self._encoder.part_seconds,
                parts_per_segment=config.parts_per_segment,
                window_segments=config.window_segments,
                codecs=AAC_LC_MONO_CODECS,
                bandwidth=config.aac_bitrate + 8_000,
            ),
            stream_id=secrets.token_hex(4),
            init_section=self._encoder.init_section,
            start_time=start_time,
            # Not 0: hls.js (1.7, Chromium) loops re-fetching the last part of segment 0 when MSE
            # reports its buffered end a microsecond short, stalling listeners who join early.
            first_msn=self.first_msn,
            discontinuity_sequence=self.discontinuity_sequence,
        )
        self._returns: dict[SpeakerId, ReturnTrack] = {}
        self._opus: dict[MixKey, OpusMixEncoder] = {}  # touched by the worker thread only
        self._opus_last_used: dict[MixKey, int] = {}
        self._own_clock = media_clock is None
        self._media_clock = media_clock or MediaClock(now=clock, name=f"media-{space_id}")
        self._new_part = asyncio.Event()  # set and replaced by a fresh one when a part is added
        self.ticks = 0
        self.skipped_ticks = 0
        self.filled_ticks = 0  # skipped ticks that entered the stream as silence (`skip_ticks`)
        self.fenced_parts = 0  # finished parts dropped because `may_publish` said no
        self.parts_published = 0  # parts packaged for listeners (and recorded) by this run
        self.timings = timings if timings is not None else TickTimings()
        self._speaking: dict[SpeakerId, float] = {}  # the last tick's speakers and their levels

    # -- stage -----------------------------------------------------------------------------------
    def add_speaker(self, speaker: SpeakerId) -> ReturnTrack:
        """Put a speaker on the mix; returns the track that carries their mix-minus back to them."""
        self.remove_speaker(speaker)  # a reconnect replaces the old connection's state
        self.mixer.add_speaker(speaker)
        track = ReturnTrack()
        self._returns[speaker] = track
        return track

    def remove_speaker(self, speaker: SpeakerId) -> None:
        track = self._returns.pop(speaker, None)
        self._speaking.pop(speaker, None)
        if track is not None:
            track.stop()
            self.mixer.remove_speaker(speaker)

    def push(self, speaker: SpeakerId, pcm: PcmFrame, pts: int | None) -> None:
        self.mixer.push(speaker, pcm, pts)

    @property
    def recordings_dir(self) -> Path | None:
        """Where this Space's recording and its earlier runs' are (None: nothing is recorded)."""
        return self.config.recordings_dir

    @property
    def start_time(self) -> float:
        """UNIX seconds of the run's first sample (the first segment's PROGRAM-DATE-TIME)."""
        return self._start_time

    @property
    def timeline_shift(self) -> int | None:
        """Where program sample `s` plays on the fragments' timeline: `s + timeline_shift` (None
        before the first part; see `encoder`)."""
        return self._encoder.timeline_shift

    @property
    def silent_frames_reused(self) -> int:
        """AAC frames of settled silence that reused the encoder's access unit (see `encoder`)."""
        return self._encoder.frames_reused

    @property
    def speakers(self) -> list[SpeakerId]:
        return list(self._returns)

    def speaking_levels(self) -> dict[SpeakerId, float]:
        """Who the last tick found speaking (`MixResult.speaking`), each with that tick's level in
        dBFS: what the speaking indicators show. Read-only; the director publishes it."""
        return dict(self._speaking)

    # -- listener program: on air, broadcast delay, dump -------------------------------------------
    # Called on the event loop, like the tick: each applies from the next tick's program frame.
    @property
    def on_air(self) -> bool:
        return self._gate.on_air

    def set_on_air(self, on_air: bool) -> None:
        """OFF AIR: listeners get silence from the next tick on while the stage still hears itself;
        ON AIR: the program reaches listeners (after the delay, starting from this moment)."""
        self._gate.set_on_air(on_air)

    @property
    def delay_s(self) -> float:
        return self._gate.delay_s

    def set_delay(self, seconds: float) -> None:
        """Broadcast delay of 0–30 s (rounded to 20 ms); ValueError outside that. Growing inserts
        silence at the cut, shrinking drops the oldest delayed audio (see `delay`)."""
        self._gate.set_delay(seconds)

    def dump(self) -> float:
        """Discard what is still in the delay buffer: it never reaches listeners or the recording.
        Returns the seconds of program discarded."""
        return self._gate.dump()

    @property
    def program_stats(self) -> ProgramStats:
        return self._gate.stats

    # -- room state in the stream (see `roomstate`) ------------------------------------------------
    @property
    def stage(self) -> tuple[Seat, ...]:
        """The stage as last given: what enters the delay line now."""
        return self._stage

    def set_stage(self, seats: tuple[Seat, ...]) -> None:
        """Who is on the stage as listeners see them: enters the delay line from the next tick."""
        self._stage = seats

    @property
    def audience(self) -> Audience | None:
        """The audience as last given (None: not yet): what the next part carries."""
        return self._audience

    def set_audience(self, audience: Audience) -> None:
        """Reactions and listener count as they are now: in the next part (not delayed)."""
        self._audience = audience
        self._room.set_audience(audience)

    def _cue_for(self, speaking: frozenset[SpeakerId]) -> Cue:
        """This tick's cue; the last one again if nothing changed (the line holds references)."""
        cue = self._cue
        if cue.on_air != self._gate.on_air or cue.speaking != speaking or cue.stage != self._stage:
            cue = self._cue = Cue(self._gate.on_air, frozenset(speaking), self._stage)
        return cue

    # -- clock -------------------------------------------------------------------------------------
    @property
    def idle(self) -> bool:
        """Nobody is connected to the stage's audio: each tick mixes silence (or what the delay
        line still holds) and returns nothing to anyone, so the node's clock may run this Space's
        ticks a few at a time (`clock.IDLE_BATCH_TICKS`)."""
        return not self.mixer.speakers

    def start(self) -> None:
        """Have the media clock tick this Space from now on."""
        self._media_clock.add(self)

    async def stop(self) -> None:
        """End the stream: close the last part, mark the playlist ended, leave the clock.

        END stops immediately: program still in the delay buffer is dumped, never aired (see
        `delay`). To let it play out first, set OFF AIR and wait `delay_s` before stopping.
        """
        self._media_clock.remove(self)
        discarded = self._gate.dump()
        if discarded:
            log.info(
                "space %s: ended with %.2f s of delayed program not yet aired; dumped",
                self.space_id,
                discarded,
            )
        for speaker in list(self._returns):
            self.remove_speaker(speaker)
        if not self.packager.ended:
            # Behind any tick of ours the worker has yet to finish: the parts stay in order.
            parts = await self._media_clock.run_in_worker(self._encoder.flush)
            # Ticks handed over before this have been delivered by now (the loop runs their
            # finish first): only the flushed parts say the Space ended.
            self._ending = True
            for part in parts:
                self._package(part)
            self.packager.end()
            self._notify()
        if self._own_clock:
            await self._media_clock.close()

    def skip_ticks(self, missed: int) -> Work:
        """The clock skipped `missed` ticks after a stall (see `clock`): count them, and keep the
        stream on the wall clock across them (module docstring). They enter the program as
        silence through the gate, so the broadcast delay stays exact and the program already
        delayed airs on time; what leaves the gate is encoded by the returned work, which the
        clock runs on its worker before the next tick's. Nothing is mixed or returned to the
        stage for them: the skipped time is gone for it."""
        self.skipped_ticks += missed
        log.warning("space %s: media clock stalled, skipped %d ticks", self.space_id, missed)
        filled = min(missed, MAX_FILL_TICKS)
        self.filled_ticks += filled
        program = []
        for _ in range(filled):  # as a tick does, with nobody speaking: the room keeps in step
            program.append(self._gate.process(MISSED, self._cue_for(frozenset())))
            self._room.aired(*self._gate.aired)
            self._tap(program[-1])

        def work() -> Finish:
            parts = [part for frame in program for part in self._encoder.encode(frame)]
            return lambda: self._deliver(_EncodeResult(self.ticks, parts, {}))  # no returns

        return work

    async def tick(self) -> None:
        """Advance the stream by one tick without the clock task (tests, benchmarks, tools): mix,
        gate and delay, encode, package, return. Not while the clock ticks this Space."""
        if self._media_clock.owns(self):
            raise RuntimeError("the clock task is running: it owns the ticks")
        if self.packager.ended:
            raise RuntimeError("the stream has ended")
        await self._media_clock.tick([self])

    def begin_tick(self) -> Work:
        """The loop's part of a tick (see `clock`): mix, then gate and delay in the same step, so no
        command lands between them; the room's cue enters the line with its frame. Returns the
        worker's part: encode, then deliver on the loop."""
        started = time.perf_counter()
        mix = self.mixer.tick()
        program = self._gate.process(mix.program, self._cue_for(mix.speaking))
        self._room.aired(*self._gate.aired)
        self._tap(program)
        self.timings.mix.observe(time.perf_counter() - started)
        self.ticks += 1
        self._speaking = {s: mix.levels[s] for s in mix.speaking}

        def work() -> Finish:
            result = self._encode(mix, program)

            def finish() -> None:
                self.timings.encode.observe(result.seconds)
                self._deliver(result)

            return finish

        return work

    def _tap(self, program: PcmFrame) -> None:
        """The aired frame to the program tap (None where the gate gave no program)."""
        if self.program_tap is None:
            return
        try:
            self.program_tap(program if self._gate.aired[1] else None)
        except Exception:  # captions must never break the live stream
            log.exception("space %s: program tap failed", self.space_id)
            self.program_tap = None

    def _encode(self, mix: MixResult, program: PcmFrame) -> _EncodeResult:
        """Worker thread: AAC for the listener program (gated and delayed), one Opus encode per
        distinct mix somebody hears (straight from the mixer) unless it is silence (then a
        keep-alive now and then: see `ReturnTrack`)."""
        started = time.perf_counter()
        result = _EncodeResult(mix.tick, self._encoder.encode(program), dict(mix.returns))
        for key in set(mix.returns.values()):
            if mix.mixes[key] is SILENCE:
                result.packets[key] = [silent_packet(self.config.return_bitrate)]
                continue
            encoder = self._opus.get(key)
            if encoder is None:
                encoder = self._opus[key] = OpusMixEncoder(self.config.return_bitrate)
            self._opus_last_used[key] = mix.tick
            result.packets[key] = encoder.encode(mix.mixes[key])
        if mix.tick % IDLE_ENCODER_TICKS == 0:
            for key, last in list(self._opus_last_used.items()):
                if mix.tick - last > IDLE_ENCODER_TICKS:
                    del self._opus_last_used[key], self._opus[key]
        result.seconds = time.perf_counter() - started
        return result

    def _deliver(self, result: _EncodeResult) -> None:
        if self.packager.ended:  # a tick that was in the worker when the stream ended
            return
        if result.parts and self._may_publish is not None and not self._may_publish():
            self.fenced_parts += len(result.parts)
            result.parts.clear()
        for part in result.parts:
            self._package(part)
        if result.parts:
            self._notify()
        for speaker, key in result.returns.items():
            track = self._returns.get(speaker)
            if track is not None:
                for packet in result.packets.get(key, ()):
                    track.offer(packet, result.tick)

    def _with_room(self, part: EncodedPart, key: bool) -> EncodedPart:
        """The part with the room's message for its audio in an emsg box before its moof."""
        shift = self._encoder.timeline_shift
        if shift is None:  # cannot happen once a part exists; nothing to align the room with
            return part
        decode_time = fragment_decode_time(part.data)
        samples = round(part.duration * SAMPLE_RATE)
        message = self._room.message(decode_time - shift, samples, key=key, ended=self._ending)
        self._messages += 1
        event = EventMessage(
            SCHEME_ID_URI, "", SAMPLE_RATE, decode_time, samples, self._messages, message
        )
        return EncodedPart(emsg_box(event) + part.data, part.duration, part.independent)

    def _package(self, part: EncodedPart) -> None:
        part = self._with_room(part, key=self.packager.next_part[1] == 0)
        msn, index = self.packager.add_part(part)
        self.parts_published += 1
        pdt = self._start_time + self._elapsed
        self._elapsed += part.duration
        if self._on_part is not None:
            packaged = PackagedPart(
                self.packager.stream_id,
                self.packager.init_section(),
                msn,
                index,
                part,
                pdt,
                self._gate.on_air,
            )
            try:
                self._on_part(packaged)
            except Exception:  # an observer (the recorder) must never break the live stream
                log.exception("space %s: part observer failed", self.space_id)

    def _notify(self) -> None:
        """Wake every request blocked in `wait_for` (they check their predicate again)."""
        woken, self._new_part = self._new_part, asyncio.Event()
        woken.set()

    async def wait_for(self, predicate: Callable[[], bool], within: float) -> bool:
        """Block an HTTP request until the packager satisfies `predicate` (or the timeout passes)."""
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    await self._new_part.wait()
            return True
        except TimeoutError:
            return predicate()
