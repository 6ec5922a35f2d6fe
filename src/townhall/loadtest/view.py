"""The live terminal view of a rehearsal (rich): one table, redrawn every second."""

from __future__ import annotations

from rich.table import Table

from townhall.loadtest.audience import Sample
from townhall.loadtest.rehearsal import Plan, Second


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def table(plan: Plan, second: Second | None, sample: Sample | None) -> Table:
    """What an operator watches: are the listeners in, do they hear it on time, what does the
    server answer, and is the generator itself the limit."""
    grid = Table(title=f"townhall load test · {plan.url}", show_header=False, expand=False)
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    target = plan.listeners + plan.storm
    if second is None or sample is None:
        grid.add_row("starting", f"{plan.listeners:,} listeners over {plan.ramp_s:g} s")
        return grid
    grid.add_row("time", f"{second.t} / {plan.duration_s:g} s")
    grid.add_row(
        "listeners playing / arrived / target",
        f"{second.playing:,} / {second.arrived:,} / {target:,}",
    )
    grid.add_row("joins this second", f"{second.joins:,}")
    grid.add_row(
        "time to first audio p50 / p99",
        f"{_ms(second.first_audio_p50_s)} / {_ms(second.first_audio_p99_s)}",
    )
    grid.add_row(
        "behind live p50 / p95", f"{_ms(second.lateness_p50_s)} / {_ms(second.lateness_p95_s)}"
    )
    grid.add_row("stalled parts (total)", f"{sample.stalls:,}")
    grid.add_row("requests this second", f"{second.requests:,}")
    statuses: dict[str, int] = {}
    for key, count in sample.answers.items():
        status = key.partition(" ")[2]
        statuses[status] = statuses.get(status, 0) + count
    grid.add_row("answers", "  ".join(f"{k}: {v:,}" for k, v in sorted(statuses.items())))
    grid.add_row("Retry-After honoured", f"{sample.retry_after_honoured:,}")
    if plan.reactions_per_s or plan.hands_per_s:
        grid.add_row("reactions / hands", f"{sample.reactions:,} / {sample.hands:,}")
    busy = second.generator_cpu
    grid.add_row(
        "generator CPU",
        f"[red]{busy * 100:.0f} % (saturated)[/red]" if busy > 0.9 else f"{busy * 100:.0f} %",
    )
    return grid
