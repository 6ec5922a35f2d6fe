"""The media clock keeps real time on an overloaded machine: busy-looping processes on every core
while a tone bot speaks and an LL-HLS listener follows the live edge.

What a listener cares about, measured from what reached it: its lateness behind the server's clock
(arrival − the part's media end, from EXT-X-PROGRAM-DATE-TIME) must not grow from the first third
of the run to the last; the stream's media time must keep pace with the wall clock; and the parts'
decode times (tfdt) must follow each other without a gap, so a player's audio never jumps.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Proc
from townhall.harness import Server, start_server, wait_connected
from townhall.loadtest.llhls import PartRef, PlayerStats, parse_playlist, run_listener
from townhall.media.audio import SAMPLE_RATE
from townhall.media.encoder import AAC_FRAME_SAMPLES
from townhall.media.fmp4 import find_box, fragment_sample_count

pytestmark = pytest.mark.e2e

LISTEN_SECONDS = 30.0  # three thirds of 10 s: long enough for drift to show, short enough
METRICS_TOKEN = "e2e-clock-metrics-token-0123456789"
# A part filled after a skip is published up to the catch-up bound (0.5 s) plus the fill's own
# encode late, and the test's listener is starved by the hogs too (it shares the cores): the bounds
# leave room for that. A clock that loses time loses far more: before skipped ticks entered the
# stream, the last third came 4.1 s later than the first, with 24.6 s of media in 30 s (load ~10),
# and 14.5 s later, with 13.8 s of media in 36 s, at a load of ~27.
MAX_LATENESS_GROWTH_S = 1.5
MAX_MEDIA_WALL_DIFFERENCE_S = 1.5


@dataclass(frozen=True)
class Heard:
    """One part as the listener received it."""

    part: PartRef
    arrival: float  # wall clock (UNIX seconds)
    decode_time: int  # tfdt, in samples
    samples: int

    @property
    def lateness(self) -> float:
        return self.arrival - self.part.end


def decode_time(fragment: bytes) -> int:
    """The fragment's baseMediaDecodeTime (tfdt, version 0 or 1)."""
    box = find_box(fragment, ["moof", "traf", "tfdt"])
    assert box is not None, "a part without tfdt"
    version = fragment[box.start + 8]
    if version == 1:
        return int(struct.unpack_from(">Q", fragment, box.start + 12)[0])
    return int(struct.unpack_from(">I", fragment, box.start + 12)[0])


@pytest.fixture
def cpu_hogs() -> Iterator[Callable[[], list[subprocess.Popen[bytes]]]]:
    """Start busy-looping processes, two per core; each is stopped by its PID at the end."""
    hogs: list[subprocess.Popen[bytes]] = []

    def start() -> list[subprocess.Popen[bytes]]:
        for _ in range((os.cpu_count() or 1) * 2):
            hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        return hogs

    yield start
    for hog in hogs:
        hog.kill()
    for hog in hogs:
        hog.wait(timeout=30)


@pytest.fixture
def metered_server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "data", {"TOWNHALL_METRICS_TOKEN": METRICS_TOKEN})
    yield srv
    srv.proc.stop()


def counter(server: Server, name: str) -> float:
    """A per-Space counter from the node's `/metrics`, summed over its Spaces."""
    text = httpx.get(
        f"{server.url}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=30,
    ).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(f"{name}_total{{")
    )


def listen(media_url: str, seconds: float) -> tuple[list[Heard], list[Heard], PlayerStats]:
    """Follow the live edge for `seconds`: the parts as they reached the listener, and every part
    of the stream over that time in order (a player at the live edge skips ahead past parts
    published in a burst; those are fetched from the playlist to check the decode times)."""
    heard: list[Heard] = []
    every: dict[tuple[int, int], Heard] = {}
    stats = PlayerStats()

    def place(part: PartRef, data: bytes, wall: float) -> Heard:
        samples = fragment_sample_count(data) * AAC_FRAME_SAMPLES
        placed = every[(part.msn, part.index)] = Heard(part, wall, decode_time(data), samples)
        return placed

    async def on_part(part: PartRef, data: bytes, wall: float) -> None:
        last = heard[-1] if heard else None
        if last is not None and decode_time(data) != last.decode_time + last.samples:
            async with httpx.AsyncClient(timeout=30) as http:
                playlist = parse_playlist((await http.get(media_url)).text, media_url)
                for skipped in playlist.parts:
                    if (
                        (last.part.msn, last.part.index)
                        < (skipped.msn, skipped.index)
                        < (
                            part.msn,
                            part.index,
                        )
                    ):
                        ranged = skipped.byte_range is not None
                        headers = {"Range": f"bytes={skipped.byte_range}"} if ranged else {}
                        response = await http.get(skipped.uri, headers=headers)
                        place(skipped, response.content, time.time())
        heard.append(place(part, data, wall))

    asyncio.run(run_listener(media_url, time.monotonic() + seconds, stats, on_part))
    return heard, [every[key] for key in sorted(every)], stats


def thirds(values: list[float]) -> tuple[float, float]:
    third = len(values) // 3
    return statistics.median(values[:third]), statistics.median(values[-third:])


def test_a_listener_keeps_real_time_while_every_core_is_busy(
    metered_server: Server,
    speakers: Callable[..., Proc],
    cpu_hogs: Callable[[], list[subprocess.Popen[bytes]]],
) -> None:
    space = metered_server.create_space("Under pressure")
    wait_connected(speakers(space.stage_url, "--tone", "440", "--token", space.host_token))
    media_url = space.playlist_url.replace("index.m3u8", "media.m3u8")
    ticked_before = counter(metered_server, "townhall_space_ticks")
    skipped_before = counter(metered_server, "townhall_space_ticks_skipped")

    cpu_hogs()
    heard, stream, stats = listen(media_url, LISTEN_SECONDS)
    ticked = counter(metered_server, "townhall_space_ticks") - ticked_before
    skipped = counter(metered_server, "townhall_space_ticks_skipped") - skipped_before

    assert len(heard) >= 15, f"too few parts heard: {stats.summary()}"
    assert stats.joins == 1, f"the listener had to re-join: {stats.summary()}"
    early, late = thirds([h.lateness for h in heard])
    wall_span = heard[-1].arrival - heard[0].arrival
    growth_per_minute = (late - early) / (wall_span * 2 / 3) * 60
    media_span = (heard[-1].decode_time - heard[0].decode_time) / SAMPLE_RATE
    report = (
        f"lateness first third {early:.3f} s, last third {late:.3f} s "
        f"({growth_per_minute:+.2f} s/min); media {media_span:.2f} s in {wall_span:.2f} s of "
        f"wall clock; {len(heard)} parts heard of {len(stream)}; {ticked:.0f} ticks mixed, "
        f"{skipped:.0f} skipped; load {os.getloadavg()[0]:.1f}"
    )
    print(report)
    assert len(stream) >= LISTEN_SECONDS / 0.5, f"too few parts in the stream: {report}"
    for before, after in itertools.pairwise(stream):
        assert after.decode_time == before.decode_time + before.samples, (
            f"a gap in decode times after part {before.part.msn}.{before.part.index}: {report}"
        )
    assert late - early <= MAX_LATENESS_GROWTH_S, f"the listener fell behind: {report}"
    assert abs(media_span - wall_span) <= MAX_MEDIA_WALL_DIFFERENCE_S, (
        f"the stream's media time did not keep pace with the wall clock: {report}"
    )
