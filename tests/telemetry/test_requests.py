"""The request line and the lines logged while a request is answered, as a log collector gets them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from townhall.telemetry.jsonlog import JsonFormatter
from townhall.telemetry.requests import RequestStats, RequestTelemetry

app_log = logging.getLogger("tests.telemetry.app")


async def failing_step(request: Request) -> PlainTextResponse:
    app_log.warning("could not reach the store for %s", request.path_params["space_id"])
    return PlainTextResponse("busy", status_code=503)


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What a JSON log handler on the root logger writes."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


async def test_a_line_logged_while_answering_a_request_carries_that_requests_id(
    lines: io.StringIO,
) -> None:
    app = Starlette(routes=[Route("/api/spaces/{space_id}/thing", failing_step)])
    wrapped = RequestTelemetry(app, RequestStats(), log_requests=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=wrapped), base_url="http://t"
    ) as http:
        answer = await http.get("/api/spaces/abcdefghij/thing", headers={"X-Request-Id": "r-1"})
        fresh = await http.get("/api/spaces/abcdefghij/thing", headers={"X-Request-Id": "a b"})
    logging.getLogger("tests.telemetry.app").warning("after the requests")

    assert answer.headers["x-request-id"] == "r-1"
    assert fresh.headers["x-request-id"] not in ("a b", "r-1"), "an unusable id is replaced"
    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    records = [r for r in records if r["logger"] in ("tests.telemetry.app", "townhall.requests")]
    step, request, _, _, after = records
    assert (step["message"], step["request_id"]) == (
        "could not reach the store for abcdefghij",
        "r-1",
    )
    assert request["route"] == "/api/spaces/{space_id}/thing"
    assert (request["status"], request["request_id"]) == (503, "r-1")
    assert "request_id" not in after
