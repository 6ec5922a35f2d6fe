"""Overload answers 503 + Retry-After at once, shedding interaction before listeners before media."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from townhall.api.admission import (
    Admission,
    AdmissionLimits,
    RequestClass,
    classify,
    watch_loop_lag,
)
from townhall.app import create_app
from townhall.config import load
from townhall.harness import wait_until_async


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/live/abcdefghij/media.m3u8", RequestClass.MEDIA),
        ("GET", "/live/abcdefghij/s1/p3.0.m4s", RequestClass.MEDIA),
        ("GET", "/api/spaces/abcdefghij", RequestClass.LISTENER),
        ("GET", "/api/spaces/abcdefghij/snapshot", RequestClass.LISTENER),
        ("POST", "/api/spaces/abcdefghij/presence", RequestClass.LISTENER),
        ("POST", "/api/spaces/abcdefghij/reactions", RequestClass.INTERACTION),
        ("POST", "/api/spaces/abcdefghij/hand", RequestClass.INTERACTION),
        ("POST", "/api/spaces/abcdefghij/go-live", RequestClass.CONTROL),
        ("POST", "/api/spaces", RequestClass.CONTROL),
        ("GET", "/", RequestClass.CONTROL),
        ("GET", "/metrics", RequestClass.OPERATOR),
        ("GET", "/metrics/x", RequestClass.CONTROL),
    ],
)
def test_requests_are_classed_by_what_they_are_for(
    method: str, path: str, kind: RequestClass
) -> None:
    assert classify(method, path) is kind


def test_each_class_has_its_own_cap_and_counts_refusals() -> None:
    admission = Admission(AdmissionLimits(media=2, listener=1, interaction=1, control=1))
    assert admission.enter(RequestClass.MEDIA)
    assert admission.enter(RequestClass.MEDIA)
    assert not admission.enter(RequestClass.MEDIA)
    assert admission.enter(RequestClass.LISTENER)  # a full media class does not block listeners
    admission.leave(RequestClass.MEDIA)
    assert admission.enter(RequestClass.MEDIA)
    assert admission.refused[RequestClass.MEDIA] == 1


async def test_an_overloaded_class_answers_503_with_retry_after_and_recovers(
    tmp_path: Path,
) -> None:
    app = create_app(load({"TOWNHALL_INFLIGHT_MEDIA": "2"}, data_dir=tmp_path))
    admission: Admission = app.state.admission
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=15) as http:
            guest = (await http.post("/api/auth/guest", json={"display_name": "Host"})).json()[
                "token"
            ]
            headers = {"Authorization": f"Bearer {guest}"}
            space_id = (
                await http.post("/api/spaces", json={"title": "Busy"}, headers=headers)
            ).json()["space"]["id"]
            playlist = f"/live/{space_id}/media.m3u8"
            text = (await http.get(playlist)).text
            sequence = int(text.split("#EXT-X-MEDIA-SEQUENCE:")[1].split()[0])
            held = {
                "_HLS_msn": str(sequence + text.count("#EXTINF") + 1)
            }  # completes in ≤ 2 segments
            waiting = [asyncio.create_task(http.get(playlist, params=held)) for _ in range(2)]
            deadline = time.monotonic() + 5
            while admission.in_flight[RequestClass.MEDIA] < 2:
                assert time.monotonic() < deadline, "the blocking reloads never started"
                await asyncio.sleep(0.01)
            refused = await http.get(playlist)
            assert refused.status_code == 503
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"]["code"] == "overloaded"
            # Shed before the app runs, yet dressed like every other JSON answer.
            assert refused.headers["x-content-type-options"] == "nosniff"
            assert refused.headers["content-security-policy"].startswith("default-src 'none'")
            # Other classes still get through while the media class is saturated.
            assert (await http.get(f"/api/spaces/{space_id}")).status_code == 200
            assert all(r.status_code == 200 for r in await asyncio.gather(*waiting))
            assert (await http.get(playlist)).status_code == 200


def test_a_late_event_loop_sheds_everything_but_audio_first() -> None:
    admission = Admission(AdmissionLimits(lag_shed_s=0.2, lag_shed_media_s=1.0))
    admission.lag_s = 0.5
    assert not admission.enter(RequestClass.LISTENER)
    assert not admission.enter(RequestClass.CONTROL)
    assert admission.enter(RequestClass.MEDIA)
    admission.lag_s = 1.5
    assert not admission.enter(RequestClass.MEDIA)
    admission.lag_s = 0.0
    assert admission.enter(RequestClass.LISTENER)


def test_a_late_event_loop_still_lets_the_operator_see_it_while_audio_flows() -> None:
    admission = Admission(AdmissionLimits(lag_shed_s=0.2, lag_shed_media_s=1.0, operator=1))
    admission.lag_s = 0.5
    assert not admission.enter(RequestClass.CONTROL)
    assert admission.enter(RequestClass.OPERATOR)
    assert not admission.enter(RequestClass.OPERATOR), "a scrape flood is capped"
    admission.leave(RequestClass.OPERATOR)
    admission.lag_s = 1.5
    assert not admission.enter(RequestClass.OPERATOR)


def stall_the_loop(seconds: float) -> None:
    """What is measured, not a wait: the loop cannot run the idle probe's timer meanwhile."""
    time.sleep(seconds)


async def test_a_quiet_process_probes_its_loop_seldom_and_a_request_or_a_stall_quickens_it() -> (
    None
):
    admission = Admission()
    watcher = asyncio.create_task(watch_loop_lag(admission))
    try:
        await wait_until_async(lambda: admission.on_enter is not None, 10, "the probe to idle")
        assert admission.enter(RequestClass.CONTROL)  # a request wakes it to its 50 ms pace
        await wait_until_async(lambda: admission.on_enter is None, 10, "the probe to wake")
        admission.leave(RequestClass.CONTROL)
        await wait_until_async(lambda: admission.on_enter is not None, 10, "the probe to idle")
        stall_the_loop(1.5)
        await wait_until_async(lambda: admission.lag_s > 0.05, 10, "the stall to be seen")
        assert admission.on_enter is None  # a late loop is probed at pace with nothing in flight
    finally:
        watcher.cancel()


async def test_a_loop_stalled_now_sheds_at_once_not_a_second_later() -> None:
    """The smoothed lag needs about a second of late probes to pass the threshold; a storm that
    stalls the loop is refused as soon as the probe is overdue by more than it."""
    admission = Admission(AdmissionLimits(lag_shed_s=0.2, lag_shed_media_s=1.0))
    watcher = asyncio.create_task(watch_loop_lag(admission))
    try:
        await wait_until_async(lambda: admission.on_enter is not None, 10, "the probe to idle")
        assert admission.enter(RequestClass.CONTROL)  # wakes the probe to its 50 ms pace
        await wait_until_async(lambda: admission.on_enter is None, 10, "the probe to wake")
        stall_the_loop(0.5)  # the probe's timer cannot fire meanwhile
        assert admission.lag_s < 0.2, "the smoothed lag has not seen the stall yet"
        assert not admission.enter(RequestClass.LISTENER), "overdue by ~0.45 s: refused"
        assert admission.enter(RequestClass.MEDIA), "audio is kept longer"
        admission.leave(RequestClass.MEDIA)
        admission.leave(RequestClass.CONTROL)
        await wait_until_async(
            lambda: admission.lag_now(time.monotonic()) < 0.2, 30, "the loop to catch up"
        )
        assert admission.enter(RequestClass.LISTENER)
    finally:
        watcher.cancel()


def test_a_probe_that_is_not_yet_due_adds_nothing() -> None:
    admission = Admission()
    now = time.monotonic()
    admission.probe_due = now + 0.05
    admission.lag_s = 0.01
    assert admission.lag_now(now) == 0.01
    assert admission.lag_now(now + 0.35) == pytest.approx(0.30)
