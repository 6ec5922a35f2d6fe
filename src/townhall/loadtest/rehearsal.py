"""A rehearsal: the plan an operator asked for, played second by second, and what came of it.

`rehearse` ramps the audience up, optionally sends a join storm at a chosen second, asks for
reactions and raised hands at a rate, and samples the audience once a second into a timeline
(`Second`). The verdict (`Verdict`) says plainly whether the audience was held and, if not, the
first second it bent and why. The report module writes it down; the view shows it live.

Safety (an operator's tool must not be a weapon): only loopback targets unless the operator says
they run the server (`allow_remote`), the rates are exactly what was asked, every listener and the
whole run stop by themselves at the duration, and the client never follows a redirect (a 3xx
counts as an error, so a redirect to another host is never followed).
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from townhall.harness import Proc, spawn
from townhall.loadtest.audience import Audience, Sample
from townhall.loadtest.llhls import percentile
from townhall.loadtest.page import SpaceTarget
from townhall.loadtest.wire import CLIENTS

MAX_LISTENERS = 1_000_000
MAX_DURATION_S = 24 * 3600.0
MAX_RATE = 10_000  # reactions or hands per second
STALL_SHARE = 0.01  # more stalled parts than this: the audience was not held
ERROR_SHARE = 0.01  # more failed requests than this (429/503 honoured excepted)


class PlanError(ValueError):
    """The plan cannot be run as asked (bad link, remote host without consent, bad numbers)."""


@dataclass(frozen=True)
class Plan:
    url: str
    listeners: int
    ramp_s: float = 10.0
    duration_s: float = 60.0
    storm: int = 0
    storm_at_s: float = 0.0
    reactions_per_s: float = 0.0
    hands_per_s: float = 0.0
    processes: int = 0  # 0: one per core
    speakers: int = 0
    tone_hz: float = 440.0
    host_token: str | None = None
    allow_remote: bool = False
    client: str = "lean"  # the listeners' HTTP client (loadtest/wire.py: "lean" or "streams")

    def check(self) -> SpaceTarget:
        """The target, if this plan may run; raises PlanError saying what is wrong."""
        try:
            target = SpaceTarget.parse(self.url)
        except ValueError as exc:
            raise PlanError(str(exc)) from None
        if (
            not 1 <= self.listeners + self.storm <= MAX_LISTENERS
            or min(self.listeners, self.storm) < 0
        ):
            raise PlanError(f"listeners: between 1 and {MAX_LISTENERS:,} in all")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise PlanError("duration: more than 0 s and at most a day")
        if not 0 <= self.ramp_s <= self.duration_s or not 0 <= self.storm_at_s < self.duration_s:
            raise PlanError("ramp and storm must start within the duration")
        if not (0 <= self.reactions_per_s <= MAX_RATE and 0 <= self.hands_per_s <= MAX_RATE):
            raise PlanError(f"reactions and hands: 0 to {MAX_RATE:,} per second")
        if self.client not in CLIENTS:
            raise PlanError(f"client: one of {', '.join(CLIENTS)}")
        if self.speakers and not self.host_token:
            raise PlanError("speaker bots need --host-token (the host's token, to invite them)")
        if not 0 <= self.speakers <= 13:
            raise PlanError("speakers: 0 to 13 (a full stage)")
        host = urlsplit(self.url).hostname or ""
        if not self.allow_remote and not is_loopback(host):
            raise PlanError(
                f"{host} is not this machine: a load test against a server you do not operate is "
                "an attack. If you operate it, add --yes-i-operate-this-server."
            )
        return target


def is_loopback(host: str) -> bool:
    """Whether every address `host` resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


@dataclass
class Second:
    """One second of the run."""

    t: int
    arrived: int
    playing: int
    joins: int  # joins in this second
    requests: int  # requests in this second
    first_audio_p50_s: float | None  # over all joins so far
    first_audio_p99_s: float | None
    lateness_p50_s: float | None  # parts that arrived in this second
    lateness_p95_s: float | None
    stalls: int  # stalled parts in this second
    failed: int  # requests that failed in this second (any kind)
    refused: int  # 429/503 answers in this second (honoured: retried after Retry-After)
    generator_cpu: float  # share of the generator's cores used, this second (1.0 = all)


@dataclass
class Verdict:
    held: bool
    summary: str
    bent_at_s: int | None = None
    reasons: list[str] = field(default_factory=list)


@dataclass
class Result:
    plan: Plan
    started_at: float
    seconds: list[Second]
    sent: Counter[str]
    answers: Counter[str]
    errors: Counter[str]
    first_audio: list[float]
    lateness: list[float]
    totals: dict[str, Any]
    verdict: Verdict
    part_hold_back_s: float

    def to_json(self) -> dict[str, Any]:
        plan = asdict(self.plan)
        plan.pop("host_token", None)
        return {
            "plan": plan,
            "started_at": self.started_at,
            "part_hold_back_s": self.part_hold_back_s,
            "totals": self.totals,
            "sent": dict(sorted(self.sent.items())),
            "answers": dict(sorted(self.answers.items())),
            "errors": dict(sorted(self.errors.items())),
            "verdict": asdict(self.verdict),
            "timeline": [asdict(s) for s in self.seconds],
        }


def _refused(answers: Counter[str]) -> int:
    return sum(n for key, n in answers.items() if key.endswith((" 429", " 503")))


def _failed(answers: Counter[str]) -> int:
    """Requests not answered with a 2xx (3xx included: redirects are never followed)."""
    return sum(n for key, n in answers.items() if not key.rpartition(" ")[2].startswith("2"))


def judge(seconds: list[Second], totals: dict[str, Any], hold_back: float) -> Verdict:
    """Held: every listener who arrived got audio, ≤ 1 % of parts stalled, ≤ 1 % of requests
    failed other than refusals that were honoured, and lateness p95 stayed within PART-HOLD-BACK."""
    reasons: list[str] = []
    bent: int | None = None
    for second in seconds:
        why = []
        if second.lateness_p95_s is not None and second.lateness_p95_s > hold_back:
            why.append(f"lateness p95 {second.lateness_p95_s:.2f} s > PART-HOLD-BACK {hold_back} s")
        if second.requests and (second.failed - second.refused) > ERROR_SHARE * second.requests:
            why.append(f"{second.failed - second.refused} failed requests")
        if why and bent is None:
            bent = second.t
            reasons = [f"at {second.t} s: " + "; ".join(why)]
    if totals["listeners_without_audio"]:
        reasons.append(f"{totals['listeners_without_audio']} listeners never heard audio")
    if totals["parts"] and totals["stalls"] > STALL_SHARE * totals["parts"]:
        reasons.append(f"{totals['stalls']} of {totals['parts']} parts stalled")
    held = not reasons
    if held:
        summary = (
            f"Held: {totals['arrived']:,} listeners, every one heard audio; lateness p95 "
            f"{_s(totals['lateness_p95_s'])}, {totals['stalls']} stalled parts, "
            f"{totals['refused']} refusals (429/503)."
        )
    else:
        summary = "Not held: " + "; ".join(reasons) + "."
    return Verdict(held, summary, bent, reasons)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def start_speakers(plan: Plan, target: SpaceTarget) -> list[Proc]:
    """`plan.speakers` tone bots, each invited with a one-use speaker link minted by the host."""
    bots: list[Proc] = []
    for i in range(plan.speakers):
        response = httpx.post(
            f"{target.base}/api/spaces/{target.space_id}/invite-links",
            json={"role": "speaker"},
            headers={"Authorization": f"Bearer {plan.host_token}"},
            timeout=10,
            follow_redirects=False,
        )
        if not response.is_success:
            raise PlanError(f"the server refused a speaker invite: {response.text[:200]}")
        link = str(response.json()["url"])
        bots.append(
            spawn(
                [
                    sys.executable,
                    "-m",
                    "townhall",
                    "speak",
                    link,
                    "--name",
                    f"Rehearsal speaker {i + 1}",
                    "--tone",
                    str(plan.tone_hz * (1 + i * 0.25)),
                    "--duration",
                    str(plan.duration_s + 5),
                ]
            )
        )
    return bots


def rehearse(plan: Plan, on_second: Callable[[Second, Sample], None] | None = None) -> Result:
    """Run the plan; `on_second` sees each second as it ends (the live view)."""
    target = plan.check()
    processes = plan.processes or max(1, len(os.sched_getaffinity(0)))
    hold_back = _part_hold_back(target)
    started_at = time.time()
    seconds: list[Second] = []
    first_audio: list[float] = []
    lateness: list[float] = []
    bots = start_speakers(plan, target)
    last = Sample()
    try:
        with Audience(plan.url, processes, plan.duration_s + 15, client=plan.client) as audience:
            start = time.monotonic()
            cpu_before = audience.cpu_seconds()
            audience.arrive(plan.listeners, plan.ramp_s)
            storm_sent = plan.storm == 0
            owed = [0.0, 0.0]  # fractional reactions and hands carried to the next second
            for t in range(1, math.ceil(plan.duration_s) + 1):
                if not storm_sent and t - 1 >= plan.storm_at_s:
                    audience.arrive(plan.storm, 1.0)
                    storm_sent = True
                owed[0] += plan.reactions_per_s
                owed[1] += plan.hands_per_s
                audience.act(int(owed[0]), int(owed[1]))
                owed = [owed[0] % 1, owed[1] % 1]
                time.sleep(max(0.0, start + t - time.monotonic()))
                sample = audience.sample()
                cpu_now = audience.cpu_seconds()
                first_audio.extend(sample.first_audio)
                lateness.extend(sample.lateness)
                delta = sample.answers - last.answers
                second = Second(
                    t=t,
                    arrived=sample.arrived,
                    playing=sample.playing,
                    joins=sample.joins - last.joins,
                    requests=sample.requests - last.requests,
                    first_audio_p50_s=percentile(first_audio, 50),
                    first_audio_p99_s=percentile(first_audio, 99),
                    lateness_p50_s=percentile(sample.lateness, 50),
                    lateness_p95_s=percentile(sample.lateness, 95),
                    stalls=sample.stalls - last.stalls,
                    failed=_failed(delta),
                    refused=_refused(delta),
                    generator_cpu=(cpu_now - cpu_before) / processes,
                )
                cpu_before = cpu_now
                seconds.append(second)
                last = sample
                if on_second is not None:
                    on_second(second, sample)
    finally:
        for bot in bots:
            bot.stop()
    totals: dict[str, Any] = {
        "arrived": last.arrived,
        "joined": last.joins,
        "listeners_without_audio": max(0, last.arrived - len(first_audio)),
        "requests": last.requests,
        "requests_per_listener_s": _per_listener_second(seconds),
        "parts": last.parts,
        "stalls": last.stalls,
        "reactions": last.reactions,
        "hands": last.hands,
        "refused": _refused(last.answers),
        "retry_after_honoured": last.retry_after_honoured,
        "first_audio_p50_s": percentile(first_audio, 50),
        "first_audio_p99_s": percentile(first_audio, 99),
        "lateness_p50_s": percentile(lateness, 50),
        "lateness_p95_s": percentile(lateness, 95),
        "generator_cpu_max": max((s.generator_cpu for s in seconds), default=0.0),
        "generator_processes": processes,
    }
    verdict = judge(seconds, totals, hold_back)
    if totals["generator_cpu_max"] > 0.9:
        verdict.reasons.append("the generator itself was saturated (≥ 90 % of its cores)")
        verdict.summary += " The load generator was saturated: figures may be its limit."
    return Result(
        plan,
        started_at,
        seconds,
        last.sent,
        last.answers,
        last.errors,
        first_audio,
        lateness,
        totals,
        verdict,
        hold_back,
    )


def _per_listener_second(seconds: list[Second]) -> float | None:
    """Requests per listener per second over the second half of the run (steady state)."""
    tail = seconds[len(seconds) // 2 :]
    playing = sum(s.playing for s in tail)
    return round(sum(s.requests for s in tail) / playing, 3) if playing else None


def _part_hold_back(target: SpaceTarget) -> float:
    """PART-HOLD-BACK of the Space's live playlist (the stall limit; its audio is where the snapshot
    says: a private Space's capability path); 1 s if it cannot be read now (the listeners will say
    why)."""
    try:
        snapshot = httpx.get(target.base + target.snapshot, timeout=10, follow_redirects=False)
        playlist = target.base + target.playlist(snapshot.json()["space"].get("media"))
        index = httpx.get(playlist, timeout=10, follow_redirects=False)
        media = next(line for line in index.text.splitlines() if line and line[0] != "#")
        text = httpx.get(httpx.URL(playlist).join(media), timeout=10).text
        for line in text.splitlines():
            if line.startswith("#EXT-X-SERVER-CONTROL:") and "PART-HOLD-BACK=" in line:
                return float(line.split("PART-HOLD-BACK=", 1)[1].split(",", 1)[0])
    except (httpx.HTTPError, StopIteration, ValueError, KeyError, TypeError, AttributeError):
        pass
    return 1.0


def dump(result: Result) -> str:
    return json.dumps(result.to_json(), indent=2)
