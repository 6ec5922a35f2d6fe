"""The benchmark report judges each budget of the spec from the run's figures, and only those."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bench.report import (
    SOAK_TOLERANCE,
    Verdict,
    _render_section,
    _section_generator,
    load,
    render,
    replace_section,
    soak_ratio,
    verdicts,
)


def by_what(results: dict[str, Any]) -> dict[str, Verdict]:
    return {v.what: v for v in verdicts(results)}


def test_nothing_measured_is_never_met_or_missed() -> None:
    judged = verdicts({})
    assert judged, "every budget has a row even when nothing ran"
    assert all(v.met is None and v.mark == "not measured" for v in judged)


def test_latency_prefers_the_browser_and_judges_the_spec_budget() -> None:
    results = {
        "latency": {
            "summary": {
                "hlsjs_mouth_to_ear_p95_s": 1.1,
                "hlsjs_mouth_to_ear_p50_s": 0.9,
                "python_mouth_to_ear_p95_s": 1.5,
                "stage_added_p95_s": 0.151,
            },
            "hlsjs": {"stalls_in_window": 0, "requests_per_s": 0.52, "other_requests_per_s": 0.1},
        }
    }
    judged = by_what(results)
    ear = judged["speaker mouth → listener ear, the real listener page"]
    assert ear.met is True
    assert "1.10 s" in ear.figure
    assert "hls.js" in ear.figure
    assert judged["speaker → other speakers, added by the server"].met is False
    page = judged["requests/s of one listener page (stream + room state)"]
    assert page.met is True
    assert "0.62" in page.figure
    results["latency"]["hlsjs"]["stalls_in_window"] = 1
    assert by_what(results)["speaker mouth → listener ear, the real listener page"].met is False
    results["latency"]["hlsjs"]["requests_per_s"] = 1.2
    assert by_what(results)["requests/s of one listener page (stream + room state)"].met is False


def test_a_generator_bound_shortfall_is_not_called_a_miss() -> None:
    summary = {
        "origin": {"listeners_held": 300, "limited_by": "stall", "rss_per_listener_bytes": 30_000},
        "edge": {"listeners_held": 2000, "limited_by": "generator"},  # no CPU figures: no ceiling
        "icecast": {"listeners_held": 4000, "limited_by": "generator"},
        "ratio_origin_icecast": 0.075,
        "ratio_edge_icecast": 0.5,
    }
    judged = by_what({"density": {"summary": summary}})
    assert judged["listeners held per core, straight from one origin process"].met is False
    assert judged["listeners held per core, origin behind the nginx edge"].met is None
    memory = judged["memory per directly served listener"]
    assert memory.met is False
    assert "29.3 KB" in memory.figure


def test_a_generator_bound_target_misses_when_even_its_cpu_ceiling_falls_short() -> None:
    summary = {
        # 1,500 held at 45 % of the core with 10 % idle: at most ~3,900 on the whole core.
        "edge": {
            "listeners_held": 1500,
            "limited_by": "generator",
            "cpu_per_listener": 0.45 / 1500,
            "reference_cpu_share": 0.10,
        },
        "icecast": {"listeners_held": 8000, "limited_by": "max_steps"},
        "ratio_edge_icecast": 0.2,
    }
    edge = by_what({"density": {"summary": summary}})[
        "listeners held per core, origin behind the nginx edge"
    ]
    assert edge.met is False
    assert "3,857" in edge.figure
    summary["icecast"]["listeners_held"] = 1500  # the budget is twice Icecast's
    edge = by_what({"density": {"summary": summary}})[
        "listeners held per core, origin behind the nginx edge"
    ]
    assert edge.met is None  # could hold more than Icecast did: undecided, not a miss


def test_cache_collapse_is_flat_only_within_the_factor_and_among_listeners_that_kept_up() -> None:
    def rows(large: float, stalls: int = 0) -> dict[str, Any]:
        return {
            "cache_collapse": {
                "rows": [
                    {
                        "listeners": 10_000,
                        "origin_rps": large,
                        "edge_rps": 60_000,
                        "stalls": stalls,
                    },
                    {"listeners": 1_000, "origin_rps": 11.0, "edge_rps": 6_000, "stalls": 0},
                    {"listeners": 100, "origin_rps": 10.0, "edge_rps": 600, "stalls": 0},
                ]
            }
        }

    what = "origin requests with an HTTP cache in front (nginx)"  # rows naming no edge: nginx
    assert by_what(rows(12.0))[what].met is True
    assert by_what(rows(40.0))[what].met is False
    behind = by_what(rows(40.0, stalls=900))[what]
    assert behind.met is True  # judged on 100 and 1,000; the 10,000 row is shown, not judged
    assert "fell behind live" in behind.figure
    # Only one audience kept up: not judged, but what was counted is shown.
    one = rows(40.0, stalls=900)
    one["cache_collapse"]["rows"][1]["stalls"] = 30
    alone = by_what(one)[what]
    assert alone.met is None
    assert alone.figure.startswith("10.0/s at 100; 11.0/s at 1,000 whose listeners fell behind")


def test_each_edge_is_judged_on_its_own_lateness_against_the_direct_listeners() -> None:
    def row(edge: str, late: float, vs: float | None = None) -> dict[str, Any]:
        extra = {} if vs is None else {"lateness_p95_vs_direct_s": vs}
        return {"edge": edge, "listeners": 100, "lateness_p95_s": late, "stalls": 0, **extra}

    results = {
        "cache_collapse": {
            "rows": [
                row("direct", 0.09),
                row("nginx", 0.55, 0.46),
                row("varnish", 0.10, 0.01),
            ]
        }
    }
    judged = by_what(results)
    assert judged["lateness behind the edge vs direct (nginx)"].met is False
    assert judged["lateness behind the edge vs direct (varnish)"].met is True
    assert "+10 ms" in judged["lateness behind the edge vs direct (varnish)"].figure


def test_join_storm_overload_must_be_polite_and_survived() -> None:
    def storm(errors: dict[str, int], alive: bool, answered: int = 5000) -> dict[str, Any]:
        row = {
            "target": "origin",
            "listeners": 5000,
            "answered_within_1s": answered,
            "joins_per_s": 600,
            "ttfa_p99_s": 6.0,
            "errors": errors,
            "server_alive_after": alive,
        }
        return {"join_storm": {"rows": [row]}}

    origin = (
        "join storm at one origin process (everything a listener's page does before it hears "
        "audio; issue 11)"
    )
    assert by_what(storm({"http_503": 10}, True))[origin].met is True
    assert by_what(storm({"http_503": 10}, True, answered=4999))[origin].met is False
    assert by_what(storm({"timeout": 1}, True))[origin].met is False
    assert by_what(storm({"http_503": 10}, True))["… beyond capacity"].met is True
    assert by_what(storm({"timeout": 1}, True))["… beyond capacity"].met is False
    assert by_what(storm({}, False))["… beyond capacity"].met is False


def test_a_storm_behind_an_edge_must_join_everyone_within_the_join_budget() -> None:
    def storm(joined: int, p99: float) -> dict[str, Any]:
        origin = {"target": "origin", "listeners": 10, "errors": {}, "server_alive_after": True}
        edge = {
            "target": "nginx edge",
            "listeners": 5000,
            "joined": joined,
            "joins_per_s": 4900,
            "ttfa_p50_s": 0.03,
            "ttfa_p99_s": p99,
            "answered_within_1s": joined,
            "errors": {},
            "server_alive_after": True,
        }
        return {"join_storm": {"rows": [origin, edge]}}

    what = "join storm behind the nginx edge (one origin process)"
    assert by_what(storm(5000, 0.2))[what].met is True
    assert by_what(storm(5000, 0.6))[what].met is False
    assert by_what(storm(4000, 0.2))[what].met is False


def test_signed_in_storm_is_met_only_when_every_arrival_was_answered_within_a_second() -> None:
    def storm(answered: int) -> dict[str, Any]:
        origin = {"target": "origin", "listeners": 10, "errors": {}, "server_alive_after": True}
        cluster = {
            "target": "cluster",
            "listeners": 5000,
            "answered_within_1s": answered,
            "first_word_p99_s": 0.9,
            "errors": {"http_503": 12},
            "server_alive_after": True,
        }
        return {"join_storm": {"rows": [origin, cluster]}}

    what = (
        "join storm of signed-in listeners (guest sign-in, Space, me, first audio) on two "
        "API processes behind the Varnish edge"
    )
    assert by_what(storm(5000))[what].met is True
    missed = by_what(storm(4999))[what]
    assert missed.met is False
    assert "4,999 of 5,000 within 1 s" in missed.figure
    assert what not in by_what({"join_storm": {"rows": []}})


def test_report_names_a_benchmark_that_did_not_finish(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "latency.json").write_text("{not json")
    results = load(tmp_path)
    runs = {"runs": [{"name": "latency", "status": "exit 1", "args": [], "wall_s": 3.0}]}
    text = render(results, runs, made=[])
    assert "did not finish: exit 1" in text
    assert "not measured" in text
    assert json.dumps(results)  # what it loaded can be written back out


def test_failover_misses_on_a_long_gap_or_any_failed_listener_request() -> None:
    what = "kill -9 of a Space's media node: silence at the listener"
    good = {
        "gap_p50_s": 2.9,
        "gap_p95_s": 3.1,
        "rounds": [{}] * 5,
        "listener_statuses": {"200": 99},
    }
    assert by_what({"failover": good})[what].met is True
    assert "3.10 s" in by_what({"failover": good})[what].figure
    slow = {**good, "gap_p95_s": 5.5}
    assert by_what({"failover": slow})[what].met is False
    refused = {**good, "listener_statuses": {"200": 90, "502": 3}}
    judged = by_what({"failover": refused})[what]
    assert judged.met is False
    assert "502: 3" in judged.figure


def test_a_drain_is_judged_apart_from_a_kill() -> None:
    what = "… a SIGTERM drain (one node restarted at a time)"
    figures = {"gap_p95_s": 3.0, "listener_statuses": {"200": 9}}
    assert by_what({"failover": figures})[what].met is None  # no drain rounds: not measured
    assert by_what({"failover": {**figures, "drain_gap_p95_s": 0.8}})[what].met is True
    assert by_what({"failover": {**figures, "drain_gap_p95_s": 2.4}})[what].met is False


def control_cost(**calls: tuple[float, bool]) -> dict[str, Any]:
    """A control_cost result on both databases; `calls` maps a call to (ms per request, valid)."""
    from bench.control_cost import CALLS, summarise

    rows = [
        {
            "call": c.key,
            "label": c.label,
            "goal_ms": c.goal_ms,
            "ms_per_request": calls.get(c.key, (0.1, True))[0],
            "valid": calls.get(c.key, (0.1, True))[1],
        }
        for c in CALLS
    ]
    reference = {"constant": {"ms_per_request": 0.1}, "query": {"ms_per_request": 0.4}}
    databases = {db: {"rows": rows, "reference": reference} for db in ("sqlite", "postgresql")}
    return {"control_cost": {"databases": databases, "summary": summarise(databases)}}


def test_control_cost_judges_each_goal_row_on_its_worst_validly_measured_call() -> None:
    read = "server CPU per authenticated read (/me, Space lookup)"
    judged = by_what(control_cost())
    assert all(judged[what].met is True for what in judged if what.startswith("server CPU per"))
    slow = by_what(control_cost(me=(8.3, True)))[read]
    assert slow.met is False
    assert "me 8.30 ms" in slow.figure
    assert "reference 0.40 ms" in slow.figure
    # A call answered mostly with 429s measured a refusal, not the call: not judged either way...
    refused = by_what(control_cost(me=(0.2, False)))[read]
    assert refused.met is None
    assert "not valid: me" in refused.figure
    # ... unless another call of the same row was validly measured over the goal.
    assert by_what(control_cost(me=(0.2, False), space=(12.8, True)))[read].met is False
    stage = by_what(control_cost(stage=(2.9, True)))[
        "server CPU per stage command (host mutes/unmutes themself)"
    ]
    assert stage.met is True


def test_control_cost_needs_both_databases_and_renders_a_table_per_database() -> None:
    one = control_cost(health=(0.12, True))
    del one["control_cost"]["databases"]["postgresql"]
    del one["control_cost"]["summary"]["postgresql"]
    cheap = by_what(one)["server CPU per health check and cached snapshot"]
    assert cheap.met is None  # met on SQLite, PostgreSQL not measured
    assert "PostgreSQL: not measured" in cheap.figure
    runs = {"runs": [{"name": "control_cost", "status": "ok", "args": [], "wall_s": 60.0}]}
    text = render(one, runs, made=[])
    assert "**SQLite**" in text
    assert "**PostgreSQL**" not in text
    assert "| GET /api/health | – | 0/0/0 | 0.12 ms | 0.15 ms | – |" in text


def test_an_only_run_replaces_its_modules_and_keeps_the_others_with_their_provenance() -> None:
    from bench.run import merged_runs

    previous = [
        {"name": "latency", "status": "ok", "finished": "09:00", "commit": "aaa"},
        {"name": "density", "status": "ok", "finished": "09:10", "commit": "aaa"},
    ]
    previous = [{**run, "args": [], "wall_s": 1.0} for run in previous]
    new = [{"name": "density", "status": "ok", "finished": "11:00", "args": [], "wall_s": 2.0}]
    runs = merged_runs(previous, new, "bbb")
    assert [(r["name"], r["commit"], r["finished"]) for r in runs] == [
        ("latency", "aaa", "09:00"),
        ("density", "bbb", "11:00"),
    ]
    text = render({}, {"runs": runs, "command": "scripts/bench.sh --only density"}, made=[])
    assert "some benchmarks again later with `--only`" in text
    assert "commit bbb" in text
    assert "commit aaa" in text


def test_the_captions_section_shows_delay_and_cpu_per_space() -> None:
    results = {
        "captions": {
            "summary": {
                "spaces": 1,
                "seconds": 40,
                "cues": 12,
                "cpu_per_captioned_space_share": 0.126,
                "delay_from_start_p50_s": 5.0,
                "delay_from_start_p95_s": 6.2,
                "delay_from_end_p50_s": 2.1,
                "delay_from_end_p95_s": 3.4,
            }
        }
    }
    runs = {"runs": [{"name": "captions", "args": [], "status": "ok", "wall_s": 60}]}
    text = render(results, runs, [])
    section = text[text.index("## Live captions") :]
    assert "2.10 s" in section
    assert "12.6 %" in section


def soak_rows(rss: list[float]) -> list[dict[str, Any]]:
    return [
        {
            "at_s": 60.0 * (i + 1),
            "rss_mb": value,
            "fds": 600,
            "cpu_core_share": 0.5,
            "lateness_p50_s": 0.5,
            "lateness_p95_s": 0.9,
            "stalls": 0,
            "errors": 0,
            "ticks_skipped": 0.0,
            "load_1m": 3.0,
        }
        for i, value in enumerate(rss)
    ]


def test_a_soak_section_calls_growth_past_the_tolerance_growing_and_the_rest_flat() -> None:
    rows = soak_rows([200, 200, 201, 202, 230, 240, 250])
    soak = {
        "minutes": 7,
        "speakers": 5,
        "listeners": 300,
        "interval_s": 60,
        "rows": rows,
        "last_over_first_third": {"rss_mb": 245 / 200.5, "fds": 1.0, "lateness_p95_s": 1.0},
    }
    text = "\n".join(render_section_for({"soak": soak}))
    assert "| server memory (RSS) | 200.5 MB | 245.0 MB | 1.222 | **growing** |" in text
    assert "| server file descriptors | 600 | 600 | 1.000 | flat |" in text
    assert "load average was 3.0" in text
    assert "bench.soak --minutes 7 --speakers 5 --listeners 300 --interval 60" in text


def render_section_for(results: dict[str, Any]) -> list[str]:
    return _render_section("soak", results, None, [])


def test_one_section_is_replaced_in_place_and_the_others_are_left_as_they_were() -> None:
    report = "# r\n\n## A\n\nold a\n\n## Soak\n\nold soak\n\n## C\n\nc\n"
    assert replace_section(report, "## Soak", ["## Soak", "", "new"]) == (
        "# r\n\n## A\n\nold a\n\n## Soak\n\nnew\n\n## C\n\nc\n"
    )
    assert replace_section("# r\n\n## A\n\na\n", "## Soak", ["## Soak", "", "new"]) == (
        "# r\n\n## A\n\na\n\n## Soak\n\nnew\n"
    )


def test_a_starved_minute_and_a_last_row_cut_short_do_not_make_a_soak_grow() -> None:
    rows = soak_rows([200.0] * 16)
    for row, fds in zip(rows, [640, 200, 630, 250] + [634] * 12, strict=True):
        row["fds"] = fds  # two minutes when starved listeners dropped their connections
    rows.append({**rows[-1], "at_s": rows[-1]["at_s"] + 13, "fds": 33})  # the end, 13 s in
    assert soak_ratio(rows, "fds", 60) == pytest.approx(634 / 630)
    assert soak_ratio(rows, "rss_mb", 60) == 1.0
    leaking = soak_rows([200.0 + 5 * i for i in range(10)])
    assert (soak_ratio(leaking, "rss_mb", 60) or 0) > 1 + SOAK_TOLERANCE


def test_the_join_storm_plot_draws_every_target_including_the_cluster(tmp_path: Path) -> None:
    from bench import plots

    rows = [
        {"target": name, "joins_per_s": rate, "ttfa_p99_s": 0.5}
        for name, rate in (("origin", 362), ("edge", 2455), ("cluster", 65), ("unnamed", 1))
    ]
    made = plots.draw({"join_storm": {"rows": rows}}, tmp_path, only=["join_storm.png"])
    assert made == ["join_storm.png"]
    assert (tmp_path / "join_storm.png").stat().st_size > 0


def test_control_cost_judges_the_live_calls_on_redis_against_their_own_goal() -> None:
    from bench.control_cost import CALLS, summarise

    def with_redis(hand_ms: float) -> dict[str, Any]:
        results = control_cost()
        rows = [
            {"call": c.key, "label": c.label, "goal_ms": 1.0, "valid": True}
            | {"ms_per_request": hand_ms if c.key == "hand" else 0.9}
            for c in CALLS
            if c.group == "live"
        ]
        databases = results["control_cost"]["databases"]
        databases["redis"] = {"rows": rows, "reference": databases["sqlite"]["reference"]}
        results["control_cost"]["summary"] = summarise(databases)
        return results

    what = "server CPU per reaction, hand, presence (live state on Redis, as in a cluster)"
    assert what not in by_what(control_cost())  # not measured: no row
    met = by_what(with_redis(0.95))[what]
    assert met.met is True
    assert "hand 0.95 ms" in met.figure
    assert by_what(with_redis(1.16))[what].met is False


def test_the_machine_section_gives_this_machines_speed_from_the_same_run() -> None:
    results = control_cost(health=(0.12, True))
    reference = results["control_cost"]["summary"]["sqlite"]["reference_query_ms"]
    text = render(results, {"runs": []}, made=[])
    assert f"costs {reference:.2f} ms of CPU here" in text
    assert "Speed:" not in render({}, {"runs": []}, made=[])  # no control cost run: no yardstick


def test_the_load_generator_is_judged_on_the_listeners_it_held() -> None:
    what = "listeners the load generator holds on this machine"
    steps = [
        {"listeners": 10_000, "bulk_cpu_share": 0.2, "cpu_us_per_listener_s": 20.0},
        {"listeners": 22_000, "bulk_cpu_share": 0.36, "cpu_us_per_listener_s": 16.7},
    ]
    results: dict[str, Any] = {"generator_cost": {"bulk": {"steps": steps, "held": 22_000}}}
    held = by_what(results)[what]
    assert held.met is True
    assert "22,000" in held.figure
    assert "36.0 %" in held.figure
    results["generator_cost"]["bulk"]["held"] = 10_000  # the last step failed
    assert by_what(results)[what].met is False
    assert by_what({})[what].met is None
    table = "\n".join(_section_generator(results))
    assert "| 22,000 | 36.0 % | 16.7 µs |" in table
