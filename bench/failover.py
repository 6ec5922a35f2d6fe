"""Failover: kill -9 the node that runs a live Space, again and again; what listeners and the stage
went through each time.

A cluster on loopback — redis-server, PostgreSQL, two media nodes and the shipped nginx edge in
front of both (round robin) — holds one live Space with a tone bot on its stage that joined through
the edge, recorded. A listener follows the live playlist through the edge as an LL-HLS player does (blocking
reloads for the next part) and fetches every new part, noting when each arrived and whether it
carries the tone. Each round kills the Space's
owner with SIGKILL, waits until the tone is heard again and the bot has reconnected, then starts the
killed node again (same port) for the next round. Per round:

* audio gap at the listener: from the arrival of the last part with the tone of the killed node's
  stream to the arrival of the first part with the tone of the new owner's (what a listener hears
  as silence);
* take-over: from the kill until the playlist names a new stream;
* stage reconnect: from the kill until the bot says it is connected again.
Then the same with SIGTERM (`--drains` rounds): the node hands its Space over before it exits.
Printed side by side with the budgets (≤ 5 s of silence after a kill, ≤ 1 s after a drain).

    .venv/bin/python -m bench.failover [--rounds 5] [--drains 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import av
import httpx
import numpy as np

from townhall.harness import (
    Proc,
    Server,
    free_port,
    redis_url_of,
    start_edge,
    start_postgres,
    start_redis,
    start_server,
    start_speaker,
    wait_connected,
    wait_until,
)
from townhall.loadtest.llhls import percentile

BUDGET_GAP_S = 5.0
BUDGET_DRAIN_GAP_S = 1.0  # issue: restarting one node at a time, no audible gap over a second
_PART = re.compile(r'#EXT-X-PART:DURATION=[\d.]+,URI="([^"]+)",BYTERANGE="(\d+)@(\d+)"')
_MAP = re.compile(r'#EXT-X-MAP:URI="([^"]+)"')
_SEGMENT_NUMBER = re.compile(r"/s(\d+)\.m4s$")
SILENCE_DBFS = -50.0


def loud(init: bytes, part: bytes) -> bool:
    """Whether a part decodes to more than silence (the bot's tone is about -10 dBFS)."""
    with av.open(io.BytesIO(init + part), "r") as container:
        samples = [f.to_ndarray().astype(np.float64).ravel() for f in container.decode(audio=0)]
    if not samples:
        return False
    pcm = np.concatenate(samples)
    rms = float(np.sqrt(np.mean(pcm**2))) if pcm.size else 0.0
    return rms > 0 and 20 * np.log10(rms) > SILENCE_DBFS


@dataclass
class Listener:
    """Polls the live playlist through the edge; every new part fetched, timed and judged."""

    playlist_url: str
    arrivals: list[tuple[float, bool, str]] = field(default_factory=list)  # (when, loud, stream)
    statuses: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _get(
        self, client: httpx.Client, url: str, headers: dict[str, str] | None = None
    ) -> httpx.Response | None:
        try:
            answer = client.get(url, headers=headers)
        except httpx.HTTPError:
            self.statuses[0] = self.statuses.get(0, 0) + 1
            return None
        self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
        return answer

    def _run(self) -> None:
        seen: set[str] = set()
        inits: dict[str, bytes] = {}
        wanted = ""  # the blocking reload's query for the part after the last one listed
        with httpx.Client(timeout=15) as client:
            while not self._stop.is_set():
                answer = self._get(client, self.playlist_url + wanted)
                found = _MAP.search(answer.text) if answer is not None else None
                if answer is not None and answer.status_code == 200 and found:
                    init_url = urljoin(self.playlist_url, found.group(1))
                    if init_url not in inits:
                        got = self._get(client, init_url)
                        if got is not None and got.status_code == 200:
                            inits[init_url] = got.content
                    listed = _PART.findall(answer.text)  # (segment URI, length, offset)
                    for uri, length, offset in listed:
                        url = urljoin(self.playlist_url, uri)
                        if f"{url}@{offset}" in seen or init_url not in inits:
                            continue
                        seen.add(f"{url}@{offset}")
                        span = f"bytes={offset}-{int(offset) + int(length) - 1}"
                        part = self._get(client, url, {"Range": span})
                        if part is not None and part.status_code == 206:
                            stream = uri.split("/", 1)[0]
                            heard = loud(inits[init_url], part.content)
                            self.arrivals.append((time.monotonic(), heard, stream))
                    number = _SEGMENT_NUMBER.search(listed[-1][0]) if listed else None
                    if number:  # as an LL-HLS player asks: block until the next part exists
                        index = sum(1 for uri, _, _ in listed if uri == listed[-1][0]) - 1
                        wanted = f"?_HLS_msn={number.group(1)}&_HLS_part={index + 1}"
                    else:  # nothing listed to ask after: a plain reload a moment later
                        wanted = ""
                        self._stop.wait(0.1)
                else:
                    wanted = ""
                    self._stop.wait(0.1)

    def last_loud_of(self, stream: str) -> float | None:
        """When the last part with the tone of `stream` arrived (parts a dead node produced may
        still arrive after its death: the listener's last playlist named them)."""
        return max((t for t, heard, s in self.arrivals if heard and s == stream), default=None)

    def first_loud_after(self, moment: float, stream_other_than: str) -> float | None:
        return min(
            (
                t
                for t, heard, stream in self.arrivals
                if heard and t > moment and stream != stream_other_than
            ),
            default=None,
        )

    def stream_at(self, moment: float) -> str:
        return max((a for a in self.arrivals if a[0] <= moment), default=(0.0, False, ""))[2]


def owner_of(nodes: dict[int, Server]) -> int:
    for port, server in nodes.items():
        try:
            if httpx.get(f"{server.url}/api/health", timeout=3).json()["open_spaces"]:
                return port
        except httpx.HTTPError:
            continue
    raise RuntimeError("no node runs the Space")


def run(rounds: int, drains: int, root: Path) -> dict[str, object]:
    stopping: list[Proc] = []
    postgres = start_postgres()
    try:
        redis = start_redis(free_port(), root / "redis")
        stopping.append(redis)
        env = {
            "TOWNHALL_ROLE": "media",
            "TOWNHALL_REDIS_URL": redis_url_of(redis),
            "TOWNHALL_DATABASE_URL": postgres.create_database("failover"),
            "TOWNHALL_SECRET": "failover-bench-" + "s" * 40,
            "TOWNHALL_RECORDINGS_DIR": str(root / "recordings"),
            "TOWNHALL_TRUSTED_PROXIES": "127.0.0.1",
        }
        nodes: dict[int, Server] = {}
        for n in range(2):
            server = start_server(root / f"media-{n}", env=env)
            nodes[int(server.url.rsplit(":", 1)[1])] = server
        edge = start_edge([s.url for s in nodes.values()], root / "edge")
        stopping.append(edge.proc)
        first = next(iter(nodes.values()))
        space = first.create_space("Failover", record=True)  # as the chaos test
        bot = start_speaker(
            space.stage_url.replace(first.url, edge.url),
            "--token",
            space.host_token,
            "--tone",
            "440",
        )
        stopping.append(bot)
        wait_connected(bot)
        listener = Listener(f"{edge.url}/live/{space.id}/media.m3u8")
        listener.start()
        wait_until(lambda: any(h for _, h, _ in listener.arrivals), 30, "the tone at the listener")
        rows = []
        plan = [("kill", n) for n in range(1, rounds + 1)]
        plan += [("drain", n) for n in range(1, drains + 1)]
        for how, number in plan:
            port = owner_of(nodes)
            victim = nodes[port]
            connected_before = sum(1 for line in bot.lines if "connected" in line)
            time.sleep(2.0)  # pacing: the listener settles on the current stream
            killed = time.monotonic()
            old_stream = listener.stream_at(killed)
            if how == "kill":
                victim.proc.kill()
            else:  # SIGTERM: the node hands its Space over, then exits (waited for below)
                victim.proc.popen.terminate()
            reconnected: list[float] = []

            def recovered(
                killed: float = killed,
                old: str = old_stream,
                before: int = connected_before,
                marks: list[float] = reconnected,
            ) -> bool:
                if not marks and sum(1 for line in bot.lines if "connected" in line) > before:
                    marks.append(time.monotonic())
                return bool(marks) and listener.first_loud_after(killed, old) is not None

            wait_until(recovered, 60, f"{how} {number}: tone and stage back")
            last = listener.last_loud_of(old_stream)
            back = listener.first_loud_after(killed, old_stream)
            new_stream = min(
                (t for t, _, s in listener.arrivals if t > killed and s != old_stream),
                default=None,
            )
            assert back is not None
            row = {
                "how": how,
                "round": number,
                "gap_s": back - (last if last is not None else killed),
                "takeover_s": (new_stream - killed) if new_stream is not None else None,
                "reconnect_s": reconnected[0] - killed,
            }
            rows.append(row)
            print(
                f"{how} {number}: silence at the listener {row['gap_s']:.2f} s, new stream after "
                f"{row['takeover_s']:.2f} s, stage reconnected after {row['reconnect_s']:.2f} s",
                flush=True,
            )
            victim.proc.wait(60)
            nodes[port] = start_server(victim.data_dir, env=env, port=port)  # back for next round
            time.sleep(3.0)  # pacing: the edge takes the restarted node back before the next stop
        listener.stop()
        kills = [r for r in rows if r["how"] == "kill"]
        drained = [r for r in rows if r["how"] == "drain"]
        gaps = [float(r["gap_s"]) for r in kills]
        reconnects = [float(r["reconnect_s"]) for r in kills]
        drain_gaps = [float(r["gap_s"]) for r in drained]
        return {
            "rounds": rows,
            "gap_p50_s": percentile(gaps, 50),
            "gap_p95_s": percentile(gaps, 95),
            "reconnect_p50_s": percentile(reconnects, 50),
            "reconnect_p95_s": percentile(reconnects, 95),
            "drain_gap_p50_s": percentile(drain_gaps, 50) if drain_gaps else None,
            "drain_gap_p95_s": percentile(drain_gaps, 95) if drain_gaps else None,
            "listener_statuses": {str(k): v for k, v in sorted(listener.statuses.items())},
            "budget_gap_s": BUDGET_GAP_S,
        }
    finally:
        for server in list(locals().get("nodes", {}).values()):
            server.proc.stop()
            (server.data_dir / "server.log").write_text("\n".join(server.proc.lines))
        for proc in reversed(stopping):
            proc.stop()
        postgres.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="kill -9 rounds")
    parser.add_argument("--drains", type=int, default=3, help="SIGTERM (drain) rounds after them")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--keep", help="keep the cluster's files (logs, edge log) in this folder")
    args = parser.parse_args()
    if args.keep:
        result = run(args.rounds, args.drains, Path(args.keep).resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="townhall-failover-") as tmp:
            result = run(args.rounds, args.drains, Path(tmp))
    print()
    print("| measure | p50 | p95 | budget |")
    print("| --- | --- | --- | --- |")
    print(
        f"| silence at the listener after kill -9 | {result['gap_p50_s']:.2f} s "
        f"| {result['gap_p95_s']:.2f} s | ≤ {BUDGET_GAP_S:.0f} s |"
    )
    print(
        f"| stage reconnected after kill -9 | {result['reconnect_p50_s']:.2f} s "
        f"| {result['reconnect_p95_s']:.2f} s | – |"
    )
    if result["drain_gap_p50_s"] is not None:
        print(
            f"| silence at the listener after a SIGTERM drain | {result['drain_gap_p50_s']:.2f} s "
            f"| {result['drain_gap_p95_s']:.2f} s | ≤ {BUDGET_DRAIN_GAP_S:.0f} s |"
        )
    print(f"listener answers by status: {result['listener_statuses']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
