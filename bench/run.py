"""Runs every benchmark once, in order, each in its own process, then writes the report.

One command (after `scripts/setup.sh --bench`, which `scripts/bench.sh` runs first):

    .venv/bin/python -m bench.run [--only latency,density] [--quick] [--out bench]

Each module runs as `python -m bench.<name> --json …` so that one that crashes or overruns its time
limit costs its own section, not the report: its section then says what happened. The modules run
one after another, never side by side: every figure is a measurement of a machine doing only that.
Printed tables go to `<out>/results/<name>.txt`, raw figures to `<out>/results/<name>.json`; the
report (`<out>/report.md`, `<out>/report.json`, `<out>/plots/*.png`) is built from those files by
`bench.report`, which can also rebuild it alone: `.venv/bin/python -m bench.report`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import machine, report

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Module:
    """One benchmark: its arguments for the full run and for a smoke run, and its time limit."""

    name: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    limit_s: float


SUITE: tuple[Module, ...] = (
    Module("latency", ("--seconds", "40"), ("--seconds", "10"), 300),
    Module("stage_cost", (), ("--seconds", "4", "--counts", "1,5"), 300),
    Module(
        "spaces_per_core",
        (),
        ("--idle", "4", "--one-voice", "1", "--steps", "10", "--hold", "3"),
        1200,
    ),
    Module("density", (), ("--max-listeners", "200", "--hold", "4"), 1200),
    Module(
        "generator_cost",
        ("--bulk-steps", "10000,16000,22000", "--window", "10"),
        ("--bulk-steps", "1000", "--window", "3"),
        600,
    ),
    Module("cache_collapse", (), ("--scales", "100,400", "--window", "6"), 600),
    Module(
        "join_storm",
        ("--listeners", "5000", "--existing", "50", "--targets", "origin,edge,cluster"),
        ("--listeners", "200", "--existing", "10", "--targets", "origin,edge,cluster"),
        600,
    ),
    Module("failover", ("--rounds", "5", "--drains", "3"), ("--rounds", "2", "--drains", "1"), 300),
    Module("captions", ("--seconds", "40"), ("--seconds", "12"), 600),
    Module(
        "control_cost",
        ("--seconds", "5"),
        ("--seconds", "1.5", "--databases", "sqlite", "--guests", "100"),
        900,
    ),
)


def run_module(module: Module, results: Path, quick: bool) -> dict[str, object]:
    """Run one benchmark; returns how it went (the figures are in its JSON file)."""
    out_json = results / f"{module.name}.json"
    out_json.unlink(missing_ok=True)
    args = module.quick if quick else module.full
    load_before = os.getloadavg()[0]
    command = [sys.executable, "-m", f"bench.{module.name}", *args, "--json", str(out_json)]
    print(f"== bench.{module.name} {' '.join(args)}", flush=True)
    began = time.monotonic()
    with (results / f"{module.name}.txt").open("w") as log:
        try:
            proc = subprocess.run(
                command,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=module.limit_s,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                check=False,
            )
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            status = f"over its {module.limit_s:.0f} s limit"
    wall = time.monotonic() - began
    if status == "ok" and not out_json.exists():
        status = "wrote no results"
    print((results / f"{module.name}.txt").read_text()[-4000:], flush=True)
    print(f"== bench.{module.name}: {status} in {wall:.0f} s", flush=True)
    return {
        "name": module.name,
        "args": list(args),
        "status": status,
        "wall_s": wall,
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        # Other work on the machine shows here (the modules themselves load it too): a figure
        # measured at a high load is a figure of a busy machine, and the report says so.
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }


def merged_runs(
    previous: list[dict[str, object]], new: list[dict[str, object]], commit: str
) -> list[dict[str, object]]:
    """This run's modules (tagged with the commit they measured) in place of the same modules of
    the last record, the others kept as they were: a `--only` run updates its sections without
    passing off the rest as its own."""
    fresh = {str(run["name"]): {**run, "commit": commit} for run in new}
    kept = [run for run in previous if run.get("name") not in fresh]
    order = [m.name for m in SUITE]
    return sorted(
        [*kept, *fresh.values()],
        key=lambda run: order.index(str(run["name"])) if run["name"] in order else len(order),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    names = [m.name for m in SUITE]
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(names)}")
    parser.add_argument("--quick", action="store_true", help="small smoke run, not a report")
    parser.add_argument("--out", default=str(ROOT / "bench"), help="where the report goes")
    args = parser.parse_args()
    chosen = [n for n in (args.only or ",".join(names)).split(",") if n]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {names}")
    out = Path(args.out)
    results = out / "results"
    results.mkdir(parents=True, exist_ok=True)
    described = machine.describe()
    began = time.monotonic()
    runs = [run_module(m, results, args.quick) for m in SUITE if m.name in chosen]
    total = time.monotonic() - began
    command = "scripts/bench.sh" + (" --quick" if args.quick else "")
    if args.only:
        command += f" --only {args.only}"
    record = results / "runs.json"
    previous: list[dict[str, object]] = []
    if args.only and record.exists():
        try:
            previous = list(json.loads(record.read_text()).get("runs", []))
        except ValueError:
            previous = []
    record.write_text(
        json.dumps(
            {
                "runs": merged_runs(previous, runs, str(described.get("townhall_commit", "?"))),
                "wall_s": total,
                "command": command,
                "quick": args.quick,
                "machine": described,
                "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            },
            indent=2,
        )
    )
    report.build(out)
    print(f"report: {out / 'report.md'} ({total / 60:.1f} min)")
    if any(r["status"] != "ok" for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
