"""`/metrics` in one process: who may read it, and what the request counters count."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.telemetry.scrape import Scrape
from townhall.api.admission import Admission, AdmissionLimits
from townhall.app import create_app
from townhall.config import load

TOKEN = "metrics-token-for-tests-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """A started node with metrics on."""
    started = create_app(load({"TOWNHALL_METRICS_TOKEN": TOKEN}, data_dir=tmp_path))
    async with started.router.lifespan_context(started):
        yield started


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=15) as client:
        yield client


async def scrape(http: httpx.AsyncClient) -> Scrape:
    response = await http.get("/metrics", headers=BEARER)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    return Scrape(response.text)


async def test_metrics_are_off_when_no_token_is_configured(tmp_path: Path) -> None:
    app = create_app(load({}, data_dir=tmp_path))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/metrics", headers={"Authorization": "Bearer anything-at-all"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", TOKEN]
)
async def test_metrics_are_refused_without_the_operators_token(
    http: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await http.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "metrics_token"
    assert TOKEN not in response.text


async def test_requests_are_counted_by_route_template_never_by_raw_path(
    http: httpx.AsyncClient,
) -> None:
    guest = (await http.post("/api/auth/guest", json={"display_name": "Host"})).json()["token"]
    created = await http.post(
        "/api/spaces", json={"title": "Counted"}, headers={"Authorization": f"Bearer {guest}"}
    )
    space_id = created.json()["space"]["id"]
    for _ in range(3):
        assert (await http.get(f"/api/spaces/{space_id}")).status_code == 200
    assert (await http.get("/api/spaces/zzzzzzzzzz")).status_code == 404
    assert (await http.get(f"/live/{space_id}/media.m3u8")).status_code == 200
    await http.get("/no/such/page/at-all")
    await http.request("BREW", "/api/spaces")

    metrics = await scrape(http)
    requests = "townhall_http_requests_total"
    assert metrics.value(requests, route="/api/spaces/{space_id}", method="GET", status="200") == 3
    assert metrics.value(requests, route="/api/spaces/{space_id}", method="GET", status="404") == 1
    assert metrics.value(requests, route="/live/{space}/media.m3u8", status="200") == 1
    assert metrics.value(requests, route="/api/spaces", method="POST", status="201") == 1
    assert metrics.total(requests, route="unmatched", status="404") >= 1
    assert metrics.total(requests, method="other") == 1
    routes = {s.labels["route"] for s in metrics.samples if s.name == requests}
    assert not any(space_id in route for route in routes), routes
    assert (
        metrics.value(
            "townhall_http_request_duration_seconds_count", route="/api/spaces/{space_id}"
        )
        == 4
    )


async def test_requests_shed_by_admission_are_counted_as_503s_of_their_class(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    admission: Admission = app.state.admission
    admission.limits = AdmissionLimits(interaction=0)

    refused = await http.post("/api/spaces/abcdefghij/reactions", json={"emoji": "👏"})
    assert refused.status_code == 503

    metrics = await scrape(http)
    assert metrics.value("townhall_admission_shed_total", **{"class": "interaction"}) == 1
    assert metrics.value("townhall_admission_shed_total", **{"class": "control"}) == 0
    assert metrics.total("townhall_http_requests_total", status="503") == 1
