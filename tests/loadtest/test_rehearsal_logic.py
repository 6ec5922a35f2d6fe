"""The load test's pure parts: links, safety refusals, part timing, the verdict."""

from __future__ import annotations

import struct

import pytest

from townhall.loadtest.page import PartClock, SpaceTarget
from townhall.loadtest.rehearsal import Plan, PlanError, Second, judge


def box(kind: str, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind.encode()) + payload


def fragment(samples: int) -> bytes:
    """A moof (traf/trun with `samples`) and its mdat: one LL-HLS part."""
    trun = box("trun", b"\x00\x00\x00\x00" + struct.pack(">I", samples))
    return box("moof", box("traf", trun)) + box("mdat", b"\x00" * samples)


def test_a_space_link_names_server_space_and_invite_code() -> None:
    target = SpaceTarget.parse("http://127.0.0.1:8080/s/abc123?code=sekret")
    assert (target.base, target.space_id, target.code) == (
        "http://127.0.0.1:8080",
        "abc123",
        "sekret",
    )
    assert target.snapshot == "/api/spaces/abc123/snapshot?code=sekret"
    assert SpaceTarget.parse("http://localhost/s/abc123/").code is None


@pytest.mark.parametrize(
    "link", ["ftp://127.0.0.1/s/x", "http://127.0.0.1/live/x/index.m3u8", "http:///s/x", "nonsense"]
)
def test_what_is_not_a_space_link_is_refused(link: str) -> None:
    with pytest.raises(ValueError, match="link"):
        SpaceTarget.parse(link)


def test_another_host_needs_the_operators_word() -> None:
    remote = Plan(url="http://192.0.2.10:8080/s/abc123", listeners=10)
    with pytest.raises(PlanError, match="yes-i-operate-this-server"):
        remote.check()
    allowed = Plan(url="http://192.0.2.10:8080/s/abc123", listeners=10, allow_remote=True)
    assert allowed.check().space_id == "abc123"
    assert Plan(url="http://127.0.0.1:1/s/abc123", listeners=10).check().space_id == "abc123"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"listeners": 0}, "listeners"),
        ({"duration_s": 0}, "duration"),
        ({"ramp_s": 100}, "ramp"),
        ({"reactions_per_s": -1}, "reactions"),
        ({"speakers": 2}, "host-token"),
    ],
)
def test_impossible_plans_say_what_is_wrong(changes: dict[str, float], message: str) -> None:
    fields = {"url": "http://127.0.0.1:1/s/abc123", "listeners": 10, "duration_s": 10.0} | changes
    with pytest.raises(PlanError, match=message):
        Plan(**fields).check()  # type: ignore[arg-type]


def test_parts_are_placed_on_the_servers_clock_as_their_bytes_arrive() -> None:
    clock = PartClock(start=1000.0, timescale=48_000)
    data = fragment(15) + fragment(15)
    ends: list[float] = []
    for i in range(0, len(data), 7):  # the stream arrives in odd pieces
        ends += clock.feed(data[i : i + 7])
    assert ends == pytest.approx([1000.32, 1000.64])


def second(t: int, **values: object) -> Second:
    fields: dict[str, object] = {
        "t": t,
        "arrived": 10,
        "playing": 10,
        "joins": 0,
        "requests": 100,
        "first_audio_p50_s": 0.2,
        "first_audio_p99_s": 0.5,
        "lateness_p50_s": 0.2,
        "lateness_p95_s": 0.4,
        "stalls": 0,
        "failed": 0,
        "refused": 0,
        "generator_cpu": 0.2,
    } | values
    return Second(**fields)  # type: ignore[arg-type]


TOTALS = {
    "arrived": 10,
    "listeners_without_audio": 0,
    "parts": 1000,
    "stalls": 0,
    "lateness_p95_s": 0.4,
    "refused": 5,
}


def test_an_audience_that_heard_everything_on_time_was_held() -> None:
    verdict = judge([second(1), second(2, refused=5, failed=5)], TOTALS, hold_back=1.0)
    assert verdict.held
    assert verdict.summary.startswith("Held: 10 listeners")


def test_the_verdict_says_where_it_bent_and_why() -> None:
    seconds = [second(1), second(2, lateness_p95_s=1.5), second(3, failed=40)]
    verdict = judge(seconds, TOTALS | {"listeners_without_audio": 2}, hold_back=1.0)
    assert not verdict.held
    assert verdict.bent_at_s == 2
    assert "lateness p95 1.50 s" in verdict.reasons[0]
    assert "2 listeners never heard audio" in verdict.summary


def test_parts_carrying_room_state_are_noticed_and_still_timed() -> None:
    clock = PartClock(start=0.0, timescale=48_000)
    assert clock.feed(fragment(15)) == pytest.approx([0.32])
    assert not clock.room_seen
    assert clock.feed(box("emsg", b"\x00" * 20) + fragment(15)) == pytest.approx([0.64])
    assert clock.room_seen


def test_a_part_is_timed_whatever_sizes_its_bytes_arrive_in() -> None:
    """A box with a 64-bit size and room-state boxes between parts, fed a byte at a time."""
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + 15) + b"\x00" * 15
    trun = box("trun", b"\x00\x00\x00\x00" + struct.pack(">I", 15))
    data = box("emsg", b"\x01" * 30) + box("moof", box("traf", trun)) + mdat + fragment(15)
    clock = PartClock(start=10.0, timescale=48_000)
    ends: list[float] = []
    for i in range(len(data)):
        ends += clock.feed(data[i : i + 1])
    assert ends == pytest.approx([10.32, 10.64])
    assert clock.room_seen
