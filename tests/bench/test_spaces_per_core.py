"""The spaces-per-core bench: its population is the issue's mix, it reads lateness off the playlist
listeners get, and the report judges the issue's goals from its figures."""

from __future__ import annotations

from typing import Any

import pytest
from bench.report import render, verdicts
from bench.spaces_per_core import kind_of, newest_part_end, summarise

from townhall.media.packager import EncodedPart, LlHlsPackager, PackagerConfig


@pytest.mark.parametrize("start", [0, 7, 33])
def test_any_twenty_spaces_in_a_row_are_the_mix(start: int) -> None:
    kinds = [kind_of(i) for i in range(start, start + 20)]
    assert (kinds.count("idle"), kinds.count("one_voice"), kinds.count("stage5")) == (16, 3, 1)


def test_the_newest_part_ends_where_the_playlist_says() -> None:
    packager = LlHlsPackager(
        PackagerConfig(
            part_target=0.32, parts_per_segment=6, window_segments=3, codecs="mp4a.40.2"
        ),
        stream_id="abcd",
        init_section=b"init",
        start_time=1_000_000.0,
        first_msn=1,
    )
    for _ in range(6 * 5 + 2):  # five segments and two parts of the sixth: 32 parts
        packager.add_part(EncodedPart(b"part", 0.32, independent=True))
    assert newest_part_end(packager.media_playlist()) == pytest.approx(
        1_000_000.0 + 32 * 0.32, abs=2e-3
    )


def row(
    step: str, spaces: int, kinds: tuple[int, int, int], cpu: float, on_time: bool = True
) -> Any:
    return {
        "step": step,
        "spaces": spaces,
        "kinds": dict(zip(("idle", "one_voice", "stage5"), kinds, strict=True)),
        "speakers": kinds[1] + 5 * kinds[2],
        "server_core_share": cpu,
        "voices_core_share": 0.1,
        "worst_lag_s": 0.3 if on_time else 2.0,
        "fell_behind_s": 0.0 if on_time else 1.7,
        "late_spaces": 0 if on_time else 3,
        "stalls": 0,
        "on_time": on_time,
    }


def test_each_kind_is_costed_above_the_one_before_and_the_goals_judged() -> None:
    rows = [
        row("empty server", 0, (0, 0, 0), 0.02),
        row("idle", 10, (10, 0, 0), 0.05),  # 0.3 % each
        row("one voice", 13, (10, 3, 0), 0.14),  # 3 % each
        row("stage of 5", 14, (10, 3, 1), 0.34),  # 20 %
        row("mixed", 40, (32, 6, 2), 0.7),
        row("mixed", 60, (48, 9, 3), 1.1, on_time=False),
    ]
    summary = summarise(rows)
    assert summary["per_space"] == pytest.approx({"idle": 0.003, "one_voice": 0.03, "stage5": 0.2})
    assert summary["most_on_time"] == 40
    assert summary["ended_late"]
    mean = 0.8 * 0.003 + 0.15 * 0.03 + 0.05 * 0.2
    assert summary["spaces_per_core_from_costs"] == pytest.approx(1 / mean)
    results = {"spaces_per_core": {"rows": rows, "summary": summary}}
    judged = {v.what: v for v in verdicts(results)}
    assert judged["an open Space with nobody talking"].met is True
    assert judged["a live Space with one speaker"].met is True
    many = next(v for what, v in judged.items() if what.startswith("open Spaces one core holds"))
    assert many.met is True  # ~59 per core by cost
    report = render(
        results,
        {"runs": [{"name": "spaces_per_core", "status": "ok", "args": [], "wall_s": 1}]},
        [],
    )
    assert "Spaces per core" in report
    assert "**late**" in report
