"""The rehearsal written down: Markdown for people, JSON for tools, a PNG timeline for the eye."""

from __future__ import annotations

import json
from pathlib import Path

from townhall.loadtest.rehearsal import Result


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def markdown(result: Result, timeline_png: str | None) -> str:
    plan, totals, verdict = result.plan, result.totals, result.verdict
    lines = [
        "# townhall load test",
        "",
        f"**{verdict.summary}**",
        "",
        f"Target: `{plan.url}` · {plan.listeners:,} listeners over {plan.ramp_s:g} s"
        + (f", a storm of {plan.storm:,} at {plan.storm_at_s:g} s" if plan.storm else "")
        + f", {plan.duration_s:g} s in all"
        + (f", {plan.reactions_per_s:g} reactions/s" if plan.reactions_per_s else "")
        + (f", {plan.hands_per_s:g} hands/s" if plan.hands_per_s else "")
        + (f", {plan.speakers} speaker bots" if plan.speakers else "")
        + ".",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| listeners arrived / heard audio | {totals['arrived']:,} / "
        f"{totals['arrived'] - totals['listeners_without_audio']:,} |",
        f"| time to first audio p50 / p99 | {_ms(totals['first_audio_p50_s'])} / "
        f"{_ms(totals['first_audio_p99_s'])} |",
        f"| lateness behind live p50 / p95 | {_ms(totals['lateness_p50_s'])} / "
        f"{_ms(totals['lateness_p95_s'])} (PART-HOLD-BACK {result.part_hold_back_s:g} s) |",
        f"| stalled parts | {totals['stalls']:,} of {totals['parts']:,} |",
        f"| requests (per listener per second, steady) | {totals['requests']:,} "
        f"({totals['requests_per_listener_s']}) |",
        f"| refusals (429/503), Retry-After honoured | {totals['refused']:,}, "
        f"{totals['retry_after_honoured']:,} |",
        f"| reactions / hands sent | {totals['reactions']:,} / {totals['hands']:,} |",
        f"| load generator: processes, busiest second | {totals['generator_processes']}, "
        f"{totals['generator_cpu_max'] * 100:.0f} % of its cores |",
        "",
    ]
    if verdict.bent_at_s is not None or verdict.reasons:
        lines += ["## Where it bent", ""] + [f"- {reason}" for reason in verdict.reasons] + [""]
    lines += [
        "## What the server answered",
        "",
        "| request | answer | count |",
        "| --- | --- | --- |",
    ]
    for key, count in sorted(result.answers.items()):
        kind, _, answer = key.partition(" ")
        lines.append(f"| {kind} | {answer} | {count:,} |")
    lines.append("")
    if timeline_png:
        lines += ["## Timeline", "", f"![timeline]({timeline_png})", ""]
    return "\n".join(lines)


def timeline_png(result: Result, path: Path) -> bool:
    """Listeners playing, lateness p50/p95 and failed requests per second; False without
    matplotlib (the report then says so instead of showing the picture)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t = [s.t for s in result.seconds]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    top.plot(t, [s.arrived for s in result.seconds], label="arrived", color="0.6")
    top.plot(t, [s.playing for s in result.seconds], label="playing")
    top.set_ylabel("listeners")
    top.legend(loc="upper left")
    for name, label in (("lateness_p50_s", "p50"), ("lateness_p95_s", "p95")):
        values = [getattr(s, name) for s in result.seconds]
        middle.plot(t, [v if v is not None else float("nan") for v in values], label=label)
    middle.axhline(result.part_hold_back_s, color="red", linestyle=":", label="PART-HOLD-BACK")
    middle.set_ylabel("behind live (s)")
    middle.legend(loc="upper left")
    bottom.bar(t, [s.failed - s.refused for s in result.seconds], label="failed", color="red")
    bottom.bar(t, [s.refused for s in result.seconds], label="refused (429/503)", color="orange")
    bottom.set_ylabel("requests")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper left")
    fig.suptitle(result.verdict.summary[:100], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write(result: Result, out: Path) -> list[Path]:
    """Write report.md, report.json and (with matplotlib) timeline.png into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    png = out / "timeline.png"
    drawn = timeline_png(result, png)
    (out / "report.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    (out / "report.md").write_text(markdown(result, png.name if drawn else None))
    return [out / "report.md", out / "report.json"] + ([png] if drawn else [])
