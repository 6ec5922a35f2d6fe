"""Stage cost: CPU and memory of the server process holding one Space with 1, 5 and 13 speakers.

Speakers are `townhall speak` bots in their own processes, each publishing a different tone, each
receiving its mix-minus. Printed side by side with the same server holding an idle Space (the
reference measured in this run) and with the budget from the spec (a full stage ≤ 60 % of a core).

    .venv/bin/python -m bench.stage_cost [--seconds 15] [--counts 1,5,13]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from townhall.harness import Proc, cpu_seconds, rss_bytes, start_server, start_speaker, wait_until

BUDGET_FULL_STAGE = 0.60  # of one core, 13 speakers


def measure(pid: int, seconds: float) -> tuple[float, int]:
    """Share of one core the process used over `seconds` of wall clock, and its RSS at the end."""
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        time.sleep(
            min(0.5, deadline - time.monotonic())
        )  # measuring an interval, not synchronising
    return (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0), rss_bytes(pid)


def run(counts: list[int], seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp))
        pid = server.proc.popen.pid
        try:
            space = server.create_space("Stage cost")
            time.sleep(2)  # let the idle Space settle before the reference measurement
            idle_cpu, idle_rss = measure(pid, seconds)
            rows = [
                {
                    "speakers": 0,
                    "cpu_core_share": idle_cpu,
                    "rss_mb": idle_rss / 2**20,
                    "bot_cpu": 0.0,
                }
            ]
            for count in counts:
                if count > 1:
                    space = server.create_space(f"Stage cost {count}")  # a fresh stage each time
                bots: list[Proc] = []
                for i in range(count):
                    # A full stage: the host, 2 co-hosts, 10 speakers (the default limits).
                    role = "cohost" if i in (1, 2) else "speaker"
                    where = space.host_bot_args() if i == 0 else [server.invite(space, role)]
                    bots.append(start_speaker(*where, "--tone", str(300 + 40 * i)))
                for bot in bots:
                    wait_until(
                        lambda b=bot: b.saw("connected") or b.popen.poll() is not None,
                        60,
                        "a bot to connect",
                    )  # type: ignore[misc]
                    if bot.popen.poll() is not None:
                        raise RuntimeError(f"speaker bot failed:\n{bot.output()}")
                time.sleep(3)  # warm-up: jitter buffers filled, encoders running
                bot_cpu0 = sum(cpu_seconds(b.popen.pid) for b in bots)
                t0 = time.monotonic()
                cpu, rss = measure(pid, seconds)
                bot_cpu = (sum(cpu_seconds(b.popen.pid) for b in bots) - bot_cpu0) / (
                    time.monotonic() - t0
                )
                rows.append(
                    {
                        "speakers": count,
                        "cpu_core_share": cpu,
                        "rss_mb": rss / 2**20,
                        "bot_cpu": bot_cpu,
                    }
                )
                for bot in bots:
                    bot.stop()
        finally:
            server.proc.stop()
    return {"seconds": seconds, "budget_full_stage": BUDGET_FULL_STAGE, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--counts", default="1,5,13")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    result = run([int(c) for c in args.counts.split(",")], args.seconds)
    print(
        f"{'speakers':>8} {'server CPU (% core)':>20} {'server RSS MB':>14} {'all bots CPU (% core)':>22}"
    )
    for row in result["rows"]:  # type: ignore[attr-defined]
        print(
            f"{row['speakers']:>8} {row['cpu_core_share'] * 100:>19.1f}% {row['rss_mb']:>14.1f} {row['bot_cpu'] * 100:>21.1f}%"
        )
    print(
        f"budget: a full stage (13) ≤ {BUDGET_FULL_STAGE * 100:.0f}% of one core; first row is the idle-Space reference"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
