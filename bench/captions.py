"""Live captions: how long speech takes to reach a listener as a caption, and what captioning a
Space costs the server's CPU (issue 15).

One `townhall serve` (the captions extra installed, its tiny.en model). Speech is espeak-ng
sentences with pauses, looped by one speaker bot per Space (`townhall speak --file … --loop`).

1. Baseline: `--spaces` uncaptioned Spaces, each with its speaking bot, for `--seconds`: the server
   process tree's CPU (utime+stime from /proc, over the wall clock, as a share of one core).
2. Captioned: the same with captions on (after the transcriber has loaded its model), measured the
   same way; the server's tree includes the transcriber worker process. CPU per captioned Space =
   (captioned − baseline) / spaces.
3. Meanwhile one listener (this process) reloads the first Space's subtitle playlist every 0.25 s
   and fetches each new segment once. A cue's speech time is read from the playlist: the segment's
   PROGRAM-DATE-TIME and its X-TIMESTAMP-MAP give the wall clock of every media time in it (server
   and bench share the machine's clock). Caption delay = when the cue was first readable by the
   listener − when its phrase started (and − when it ended) being aired. Delay 0, so aired = spoken
   plus the mixer's few tens of ms.

    .venv/bin/python -m bench.captions [--spaces 1] [--seconds 40] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from townhall.captions.model import default_model
from townhall.captions.vtt import parse
from townhall.harness import (
    HostedSpace,
    Proc,
    Server,
    start_server,
    start_speaker,
    wait_connected,
    wait_until,
)
from townhall.loadtest.procs import tree_cpu_seconds

SENTENCES = (
    "Good morning everyone, and welcome to our meeting.",
    "Today we will talk about the new library in the park.",
    "Thank you all for listening.",
)
POLL_S = 0.25


def speech_file(folder: Path) -> Path:
    """The sentences, each followed by a second of silence, as one 48 kHz WAV."""
    parts = []
    for i, sentence in enumerate(SENTENCES):
        raw = folder / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), sentence], check=True)
        parts.append(raw)
    out = folder / "speech.wav"
    inputs = [arg for p in parts for arg in ("-i", str(p))]
    chain = "".join(f"[{i}]apad=pad_dur=1[a{i}];" for i in range(len(parts)))
    joined = "".join(f"[a{i}]" for i in range(len(parts)))
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            *inputs,
            "-filter_complex",
            f"{chain}{joined}concat=n={len(parts)}:v=0:a=1,aresample=48000",
            "-ac",
            "1",
            str(out),
        ],
        check=True,
    )
    return out


def _pdt(text: str) -> float | None:
    found = re.search(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)", text)
    if found is None:
        return None
    return datetime.fromisoformat(found.group(1).replace("Z", "+00:00")).timestamp()


class Listener:
    """Reloads the subtitle playlist and notes when each cue was first readable."""

    def __init__(self, space: HostedSpace) -> None:
        self.http = httpx.Client(timeout=20)
        self.url = space.playlist_url.replace("index.m3u8", "captions.m3u8")
        self.seen: set[str] = set()
        self.delays: list[tuple[float, float, str]] = []  # (from start, from end, text)

    def poll(self) -> None:
        playlist = self.http.get(self.url)
        if playlist.status_code != 200:
            return
        first_pdt = _pdt(playlist.text)
        sequence = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", playlist.text)
        uris = re.findall(r"^(?!#)(\S+)$", playlist.text, re.MULTILINE)
        durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+),", playlist.text)]
        if first_pdt is None or sequence is None:
            return
        pdt = first_pdt
        for uri, duration in zip(uris, durations, strict=False):
            if uri not in self.seen:
                text = self.http.get(str(httpx.URL(self.url).join(uri))).text
                now = time.time()
                self.seen.add(uri)
                mapped_at, cues = parse(text)
                for cue in cues:
                    if mapped_at is None or cue.start < mapped_at:
                        continue  # a repeat of a cue that began in an earlier segment
                    aired = pdt + (cue.start - mapped_at)
                    ended = pdt + (cue.end - mapped_at)
                    self.delays.append((now - aired, now - ended, cue.text))
            pdt += duration


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _round(
    server: Server, spaces: int, seconds: float, speech: Path, captions: bool
) -> dict[str, Any]:
    hosted = [server.create_space(f"Bench {i}", captions=captions) for i in range(spaces)]
    if captions:
        wait_until(lambda: server.proc.saw("transcriber ready"), 180, "the transcriber to load")
    bots: list[Proc] = []
    listener = Listener(hosted[0]) if captions else None
    try:
        for space in hosted:
            bots.append(start_speaker(*space.host_bot_args(), "--file", str(speech), "--loop"))
        for bot in bots:
            wait_connected(bot, 60)
        time.sleep(3)  # settle: the first windows reach the worker (not a synchronisation)
        began_cpu, began = tree_cpu_seconds([server.proc.popen.pid]), time.monotonic()
        while time.monotonic() - began < seconds:
            if listener is not None:
                listener.poll()
            time.sleep(POLL_S)
        cpu = tree_cpu_seconds([server.proc.popen.pid]) - began_cpu
        wall = time.monotonic() - began
    finally:
        for bot in bots:
            bot.stop()
        for space in hosted:
            server.call("POST", f"/api/spaces/{space.id}/end", space.host_token)
    row: dict[str, Any] = {"captions": captions, "spaces": spaces, "cpu_core_share": cpu / wall}
    if listener is not None:
        starts = [d[0] for d in listener.delays]
        ends = [d[1] for d in listener.delays]
        row.update(
            cues=len(listener.delays),
            delay_from_start_p50_s=_quantile(starts, 0.5),
            delay_from_start_p95_s=_quantile(starts, 0.95),
            delay_from_end_p50_s=_quantile(ends, 0.5),
            delay_from_end_p95_s=_quantile(ends, 0.95),
            sample=[d[2] for d in listener.delays[:6]],
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spaces", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    if default_model() is None:
        sys.exit("the captions extra is not installed: scripts/setup.sh --bench")
    with tempfile.TemporaryDirectory(prefix="townhall-captions-bench-") as tmp:
        folder = Path(tmp)
        speech = speech_file(folder)
        server = start_server(folder / "data", within=60)
        try:
            baseline = _round(server, args.spaces, args.seconds, speech, captions=False)
            captioned = _round(server, args.spaces, args.seconds, speech, captions=True)
        finally:
            server.proc.stop()
    per_space = (captioned["cpu_core_share"] - baseline["cpu_core_share"]) / args.spaces
    summary = {
        "spaces": args.spaces,
        "seconds": args.seconds,
        "cpu_per_captioned_space_share": per_space,
        **{k: v for k, v in captioned.items() if k.startswith(("delay_", "cues"))},
    }
    result = {
        "summary": summary,
        "rows": [baseline, captioned],
        "notes": "speech → caption delay measured by a listener polling the subtitle playlist "
        f"every {POLL_S} s (so up to {POLL_S} s of it is the poll); CPU of the server's process "
        "tree (the transcriber worker included) with captions on, minus the same Spaces and "
        "bots without captions, per Space.",
    }
    print(
        f"caption delay from phrase start: p50 {summary.get('delay_from_start_p50_s')} s, "
        f"p95 {summary.get('delay_from_start_p95_s')} s; from phrase end: p50 "
        f"{summary.get('delay_from_end_p50_s')} s ({summary.get('cues')} cues)"
    )
    print(
        f"server CPU: baseline {baseline['cpu_core_share']:.1%}, captioned "
        f"{captioned['cpu_core_share']:.1%} of a core; per captioned Space {per_space:.1%}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
