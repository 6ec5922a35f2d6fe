"""Stage cost: CPU and memory of the server process holding one Space with 1, 5 and 13 speakers,
and where that CPU goes (ingest, mix, encode, package, mix-minus return, HTTP, other).

Speakers are `townhall speak` bots in their own processes, each publishing a different tone, each
receiving its mix-minus. Printed side by side with the same server holding an idle Space (the
reference measured in this run) and with the budget from the spec (a full stage ≤ 60 % of a core).
Each row is a fresh Space; the previous one is ended first, so only one Space's clock runs.

Each row has two back-to-back windows of the same length once the stage has settled (every bot is
heard in the mix, by the Space's speaking indicators; the idle Space has published parts):

1. the measurement: the server's CPU time (/proc utime+stime) over the wall clock, and its RSS;
   nothing else attached, so the headline figure carries no profiler overhead;
2. the profile: py-spy samples the server's on-CPU Python stacks (see `bench.stage_profile`), and
   the sample proportions split the first window's CPU share into stages, so the breakdown sums to
   the measured total. The server's CPU in this window is reported too (`cpu_core_share_profiled`):
   its difference from the first window is py-spy's effect plus noise.

    .venv/bin/python -m bench.stage_cost [--seconds 12] [--counts 1,5,13] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import stage_profile
from townhall.harness import (
    HostedSpace,
    Proc,
    Server,
    cpu_seconds,
    rss_bytes,
    start_server,
    start_speaker,
    wait_connected,
    wait_until,
)

BUDGET_FULL_STAGE = 0.60  # of one core, 13 speakers
FULL_STAGE = 13
SETTLE_TIMEOUT = 90.0  # 13 bots starting on 2 busy cores take a while


def cpu_share(pids: list[int], seconds: float) -> float:
    """Share of one core the processes used together over `seconds` of wall clock."""
    cpu0, t0 = sum(cpu_seconds(p) for p in pids), time.monotonic()
    deadline = t0 + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.5, left))  # measuring an interval, not synchronising
    return (sum(cpu_seconds(p) for p in pids) - cpu0) / (time.monotonic() - t0)


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


def parts_published(space: HostedSpace) -> int:
    """LL-HLS parts in the Space's media playlist right now (0 if it cannot be read). The link is
    the multivariant playlist; its first URI line names the media playlist."""
    index = _get(space.playlist_url)
    if index is None or index.status_code != 200:
        return 0
    uris = [line for line in index.text.splitlines() if line and not line.startswith("#")]
    if not uris:
        return 0
    media = _get(str(httpx.URL(space.playlist_url).join(uris[0])))
    if media is None or media.status_code != 200:
        return 0
    return media.text.count("#EXT-X-PART:")


def speaking_count(server: Server, space: HostedSpace) -> int:
    """Stage members the Space's speaking indicators show as heard in the mix right now."""
    response = _get(f"{server.url}/api/spaces/{space.id}/snapshot")
    if response is None or response.status_code != 200:
        return 0
    return sum(1 for member in response.json()["stage"] if member.get("speaking"))


def start_stage(server: Server, space: HostedSpace, count: int) -> list[Proc]:
    """`count` speaker bots on `space`, each connected and heard in the mix."""
    bots: list[Proc] = []
    for i in range(count):
        # A full stage: the host, 2 co-hosts, 10 speakers (the default limits).
        role = "cohost" if i in (1, 2) else "speaker"
        where = space.host_bot_args() if i == 0 else [server.invite(space, role)]
        bots.append(start_speaker(*where, "--tone", str(300 + 40 * i)))
    for bot in bots:
        wait_connected(bot, SETTLE_TIMEOUT)
    # Settled when every bot's tone comes out of its jitter buffer into the mix (so the decoders,
    # jitter buffers and all the mix-minus encoders are running), not after a fixed sleep.
    wait_until(
        lambda: speaking_count(server, space) >= count,
        SETTLE_TIMEOUT,
        f"all {count} speakers to be heard in the mix",
        interval=0.25,
    )
    return bots


def measure_row(
    server: Server, count: int, bots: list[Proc], seconds: float, profile: bool
) -> tuple[dict[str, Any], stage_profile.Profile | None]:
    pid = server.proc.popen.pid
    bot_cpu0, t0 = sum(cpu_seconds(b.popen.pid) for b in bots), time.monotonic()
    cpu = cpu_share([pid], seconds)
    bot_cpu = (sum(cpu_seconds(b.popen.pid) for b in bots) - bot_cpu0) / (time.monotonic() - t0)
    row: dict[str, Any] = {
        "speakers": count,
        "cpu_core_share": cpu,
        "rss_mb": rss_bytes(pid) / 2**20,
        "bot_cpu": bot_cpu,
        "breakdown": None,
    }
    if not profile:
        return row, None
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    try:
        recorded = stage_profile.record(pid, seconds)
    except RuntimeError as exc:  # py-spy missing or cannot attach here: CPU and RSS only
        row["profile_error"] = str(exc)
        return row, None
    row["cpu_core_share_profiled"] = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    row["samples"] = recorded.samples
    row["waiting_samples"] = recorded.waiting
    row["sampled_core_share"] = recorded.sampled_core_share
    row["pyspy_errors"] = recorded.errors
    row["pyspy_cpu"] = recorded.pyspy_cpu
    row["breakdown"] = recorded.breakdown(cpu)
    return row, recorded


def end_space(server: Server, space: HostedSpace) -> None:
    server.call("POST", f"/api/spaces/{space.id}/end", space.host_token)


def run(counts: list[int], seconds: float, profile: bool = True) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    profile_error = ""
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp))
        try:
            for count in [0, *counts]:
                space = server.create_space(f"Stage cost {count}")
                bots: list[Proc] = []
                try:
                    if count == 0:
                        wait_until(
                            lambda s=space: parts_published(s) >= 3,  # type: ignore[misc]
                            SETTLE_TIMEOUT,
                            "the idle Space to publish parts",
                            interval=0.25,
                        )
                    else:
                        bots = start_stage(server, space, count)
                    row, _ = measure_row(server, count, bots, seconds, profile)
                    if "profile_error" in row:  # do not try again on every row
                        profile, profile_error = False, row.pop("profile_error")
                    rows.append(row)
                finally:
                    for bot in bots:
                        bot.stop()
                end_space(server, space)
        finally:
            server.proc.stop()
    return {
        "seconds": seconds,
        "budget_full_stage": BUDGET_FULL_STAGE,
        "rows": rows,
        "summary": summarise(rows),
        "notes": notes(rows, seconds, profile_error),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    idle = rows[0]
    full = next((r for r in rows if r["speakers"] == FULL_STAGE), rows[-1])
    return {
        "full_stage_speakers": full["speakers"],
        "full_stage_cpu_core_share": full["cpu_core_share"],
        "idle_space_cpu_core_share": idle["cpu_core_share"],
        "full_stage_rss_mb": full["rss_mb"],
        "full_stage_breakdown": full["breakdown"],
    }


def pyspy_version() -> str:
    exe = stage_profile.pyspy_path()
    if exe is None:
        return "py-spy (not installed)"
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "py-spy"


def notes(rows: list[dict[str, Any]], seconds: float, profile_error: str) -> str:
    text = (
        f"CPU = server utime+stime from /proc over a {seconds:g} s window with nothing attached; "
        "RSS at its end. Each row is a fresh Space (the previous one ended), measured once every "
        "bot is heard in the mix (speaking indicators) or, idle, once parts are published. "
    )
    if profile_error:
        return text + f"No breakdown: py-spy could not profile the server: {profile_error}"
    profiled = [r for r in rows if r.get("samples")]
    pyspy_cpu = max((r["pyspy_cpu"] for r in profiled), default=0.0)
    errors = sum(r["pyspy_errors"] for r in profiled)
    waiting = sum(r["waiting_samples"] for r in profiled)
    gaps = [
        f"{r['speakers']}: {r['sampled_core_share'] * 100:.0f}% vs {r['cpu_core_share'] * 100:.0f}%"
        for r in profiled
    ]
    return text + (
        f"Breakdown: {pyspy_version()} record --nonblocking --threads at 100 Hz, samples of "
        "threads the OS calls running only (no --idle, no --gil), over a second "
        f"{seconds:g} s window right after the first; {waiting} samples whose stack sat in a wait "
        "(epoll, queue, condition: a woken thread still waiting for a core) were set aside as not "
        "CPU. Each stack is classified by its frames (bench/stage_profile.py); within each thread "
        "the samples give the split, /proc/PID/task CPU time over the same window weights the "
        "threads, and the result scales the first window's CPU, so a row's breakdown sums to its "
        "CPU. Native work (libopus, libavcodec, SRTP) counts for the Python frame that called it "
        "(py-spy --native would need to pause the server at every sample, so it is not used); "
        "PyAV's fMP4 muxing inside the AAC encoder counts as encode; 'other' is the asyncio loop, "
        "the media clock's scheduling, thread hand-offs, the control plane, database and GC. "
        "Error terms: the two windows differ by load noise (the bots share this 2-core "
        "machine); py-spy does not pause the server but used up to "
        f"{pyspy_cpu * 100:.0f}% of a core itself beside it (compare cpu_core_share_profiled); "
        f"{errors} samples failed to read in total; a thread's samples count the time it was "
        "runnable, not only running, so within a busy thread the split is approximate. On-CPU "
        f"sample share vs /proc share per row ({'; '.join(gaps)}): the excess is that runnable "
        "time, which is why threads are weighted by /proc rather than by samples."
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def print_table(result: dict[str, Any]) -> None:
    cats = stage_profile.CATEGORIES
    print(
        f"{'speakers':>8} {'CPU %core':>9} {'RSS MB':>7} {'bots %core':>10} | "
        + " ".join(f"{c:>7}" for c in cats)
        + f" | {'w/ py-spy':>9}"
    )
    for row in result["rows"]:
        breakdown = row["breakdown"] or {}
        print(
            f"{row['speakers']:>8} {_pct(row['cpu_core_share']):>9} {row['rss_mb']:>7.1f} "
            f"{_pct(row['bot_cpu']):>10} | "
            + " ".join(f"{_pct(breakdown.get(c)):>7}" for c in cats)
            + f" | {_pct(row.get('cpu_core_share_profiled')):>9}"
        )
    print(
        f"budget: a full stage ({FULL_STAGE}) ≤ {BUDGET_FULL_STAGE * 100:.0f}% of one core; "
        "first row is the idle-Space reference; breakdown columns are % of one core and sum to "
        "the CPU column; 'w/ py-spy' is the server's CPU in the profiled window"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=12.0, help="each of a row's 2 windows")
    parser.add_argument("--counts", default="1,5,13")
    parser.add_argument("--no-profile", action="store_true", help="CPU and RSS only, no py-spy")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    result = run(counts, args.seconds, profile=not args.no_profile)
    print_table(result)
    print(f"notes: {result['notes']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
