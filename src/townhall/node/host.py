"""The Spaces this node runs: each one's audio engine, stage ingest and event-log director.

For each Space placed here (see `node.keeper`, which holds the Space's lease and decides what runs
where) it holds a SpaceMedia (mixer → encoders → packager), its speakers' WebRTC ingest and a
SpaceDirector that follows the Space's event log, so Go live, mutes, removals, delay, dump and the
end reach the audio from whichever process issued them. A Space started here after a restart or a
take-over resumes from the records (on air or not, delay, mutes) and continues the Space's
timeline (see `media.timeline`): listeners keep their URL and never see numbers go back. A Space
whose host has been away from its stage longer than the configured limit is ended by the system
(`lifecycle.should_auto_end`; every stage connection of a Space is on its owner, so the owner's
connections are the cluster's).

Spaces with `record` on get a SpaceRecorder (see `delivery.recording`) that follows the packager's
on-air parts into `MediaConfig.recordings_dir` (shared by every media node of a cluster, so a
take-over continues the same recording); a recording that fails (a full disk) stops with its
error kept in `recording_errors` and logged, while the live stream goes on; so does one whose
host's or address's storage budget cannot pay for it (`charge_recordings`, see
`node.recording_meter`).
Recordings past the retention period are deleted by `expire_recordings` (see `delivery.storage`).

Spaces with `captions` on (where the server allows them: `CaptionsConfig`) get a SpaceCaptions
(see `captions.live`) fed from the program after the delay line; the node's one transcriber worker
process starts with the first captioned Space. Their cues are kept beside the recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from townhall.captions.live import SpaceCaptions
from townhall.captions.store import CaptionStore, read_cues, timed_from
from townhall.captions.track import CaptionTrack
from townhall.captions.vtt import document
from townhall.captions.worker import Transcriber
from townhall.config import CaptionsConfig, IceServer, MediaConfig
from townhall.delivery import storage
from townhall.delivery.recording import SpaceRecorder, recorded_bytes
from townhall.delivery.replay import Replay, open_replay
from townhall.media.audio import SpeakerId
from townhall.media.clock import MediaClock
from townhall.media.director import MediaCommand, SpaceDirector, state_commands
from townhall.media.encoder import AAC_LC_MONO_CODECS
from townhall.media.ingest import Ingest
from townhall.media.pipeline import SpaceMedia, TickTimings
from townhall.media.timeline import run_start
from townhall.node.placement import Lease
from townhall.node.recording_meter import RecordingMeter, quota_used_up
from townhall.ratelimit.storage import StorageQuota
from townhall.ratelimit.table import QuotaExceeded
from townhall.spaces import lifecycle
from townhall.spaces.control import ControlError, SpaceControl
from townhall.spaces.model import Space, SpaceId, SpaceState, Visibility, is_space_id

log = logging.getLogger(__name__)

ENDED_MEDIA_KEPT = 50  # recently ended streams keep serving their final playlist (ENDLIST)


class NodeFull(Exception):
    """No media node (this one included) has room for another open Space."""


@dataclass
class SpaceRuntime:
    space_id: SpaceId
    media: SpaceMedia
    ingest: Ingest
    director: SpaceDirector
    host_seen_at: float
    lease: Lease
    recorder: SpaceRecorder | None = None
    meter: RecordingMeter | None = None  # what the recording has been paid for (recorded Spaces)
    captions: SpaceCaptions | None = None
    # Fixed once a Space opens (visibility changes only while scheduled), and a Space's media
    # runs only once it is open: the listener fast path's private-Space check, exact, with no
    # read of the records (delivery/segment_front.py).
    private: bool = False


class MediaHost:
    def __init__(
        self,
        control: SpaceControl,
        media_config: MediaConfig,
        ice_servers: tuple[IceServer, ...],
        *,
        max_live: int = 50,
        host_absent_end_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        on_ended: Callable[[SpaceRuntime], Awaitable[None]] | None = None,
        captions: CaptionsConfig | None = None,
        recording_reserve: int = 0,
    ) -> None:
        """`on_ended`: awaited after a Space that ended has stopped here (the keeper releases its
        lease, leaving a pointer to this node while it still serves the final playlist).
        `recording_reserve`: the bytes of a recording its host paid for at creation (what a
        recording without an account, from before there were accounts, counts as paid)."""
        self.control = control
        self._media_config = media_config
        self._ice_servers = ice_servers
        self._max_live = max_live
        self._host_absent_end_s = host_absent_end_s
        self._clock = clock
        self._on_ended = on_ended
        self._recording_reserve = recording_reserve
        self._running: dict[SpaceId, SpaceRuntime] = {}
        self._ended: OrderedDict[SpaceId, SpaceMedia] = OrderedDict()
        self._lock = asyncio.Lock()
        # Why a Space's recording stopped (e.g. ENOSPC): kept for the host/operator to see.
        self.recording_errors: dict[SpaceId, str] = {}
        self._replays: OrderedDict[SpaceId, Replay] = OrderedDict()
        # One 20 ms clock and one encode worker for all the Spaces here, not a task and a thread
        # each: what an open Space cost was mostly being woken (see media/clock.py).
        self.media_clock = MediaClock()
        # The mix and encode time of every Space run here, for /metrics (outlives each Space).
        self.timings = TickTimings()
        self._captions_config = captions or CaptionsConfig()
        self.transcriber: Transcriber | None = None  # started with the first captioned Space
        # Running and recently ended Spaces' captions (the origin serves their subtitle tracks).
        self._captions: OrderedDict[SpaceId, SpaceCaptions] = OrderedDict()
        self._replay_captions: OrderedDict[SpaceId, str | None] = OrderedDict()

    # -- lookups -------------------------------------------------------------------------------
    def runtime(self, space_id: str) -> SpaceRuntime | None:
        return self._running.get(SpaceId(space_id))

    def media_of(self, space_id: str) -> SpaceMedia | None:
        """The stream listeners fetch: a running Space's, or a recently ended one's final playlist."""
        running = self._running.get(SpaceId(space_id))
        return running.media if running is not None else self._ended.get(SpaceId(space_id))

    def serves_plain(self, space_id: str) -> bool:
        """Whether the Space runs here and is served at its plain path (not private)."""
        running = self._running.get(SpaceId(space_id))
        return running is not None and not running.private

    def captions_of(self, space_id: str) -> CaptionTrack | None:
        """The subtitle track listeners fetch beside the stream (None: not captioned here)."""
        captions = self._captions.get(SpaceId(space_id))
        return captions.track if captions is not None else None

    def space_captions(self, space_id: str) -> SpaceCaptions | None:
        return self._captions.get(SpaceId(space_id))

    @property
    def running(self) -> list[SpaceId]:
        return list(self._running)

    def runtimes(self) -> list[SpaceRuntime]:
        """The Spaces running here now (what `/metrics` reports per Space)."""
        return list(self._running.values())

    # -- starting and stopping -----------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._max_live

    async def start(
        self, space: Space, lease: Lease, may_publish: Callable[[], bool] | None = None
    ) -> SpaceRuntime | None:
        """Run the Space's media under `lease` if its state calls for it (green room or live).

        The caller holds the lease; `may_publish` tells the stream whether it still does."""
        if space.state not in (SpaceState.GREEN_ROOM, SpaceState.LIVE):
            return None
        async with self._lock:
            existing = self._running.get(space.id)
            if existing is not None:
                return existing
            if len(self._running) >= self._max_live:
                raise NodeFull(f"this node runs at most {self._max_live} open Spaces")
            recorder = self._recorder_for(space)
            segment_s = self._media_config.part_seconds * self._media_config.parts_per_segment
            media = SpaceMedia(
                space.id,
                self._media_config,
                on_air=space.state is SpaceState.LIVE,
                on_part=recorder.on_part if recorder is not None else None,
                run=run_start(space.created_at, time.time(), segment_s, lease.previous_msn),
                may_publish=may_publish,
                media_clock=self.media_clock,
                timings=self.timings,
            )
            ingest = Ingest(media, self._ice_servers)
            live, records = self.control.live, self.control.records
            after = await live.latest_seq(space.id)
            stage = await records.stage(space.id)

            async def resync() -> list[MediaCommand]:
                fresh = await records.space(space.id)
                if fresh is None:
                    return []
                return state_commands(
                    fresh, await records.stage(space.id), list(ingest.connections)
                )

            async def on_end() -> None:
                await self._stop(space.id, ended=True)

            director = SpaceDirector(
                space.id,
                live,
                media,
                ingest,
                start_after_seq=after,
                on_end=on_end,
                resync=resync,
                initial=state_commands(space, stage),
                # The kept roster's stage (spaces/control.py: current for the log's position,
                # caught up from the events), not a records read per stage change: that read was
                # one of a mute's three SQL transactions.
                read_stage=lambda: self.control.stage(space.id),
            )
            # The recording's account says what is paid (the first hour at creation, then each
            # charge, whichever node made it); what earlier runs left on storage counts as
            # written, so a take-over charges on from there rather than from a free hour.
            meter = None
            if recorder is not None:
                before = await asyncio.to_thread(recorded_bytes, recorder.directory)
                meter = RecordingMeter(space.id, before, self._recording_reserve)
            runtime = SpaceRuntime(
                space.id,
                media,
                ingest,
                director,
                self._clock(),
                lease,
                recorder,
                meter=meter,
                captions=self._captions_for(space, media),
                private=space.visibility is Visibility.PRIVATE,
            )
            self._running[space.id] = runtime
            media.start()
        await director.start()
        log.info("space %s: media running (%s, lease %d)", space.id, space.state.value, lease.token)
        return runtime

    def position(self, space_id: str) -> int:
        """The newest media sequence number of the Space's stream here (0: not running)."""
        runtime = self._running.get(SpaceId(space_id))
        return runtime.media.packager.next_part[0] if runtime is not None else 0

    async def stop(self, space_id: SpaceId) -> None:
        """Stop a Space's media here without ending the Space (drain, a lapsed lease): the stage
        is hung up and reconnects to the Space's next owner."""
        await self._stop(space_id, ended=False)

    async def _stop(self, space_id: SpaceId, *, ended: bool) -> None:
        runtime = self._running.get(space_id)
        if runtime is None:
            return
        if ended:
            # Listed as ended before it leaves the running set, with no await between: players
            # blocked on the next part never find the Space missing; they get the final playlist.
            self._ended[space_id] = runtime.media
            while len(self._ended) > ENDED_MEDIA_KEPT:
                self._ended.popitem(last=False)
        del self._running[space_id]
        await runtime.director.stop()
        await runtime.ingest.close()
        await runtime.media.stop()
        if runtime.captions is not None:
            await runtime.captions.close(ended=ended)
            if not ended:
                self._captions.pop(space_id, None)
        if runtime.recorder is not None:
            runtime.recorder.close()  # after stop(): the flushed last parts are in
            self._replays.pop(space_id, None)  # built while stopping: may lack the last parts
        log.info("space %s: media stopped%s", space_id, " (ended)" if ended else "")
        if ended and self._on_ended is not None:
            await self._on_ended(runtime)

    def _captions_for(self, space: Space, media: SpaceMedia) -> SpaceCaptions | None:
        config = self._captions_config
        if not space.captions or config.model is None:
            return None
        if self.transcriber is None:
            self.transcriber = Transcriber(
                config.model,
                threads=config.threads,
                niceness=config.niceness,
                max_pending_s=config.max_pending_s,
            )
            self.transcriber.start()
        root = self._media_config.recordings_dir
        store = CaptionStore(root / space.id) if space.record and root is not None else None
        captions = SpaceCaptions(media, self.transcriber, store)
        self._captions[space.id] = captions
        self._captions.move_to_end(space.id)
        while len(self._captions) > ENDED_MEDIA_KEPT + len(self._running) + 1:
            oldest = next(iter(self._captions))
            if oldest in self._running:
                break
            self._captions.popitem(last=False)
        return captions

    def _recorder_for(self, space: Space) -> SpaceRecorder | None:
        root = self._media_config.recordings_dir
        if not space.record or root is None:
            return None

        def failed(space_id: str, error: OSError) -> None:
            self.recording_errors[SpaceId(space_id)] = f"recording stopped: {error}"

        return SpaceRecorder(
            root,
            space.id,
            codecs=AAC_LC_MONO_CODECS,
            bandwidth=self._media_config.aac_bitrate + 8_000,
            on_error=failed,
        )

    async def replay_of(self, space_id: str) -> Replay | None:
        """The replay of an ended recorded Space (None while it runs, or if nothing was recorded).

        For the origin: cheap for unknown Spaces (one stat), one records read per ended Space the
        first time, then kept (bounded): an ended Space's recording never changes.
        """
        sid = SpaceId(space_id)
        cached = self._replays.get(sid)
        if cached is not None:
            self._replays.move_to_end(sid)
            return cached
        root = self._media_config.recordings_dir
        if root is None or not is_space_id(space_id) or sid in self._running:
            return None
        if not (root / space_id).is_dir():
            return None
        space = await self.control.records.space(sid)
        if space is None or not space.state.is_over or sid in self._running:
            return None
        replay = await asyncio.to_thread(open_replay, root / space_id)
        if replay is not None:
            self._replays[sid] = replay
            while len(self._replays) > ENDED_MEDIA_KEPT:
                self._replays.popitem(last=False)
        return replay

    async def replay_captions(self, space_id: str) -> str | None:
        """An ended Space's kept captions as one WebVTT file on the media timeline (the replay's
        subtitle rendition); None if nothing was kept or the Space still runs here."""
        sid = SpaceId(space_id)
        if sid in self._replay_captions:
            return self._replay_captions[sid]
        root = self._media_config.recordings_dir
        if root is None or not is_space_id(space_id) or sid in self._running:
            return None
        kept = await asyncio.to_thread(read_cues, root / space_id)
        cues = [c.cue for c in kept]
        text = document(cues, mapped_at=min(c.start for c in cues)) if cues else None
        if sid in self._replays:  # an ended Space's replay: its captions never change again
            self._replay_captions[sid] = text
            while len(self._replay_captions) > ENDED_MEDIA_KEPT:
                self._replay_captions.popitem(last=False)
        return text

    async def caption_file(self, space_id: str) -> str | None:
        """Every caption kept with the Space's recording as one WebVTT file, timed from the
        recording's start (None: nothing kept). Read from storage, so any node answers."""
        root = self._media_config.recordings_dir
        if root is None or not is_space_id(space_id):
            return None
        kept = await asyncio.to_thread(read_cues, root / space_id)
        if not kept:
            return None
        replay = self._replays.get(SpaceId(space_id))
        if replay is None:
            replay = await asyncio.to_thread(open_replay, root / space_id)
        start = replay.segments[0].pdt if replay is not None and replay.segments else kept[0].pdt
        return timed_from(kept, start)

    def recording_expired(self, space_id: str) -> bool:
        """Retention deleted the Space's recording (one stat): its replay answers 410."""
        root = self._media_config.recordings_dir
        return root is not None and storage.expired(root, space_id)

    async def expire_recordings(self, retention_days: int, now: float) -> list[str]:
        """One retention sweep: delete the recordings (and clips) of Spaces that ended more than
        `retention_days` ago; returns the Spaces whose recording was deleted now."""
        root = self._media_config.recordings_dir
        if root is None:
            return []

        async def ended_at(space_id: str) -> float | None:
            space = await self.control.records.space(SpaceId(space_id))
            return space.ended_at if space is not None and space.state.is_over else None

        def forget(space_id: str) -> None:  # the kept replay names files that are gone
            self._replays.pop(SpaceId(space_id), None)

        return await storage.sweep(root, ended_at, retention_days, now, on_expired=forget)

    async def charge_recordings(self, quota: StorageQuota, now: float) -> list[SpaceId]:
        """Charge each recording's host and address for what it wrote past what its account has
        paid (see `node.recording_meter`); stop the recordings a budget cannot pay for. Returns
        the Spaces whose recording stopped now."""
        stopped = []
        for runtime in list(self._running.values()):
            recorder, meter = runtime.recorder, runtime.meter
            if recorder is None or meter is None or not recorder.recording:
                continue
            try:
                await meter.settle(
                    self.control.records, self.control.live, quota, recorder.bytes_written, now
                )
            except QuotaExceeded as refused:
                recorder.stop(quota_used_up(refused, quota))
                stopped.append(runtime.space_id)
        return stopped

    async def end_abandoned(self) -> list[SpaceId]:
        """End Spaces whose host has been off the stage's audio longer than the limit."""
        now = self._clock()
        abandoned = []
        running = list(self._running.values())
        spaces = await self.control.records.spaces([runtime.space_id for runtime in running])
        for runtime in running:
            space = spaces.get(runtime.space_id)
            if space is None:
                continue
            if SpeakerId(space.host_id) in runtime.ingest.connections:  # the host may have changed
                runtime.host_seen_at = now
            elif lifecycle.should_auto_end(
                space, runtime.host_seen_at, now, self._host_absent_end_s
            ):
                abandoned.append(runtime.space_id)
        for space_id in abandoned:
            with contextlib.suppress(ControlError):  # already ended by someone else
                await self.control.end(None, space_id)
                log.info("space %s ended: its host was away too long", space_id)
        return abandoned

    async def close(self) -> None:
        """Stop every stream without ending any Space: they resume when the process starts again."""
        for space_id in list(self._running):
            await self._stop(space_id, ended=False)
        await self.media_clock.close()
        if self.transcriber is not None:
            await self.transcriber.close()
