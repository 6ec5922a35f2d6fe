"""Private means private: a stranger who knows every id of a private Space gets 404 for all of it
(live, rewind, replay, clips, downloads, room state, hands, reactions, presence), someone with
its invite link hears it (ffmpeg and the listener page decode the speaker's tone), and after the
host makes a new invite link, the old link and every media URL made from it stop working.

A real server, a speaker bot on stage (440 Hz), and plain HTTP requests as each person makes them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.audio_analysis import decode_mono, tone_strength
from tests.conftest import Proc, Server, wait_until
from tests.e2e.test_audio_path import listen_with_ffmpeg, on_stage
from townhall import cli

pytestmark = pytest.mark.e2e

MAP = re.compile(r'#EXT-X-MAP:URI="([^"]+)/init\.mp4"')


@dataclass(frozen=True)
class Private:
    id: str
    host: str  # the host's bearer token
    code: str
    playlist: str  # the capability URL (…/live/{id}/{key}/index.m3u8)


def private_space(server: Server, speakers: Callable[..., Proc]) -> Private:
    """A private recorded Space on air with a 440 Hz speaker bot as its host."""
    host = server.host_identity()
    created = server.call(
        "POST", "/api/spaces", host, {"title": "Board", "visibility": "private", "record": True}
    )
    space_id = created["space"]["id"]
    server.call("POST", f"/api/spaces/{space_id}/go-live", host)
    on_stage(speakers(f"{server.url}/s/{space_id}/stage", "--token", host, "--tone", "440"))
    code = httpx.URL(created["links"]["listen"]).params["code"]
    return Private(space_id, host, code, created["links"]["playlist"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stream_id(http: httpx.Client, playlist: str) -> str:
    media = http.get(playlist.replace("index.m3u8", "media.m3u8"))
    assert media.status_code == 200, media.text
    found = MAP.search(media.text)
    assert found is not None, media.text
    return found.group(1)


def recorded_clip(http: httpx.Client, server: Server, space: Private, token: str) -> dict[str, Any]:
    """A clip made by a listener with the invite link, once there is something recorded."""
    url = f"{server.url}/api/spaces/{space.id}/clips"
    made: dict[str, Any] = {}

    def clipped() -> bool:
        response = http.post(url, params={"code": space.code}, headers=bearer(token), json={})
        if response.status_code == 201:
            made.update(response.json())
        else:
            assert response.status_code == 404, response.text  # nothing recorded yet
        return bool(made)

    wait_until(clipped, 30, "something recorded to clip")
    return made


def stranger_answers(
    http: httpx.Client, base: str, space_id: str, stream: str, clip: dict[str, Any], token: str
) -> dict[str, int]:
    """What someone who knows the Space id, its stream id and a clip id (not its key) gets from
    the site at `base` (the server itself, or an edge in front of it)."""
    api = f"{base}/api/spaces/{space_id}"
    live = f"{base}/live/{space_id}"
    me = bearer(token)
    return {
        "space": http.get(api).status_code,
        "snapshot": http.get(f"{api}/snapshot").status_code,
        "roster": http.get(f"{api}/stage").status_code,
        "roster signed in": http.get(f"{api}/stage", headers=me).status_code,
        "me": http.get(f"{api}/me", headers=me).status_code,
        "hand": http.post(f"{api}/hand", headers=me).status_code,
        "hand down": http.delete(f"{api}/hand", headers=me).status_code,
        "reaction": http.post(f"{api}/reactions", headers=me, json={"emoji": "👏"}).status_code,
        "presence": http.post(f"{api}/presence", json={"key": "k" * 20}).status_code,
        "new clip": http.post(f"{api}/clips", headers=me, json={}).status_code,
        "recording": http.get(f"{api}/recording", headers=me).status_code,
        "download": http.get(f"{api}/recording.m4a", headers=me).status_code,
        "rotate": http.post(f"{api}/rotate-invite", headers=me).status_code,
        "hands": http.get(f"{api}/hands", headers=me).status_code,
        "invite link": http.post(f"{api}/invite-links", headers=me, json={}).status_code,
        "ban": http.post(f"{api}/members/u-aaaaaaaaaaaa/ban", headers=me).status_code,
        "end": http.post(f"{api}/end", headers=me).status_code,
        "forget reminder": http.delete(f"{api}/remind", headers=me).status_code,
        "stage audio": http.post(
            f"{api}/rtc", headers=me, json={"type": "offer", "sdp": "v=0 not an offer"}
        ).status_code,
        "multivariant": http.get(f"{live}/index.m3u8").status_code,
        "playlist": http.get(f"{live}/media.m3u8").status_code,
        "dvr": http.get(f"{live}/dvr.m3u8").status_code,
        "init": http.get(f"{live}/{stream}/init.mp4").status_code,
        "segment": http.get(f"{live}/{stream}/s1.m4s").status_code,
        "clip file": http.get(f"{base}/api/clips/{clip['id']}.m4a").status_code,
        "clip page": http.get(f"{base}/c/{clip['id']}").status_code,
    }


def test_a_stranger_gets_404_for_everything_a_private_space_serves_live_and_in_replay(
    server: Server, speakers: Callable[..., Proc], tmp_path: Any
) -> None:
    space = private_space(server, speakers)
    stranger = server.host_identity("Stranger")
    invited = server.host_identity("Invited")
    with httpx.Client(timeout=15) as http:
        # Someone with the invite link hears the host, through a player we did not write.
        assert f"/live/{space.id}/" in space.playlist
        assert not space.playlist.endswith(f"/live/{space.id}/index.m3u8")
        audio = decode_mono(listen_with_ffmpeg(space.playlist, tmp_path / "heard.wav", 3))
        assert tone_strength(audio, 440) > 0.5
        stream = stream_id(http, space.playlist)
        clip = recorded_clip(http, server, space, invited)
        assert "?key=" in clip["url"]
        assert "?key=" in clip["page"]

        answers = stranger_answers(http, server.url, space.id, stream, clip, stranger)
        assert answers == dict.fromkeys(answers, 404), answers
        # The segment being produced, asked for as a public Space's listener asks for it (there
        # answered before the framework, delivery/segment_front.py): not for a stranger either.
        live_media = http.get(space.playlist.replace("index.m3u8", "media.m3u8")).text
        hinted = re.search(r'PRELOAD-HINT:TYPE=PART,URI="[^"]*/s(\d+)\.m4s"', live_media)
        assert hinted is not None, live_media
        open_segment = f"{server.url}/live/{space.id}/{stream}/s{hinted.group(1)}.m4s"
        assert http.get(open_segment).status_code == 404

        # With the link, the same things work; the host needs no code for the stage's own.
        api = f"{server.url}/api/spaces/{space.id}"
        code = {"code": space.code}
        snapshot = http.get(f"{api}/snapshot", params=code)
        assert snapshot.status_code == 200
        assert snapshot.json()["space"]["media"] in space.playlist
        assert http.get(f"{api}/stage", params=code).status_code == 200
        assert http.post(f"{api}/hand", params=code, headers=bearer(invited)).status_code == 200
        reacted = http.post(
            f"{api}/reactions", params=code, headers=bearer(invited), json={"emoji": "👏"}
        )
        assert reacted.status_code == 202
        dvr = http.get(space.playlist.replace("index.m3u8", "dvr.m3u8"))
        assert dvr.status_code == 200, dvr.text
        assert http.get(clip["url"]).status_code == 200
        assert http.get(clip["page"]).status_code == 200
        assert http.get(f"{api}/stage", headers=bearer(space.host)).status_code == 200
        assert http.get(f"{api}/recording", headers=bearer(space.host)).status_code == 200

        # Over: the replay is at the same capability URL, and still nowhere else.
        server.call("POST", f"/api/spaces/{space.id}/end", space.host)
        media = space.playlist.replace("index.m3u8", "media.m3u8")
        wait_until(lambda: "#EXT-X-PLAYLIST-TYPE:VOD" in http.get(media).text, 30, "the replay")
        plain = http.get(f"{server.url}/live/{space.id}/media.m3u8")
        assert plain.status_code == 404, plain.text
        download = http.get(f"{api}/recording.m4a", headers=bearer(space.host))
        assert download.status_code == 200
        answers = stranger_answers(http, server.url, space.id, stream, clip, stranger)
        assert answers == dict.fromkeys(answers, 404), answers


def test_a_new_invite_link_locks_out_the_old_one_and_its_media_urls(
    server: Server, speakers: Callable[..., Proc], capsys: pytest.CaptureFixture[str]
) -> None:
    space = private_space(server, speakers)
    invited = server.host_identity("Invited")
    with httpx.Client(timeout=15) as http:
        old_media = space.playlist.replace("index.m3u8", "media.m3u8")
        stream = stream_id(http, space.playlist)
        old_init = space.playlist.replace("index.m3u8", f"{stream}/init.mp4")
        clip = recorded_clip(http, server, space, invited)
        api = f"{server.url}/api/spaces/{space.id}"

        # Only the host can: a co-host or a listener with the link cannot lock others out.
        refused = http.post(f"{api}/rotate-invite", headers=bearer(invited))
        assert refused.status_code == 404, refused.text
        # The host's CLI, as an operator scripts it.
        argv = ["spaces", "--url", server.url, "--token", space.host, "rotate-invite", space.id]
        assert cli.main(argv) == 0
        links = json.loads(capsys.readouterr().out)["links"]
        new_code = httpx.URL(links["listen"]).params["code"]
        assert new_code != space.code
        assert links["playlist"] != space.playlist

        # Every node forgets the old key within a second (no cache in front here).
        began = time.monotonic()
        wait_until(lambda: http.get(old_media).status_code == 404, 5, "the old playlist to end")
        assert time.monotonic() - began < 3
        old = {"code": space.code}
        assert http.get(old_init).status_code == 404
        assert http.get(api, params=old).status_code == 404
        assert http.get(f"{api}/snapshot", params=old).status_code == 404
        assert http.get(f"{api}/stage", params=old).status_code == 404
        assert http.post(f"{api}/hand", params=old, headers=bearer(invited)).status_code == 404
        assert http.get(clip["url"]).status_code == 404
        assert http.get(clip["page"]).status_code == 404

        # The new link works at once, for the page's calls and the audio alike.
        assert http.get(f"{api}/snapshot", params={"code": new_code}).status_code == 200
        assert http.get(links["playlist"].replace("index.m3u8", "media.m3u8")).status_code == 200
