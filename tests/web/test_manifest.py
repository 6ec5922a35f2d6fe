"""Add to Home Screen: every page names the web app manifest, which is served with its standard
type (browsers ignore a manifest of another type) and names icons that exist in the package."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from townhall.web.pages import STATIC, routes

PAGES = ["/", "/s/abcdefghij", "/s/abcdefghij/stage"]


@pytest.fixture
def client() -> TestClient:
    return TestClient(Starlette(routes=routes()))


@pytest.mark.parametrize("path", PAGES)
def test_every_page_links_the_manifest_and_the_theme_colour(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200
    assert '<link rel="manifest" href="/manifest.webmanifest">' in page.text
    assert '<meta name="theme-color" content="#5b3cc4">' in page.text


def test_the_manifest_is_served_as_a_manifest_and_its_icons_exist(client: TestClient) -> None:
    response = client.get("/manifest.webmanifest")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/manifest+json")
    assert response.headers["x-content-type-options"] == "nosniff"
    manifest = json.loads(response.text)
    assert manifest["display"] == "standalone"
    for icon in manifest["icons"]:
        assert icon["src"].startswith("/static/")
        assert (STATIC / icon["src"].removeprefix("/static/")).is_file(), icon["src"]
        assert client.get(icon["src"]).status_code == 200
