"""`GET /metrics`: this process's numbers in the Prometheus text format, for its operator only.

Theory of operation. Nothing here runs on the hot paths: the media clock, the origin and the
control API keep plain counters they own (`SpaceMedia.parts_published`, `skipped_ticks`, the
node's `TickTimings`, `RequestStats`, `Admission.refused`, the keeper's `KeeperStats`), and a
scrape reads them. What lives in the shared stores — listeners (presence beacons), the event
outbox and webhook backlogs — is read once per scrape, concurrently and within a deadline; a
store that does not answer leaves its series out and says so in `townhall_scrape_source_up`,
and the rest of the scrape still answers.

Every series carries `node` (the process's node id): each `townhall serve` process is scraped on
its own (Prometheus targets, one per process), and a dashboard sums or picks over nodes. Per-Space
series (label `space`) cover the Spaces whose media runs on this node, so summing over nodes counts
each Space once; their number is bounded by `TOWNHALL_MAX_LIVE_SPACES`. The backlogs are of the
shared records, the same on every node: take their max, not their sum.

Protected: served only with `Authorization: Bearer <TOWNHALL_METRICS_TOKEN>` (compared in
constant time), and absent (404) when no token is configured.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Protocol

from fastapi import APIRouter, Header, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from townhall import __version__
from townhall.api.accept import ConnectionCap
from townhall.api.admission import Admission
from townhall.api.errors import NotFound, Unauthorized
from townhall.api.live_routes import PresenceRates
from townhall.delivery.fanout import WRITE_BUFFER_MAX, SegmentFanout
from townhall.node.host import MediaHost
from townhall.node.keeper import NodeKeeper
from townhall.state.live import LiveState
from townhall.state.records import Records
from townhall.telemetry.durations import Durations
from townhall.telemetry.requests import RequestStats

log = logging.getLogger(__name__)

# A scrape answers within Prometheus' default 10 s timeout even when a store hangs.
SOURCE_DEADLINE_S = 3.0


class RunningNode(Protocol):
    """What a started node holds (app.Node, after its lifespan opened it)."""

    host: MediaHost
    keeper: NodeKeeper


@dataclass
class _Stored:
    """What one scrape read from the shared stores (None: that store did not answer)."""

    listeners: dict[str, int] | None = None
    events_queued: int | None = None
    webhooks_pending: int | None = None
    up: dict[str, bool] = field(default_factory=dict)


@dataclass
class NodeMetrics:
    """Reads this process's counters into Prometheus families (see the module docstring)."""

    role: str
    admission: Admission
    connections: ConnectionCap
    requests: RequestStats
    presence: PresenceRates
    node: Callable[[], RunningNode | None]  # None until the lifespan has started it
    live: Callable[[], LiveState]
    records: Callable[[], Records]
    fanout: SegmentFanout
    clock: Callable[[], float] = time.time

    async def render(self) -> bytes:
        node = self.node()
        stored = await self._read_stores(node)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(list(self._families(node, stored))))
        return generate_latest(registry)

    # -- the shared stores, once per scrape --------------------------------------------------------
    async def _read_stores(self, node: RunningNode | None) -> _Stored:
        stored = _Stored()
        spaces = [runtime.space_id for runtime in node.host.runtimes()] if node else []
        now = self.clock()

        async def listeners() -> None:
            counts = await asyncio.gather(
                *(self.presence.listeners(self.live(), space, now) for space in spaces)
            )
            stored.listeners = dict(zip(spaces, counts, strict=True))

        async def backlogs() -> None:
            stored.events_queued = await self.records().queued_events()
            stored.webhooks_pending = await self.records().pending_deliveries()

        async def read(source: str, what: Callable[[], Awaitable[None]]) -> None:
            try:
                async with asyncio.timeout(SOURCE_DEADLINE_S):
                    await what()
                stored.up[source] = True
            except Exception as exc:  # any store failure: leave its series out, say so
                log.warning("metrics: could not read the %s: %s", source, exc)
                stored.up[source] = False

        if node is not None:
            await asyncio.gather(read("live", listeners), read("records", backlogs))
        return stored

    # -- families --------------------------------------------------------------------------------
    def _families(self, node: RunningNode | None, stored: _Stored) -> Iterator[Metric]:
        node_id = str(node.keeper.node_id) if node is not None else ""
        ids = [node_id]
        info = GaugeMetricFamily(
            "townhall_node_info",
            "This process: its node id, role and version.",
            labels=["node", "role", "version"],
        )
        info.add_metric([node_id, self.role, __version__], 1.0)
        yield info
        yield from self._http(ids)
        if node is None:
            return
        yield from self._spaces(node, ids, stored)
        yield from self._media(node, ids)
        yield from self._leases(node, ids)
        yield from self._backlogs(ids, stored)

    def _http(self, ids: list[str]) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "townhall_http_requests",
            "HTTP requests answered, by route template, method and status.",
            labels=["node", "route", "method", "status"],
        )
        for (route, method, status), count in list(self.requests.counts.items()):
            requests.add_metric([*ids, route, method, str(status)], count)
        yield requests
        durations = HistogramMetricFamily(
            "townhall_http_request_duration_seconds",
            "Time from a request's arrival to its last byte, by route template (blocking "
            "playlist reloads are held until their part exists).",
            labels=["node", "route"],
        )
        for route, histogram in list(self.requests.durations.items()):
            _add_histogram(durations, [*ids, route], histogram)
        yield durations
        shed = CounterMetricFamily(
            "townhall_admission_shed",
            "Requests refused with 503 + Retry-After by admission control, by request class.",
            labels=["node", "class"],
        )
        in_flight = GaugeMetricFamily(
            "townhall_admission_in_flight",
            "Requests in flight per admission class.",
            labels=["node", "class"],
        )
        for kind, refused in self.admission.refused.items():
            shed.add_metric([*ids, kind.value], refused)
            in_flight.add_metric([*ids, kind.value], self.admission.in_flight[kind])
        yield shed
        yield in_flight
        at_accept = CounterMetricFamily(
            "townhall_connections_refused",
            "Connections answered 503 + Retry-After at accept, before their request was read: "
            "past the connection cap (reason cap, TOWNHALL_MAX_CONNECTIONS) or after waiting "
            "longer than TOWNHALL_ACCEPT_WAIT_MAX_MS to be accepted (reason waited).",
            labels=["node", "reason"],
        )
        at_accept.add_metric([*ids, "cap"], self.connections.refused)
        at_accept.add_metric([*ids, "waited"], self.connections.refused_late)
        yield at_accept
        cut_off = CounterMetricFamily(
            "townhall_listeners_cut_off",
            "Streamed segment responses cut off because their listener did not read them (over "
            f"{WRITE_BUFFER_MAX} bytes waiting to be sent); the player asks again.",
            labels=["node"],
        )
        cut_off.add_metric(ids, self.fanout.cut_off)
        yield cut_off
        yield _gauge(
            "townhall_segments_streaming",
            "Responses this process is streaming a segment in production to right now.",
            ids,
            self.fanout.streaming,
        )
        yield _gauge(
            "townhall_event_loop_lag_seconds",
            "How late a 50 ms timer fires on this process's event loop (smoothed).",
            ids,
            self.admission.lag_s,
        )

    def _spaces(self, node: RunningNode, ids: list[str], stored: _Stored) -> Iterator[Metric]:
        per_space = ["node", "space"]

        listeners = GaugeMetricFamily(
            "townhall_space_listeners",
            "Approximate listeners of a Space run here (presence beacons of the last minute).",
            labels=per_space,
        )
        stage = GaugeMetricFamily(
            "townhall_space_stage_connections",
            "Stage members connected to a Space's audio (WebRTC) on this node.",
            labels=per_space,
        )
        on_air = GaugeMetricFamily(
            "townhall_space_on_air", "1 while the Space is ON AIR.", labels=per_space
        )
        parts = CounterMetricFamily(
            "townhall_space_parts_published",
            "LL-HLS parts published to listeners by this node's run of the Space.",
            labels=per_space,
        )
        ticks = CounterMetricFamily(
            "townhall_space_ticks", "20 ms media ticks run (mixed, encoded).", labels=per_space
        )
        skipped = CounterMetricFamily(
            "townhall_space_ticks_skipped",
            "20 ms media ticks skipped because the clock fell too far behind (their time airs "
            "as silence).",
            labels=per_space,
        )
        lease = GaugeMetricFamily(
            "townhall_space_lease_token",
            "Fencing token of the lease this node runs the Space under (it grows at every "
            "take-over of the Space).",
            labels=per_space,
        )
        recorded = CounterMetricFamily(
            "townhall_space_recording_bytes",
            "Bytes of the Space's recording written by this node.",
            labels=per_space,
        )
        caption_cpu = CounterMetricFamily(
            "townhall_space_captions_cpu_seconds",
            "CPU seconds the transcriber worker spent on the Space's live captions.",
            labels=per_space,
        )
        caption_dropped = CounterMetricFamily(
            "townhall_space_captions_dropped_seconds",
            "Speech not captioned because transcription fell behind (dropped, never queued).",
            labels=per_space,
        )
        for runtime in node.host.runtimes():
            labels = [*ids, runtime.space_id]
            media = runtime.media
            if runtime.captions is not None:
                caption_cpu.add_metric(labels, runtime.captions.cpu_s)
                caption_dropped.add_metric(labels, runtime.captions.dropped_s)
            if stored.listeners is not None and runtime.space_id in stored.listeners:
                listeners.add_metric(labels, stored.listeners[runtime.space_id])
            stage.add_metric(labels, len(runtime.ingest.connections))
            on_air.add_metric(labels, 1.0 if media.on_air else 0.0)
            parts.add_metric(labels, media.parts_published)
            ticks.add_metric(labels, media.ticks)
            skipped.add_metric(labels, media.skipped_ticks)
            lease.add_metric(labels, runtime.lease.token)
            if runtime.recorder is not None:
                recorded.add_metric(labels, runtime.recorder.bytes_written)
        yield from (listeners, stage, on_air, parts, ticks, skipped, lease, recorded)
        yield from (caption_cpu, caption_dropped)
        yield _gauge(
            "townhall_spaces_running",
            "Open Spaces whose media runs here.",
            ids,
            len(node.host.running),
        )
        yield _gauge(
            "townhall_spaces_capacity",
            "Open Spaces this node may run (TOWNHALL_MAX_LIVE_SPACES).",
            ids,
            node.host.capacity,
        )

    def _media(self, node: RunningNode, ids: list[str]) -> Iterator[Metric]:
        timings = node.host.timings
        for name, histogram, doc in (
            ("townhall_media_mix_seconds", timings.mix, "Mixing and gating one 20 ms tick."),
            (
                "townhall_media_encode_seconds",
                timings.encode,
                "Encoding one 20 ms tick: AAC for listeners, Opus for each distinct mix-minus.",
            ),
        ):
            family = HistogramMetricFamily(name, doc, labels=["node"])
            _add_histogram(family, ids, histogram)
            yield family

    def _leases(self, node: RunningNode, ids: list[str]) -> Iterator[Metric]:
        keeper = node.keeper
        yield _gauge(
            "townhall_node_leases",
            "Space leases (placement) this node holds now.",
            ids,
            len(keeper.leases()),
        )
        yield _gauge(
            "townhall_node_draining",
            "1 while this node hands its Spaces over.",
            ids,
            1.0 if keeper.draining else 0.0,
        )
        events = CounterMetricFamily(
            "townhall_lease_events",
            "Lease changes on this node: acquired, released, lost (lapsed or taken while "
            "running the Space), renew_failed (a renewal that could not reach the store).",
            labels=["node", "event"],
        )
        stats = keeper.stats
        for event, count in (
            ("acquired", stats.acquired),
            ("released", stats.released),
            ("lost", stats.lost),
            ("renew_failed", stats.renew_failures),
        ):
            events.add_metric([*ids, event], count)
        yield events

    def _backlogs(self, ids: list[str], stored: _Stored) -> Iterator[Metric]:
        if stored.webhooks_pending is not None:
            yield _gauge(
                "townhall_webhook_backlog",
                "Webhook deliveries not yet delivered or given up (shared records: take the max).",
                ids,
                stored.webhooks_pending,
            )
        if stored.events_queued is not None:
            yield _gauge(
                "townhall_event_outbox_backlog",
                "Committed events not yet in a live log (shared records: take the max).",
                ids,
                stored.events_queued,
            )
        up = GaugeMetricFamily(
            "townhall_scrape_source_up",
            "1 if this scrape could read the store (live: listeners; records: backlogs).",
            labels=["node", "source"],
        )
        for source, ok in sorted(stored.up.items()):
            up.add_metric([*ids, source], 1.0 if ok else 0.0)
        yield up


def _gauge(name: str, doc: str, ids: list[str], value: float) -> GaugeMetricFamily:
    """A per-node gauge with its one sample."""
    family = GaugeMetricFamily(name, doc, labels=["node"])
    family.add_metric(ids, value)
    return family


def _add_histogram(family: HistogramMetricFamily, labels: list[str], durations: Durations) -> None:
    family.add_metric(labels, durations.cumulative(), durations.total)


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def build_metrics_router(metrics: NodeMetrics, token: str) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def scrape(authorization: Annotated[str | None, Header()] = None) -> Response:
        if not token:
            raise NotFound("no such resource", code="not_found")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise Unauthorized(
                "metrics need the operator's bearer token (TOWNHALL_METRICS_TOKEN)",
                code="metrics_token",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return Response(
            await metrics.render(),
            media_type=CONTENT_TYPE_LATEST,
            headers={"Cache-Control": "no-store"},
        )

    return router
