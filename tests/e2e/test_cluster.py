"""A Space outlives its server: several real `townhall serve` processes sharing a real redis-server
(placement, leases, live state), a real PostgreSQL (records) and one recordings directory.

Every node answers any request: a Space's `/live/…` and `/rtc` requests reach its one owner, so
listeners see one stream whichever node they ask. When the owner is killed, another media node
takes the Space over: the stage bot reconnects by itself, the tone comes back on the same URL,
media sequence numbers never go back and the replay holds both sides of the gap.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from tests.audio_analysis import decode_mono, tone_strength
from tests.conftest import Proc, Server
from tests.e2e.polling import poll_page
from tests.e2e.test_audio_path import listen_with_ffmpeg, wait_for_fresh_segment
from tests.e2e.test_browser import new_person
from tests.e2e.test_recording import decode
from tests.e2e.test_web_reconnect import (
    DEADLINE_S,
    hearing_the_tone,
    listener_sample,
    network_error,
)
from tests.telemetry.scrape import Scrape
from townhall.harness import (
    Edge,
    EdgeKind,
    HostedSpace,
    start_edge,
    start_server,
    wait_connected,
    wait_until,
)

pytestmark = pytest.mark.e2e

SECRET = "cluster-test-secret-" + "x" * 32
_MSN = re.compile(r"#EXT-X-MEDIA-SEQUENCE:(\d+)")
_STREAM = re.compile(r'#EXT-X-MAP:URI="([^/"]+)/init\.mp4"')


@dataclass
class Cluster:
    shared: Path
    redis_url: str
    database_url: str
    nodes: dict[str, Server] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def edge(self, servers: list[Server], kind: EdgeKind = "nginx") -> Edge:
        """A shipped edge in front of `servers`, round robin; stopped with the cluster."""
        folder = self.shared / f"edge-{len(self.edges)}"
        started = start_edge([s.url for s in servers], folder, kind=kind)
        self.edges.append(started)
        return started

    def start(self, name: str, role: str, port: int | None = None, **more: str) -> Server:
        env = {
            **more,
            "TOWNHALL_ROLE": role,
            "TOWNHALL_REDIS_URL": self.redis_url,
            "TOWNHALL_SECRET": SECRET,
            "TOWNHALL_DATABASE_URL": self.database_url,
            "TOWNHALL_RECORDINGS_DIR": str(self.shared / "recordings"),
        }
        server = start_server(self.shared / name, env=env, port=port)
        self.nodes[name] = server
        return server

    def owner(self, space_id: str) -> str:
        """The name of the node whose health says it runs the Space's media."""
        for name, server in self.nodes.items():
            if server.proc.popen.poll() is not None:
                continue
            running = httpx.get(f"{server.url}/api/health", timeout=5).json()["open_spaces"]
            if running:
                return name
        raise AssertionError("no node runs the Space")

    def placed_owner(self, space_id: str, seconds: float = 30) -> str:
        """`owner` once a media node has taken the Space: one that only an API node touched
        is taken at the media nodes' next scan, not when the API call returns."""
        found: list[str] = []

        def placed() -> bool:
            try:
                found.append(self.owner(space_id))
            except AssertionError:
                return False
            return True

        wait_until(placed, seconds, "a media node to take the Space")
        return found[-1]


@pytest.fixture
def cluster(tmp_path: Path, redis_url: str, postgres_url: str) -> Iterator[Cluster]:
    import redis

    url = redis_url.rsplit("/", 1)[0] + "/5"  # the contract suite flushes database 0
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    shared = tmp_path / "shared"
    shared.mkdir()
    made = Cluster(shared, url, postgres_url)
    yield made
    for edge in made.edges:
        edge.proc.stop()
    for server in made.nodes.values():
        server.proc.stop()


def running(server: Server) -> int:
    return int(httpx.get(f"{server.url}/api/health", timeout=5).json()["open_spaces"])


def announced_running(redis_url: str) -> dict[str, int]:
    """What each media node's heartbeat in Redis says it runs (what placement decides on)."""
    import redis

    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        keys = client.keys("townhall:node:*")
        return {key: json.loads(client.get(key) or "{}").get("running", -1) for key in keys}


def test_new_spaces_go_to_the_least_loaded_media_node_until_every_node_is_full(
    cluster: Cluster,
) -> None:
    one = cluster.start("media-1", "media", TOWNHALL_MAX_LIVE_SPACES="1")
    two = cluster.start("media-2", "media", TOWNHALL_MAX_LIVE_SPACES="1")
    wait_until(lambda: len(announced_running(cluster.redis_url)) == 2, 30, "both nodes announced")
    one.create_space("First", live=False)  # the green room is open: its media runs somewhere
    wait_until(
        lambda: sorted(announced_running(cluster.redis_url).values()) == [0, 1],
        30,
        "the first Space placed and announced",
    )
    two.create_space("Second", live=False)
    wait_until(lambda: running(one) == running(two) == 1, 30, "the second Space on the other node")
    wait_until(
        lambda: sorted(announced_running(cluster.redis_url).values()) == [1, 1],
        30,
        "both nodes announced as full",
    )

    host = one.host_identity("Third host")
    refused = httpx.post(
        f"{one.url}/api/spaces",
        json={"title": "Third"},
        headers={"Authorization": f"Bearer {host}"},
        timeout=15,
    )
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "capacity"
    assert int(refused.headers["Retry-After"]) >= 1
    # Refused before anything was written: no green room nobody runs, on any node's listing.
    for node in (one, two):
        listed = httpx.get(f"{node.url}/api/spaces", timeout=15).json()
        assert sorted(s["space"]["title"] for s in listed) == ["First", "Second"]


def playlist(url: str) -> tuple[int, str, str]:
    answer = httpx.get(url, timeout=20)
    assert answer.status_code == 200, (url, answer.status_code, answer.text)
    msn, stream = _MSN.search(answer.text), _STREAM.search(answer.text)
    assert msn is not None
    assert stream is not None
    return int(msn.group(1)), stream.group(1), answer.text


def test_every_node_and_the_edge_serve_the_one_stream_of_a_space(
    cluster: Cluster, speakers: Callable[..., Proc], tmp_path: Path, edge_kind: EdgeKind
) -> None:
    api = cluster.start("api", "api")
    cluster.start("media-1", "media")
    cluster.start("media-2", "media")
    edge = cluster.edge(list(cluster.nodes.values()), edge_kind)
    space = api.create_space("One stream")  # through a node that never runs media
    stage_url = space.stage_url.replace(api.url, edge.url)
    bot = speakers(stage_url, "--token", space.host_token, "--tone", "440")  # relayed /rtc
    wait_connected(bot)
    owner = cluster.owner(space.id)
    assert owner != "api"

    sources = [*(s.url for s in cluster.nodes.values()), edge.url]
    seen: dict[str, list[tuple[int, str]]] = {url: [] for url in sources}
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:  # every node in turn, and the edge in front of them
        for url in sources:
            msn, stream, _ = playlist(f"{url}/live/{space.id}/media.m3u8")
            seen[url].append((msn, stream))
    streams = {stream for answers in seen.values() for _, stream in answers}
    assert len(streams) == 1, "listeners saw more than one stream"
    for url, answers in seen.items():  # (the edge may answer from its one-second copy)
        numbers = [msn for msn, _ in answers]
        assert numbers == sorted(numbers), f"{url}: a media sequence number went back"

    audio = decode_mono(
        listen_with_ffmpeg(f"{edge.url}/live/{space.id}/index.m3u8", tmp_path / "a.wav", 2)
    )
    assert tone_strength(audio, 440) > 0.5


class PlaylistWatcher:
    """A listener that reloads the live playlist through one node every 0.3 s, noting every
    status and media sequence number (a thread: the test's own work goes on meanwhile)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: list[int] = []
        self.numbers: list[int] = []
        self.streams: list[str] = []
        self.texts: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    answer = client.get(self.url)
                except httpx.HTTPError:
                    self.statuses.append(0)
                    continue
                self.statuses.append(answer.status_code)
                msn, stream = _MSN.search(answer.text), _STREAM.search(answer.text)
                if msn and stream:
                    self.numbers.append(int(msn.group(1)))
                    self.streams.append(stream.group(1))
                    self.texts.append(answer.text)
                self._stop.wait(0.3)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(40)


def live_on_the_first_of_two(
    cluster: Cluster, speakers: Callable[..., Proc], title: str, *, record: bool = False
) -> tuple[Server, Server, HostedSpace, Proc, PlaylistWatcher]:
    """Two media nodes, a live Space on the first with a tone bot, and a listener on the second.

    The bot knows the Space's link on the node that survives (as it would know the edge's)."""
    first = cluster.start("media-1", "media")
    space = first.create_space(title, record=record)
    second = cluster.start("media-2", "media")
    stage_url = space.stage_url.replace(first.url, second.url)
    bot = speakers(stage_url, "--token", space.host_token, "--tone", "440")
    wait_connected(bot)
    assert cluster.owner(space.id) == "media-1"
    watcher = PlaylistWatcher(f"{second.url}/live/{space.id}/media.m3u8")
    wait_until(lambda: len(watcher.numbers) >= 3, 30, "the listener to load playlists")
    return first, second, space, bot, watcher


def test_killing_the_owner_of_a_live_space_hands_it_to_another_node(
    cluster: Cluster, speakers: Callable[..., Proc], tmp_path: Path, edge_kind: EdgeKind
) -> None:
    first, second, space, bot, watcher = live_on_the_first_of_two(
        cluster, speakers, "Survives a crash", record=True
    )
    edge = cluster.edge([first, second], edge_kind)
    through_edge = PlaylistWatcher(f"{edge.url}/live/{space.id}/media.m3u8")
    wait_until(lambda: len(through_edge.numbers) >= 3, 30, "the edge's listener to load playlists")
    before = decode_mono(
        listen_with_ffmpeg(f"{second.url}/live/{space.id}/index.m3u8", tmp_path / "b.wav", 2)
    )
    assert tone_strength(before, 440) > 0.5

    # What only the owner knows (is it writing?) is asked of the other node: relayed.
    assert second.call("GET", f"/api/spaces/{space.id}/recording", space.host_token)["recording"]

    # ffmpeg (a player we did not write) plays on across the kill without being restarted.
    wait_for_fresh_segment(f"{second.url}/live/{space.id}/media.m3u8")
    across = subprocess.Popen(
        [
            *("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"),
            *("-live_start_index", "-1", "-i", f"{second.url}/live/{space.id}/index.m3u8"),
            *("-t", "12", "-ac", "1", "-ar", "48000", "-y", str(tmp_path / "across.wav")),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    playing = tmp_path / "across.wav"
    wait_until(
        lambda: playing.exists() and playing.stat().st_size > 2 * 48_000,  # a second written
        30,
        "ffmpeg to play",
    )

    first.proc.kill()  # kill -9: no drain, no goodbye
    killed_at = time.monotonic()
    wait_until(
        lambda: len(set(watcher.streams)) >= 2, 60, "the playlist to name the new owner's stream"
    )
    taken_over_s = time.monotonic() - killed_at

    def heard_again() -> bool:
        after = decode_mono(
            listen_with_ffmpeg(f"{second.url}/live/{space.id}/index.m3u8", tmp_path / "c.wav", 1)
        )
        return tone_strength(after, 440) > 0.5

    wait_until(heard_again, 60, "the reconnected bot's tone on the same URL", interval=0.5)
    _, errors = across.communicate(timeout=90)
    assert across.returncode == 0, f"ffmpeg gave up across the take-over: {errors}"
    played = decode_mono(playing)
    assert tone_strength(played[-48_000:], 440) > 0.5, "ffmpeg did not hear the stage again"
    wait_until(lambda: len(set(through_edge.streams)) >= 2, 30, "the edge to list the new stream")
    watcher.stop()
    through_edge.stop()
    for name, seen in (("direct", watcher), ("through the edge", through_edge)):
        assert set(seen.statuses) == {200}, f"{name}: listener got {sorted(set(seen.statuses))}"
        assert seen.numbers == sorted(seen.numbers), f"{name}: a media sequence number went back"
    assert bot.popen.poll() is None, "the speaker bot gave up instead of reconnecting"
    # The parts the dead node's last playlist named are still there: read from the recording.
    old_stream = watcher.streams[0]
    last_seen = [t for t, s in zip(watcher.texts, watcher.streams, strict=True) if s == old_stream]
    named = re.findall(  # not the hint: parts, byte ranges of their segments
        r'#EXT-X-PART:[^\n]*URI="([^"]+)",BYTERANGE="(\d+)@(\d+)"', last_seen[-1]
    )[-6:]
    assert named
    for uri, length, offset in named:
        span = f"bytes={offset}-{int(offset) + int(length) - 1}"
        answer = httpx.get(
            f"{second.url}/live/{space.id}/{uri}", headers={"Range": span}, timeout=10
        )
        assert answer.status_code == 206, (uri, answer.status_code, answer.text)
        assert len(answer.content) == int(length), (uri, span)
    state = second.call("GET", f"/api/spaces/{space.id}", space.host_token)
    assert state["space"]["state"] == "live"
    assert taken_over_s < 30  # generous for a loaded machine; the bench measures the real gap

    second.call("POST", f"/api/spaces/{space.id}/end", space.host_token)

    def replay_playlist() -> str:
        return httpx.get(f"{second.url}/live/{space.id}/media.m3u8", timeout=10).text

    # The owner ends the stream when the end reaches it through the Space's log, a moment after
    # the command is answered (longer on a loaded machine).
    wait_until(lambda: "#EXT-X-ENDLIST" in replay_playlist(), 30, "the stream to end")
    replay = replay_playlist()
    assert replay.count("#EXT-X-DISCONTINUITY\n") >= 1, "the replay does not mark the gap"
    # Both sides of the gap are in the replay: each run ends with the tone (the first run's end
    # is the moment of the kill, the second's the end of the Space).
    runs = replay.split("#EXT-X-DISCONTINUITY\n")
    assert len(runs) == 2
    for n, run in enumerate(runs):
        init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', run)
        assert init is not None
        names = [init.group(1), *re.findall(r"^(\S+\.m4s)$", run, re.MULTILINE)]
        media = tmp_path / f"run-{n}.mp4"
        media.write_bytes(
            b"".join(
                httpx.get(f"{second.url}/live/{space.id}/{name}", timeout=10).content
                for name in names
            )
        )
        audio = decode_mono(decode(media, tmp_path / f"run-{n}.wav"))
        assert tone_strength(audio[-48_000:], 440) > 0.5, f"the end of run {n + 1} is missing"


def test_a_draining_node_hands_its_space_over_before_it_exits(
    cluster: Cluster, speakers: Callable[..., Proc], tmp_path: Path
) -> None:
    first, second, space, _bot, watcher = live_on_the_first_of_two(
        cluster, speakers, "Rolling restart"
    )

    assert first.proc.stop(timeout=30) == 0, first.proc.output()  # SIGTERM: drain, then exit
    assert first.proc.saw("handed over to node"), first.proc.output()
    assert cluster.owner(space.id) == "media-2"

    def heard_again() -> bool:
        after = decode_mono(
            listen_with_ffmpeg(f"{second.url}/live/{space.id}/index.m3u8", tmp_path / "d.wav", 1)
        )
        return tone_strength(after, 440) > 0.5

    wait_until(heard_again, 60, "the tone on the same URL after the drain", interval=0.5)
    watcher.stop()
    assert set(watcher.statuses) == {200}, f"listener got {sorted(set(watcher.statuses))}"
    assert watcher.numbers == sorted(watcher.numbers), "a media sequence number went back"
    assert len(set(watcher.streams)) == 2


@pytest.mark.browser
def test_a_listener_page_plays_on_across_a_take_over_without_a_reload(
    cluster: Cluster, speakers: Callable[..., Proc], browser: Browser
) -> None:
    """hls.js in the real listener page, on the node that survives, through a kill -9 of the
    Space's owner: the same page hears the stage again, never reloaded."""
    first, second, space, _bot, watcher = live_on_the_first_of_two(
        cluster, speakers, "Watched in a browser"
    )
    watcher.stop()
    context, page, errors = new_person(browser, microphone=False)
    page.goto(space.listen_url.replace(first.url, second.url))
    page.get_by_role("button", name="Play").click()
    poll_page(page, listener_sample, "the tone before the kill", hearing_the_tone(), DEADLINE_S)
    page.evaluate("() => { window.sameDocument = true; }")  # gone if the page reloaded
    played_before = listener_sample(page)["time"]

    first.proc.kill()
    killed_at = time.monotonic()
    heard = hearing_the_tone()
    poll_page(
        page,
        listener_sample,
        "the tone from the new owner",
        lambda s: s["time"] > played_before + 2 and heard(s),
        DEADLINE_S,
    )
    print(f"listener page: tone again {time.monotonic() - killed_at:.1f} s after the kill")
    assert listener_sample(page)["sameDocument"], "the page was reloaded"
    assert [e for e in errors if not network_error(e)] == [], errors
    context.close()


def test_each_node_reports_its_own_metrics_and_a_space_once(cluster: Cluster) -> None:
    """Every process is its own Prometheus target: its own node label, per-Space series only on
    the node that runs the Space (so sums over nodes count it once), the shared backlogs alike."""
    token = "cluster-metrics-token-0123456789"
    one = cluster.start("media-1", "media", TOWNHALL_METRICS_TOKEN=token)
    two = cluster.start("media-2", "media", TOWNHALL_METRICS_TOKEN=token)
    space = one.create_space("Counted once", live=False)
    wait_until(lambda: running(one) + running(two) == 1, 30, "the Space placed on one node")

    def scrape(server: Server) -> Scrape:
        answer = httpx.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=15
        )
        assert answer.status_code == 200, answer.text
        return Scrape(answer.text)

    scrapes = {name: scrape(server) for name, server in (("media-1", one), ("media-2", two))}
    nodes = {
        name: {s.labels["node"] for s in found.samples if s.name == "townhall_node_info"}
        for name, found in scrapes.items()
    }
    assert all(len(ids) == 1 for ids in nodes.values()), nodes
    assert nodes["media-1"] != nodes["media-2"], "two processes share a node label"
    owner = cluster.owner(space.id)
    for name, found in scrapes.items():
        runs_it = name == owner
        assert (found.value("townhall_space_ticks_total", space=space.id) is not None) is runs_it
        assert found.value("townhall_node_leases") == (1 if runs_it else 0)
        assert found.value("townhall_webhook_backlog") == 0


def test_a_private_spaces_capability_url_works_through_any_node_and_its_rotation_everywhere(
    cluster: Cluster,
) -> None:
    """A node that does not run the Space relays the capability URL (key and all) to the owner,
    which checks it; the plain path is a 404 on every node; a new invite code made through one
    node ends the old URLs on all of them."""
    api = cluster.start("api", "api")
    media = cluster.start("media-1", "media")
    host = api.host_identity()
    created = api.call("POST", "/api/spaces", host, {"title": "Board", "visibility": "private"})
    space_id = created["space"]["id"]
    api.call("POST", f"/api/spaces/{space_id}/go-live", host)
    path = httpx.URL(created["links"]["playlist"]).path.replace("index.m3u8", "media.m3u8")
    assert cluster.placed_owner(space_id) == "media-1"
    for node in (api, media):
        wait_until(
            lambda url=f"{node.url}{path}": httpx.get(url, timeout=20).status_code == 200,
            30,
            "the capability URL to answer",
        )
        plain = httpx.get(f"{node.url}/live/{space_id}/media.m3u8", timeout=20)
        assert plain.status_code == 404, plain.text

    api.call("POST", f"/api/spaces/{space_id}/rotate-invite", host)
    for node in (api, media):
        wait_until(
            lambda url=f"{node.url}{path}": httpx.get(url, timeout=20).status_code == 404,
            5,
            "the old capability URL to end",
        )
