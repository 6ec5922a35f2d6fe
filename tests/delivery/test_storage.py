"""Storage accounting and retention: what a recording costs, and deleting it when its time is up."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.delivery.test_recording import PART_S, packaged, record
from townhall.delivery.recording import load_runs
from townhall.delivery.storage import (
    CLIPS_DIR,
    DAY_S,
    EXPIRED_NAME,
    expire,
    expired,
    is_due,
    sweep,
    usage,
)

ENDED = 1_700_000_000.0


def recorded(root: Path, space: str, parts: int = 5) -> None:
    record(root, [packaged(n) for n in range(parts)], space=space)


def test_usage_counts_every_byte_of_the_runs_and_clips_and_the_recorded_seconds(
    tmp_path: Path,
) -> None:
    record(tmp_path, [packaged(n, stream="aaaa0001") for n in range(5)], space="spaceaaaa1")
    record(tmp_path, [packaged(n, stream="bbbb0002", t0=2e9) for n in range(3)], space="spaceaaaa1")
    clips = tmp_path / "spaceaaaa1" / CLIPS_DIR
    clips.mkdir()
    (clips / "spaceaaaa1-aaaaaaaaaaaa.m4a").write_bytes(b"x" * 1000)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "spaceaaaa1").rglob("*") if p.is_file())

    used = usage(tmp_path, "spaceaaaa1")

    assert used.bytes == on_disk
    assert used.bytes > 1000
    assert used.runs == 2
    assert used.seconds == pytest.approx(8 * PART_S)


def test_usage_of_nothing_recorded_is_zero(tmp_path: Path) -> None:
    assert usage(tmp_path, "nothing000").bytes == 0
    assert usage(tmp_path, "../../etc").bytes == 0  # not a Space id: never a path


def test_a_recording_is_due_only_after_the_retention_period_and_never_with_zero() -> None:
    assert not is_due(ENDED, ENDED + 30 * DAY_S - 1, 30)
    assert is_due(ENDED, ENDED + 30 * DAY_S + 1, 30)
    assert not is_due(ENDED, ENDED + 10_000 * DAY_S, 0)  # 0 keeps forever
    assert not is_due(None, ENDED + 10_000 * DAY_S, 30)  # not ended: never


def test_expiring_deletes_everything_but_the_marker(tmp_path: Path) -> None:
    recorded(tmp_path, "spaceaaaa1")
    (tmp_path / "spaceaaaa1" / CLIPS_DIR).mkdir()
    (tmp_path / "spaceaaaa1" / CLIPS_DIR / "c.m4a").write_bytes(b"clip")
    before = usage(tmp_path, "spaceaaaa1").bytes

    assert expire(tmp_path, "spaceaaaa1", ENDED) == before

    assert [p.name for p in (tmp_path / "spaceaaaa1").iterdir()] == [EXPIRED_NAME]
    assert expired(tmp_path, "spaceaaaa1")
    assert load_runs(tmp_path / "spaceaaaa1") == []
    assert usage(tmp_path, "spaceaaaa1").bytes == 0


async def test_the_sweep_deletes_recordings_of_spaces_ended_longer_ago_than_retention(
    tmp_path: Path,
) -> None:
    ended = {"spaceold01": ENDED, "spacenew01": ENDED + 5 * DAY_S, "spacelive1": None}
    for space in ended:
        recorded(tmp_path, space)
    (tmp_path / "spaceunkn1").mkdir()  # the records know nothing of it: left alone
    forgotten: list[str] = []

    async def ended_at(space: str) -> float | None:
        return ended.get(space)

    now = ENDED + 7 * DAY_S
    done = await sweep(tmp_path, ended_at, 3, now, on_expired=forgotten.append)

    assert done == forgotten == ["spaceold01"]
    assert expired(tmp_path, "spaceold01")
    assert load_runs(tmp_path / "spaceold01") == []
    for kept in ("spacenew01", "spacelive1"):
        assert not expired(tmp_path, kept)
        assert len(load_runs(tmp_path / kept)) == 1
    assert await sweep(tmp_path, ended_at, 3, now) == []  # already done: nothing more
    assert await sweep(tmp_path, ended_at, 0, now + 1000 * DAY_S) == []  # 0 keeps forever
    assert len(load_runs(tmp_path / "spacenew01")) == 1


async def test_a_sweep_that_died_half_way_is_finished_by_the_next(tmp_path: Path) -> None:
    recorded(tmp_path, "spaceold01")
    (tmp_path / "spaceold01" / EXPIRED_NAME).write_text("{}")  # marker written, nothing deleted

    async def ended_at(space: str) -> float | None:
        return ENDED

    assert expired(tmp_path, "spaceold01")  # already answers 410
    await sweep(tmp_path, ended_at, 1, ENDED + 2 * DAY_S)
    assert [p.name for p in (tmp_path / "spaceold01").iterdir()] == [EXPIRED_NAME]
