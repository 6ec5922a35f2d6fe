"""Cross-site request forgery (api/origins.py): cookie-authenticated writes and WebSockets from
another origin's page are refused; this site's pages and bearer clients are not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from townhall.config import load
from townhall.control_plane import control_plane_app
from townhall.node.forward import RELAY_HEADER, relay_key

OWN = "http://testserver"  # the TestClient's own origin (its Host is "testserver")
ELSEWHERE = "http://testserver:9999"  # the same host, another port: the same *site*


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(control_plane_app(load({}, data_dir=tmp_path))) as c:
        yield c


def signed_in_host(client: TestClient) -> tuple[str, str]:
    """(space id, bearer token) of a Space whose host is signed in by cookie in `client`."""
    who = client.post("/api/auth/guest", json={"display_name": "Hana"})
    assert who.status_code == 201
    assert "th_session" in client.cookies
    token = who.json()["token"]
    created = client.post("/api/spaces", json={"title": "Mine"})
    assert created.status_code == 201, created.text
    return created.json()["space"]["id"], token


def state(client: TestClient, space_id: str) -> str:
    return str(client.get(f"/api/spaces/{space_id}").json()["space"]["state"])


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": ELSEWHERE},  # plain HTTP to a non-local host: the browser says only Origin
        {"Origin": "null"},  # a sandboxed frame or a data: page
        {"Sec-Fetch-Site": "same-site", "Origin": ELSEWHERE},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
    ],
)
def test_a_cookie_write_from_another_origins_page_is_refused(
    client: TestClient, headers: dict[str, str]
) -> None:
    space_id, _ = signed_in_host(client)
    refused = client.post(f"/api/spaces/{space_id}/go-live", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "cross_origin"
    assert state(client, space_id) == "green_room"
    signout = client.post("/api/auth/signout", headers=headers)
    assert signout.status_code == 403
    assert client.get("/api/auth/me").json()["signed_in"] is True


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin", "Origin": OWN},
        {"Origin": OWN},
        {},  # not a browser: it holds the cookie itself, nobody's page can make it send one
    ],
)
def test_a_cookie_write_from_this_sites_own_page_goes_through(
    client: TestClient, headers: dict[str, str]
) -> None:
    space_id, _ = signed_in_host(client)
    assert client.post(f"/api/spaces/{space_id}/go-live", headers=headers).status_code == 200
    assert state(client, space_id) == "live"


def test_bearer_clients_are_not_checked(client: TestClient) -> None:
    space_id, token = signed_in_host(client)
    client.cookies.clear()
    done = client.post(
        f"/api/spaces/{space_id}/go-live",
        headers={"Authorization": f"Bearer {token}", "Origin": ELSEWHERE},
    )
    assert done.status_code == 200


def test_the_configured_public_url_is_this_sites_origin(tmp_path: Path) -> None:
    config = load({"TOWNHALL_PUBLIC_URL": "https://townhall.example/"}, data_dir=tmp_path)
    # The cookie is Secure under an https:// public URL: the client speaks https too.
    with TestClient(control_plane_app(config), base_url="https://testserver") as client:
        space_id, _ = signed_in_host(client)
        go = client.post(
            f"/api/spaces/{space_id}/go-live", headers={"Origin": "https://townhall.example"}
        )
        assert go.status_code == 200
        end = client.post(f"/api/spaces/{space_id}/end", headers={"Origin": ELSEWHERE})
        assert end.status_code == 403


def test_a_stage_socket_opened_by_another_origins_page_is_refused(client: TestClient) -> None:
    space_id, token = signed_in_host(client)
    url = f"/api/spaces/{space_id}/events"
    for headers in ({"Origin": ELSEWHERE}, {"Origin": ELSEWHERE, "Sec-Fetch-Site": "same-site"}):
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect(url, headers=headers) as ws,
        ):
            ws.receive_json()
        assert closed.value.code == 4403
    with client.websocket_connect(url, headers={"Origin": OWN}) as ws:
        assert ws.receive_json()["type"] == "hello"
    # A token in the query is a bearer: whoever has it may open the socket from any page.
    client.cookies.clear()
    with client.websocket_connect(f"{url}?token={token}", headers={"Origin": ELSEWHERE}) as ws:
        assert ws.receive_json()["type"] == "hello"


def test_a_request_another_node_relayed_was_checked_where_it_arrived(tmp_path: Path) -> None:
    """The owner of a Space sees a relayed request with another Host (the relaying node's view
    of the browser is not its own), so it trusts the relay key rather than judge the origin."""
    config = load({}, data_dir=tmp_path)
    with TestClient(control_plane_app(config)) as client:
        space_id, _ = signed_in_host(client)
        forged = {"Origin": ELSEWHERE, RELAY_HEADER: "not-the-key"}
        assert client.post(f"/api/spaces/{space_id}/go-live", headers=forged).status_code == 403
        relayed = {"Origin": ELSEWHERE, RELAY_HEADER: relay_key(config.secret)}
        assert client.post(f"/api/spaces/{space_id}/go-live", headers=relayed).status_code == 200
