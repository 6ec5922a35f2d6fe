"""Spaces per core: how many open Spaces one server process holds with their audio on time.

Most Spaces are small, so what a node holds is decided by what a quiet Space costs. One server
process; Spaces are added in the mix of a platform's day (80 % nobody talking, 15 % one voice, 5 %
a stage of 5 all talking), step by step, until the audio is late. Before the mixed ramp, the first
Spaces come one kind at a time, which gives each kind's own cost (the goal rows of issue 17):

1. the empty server (the floor every figure is taken above);
2. `--idle` Spaces nobody talks in (green room or live, no stage connected): cost each;
3. `--one-voice` Spaces with one speaker: cost each, above the idle ones;
4. one stage of 5 all talking: its cost, above the rest;
5. then the mixed population, `--steps` Spaces in all (topped up in the mix), while on time.

Each step holds `--hold` s once every speaker is heard in the mix (speaking indicators), and
measures the server's CPU (/proc utime+stime over the wall clock) and the speakers' process's.
*On time*: for every Space, how long ago the newest part of its media playlist ended (its
PROGRAM-DATE-TIME plus the durations listed; a part is produced every 0.32 s, ~0.04 s after its
last sample) grew by less than `LATE_S` over the hold (ticks skipped after a stall leave that end
behind for good, so it is read before and after), and the server logged no stalled media clock
during the step.

The speakers are one separate process (`--voices`, started by the bench) running every speaker bot
on one event loop; each sends a tone already Opus-encoded (a 1 s loop encoded once), so a speaker
costs its RTP sending and the mix-minus it decodes, not an encoder. Its CPU is reported beside the
server's: on a shared 2-core machine it competes with the server, so a ramp can end because the
machine, not the server, is full; `server_core_share` at the last on-time step says which.

    .venv/bin/python -m bench.spaces_per_core [--steps 20,40,60,80,100] [--hold 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.stage_cost import _get, cpu_share, speaking_count
from townhall.client.speaker import Speaker, parse_stage_url
from townhall.harness import HostedSpace, Server, cpu_seconds, start_server, wait_until
from townhall.media.audio import FRAME_SAMPLES, SAMPLE_RATE
from townhall.media.opus_return import OpusMixEncoder

LATE_S = 1.0  # newest part ending this long before now: audio is late (parts come every 0.32 s)
STAGE = 5
_TIME_BASE = Fraction(1, SAMPLE_RATE)
SETTLE_TIMEOUT = 120.0
KINDS = ("idle", "one_voice", "stage5")


def kind_of(index: int) -> str:
    """The mixed population, any 20 in a row: 16 idle, 3 with one voice, 1 stage of 5."""
    slot = index % 20
    return "stage5" if slot == 0 else "one_voice" if slot in (5, 10, 15) else "idle"


# -- the speakers' process ---------------------------------------------------------------------


class PacketLoop(MediaStreamTrack):
    """A tone as ready-made Opus packets, paced in real time like a microphone."""

    kind = "audio"

    def __init__(self, packets: list[bytes]) -> None:
        super().__init__()
        self._packets = packets
        self._start: float | None = None
        self._n = 0

    async def recv(self) -> av.Packet:  # type: ignore[type-arg]
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._n * FRAME_SAMPLES / SAMPLE_RATE
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 0.5:  # nobody read us for a while (reconnecting): skip, do not burst
            self._n = int((now - self._start) * SAMPLE_RATE / FRAME_SAMPLES)
        packet = av.Packet(self._packets[self._n % len(self._packets)])
        packet.pts = self._n * FRAME_SAMPLES
        packet.time_base = _TIME_BASE
        self._n += 1
        return packet


def tone_packets(frequency: int) -> list[bytes]:
    """One second of a tone (a whole number of cycles, so it loops seamlessly) in Opus."""
    encoder = OpusMixEncoder(32_000)
    t = np.arange(SAMPLE_RATE + FRAME_SAMPLES * 3) / SAMPLE_RATE
    pcm = (np.sin(2 * np.pi * frequency * t) * 0.3 * 32767).astype(np.int16)
    packets: list[bytes] = []
    for i in range(len(pcm) // FRAME_SAMPLES):
        packets += encoder.encode(pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES])
    return packets[-50:]


async def voices_main() -> None:
    """Read one JSON line per speaker from stdin ({"url", "token", "frequency"}) and keep each on
    stage until stdin closes. Each speaker prints "connected" when it is (the bot's own line)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tones: dict[int, list[bytes]] = {}
    tasks: set[asyncio.Task[None]] = set()
    while line := await reader.readline():
        order = json.loads(line)
        frequency = int(order["frequency"])
        packets = tones.setdefault(frequency, tone_packets(frequency))
        speaker = Speaker(parse_stage_url(order["url"], order.get("token")), PacketLoop(packets))
        tasks.add(asyncio.create_task(speaker.stay_on_stage()))
    for task in tasks:
        task.cancel()


# -- the bench ---------------------------------------------------------------------------------


@dataclass
class Voices:
    """The speakers' process: `add` puts one more speaker on a stage."""

    popen: subprocess.Popen[str]
    log: Path
    sent: int = 0

    @classmethod
    def start(cls, folder: Path) -> Voices:
        log = folder / "voices.log"
        popen = subprocess.Popen(
            [sys.executable, "-m", "bench.spaces_per_core", "--voices"],
            stdin=subprocess.PIPE,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        return cls(popen, log)

    def add(self, url: str, token: str | None, frequency: int) -> None:
        assert self.popen.stdin is not None
        order = {"url": url, "token": token, "frequency": frequency}
        self.popen.stdin.write(json.dumps(order) + "\n")
        self.popen.stdin.flush()
        self.sent += 1

    def connected(self) -> int:
        return sum(1 for line in self.log.read_text().splitlines() if line == "connected")

    def stop(self) -> None:
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


@dataclass
class Open:
    space: HostedSpace
    kind: str
    speakers: int


def open_space(server: Server, voices: Voices, index: int, kind: str) -> Open:
    space = server.create_space(f"Space {index} ({kind})")
    speakers = {"idle": 0, "one_voice": 1, "stage5": STAGE}[kind]
    for i in range(speakers):
        frequency = 300 + 20 * ((index + i) % 30)
        if i == 0:
            voices.add(space.stage_url, space.host_token, frequency)
        else:
            voices.add(server.invite(space, "speaker"), None, frequency)
    return Open(space, kind, speakers)


def media_playlist(space: HostedSpace) -> str | None:
    index = _get(space.playlist_url)
    if index is None or index.status_code != 200:
        return None
    uris = [line for line in index.text.splitlines() if line and not line.startswith("#")]
    if not uris:
        return None
    media = _get(str(httpx.URL(space.playlist_url).join(uris[0])))
    return media.text if media is not None and media.status_code == 200 else None


def newest_part_end(playlist: str) -> float | None:
    """UNIX time at which the newest listed part's audio ends, from the playlist's date-time."""
    start: float | None = None
    listed = pending = 0.0
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            start = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
        elif line.startswith("#EXTINF:"):
            listed += float(line[8:].split(",")[0])
            pending = 0.0
        elif line.startswith("#EXT-X-PART:"):
            fields = dict(f.split("=", 1) for f in line[12:].split(","))
            pending += float(fields["DURATION"])
    return None if start is None else start + listed + pending


def lags(spaces: Iterable[Open]) -> list[float]:
    """For each Space, how long ago its newest part ended (inf if its playlist cannot be read)."""
    result = []
    for one in spaces:
        playlist = media_playlist(one.space)
        end = newest_part_end(playlist) if playlist is not None else None
        result.append(float("inf") if end is None else time.time() - end)
    return result


def settle(server: Server, voices: Voices, spaces: list[Open]) -> None:
    wait_until(lambda: voices.connected() >= voices.sent, SETTLE_TIMEOUT, "every speaker")
    for one in spaces:
        if one.speakers:
            wait_until(
                lambda o=one: speaking_count(server, o.space) >= o.speakers,  # type: ignore[misc]
                SETTLE_TIMEOUT,
                f"the {one.speakers} speakers of {one.space.id} to be heard",
                interval=0.25,
            )


def measure(
    server: Server, voices: Voices, spaces: list[Open], hold: float, label: str
) -> dict[str, Any]:
    lag_before = lags(spaces)
    stalls_before = sum("media clock stalled" in line for line in server.proc.lines)
    voices_cpu0, t0 = cpu_seconds(voices.popen.pid), time.monotonic()
    cpu = cpu_share([server.proc.popen.pid], hold)
    voices_cpu = (cpu_seconds(voices.popen.pid) - voices_cpu0) / (time.monotonic() - t0)
    behind = lags(spaces)
    stalls = sum("media clock stalled" in line for line in server.proc.lines) - stalls_before
    worst = max(behind, default=0.0)
    # Falling behind during the step: ticks skipped since the Space opened (while Spaces were
    # being created, say) leave its timeline behind for good and are not this step's doing.
    fell = max((b - a for a, b in zip(lag_before, behind, strict=True)), default=0.0)
    return {
        "step": label,
        "spaces": len(spaces),
        "kinds": {k: sum(1 for s in spaces if s.kind == k) for k in KINDS},
        "speakers": sum(s.speakers for s in spaces),
        "server_core_share": cpu,
        "voices_core_share": voices_cpu,
        "worst_lag_s": worst,
        "fell_behind_s": fell,
        "late_spaces": sum(1 for a, b in zip(lag_before, behind, strict=True) if b - a > LATE_S),
        "stalls": stalls,
        "on_time": fell <= LATE_S and stalls == 0,
    }


def start_loaded_server(folder: Path) -> Server:
    """The server under test; on a machine others load, starting can take minutes."""
    return start_server(folder, {"TOWNHALL_MAX_LIVE_SPACES": "10000"}, within=180)


def run(idle: int, one_voice: int, steps: list[int], hold: float) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = start_loaded_server(Path(tmp))
        voices = Voices.start(Path(tmp))
        spaces: list[Open] = []

        def grow(kinds: list[str], label: str) -> dict[str, Any]:
            for kind in kinds:
                spaces.append(open_space(server, voices, len(spaces), kind))
            settle(server, voices, spaces)
            row = measure(server, voices, spaces, hold, label)
            rows.append(row)
            print(_line(row), flush=True)
            return row

        overloaded = ""
        try:
            print(_header(), flush=True)
            grow([], "empty server")
            grow(["idle"] * idle, "idle")
            grow(["one_voice"] * one_voice, "one voice")
            grow(["stage5"], "stage of 5")
            for target in steps:
                if target <= len(spaces):
                    continue
                mixed = [kind_of(i) for i in range(len(spaces), target)]
                if not grow(mixed, "mixed")["on_time"]:
                    break
        except (httpx.HTTPError, TimeoutError, RuntimeError) as exc:
            # The server (or the machine) could not take the next Spaces: the ramp ends there,
            # and that is a finding, not a failed bench.
            overloaded = f"{len(spaces)} Spaces: {type(exc).__name__}: {exc}"
            print(f"the ramp ended: {overloaded}", flush=True)
        finally:
            voices.stop()
            server.proc.stop()
    summary = summarise(rows)
    summary["ended_by"] = overloaded
    summary["ended_late"] = summary["ended_late"] or bool(overloaded)
    return {"hold_s": hold, "late_s": LATE_S, "rows": rows, "summary": summary}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each kind's cost per Space (from the first steps) and the ramp's outcome."""
    by_step = {r["step"]: r for r in rows}
    cpu = {step: row["server_core_share"] for step, row in by_step.items()}
    floor = cpu.get("empty server")
    per: dict[str, float | None] = dict.fromkeys(KINDS)
    if floor is not None and "idle" in cpu:
        per["idle"] = (cpu["idle"] - floor) / max(1, by_step["idle"]["kinds"]["idle"])
    if "idle" in cpu and "one voice" in cpu:
        per["one_voice"] = (cpu["one voice"] - cpu["idle"]) / max(
            1, by_step["one voice"]["kinds"]["one_voice"]
        )
    if "one voice" in cpu and "stage of 5" in cpu:
        per["stage5"] = cpu["stage of 5"] - cpu["one voice"]
    known = [
        (share, per[kind])
        for share, kind in ((0.80, "idle"), (0.15, "one_voice"), (0.05, "stage5"))
    ]
    mixed_mean = (
        sum(share * cost for share, cost in known if cost is not None)
        if all(cost is not None for _, cost in known)
        else None
    )
    on_time = [r for r in rows if r["on_time"]]
    best = max(on_time, key=lambda r: r["spaces"], default=None)
    return {
        "floor_core_share": floor,
        "per_space": per,
        "mixed_mean_per_space": mixed_mean,
        "spaces_per_core_from_costs": 1.0 / mixed_mean if mixed_mean else None,
        "most_on_time": best["spaces"] if best else 0,
        "server_core_share_at_most": best["server_core_share"] if best else None,
        "ended_late": bool(rows) and not rows[-1]["on_time"],
    }


def _header() -> str:
    return (
        f"{'step':<13} {'spaces':>6} {'idle/1v/st5':>11} {'speakers':>8} {'server %':>8} "
        f"{'voices %':>8} {'worst lag s':>11} {'fell s':>6} {'late':>4} {'stalls':>6}"
    )


def _line(r: dict[str, Any]) -> str:
    kinds = "/".join(str(r["kinds"][k]) for k in KINDS)
    return (
        f"{r['step']:<13} {r['spaces']:>6} {kinds:>11} {r['speakers']:>8} "
        f"{r['server_core_share'] * 100:>8.1f} {r['voices_core_share'] * 100:>8.1f} "
        f"{r['worst_lag_s']:>11.2f} {r['fell_behind_s']:>6.2f} {r['late_spaces']:>4} "
        f"{r['stalls']:>6}"
    )


def print_summary(summary: dict[str, Any]) -> None:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.2f}"

    per = summary["per_space"]
    print(
        f"per Space (% of a core, above the empty server's {pct(summary['floor_core_share'])}):"
        f" idle {pct(per['idle'])}, one voice {pct(per['one_voice'])}, "
        f"stage of 5 {pct(per['stage5'])}; the mix (80/15/5) "
        f"{pct(summary['mixed_mean_per_space'])} → "
        f"{summary['spaces_per_core_from_costs'] or 0:.0f} Spaces per core by cost"
    )
    print(
        f"ramp: {summary['most_on_time']} Spaces on time at most"
        + (", then late" if summary["ended_late"] else " (the ramp's end, not late)")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle", type=int, default=10, help="idle Spaces of the first step")
    parser.add_argument("--one-voice", type=int, default=3, help="one-voice Spaces of the next")
    parser.add_argument("--steps", default="20,40,50,60,70,80,100,130,160,200")
    parser.add_argument("--hold", type=float, default=8.0, help="seconds measured per step")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--reference", help="the JSON of an earlier run (the code before) to show beside this one"
    )
    parser.add_argument("--voices", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.voices:
        asyncio.run(voices_main())
        return
    steps = [int(s) for s in args.steps.split(",") if s]
    result = run(args.idle, args.one_voice, steps, args.hold)
    if args.reference:
        result["reference"] = json.loads(Path(args.reference).read_text())
    print_summary(result["summary"])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
