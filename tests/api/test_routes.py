"""Bad input gets a clear 4xx with the one JSON error shape, and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from townhall.app import create_app
from townhall.config import load

OFFER_WITHOUT_AUDIO = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(load({}, data_dir=tmp_path))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    await app.state.spaces.close()


async def create(api: httpx.AsyncClient, title: str = "Hello") -> dict[str, object]:
    response = await api.post("/api/spaces", json={"title": title})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def auth(token: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    return str(body["error"]["code"])


async def test_creating_a_space_returns_links_and_a_host_token(api: httpx.AsyncClient) -> None:
    created = await create(api)
    space = created["space"]
    assert isinstance(space, dict)
    assert space["state"] == "live"
    assert str(created["stage_url"]).endswith(
        f"/s/{space['id']}/stage#token={created['host_token']}"
    )
    assert (await api.get(f"/api/spaces/{space['id']}")).json()["title"] == "Hello"
    assert [s["id"] for s in (await api.get("/api/spaces")).json()] == [space["id"]]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "x" * 121},
        {"title": "a\x00b"},
        {"title": 5},
        {"title": "ok", "extra": 1},
    ],
    ids=["missing", "empty", "too-long", "control-char", "not-a-string", "unknown-field"],
)
async def test_invalid_space_input_is_refused_and_creates_nothing(
    api: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await api.post("/api/spaces", json=body)
    assert response.status_code == 422
    assert error_code(response) == "invalid_input"
    assert (await api.get("/api/spaces")).json() == []


async def test_malformed_json_is_a_clear_error(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/spaces", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert error_code(response) == "invalid_input"


async def test_unknown_and_malformed_space_ids_are_404(api: httpx.AsyncClient) -> None:
    for space_id in ("zzzzzzzzzz", "short", "ABCDEFGHIJ"):
        response = await api.get(f"/api/spaces/{space_id}")
        assert response.status_code == 404
        assert error_code(response) == "space_not_found"


async def test_stage_calls_without_a_valid_token_are_401(api: httpx.AsyncClient) -> None:
    created = await create(api)
    space = created["space"]
    assert isinstance(space, dict)
    url = f"/api/spaces/{space['id']}/invites"
    assert error_code(await api.post(url)) == "token_missing"
    assert error_code(await api.post(url, headers=auth("forged.token.value"))) == "token_invalid"
    other = await create(api, "Other")
    response = await api.post(url, headers=auth(other["host_token"]))
    assert response.status_code == 401
    assert error_code(response) == "token_wrong_space"


async def test_a_speaker_cannot_invite_or_end(api: httpx.AsyncClient) -> None:
    created = await create(api)
    space = created["space"]
    assert isinstance(space, dict)
    invite = await api.post(
        f"/api/spaces/{space['id']}/invites", headers=auth(created["host_token"])
    )
    assert invite.status_code == 201
    speaker = invite.json()["speaker_token"]
    for path in ("invites", "end"):
        response = await api.post(f"/api/spaces/{space['id']}/{path}", headers=auth(speaker))
        assert response.status_code == 403
        assert error_code(response) == "not_host"
    assert (await api.get(f"/api/spaces/{space['id']}")).json()["state"] == "live"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"type": "offer", "sdp": OFFER_WITHOUT_AUDIO}, 400, "bad_sdp"),
        ({"type": "offer", "sdp": "hello there, not sdp"}, 400, "bad_sdp"),
        ({"type": "answer", "sdp": OFFER_WITHOUT_AUDIO}, 422, "invalid_input"),
        ({"type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * 10_000}, 422, "invalid_input"),
    ],
    ids=["no-audio", "not-sdp", "wrong-type", "oversized"],
)
async def test_bad_offers_are_refused_and_nobody_joins_the_stage(
    api: httpx.AsyncClient, body: dict[str, str], status: int, code: str
) -> None:
    created = await create(api)
    space = created["space"]
    assert isinstance(space, dict)
    response = await api.post(
        f"/api/spaces/{space['id']}/rtc", json=body, headers=auth(created["host_token"])
    )
    assert response.status_code == status
    assert error_code(response) == code
    live = api._transport.app.state.spaces.live(space["id"])  # type: ignore[attr-defined]
    assert live.media.speakers == []


async def test_ending_a_space_then_using_it_answers_gone(api: httpx.AsyncClient) -> None:
    created = await create(api)
    space = created["space"]
    assert isinstance(space, dict)
    ended = await api.post(f"/api/spaces/{space['id']}/end", headers=auth(created["host_token"]))
    assert ended.status_code == 200
    assert ended.json()["state"] == "ended"
    again = await api.post(f"/api/spaces/{space['id']}/end", headers=auth(created["host_token"]))
    assert again.status_code == 410
    assert error_code(again) == "space_ended"
    playlist = await api.get(f"/live/{space['id']}/media.m3u8")
    assert "#EXT-X-ENDLIST" in playlist.text


async def test_creating_spaces_is_rate_limited_with_retry_after(api: httpx.AsyncClient) -> None:
    statuses = [(await api.post("/api/spaces", json={"title": f"s{i}"})) for i in range(8)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, "no rate limit on creating Spaces"
    assert int(limited[0].headers["retry-after"]) >= 1
    assert error_code(limited[0]) == "rate_limited"
