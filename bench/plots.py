"""The report's figures, drawn with matplotlib from the run's own results (no display needed).

Each plot is drawn only when its benchmark left the figures it needs; a missing benchmark costs
its plot, not the report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; must precede pyplot

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

Results = dict[str, Any]
COLOURS = {
    "origin": "#c0392b",
    "edge": "#2471a3",
    "nginx edge": "#2471a3",
    "varnish": "#1e8449",
    "varnish edge": "#1e8449",
    "icecast": "#7d3c98",
    "cluster": "#b9770e",
}


def _cdf(ax: Axes, values: list[float], label: str) -> None:
    if not values:
        return
    ordered = sorted(values)
    n = len(ordered)
    ax.step(ordered, [(i + 1) / n for i in range(n)], where="post", label=f"{label} (n={n})")


def density_steps(r: Results) -> dict[str, list[dict[str, Any]]]:
    """Per target, its ramp steps (the bench may list them per target or tagged)."""
    steps = (r.get("density") or {}).get("steps")
    if isinstance(steps, dict):
        return {str(k): list(v) for k, v in steps.items()}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in steps or []:
        grouped.setdefault(str(row.get("target", "?")), []).append(row)
    return grouped


def _latency(r: Results) -> Figure | None:
    data = r.get("latency") or {}
    if not any(data.get(k) for k in ("mouth_to_ear_s", "hlsjs_mouth_to_ear_s")):
        return None
    fig, (ear, stage) = plt.subplots(1, 2, figsize=(11, 4))
    _cdf(ear, data.get("hlsjs_mouth_to_ear_s") or [], "hls.js in Chromium")
    _cdf(ear, data.get("mouth_to_ear_s") or [], "Python LL-HLS player")
    ear.axvline(2.0, color="grey", linestyle="--", label="budget p95 2.0 s")
    ear.axvline(1.2, color="grey", linestyle=":", label="aim 1.2 s")
    ear.set(title="speaker mouth → listener ear", xlabel="seconds", ylabel="share of clicks")
    ear.legend(fontsize=8)
    _cdf(stage, [v * 1000 for v in data.get("stage_to_stage_s") or []], "via the server")
    _cdf(stage, [v * 1000 for v in data.get("stage_direct_s") or []], "direct peer to peer")
    stage.set(title="stage → stage (WebRTC)", xlabel="milliseconds", ylabel="share of clicks")
    stage.legend(fontsize=8)
    return fig


def _stage_cost(r: Results) -> Figure | None:
    rows = (r.get("stage_cost") or {}).get("rows") or []
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels = [str(row["speakers"]) for row in rows]
    categories: list[str] = []
    for row in rows:
        categories += [c for c in row.get("breakdown") or {} if c not in categories]
    if categories:
        bottom = [0.0] * len(rows)
        for name in categories:
            heights = [(row.get("breakdown") or {}).get(name, 0.0) * 100 for row in rows]
            ax.bar(labels, heights, bottom=bottom, label=name)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    else:
        ax.bar(labels, [row["cpu_core_share"] * 100 for row in rows], label="server CPU")
    ax.axhline(60, color="grey", linestyle="--", label="budget: full stage ≤ 60 %")
    ax.set(
        title="server CPU holding one Space",
        xlabel="speakers on stage (0 = idle Space)",
        ylabel="% of one core",
    )
    ax.legend(fontsize=8)
    return fig


def _density(r: Results) -> Figure | None:
    steps = density_steps(r)
    if not steps:
        return None
    fig, (cpu, mem) = plt.subplots(1, 2, figsize=(11, 4))
    for target, rows in steps.items():
        xs = [row["listeners"] for row in rows]
        colour = COLOURS.get(target)
        cpu.plot(
            xs, [row["server_cpu_share"] * 100 for row in rows], "o-", label=target, color=colour
        )
        mem.plot(
            xs, [row["server_rss_bytes"] / 2**20 for row in rows], "o-", label=target, color=colour
        )
        bad = [row for row in rows if row.get("stalls") or row.get("errors")]
        cpu.plot(
            [row["listeners"] for row in bad],
            [row["server_cpu_share"] * 100 for row in bad],
            "x",
            color="black",
            markersize=10,
        )
    cpu.set(
        title="server CPU (one core) vs listeners; × = a listener stalled",
        xlabel="listeners",
        ylabel="% of one core",
    )
    mem.set(title="server memory vs listeners", xlabel="listeners", ylabel="RSS, MiB")
    for ax in (cpu, mem):
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    return fig


def _cache_collapse(r: Results) -> Figure | None:
    rows = [
        row
        for row in (r.get("cache_collapse") or {}).get("rows") or []
        if row.get("edge", "nginx") != "direct"
    ]
    if not rows:
        return None
    rows.sort(key=lambda x: (x.get("edge", "nginx"), x["listeners"]))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels = [f"{row.get('edge', 'nginx')}\n{row['listeners']:,}" for row in rows]
    xs = list(range(len(rows)))
    ax.bar([x - 0.2 for x in xs], [row["edge_rps"] for row in rows], 0.4, label="edge")
    ax.bar([x + 0.2 for x in xs], [row["origin_rps"] for row in rows], 0.4, label="origin")
    ax.set_xticks(xs, labels)
    ax.set_yscale("log")
    ax.set(
        title="requests per second behind the edge", xlabel="edge, listeners", ylabel="requests/s"
    )
    ax.legend(fontsize=8)
    return fig


def _join_storm(r: Results) -> Figure | None:
    rows = (r.get("join_storm") or {}).get("rows") or []
    if not rows:
        return None
    fig, (rate, p99) = plt.subplots(1, 2, figsize=(10, 4))
    names = [row["target"] for row in rows]
    rate.bar(
        names, [row["joins_per_s"] for row in rows], color=[COLOURS.get(n, "grey") for n in names]
    )
    rate.axhline(5000, color="grey", linestyle="--", label="budget 5,000/s")
    rate.set(title="joins absorbed per second", ylabel="joins/s")
    rate.legend(fontsize=8)
    p99.bar(
        names,
        [(row.get("ttfa_p99_s") or 0) * 1000 for row in rows],
        color=[COLOURS.get(n, "grey") for n in names],
    )
    p99.axhline(250, color="grey", linestyle="--", label="budget 250 ms")
    p99.set(title="time to first audio, p99", ylabel="ms")
    p99.legend(fontsize=8)
    return fig


def _soak(r: Results) -> Figure | None:
    rows = (r.get("soak") or {}).get("rows") or []
    if not rows:
        return None
    minutes = [row["at_s"] / 60 for row in rows]
    fig, (memory, fds, late) = plt.subplots(1, 3, figsize=(13, 3.8))
    memory.plot(minutes, [row["rss_mb"] for row in rows], color=COLOURS["origin"])
    memory.set(title="server RSS", xlabel="minutes", ylabel="MB")
    memory.set_ylim(bottom=0)
    fds.plot(minutes, [row["fds"] for row in rows], color=COLOURS["edge"])
    fds.set(title="server file descriptors", xlabel="minutes", ylabel="open")
    fds.set_ylim(bottom=0)

    def seconds(key: str) -> list[float]:
        return [float("nan") if row.get(key) is None else row[key] for row in rows]

    late.plot(minutes, seconds("lateness_p50_s"), label="lateness p50")
    late.plot(minutes, seconds("lateness_p95_s"), label="lateness p95")
    late.set(title="listener lateness (and machine load)", xlabel="minutes", ylabel="seconds")
    late.set_ylim(bottom=0)
    load = late.twinx()
    load.plot(minutes, seconds("load_1m"), color="grey", linestyle=":", label="load average")
    load.set_ylabel("1-minute load average")
    load.set_ylim(bottom=0)
    handles = late.get_legend_handles_labels()[0] + load.get_legend_handles_labels()[0]
    late.legend(handles=handles, fontsize=8, loc="upper left")
    return fig


PLOTS: dict[str, Callable[[Results], Figure | None]] = {
    "latency.png": _latency,
    "stage_cost.png": _stage_cost,
    "density.png": _density,
    "cache_collapse.png": _cache_collapse,
    "join_storm.png": _join_storm,
    "soak.png": _soak,
}


def draw(results: Results, folder: Path, only: list[str] | None = None) -> list[str]:
    """Draw every plot the results allow (or those named in `only`) into `folder`; returns the
    file names made."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name, plot in PLOTS.items():
        if only is not None and name not in only:
            continue
        (folder / name).unlink(missing_ok=True)
        figure = plot(results)
        if figure is None:
            continue
        figure.tight_layout()
        figure.savefig(folder / name, dpi=110)
        plt.close(figure)
        made.append(name)
    return made
