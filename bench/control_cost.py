"""Control cost: the server's CPU per request for each call the audience makes, beside a minimal
reference app measured in the same run on the same core (issue 12's table).

One `townhall serve` process, pinned to core 0, with one live Space (a host account's, created and
put on air), a pool of guests and `TOWNHALL_TRUSTED_PROXIES=127.0.0.1`: every request carries an
`X-Forwarded-For` of the simulated person who sends it, so the per-address limits (guest sign-in,
presence) and the per-person ones (reactions, hands) count each person apart, as they would behind
the edge, and the figure is the call's cost, not a 429's. The load generator is one process per
other core (`--procs`), each pinned to its own core, with `--concurrency` keep-alive connections in
all (townhall/loadtest/http.py on uvloop), each sending its next request as soon as the last is answered.

Each call is one row of two back-to-back windows of `--seconds`:

1. idle: no requests; the server's CPU rate (/proc utime+stime over the wall clock) with its live
   Space doing what a live Space does with nobody asking (the media clock, the snapshot);
2. load: after a warm-up (connections opened, caches filled), the server's CPU over the window,
   minus the idle rate over the same time, divided by the requests answered in the window (any
   status): CPU per request, idle-corrected. 2xx, 429 and other answers are counted apart; a row
   whose answers are not almost all 2xx does not measure the call (flagged in `valid`).

The generator's CPU is read from /proc the same way (per process, as a share of its core): a row
where it reached 90 % of its core was driven by a generator at its limit (`generator_limited`):
the figure is still the server's CPU per request, but at a lower request rate than asked. Core 0's
busy time (/proc/stat, whoever ran there) shows other work competing with the server. On
PostgreSQL the database runs on the generator's core(s) and its CPU per request is reported apart
(`db_ms_per_request`); it is not in the server's figure. The `redis` rows: the records on SQLite and
the live state on a redis-server (on the generator's cores, its CPU reported apart the same way),
as every process of a cluster has them; only the live-state calls (reaction, hand, presence),
against issue 12's 1 ms with Redis.

Calls (guests are the audience; the host is the stage):
health `GET /api/health`; snapshot `GET /api/spaces/{id}/snapshot`; guest sign-in
`POST /api/auth/guest` (each from a new address; the identities it mints join the pool); Space
`GET /api/spaces/{id}` and me `GET /api/spaces/{id}/me` with a guest's bearer; reaction
`POST …/reactions`; hand `POST`/`DELETE …/hand` alternately per guest (`HAND_GUESTS` of them,
fewer than a Space's hand limit, so thousands of hands are up); presence `POST …/presence`
(a new address per request, listener keys cycling), and the same with a guest's bearer (named:
also marks them present by name); the host's audience list `GET …/audience` (the guests marked
present by the rows before it); stage: the host mutes and unmutes themself
(`POST …/members/{host}/mute`, `…/unmute`) alternately. Guests are taken in turn, so each one's
per-person limits (reactions 2/s burst 10, hands 0.2/s burst 6) are shared out over the pool.

The reference (bench/reference_app.py): FastAPI on uvicorn with townhall's uvicorn settings, on
the same core, `GET /constant` (compared with health and snapshot) and `GET /items/{key}`, one
indexed query on the row's database (aiosqlite, or asyncpg on the same PostgreSQL server).

    .venv/bin/python -m bench.control_cost [--seconds 5] [--concurrency 16]
        [--databases sqlite,postgresql] [--guests 400] [--procs N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from bench.reference_app import key as reference_key
from bench.swarm import affinity, core_busy_seconds, machine, pin, wait_interval
from townhall.harness import (
    Postgres,
    Proc,
    Server,
    free_port,
    redis_url_of,
    spawn,
    start_postgres,
    start_redis,
    start_server,
    wait_until,
)
from townhall.loadtest.http import Client, HTTPFailure
from townhall.loadtest.procs import end_processes, generator_process, tree_cpu_seconds

SERVER_CORE = {0}
# "redis": the records on SQLite and the live state on Redis (TOWNHALL_REDIS_URL), as every
# process of a cluster has it; only the live-state calls are measured there (issue 12's ≤ 1 ms).
DATABASES = ("sqlite", "postgresql", "redis")
REDIS_GOAL_MS = 1.0
REDIS_GROUPS = ("guest", "live")  # the guest row mints the guests the others take in turn
WARMUP = 1.5  # s of load before the window opens: connections made, caches warm
TAIL = 1.0  # s the generator keeps going after the window, so the window never sees it stop
VALID_SHARE = 0.99  # of a window's answers that must be 2xx for the row to measure its call
GENERATOR_LIMIT = 0.90  # of its core: above this a generator process may be what limits the rate
HARVEST_CAP = 20_000  # guest identities kept from the guest sign-in row for the rows after it
# The hand row's guests: fewer than a Space's hand limit (state/live.py HANDS_LIMIT, 10,000), so
# the row measures thousands of hands up without refusing raises as the queue fills (with the whole
# pool of ~12,000 each guest's one turn is a raise, and past 10,000 they are 503 hands_full); more
# than the tokens a process keeps verified (8,192), as the reaction row's pool is.
HAND_GUESTS = 9_000
REPLY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Call:
    """One row: what is asked, the goal from issue 12 (server CPU per request) and which of the
    reference app's routes it is compared with."""

    key: str
    label: str
    goal_ms: float
    group: str  # the goal row of issue 12 it belongs to
    reference: str  # "constant" | "query"


GROUPS = {
    "read": "authenticated read (/me, Space lookup)",
    "live": "reaction, hand, presence (writes to live state, embedded store)",
    "guest": "guest sign-in",
    "cheap": "health, cached snapshot",
    "stage": "stage command",
}
CALLS: tuple[Call, ...] = (
    Call("health", "GET /api/health", 0.15, "cheap", "constant"),
    Call("snapshot", "GET /api/spaces/{id}/snapshot", 0.15, "cheap", "constant"),
    Call("guest", "POST /api/auth/guest", 1.0, "guest", "query"),
    Call("space", "GET /api/spaces/{id} (guest bearer)", 0.5, "read", "query"),
    Call("me", "GET /api/spaces/{id}/me (guest bearer)", 0.5, "read", "query"),
    Call("reaction", "POST /api/spaces/{id}/reactions", 0.5, "live", "query"),
    Call("hand", "POST+DELETE /api/spaces/{id}/hand", 0.5, "live", "query"),
    Call("presence", "POST /api/spaces/{id}/presence", 0.5, "live", "query"),
    Call("presence-named", "POST …/presence (guest bearer: named)", 0.5, "live", "query"),
    Call("audience", "GET …/audience (host bearer)", 3.0, "stage", "query"),
    Call("stage", "POST …/members/{host}/mute, /unmute", 3.0, "stage", "query"),
)
REFERENCE_CALLS = {
    "constant": "reference: GET /constant (FastAPI, constant JSON)",
    "query": "reference: GET /items/{key} (FastAPI, one indexed query)",
}


# --- the load generator (runs in its own processes) -----------------------------------------------


def _address(n: int, base: int) -> str:
    """The n-th forwarded address of a generator process: 127.base.x.y upwards, so no two processes
    and no two requests within 65,536 × 20 share one (a loopback address: it only names a person)."""
    return f"127.{base + (n >> 16) % 20}.{(n >> 8) & 255}.{n & 255}"


class Load:
    """The requests of one row for one generator process: `next()` gives the next head and body."""

    def __init__(self, spec: dict[str, Any], client: Client) -> None:
        self.kind: str = spec["kind"]
        self.space: str = spec["space"]
        self.host_id: str = spec["host_id"]
        self.host_token: str = spec["host_token"]
        self.guests: list[tuple[str, str]] = spec["guests"]  # (token, address)
        self.base: int = spec["address_base"]
        self.client = client
        self.n = 0
        self.raised = [False] * len(self.guests)
        self.fixed: bytes | None = None
        if self.kind in ("health", "snapshot", "constant"):
            path = {
                "health": "/api/health",
                "snapshot": f"/api/spaces/{self.space}/snapshot",
                "constant": "/constant",
            }[self.kind]
            headers = {"X-Forwarded-For": "127.0.0.2"} if self.kind != "constant" else {}
            self.fixed = client.head("GET", path, headers, b"")

    def _guest(self) -> tuple[int, dict[str, str]]:
        i = self.n % len(self.guests)
        token, address = self.guests[i]
        return i, {"Authorization": f"Bearer {token}", "X-Forwarded-For": address}

    def next(self) -> tuple[bytes, bytes, str]:
        """The next request's head and body, and the address it comes from if it is a new one."""
        self.n += 1
        if self.fixed is not None:
            return self.fixed, b"", ""
        head, body = self.client.head, b""
        space = f"/api/spaces/{self.space}"
        if self.kind == "query":
            return head("GET", f"/items/{reference_key(self.n)}", {}, b""), b"", ""
        if self.kind == "guest":
            body = json.dumps({"display_name": f"Guest {self.n}"}).encode()
            address = _address(self.n, self.base)
            headers = {"X-Forwarded-For": address} | _JSON
            return head("POST", "/api/auth/guest", headers, body), body, address
        if self.kind in ("presence", "presence-named"):
            body = json.dumps({"key": f"ctlcost-listener-{self.n % 10_000:05d}"}).encode()
            address = _address(self.n, self.base)
            headers = {"X-Forwarded-For": address} | _JSON
            if self.kind == "presence-named":  # the beacon of a listener with a guest name
                headers |= {"Authorization": f"Bearer {self.guests[self.n % len(self.guests)][0]}"}
            return head("POST", f"{space}/presence", headers, body), body, address
        if self.kind == "audience":
            headers = {"Authorization": f"Bearer {self.host_token}", "X-Forwarded-For": "127.0.0.3"}
            return head("GET", f"{space}/audience", headers, b""), b"", ""
        if self.kind == "stage":
            command = "mute" if self.n % 2 else "unmute"
            headers = {"Authorization": f"Bearer {self.host_token}", "X-Forwarded-For": "127.0.0.3"}
            return head("POST", f"{space}/members/{self.host_id}/{command}", headers, b""), b"", ""
        i, headers = self._guest()
        if self.kind == "space":
            return head("GET", space, headers, b""), b"", ""
        if self.kind == "me":
            return head("GET", f"{space}/me", headers, b""), b"", ""
        if self.kind == "reaction":
            return head("POST", f"{space}/reactions", headers | _JSON, _REACTION), _REACTION, ""
        if self.kind == "hand":
            method = "DELETE" if self.raised[i] else "POST"
            self.raised[i] = not self.raised[i]
            return head(method, f"{space}/hand", headers, b""), b"", ""
        raise ValueError(f"unknown call {self.kind!r}")


_JSON = {"Content-Type": "application/json"}
_REACTION = json.dumps({"emoji": "👏"}).encode()
OK, LIMITED, OTHER, FAILED = range(4)  # counters a generator process shares with the parent


async def _drive(spec: dict[str, Any], counters: Any) -> dict[str, Any]:
    """Keep `spec["connections"]` requests in flight until `spec["until"]`; count the answers in
    shared memory (the parent reads them when its window opens and closes)."""
    until: float = spec["until"]
    statuses: Counter[str] = Counter()
    harvested: list[tuple[str, str]] = []
    sample = ""
    harvest = spec["kind"] == "guest"

    async def connection() -> None:
        nonlocal sample
        client = Client(spec["url"], timeout=10.0)
        try:
            while time.monotonic() < until:
                head, body, address = load.next()
                try:
                    response = await client.send(head, body)
                except HTTPFailure as failure:
                    counters[FAILED] += 1
                    statuses[failure.kind] += 1
                    await asyncio.sleep(0.05)  # a refused connection must not spin
                    continue
                status = response.status
                if 200 <= status < 300:
                    counters[OK] += 1
                    if harvest and len(harvested) < spec["harvest_cap"]:
                        harvested.append((json.loads(response.content)["token"], address))
                else:
                    counters[LIMITED if status == 429 else OTHER] += 1
                    statuses[str(status)] += 1
                    if not sample:
                        sample = f"{status} {response.content[:300].decode(errors='replace')}"
        finally:
            client.close()

    load = Load(spec, Client(spec["url"]))  # one per process: guests taken in turn by all
    tasks = [asyncio.create_task(connection()) for _ in range(spec["connections"])]
    _, late = await asyncio.wait(tasks, timeout=max(1.0, until - time.monotonic()) + 15)
    for task in late:
        task.cancel()
    return {"statuses": dict(statuses), "sample": sample, "harvested": harvested}


def _worker(conn: Connection, counters: Any, cpus: set[int]) -> None:
    runner = generator_process(cpus)
    while True:
        spec = conn.recv()
        if spec is None:
            return
        conn.send(runner(_drive(spec, counters)))


class Generator:
    """Generator processes, each pinned to one of `cores`, sharing `concurrency` connections."""

    def __init__(self, cores: list[int], procs: int, concurrency: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # the parent holds threads: never fork it
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        self.counters: list[Any] = []
        self.connections = [
            concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)
        ]
        for i in range(procs):
            parent, child = ctx.Pipe()
            counters = ctx.RawArray("q", 4)
            proc = ctx.Process(
                target=_worker, args=(child, counters, {cores[i % len(cores)]}), daemon=True
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
            self.counters.append(counters)

    @property
    def pids(self) -> list[int]:
        return [int(p.pid) for p in self.procs]

    def start(self, spec: dict[str, Any], guests: list[tuple[str, str]]) -> None:
        """Start a row: each process gets its own slice of the guests (no person in two)."""
        n = len(self.conns)
        for i, conn in enumerate(self.conns):
            share = guests[i::n] or guests
            conn.send(
                spec
                | {"guests": share, "address_base": 10 + 20 * i, "connections": self.connections[i]}
            )

    def finish(self) -> list[dict[str, Any]]:
        replies = []
        for conn in self.conns:
            if not conn.poll(REPLY_TIMEOUT):
                raise TimeoutError("a generator process did not finish its row")
            replies.append(conn.recv())
        return replies

    def counts(self) -> list[int]:
        return [sum(int(c[k]) for c in self.counters) for k in range(4)]

    def cpu(self) -> list[float]:
        return [tree_cpu_seconds([pid]) for pid in self.pids]

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        end_processes(self.procs, self.conns)


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Target:
    """What a row measures: the server process (and the database's, on PostgreSQL)."""

    url: str
    pid: int
    db_pid: int | None


@dataclass
class Reading:
    at: float
    server: float
    db: float
    generator: list[float]
    counts: list[int]
    busy: list[float]


def _read(target: Target, gen: Generator, cores: list[int]) -> Reading:
    return Reading(
        at=time.monotonic(),
        server=tree_cpu_seconds([target.pid]),
        db=tree_cpu_seconds([target.db_pid]) if target.db_pid else 0.0,
        generator=gen.cpu(),
        counts=gen.counts(),
        busy=[core_busy_seconds(c) for c in cores],
    )


def measure(
    target: Target,
    gen: Generator,
    spec: dict[str, Any],
    guests: list[tuple[str, str]],
    seconds: float,
    gen_cores: list[int],
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """One row: the idle window, then the load window; returns the row and any harvested guests."""
    cores = [*sorted(SERVER_CORE), *gen_cores]
    idle0 = _read(target, gen, cores)
    wait_interval(seconds)
    idle1 = _read(target, gen, cores)
    idle_wall = idle1.at - idle0.at
    idle_rate = (idle1.server - idle0.server) / idle_wall
    db_idle_rate = (idle1.db - idle0.db) / idle_wall
    gen.start(spec | {"until": time.monotonic() + WARMUP + seconds + TAIL}, guests)
    wait_interval(WARMUP)
    a = _read(target, gen, cores)
    wait_interval(seconds)
    b = _read(target, gen, cores)
    replies = gen.finish()
    wall = b.at - a.at
    ok, limited, other, failed = (y - x for x, y in zip(a.counts, b.counts, strict=True))
    answered = ok + limited + other
    server = b.server - a.server
    corrected = server - idle_rate * wall
    db = b.db - a.db - db_idle_rate * wall
    gen_shares = [(y - x) / wall for x, y in zip(a.generator, b.generator, strict=True)]
    busy = [(y - x) / wall for x, y in zip(a.busy, b.busy, strict=True)]
    statuses: Counter[str] = Counter()
    for reply in replies:
        statuses.update(reply["statuses"])
    row: dict[str, Any] = {
        "requests": answered,
        "ok": ok,
        "limited_429": limited,
        "other": other,
        "failed": failed,
        "statuses": dict(statuses),
        "error_sample": next((r["sample"] for r in replies if r["sample"]), ""),
        "requests_per_s": answered / wall,
        "window_s": wall,
        "server_cpu_s": server,
        "idle_cpu_share": idle_rate,
        "server_cpu_share": server / wall,
        "ms_per_request": corrected / answered * 1000 if answered else None,
        "ms_per_request_uncorrected": server / answered * 1000 if answered else None,
        "db_ms_per_request": (
            db / answered * 1000 if answered and target.db_pid is not None else None
        ),
        "generator_cpu_shares": gen_shares,
        "generator_limited": max(gen_shares, default=0.0) >= GENERATOR_LIMIT,
        "core_busy_shares": dict(zip((str(c) for c in cores), busy, strict=True)),
        # Core 0's busy time that was not the measured process: other work on a shared machine.
        "others_on_server_core": max(0.0, busy[0] - server / wall),
        "valid": answered > 0 and ok >= VALID_SHARE * answered and not failed,
        # How much of the window's server CPU the idle correction took away: near 1, the figure
        # is mostly the idle estimate's noise (a server starved by other work answers little).
        "idle_share_of_window": idle_rate * wall / server if server > 0 else None,
    }
    return row, [(token, address) for reply in replies for token, address in reply["harvested"]]


# --- setting up -----------------------------------------------------------------------------------


@dataclass
class Audience:
    space: str
    host_id: str
    host_token: str
    guests: list[tuple[str, str]]


def _post(http: httpx.Client, path: str, body: object, token: str = "", address: str = "") -> Any:
    headers = {"X-Forwarded-For": address or "127.0.0.4"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = http.post(path, json=body, headers=headers)
    if response.status_code >= 300:
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:300]}")
    return response.json()


def set_up(server: Server, guests: int) -> Audience:
    """A host account, its live Space, and `guests` guests each signed in from its own address."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        host = _post(
            http,
            "/api/auth/signup",
            {"username": "ctlcost_host", "password": "control-cost-bench", "display_name": "Host"},
        )
        created = _post(http, "/api/spaces", {"title": "Control cost"}, host["token"])
        space = str(created["space"]["id"])
        _post(http, f"/api/spaces/{space}/go-live", None, host["token"])
        pool = []
        for i in range(guests):
            address = f"127.1.{i >> 8 & 255}.{i & 255}"
            made = _post(http, "/api/auth/guest", {"display_name": f"Guest {i}"}, address=address)
            pool.append((str(made["token"]), address))
    return Audience(space, str(host["user_id"]), str(host["token"]), pool)


def start_reference(tmp: Path, database_url: str) -> tuple[str, Proc]:
    """bench/reference_app.py on a free port, on the server's core."""
    port = free_port()
    with affinity(SERVER_CORE):
        proc = spawn(
            [
                sys.executable,
                *("-m", "bench.reference_app", "--port", str(port)),
                *("--database-url", database_url),
            ]
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/constant", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(lambda: proc.popen.poll() is not None or answers(), 60, "the reference app")
    except TimeoutError:
        proc.kill()
        raise
    if proc.popen.poll() is not None:
        raise RuntimeError(f"the reference app exited:\n{proc.output()}")
    pin(proc.popen.pid, SERVER_CORE)
    return url, proc


@contextlib.contextmanager
def database(
    name: str, tmp: Path, gen_cores: list[int]
) -> Iterator[tuple[dict[str, str], str, int | None]]:
    """The server's environment for `name`, the reference app's database URL, and the database
    server's PID (PostgreSQL: a throwaway server pinned to the generator's cores)."""
    if name == "sqlite":
        yield {}, f"sqlite+aiosqlite:///{tmp / 'reference.db'}", None
        return
    if name == "redis":
        redis = start_redis(free_port(), tmp / "redis")
        try:
            pin(redis.popen.pid, set(gen_cores))
            yield (
                {"TOWNHALL_REDIS_URL": redis_url_of(redis)},
                f"sqlite+aiosqlite:///{tmp / 'reference.db'}",
                redis.popen.pid,
            )
        finally:
            redis.stop()
        return
    pg: Postgres = start_postgres()
    try:
        pin(pg.proc.popen.pid, set(gen_cores))
        townhall_db = pg.create_database("townhall_ctlcost")
        reference_db = pg.create_database("reference_ctlcost")
        reference_url = reference_db.replace("postgresql://", "postgresql+asyncpg://", 1)
        yield {"TOWNHALL_DATABASE_URL": townhall_db}, reference_url, pg.proc.popen.pid
    finally:
        pg.stop()


@dataclass
class Settings:
    seconds: float
    repeat: int
    guests: int
    gen: Generator
    gen_cores: list[int]


def measure_repeated(
    target: Target, settings: Settings, spec: dict[str, Any], guests: list[tuple[str, str]]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """`measure` `settings.repeat` times; the row of the median figure, with every figure kept
    (`repeats`) to show the spread on a shared machine."""
    rows, harvested = [], []
    for _ in range(settings.repeat):
        row, more = measure(
            target, settings.gen, spec, guests + harvested, settings.seconds, settings.gen_cores
        )
        rows.append(row)
        harvested += more
    ranked = sorted(rows, key=lambda r: (r["ms_per_request"] is None, r["ms_per_request"] or 0.0))
    median = ranked[(len(ranked) - 1) // 2]
    median["repeats"] = [r["ms_per_request"] for r in rows]
    return median, harvested


def run_database(name: str, calls: list[str], settings: Settings) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        database(name, Path(tmp), settings.gen_cores) as (
            env,
            reference_url,
            db_pid,
        ),
    ):
        with affinity(SERVER_CORE):
            server = start_server(
                Path(tmp) / "server", env={**env, "TOWNHALL_TRUSTED_PROXIES": "127.0.0.1"}
            )
        try:
            pin(server.proc.popen.pid, SERVER_CORE)
            began = time.monotonic()
            audience = set_up(server, settings.guests)
            setup_s = time.monotonic() - began
            target = Target(server.url, server.proc.popen.pid, db_pid)
            pool = list(audience.guests)
            measured = (c for c in CALLS if c.key in calls)
            if name == "redis":
                measured = (c for c in measured if c.group in REDIS_GROUPS)
            for call in measured:
                spec = {
                    "kind": call.key,
                    "url": server.url,
                    "space": audience.space,
                    "host_id": audience.host_id,
                    "host_token": audience.host_token,
                    "harvest_cap": HARVEST_CAP // len(settings.gen.conns),
                }
                people = pool[:HAND_GUESTS] if call.key == "hand" else pool
                row, harvested = measure_repeated(target, settings, spec, people)
                pool += harvested
                goal = REDIS_GOAL_MS if name == "redis" else call.goal_ms
                row |= {"call": call.key, "label": call.label, "goal_ms": goal}
                row["guests"] = len(people)
                rows.append(row)
                _print_row(name, row)
            alive = server.proc.popen.poll() is None
        finally:
            server.proc.stop()
        reference: dict[str, Any] = {}
        url, proc = start_reference(Path(tmp), reference_url)
        try:
            target = Target(url, proc.popen.pid, db_pid)
            for kind, label in REFERENCE_CALLS.items():
                spec = {
                    "kind": kind,
                    "url": url,
                    "space": "",
                    "host_id": "",
                    "host_token": "",
                    "harvest_cap": 0,
                }
                row, _ = measure_repeated(target, settings, spec, [("", "")])
                row |= {"call": kind, "label": label, "goal_ms": None}
                reference[kind] = row
                _print_row(name, row)
        finally:
            proc.stop()
    for row in rows:
        ref = reference.get(next(c.reference for c in CALLS if c.key == row["call"]))
        row["reference_ms_per_request"] = ref["ms_per_request"] if ref else None
    return {
        "rows": rows,
        "reference": reference,
        "setup_s": setup_s,
        "server_alive_after": alive,
        "initial_guests": settings.guests,
    }


def summarise(databases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per database and goal group: each call's CPU per request, the worst of the validly measured
    ones, and which calls were not measured validly (their figure is not the call's cost)."""
    summary: dict[str, Any] = {}
    for name, result in databases.items():
        groups: dict[str, Any] = {}
        for group in GROUPS:
            rows = [r for r in result["rows"] if _call(r["call"]).group == group]
            if not rows:
                continue
            valid = [r["ms_per_request"] for r in rows if r["valid"] and r["ms_per_request"]]
            groups[group] = {
                "goal_ms": rows[0]["goal_ms"],
                "calls": {r["call"]: r["ms_per_request"] for r in rows},
                "invalid_calls": [r["call"] for r in rows if not r["valid"]],
                "worst_valid_ms": max(valid, default=None),
            }
        summary[name] = {
            "groups": groups,
            "reference_constant_ms": _get_ms(result, "constant"),
            "reference_query_ms": _get_ms(result, "query"),
        }
    return summary


def _get_ms(result: dict[str, Any], kind: str) -> float | None:
    row = result["reference"].get(kind)
    return None if row is None else row["ms_per_request"]


def _call(key: str) -> Call:
    return next(c for c in CALLS if c.key == key)


def run(
    databases: list[str],
    calls: list[str],
    seconds: float,
    concurrency: int,
    guests: int,
    procs: int,
    repeat: int = 1,
) -> dict[str, Any]:
    gen_cores = sorted(os.sched_getaffinity(0) - SERVER_CORE)
    results: dict[str, dict[str, Any]] = {}
    with affinity(set(gen_cores)):  # this orchestrating process stays off the server's core
        gen = Generator(gen_cores, procs, concurrency)
        settings = Settings(seconds, repeat, guests, gen, gen_cores)
        try:
            for name in databases:
                print(f"\n[{name}]", flush=True)
                results[name] = run_database(name, calls, settings)
        finally:
            gen.close()
    return {
        "seconds": seconds,
        "repeat": repeat,
        "warmup_s": WARMUP,
        "concurrency": concurrency,
        "generator_processes": procs,
        "generator_cores": gen_cores,
        "server_core": sorted(SERVER_CORE),
        "goals_ms": {c.key: c.goal_ms for c in CALLS},
        "groups": GROUPS,
        "databases": results,
        "summary": summarise(results),
        "machine": machine(),
        "notes": notes(seconds, concurrency, procs, gen_cores, repeat),
    }


def notes(seconds: float, concurrency: int, procs: int, gen_cores: list[int], repeat: int) -> str:
    return (
        f"One townhall serve process on core {min(SERVER_CORE)} (SQLite in its data directory, or "
        f"PostgreSQL on core(s) {gen_cores}), embedded live state (the redis rows: the live "
        f"state on a redis-server on core(s) {gen_cores}, records on SQLite, only guest sign-in and the live-state "
        "calls, goal 1 ms), one live Space without "
        f"speakers, TOWNHALL_TRUSTED_PROXIES=127.0.0.1. {concurrency} keep-alive connections from "
        f"{procs} generator process(es) on core(s) {gen_cores}, each request sent as soon as the "
        f"last was answered. Per row: an idle window of {seconds:g} s (the server's CPU rate with "
        f"nobody asking), then {WARMUP:g} s of warm-up and a {seconds:g} s window: server CPU "
        "(/proc utime+stime) minus the idle rate over the window, divided by the requests "
        f"answered in it; each row measured {repeat} time(s), the median kept (all in repeats). "
        "idle_share_of_window is how much of the window's server CPU the correction removed. "
        "A row whose answers were not ≥ 99 % 2xx, or that had connection "
        "failures, is not valid. Guests: signed in at setup, each from its own forwarded "
        "address, and joined by those the guest sign-in row minted; taken in turn per request. "
        "The reference app (bench/reference_app.py) runs on the same core after townhall's rows, "
        "with townhall's uvicorn settings, against the same database engine."
    )


# --- printing -------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f} %"


def _print_row(database: str, row: dict[str, Any]) -> None:
    flags = []
    if not row["valid"]:
        flags.append(f"NOT VALID: {row['statuses']} {row['error_sample'][:120]}")
    if row["generator_limited"]:
        flags.append("generator-limited")
    db = (
        f", db {_ms(row['db_ms_per_request'])} ms/req"
        if row["db_ms_per_request"] is not None
        else ""
    )
    print(
        f"[{database}] {row['label']:<58} {row['requests']:>7} req ({row['requests_per_s']:6.0f}/s) "
        f"{row['ok']}/{row['limited_429']}/{row['other']}: server {_ms(row['ms_per_request'])} "
        f"ms/req{db} (idle {row['idle_cpu_share'] * 100:.1f} %, server "
        f"{row['server_cpu_share'] * 100:.0f} % of its core, generator "
        f"{'/'.join(f'{s * 100:.0f}' for s in row['generator_cpu_shares'])} %, cores busy "
        f"{'/'.join(f'{v * 100:.0f}' for v in row['core_busy_shares'].values())} %, others on "
        f"core 0 {row['others_on_server_core'] * 100:.0f} %, idle correction "
        f"{_pct(row['idle_share_of_window'])} of the window's CPU)"
        + (
            f" repeats {'/'.join(_ms(v) for v in row['repeats'])}"
            if len(row["repeats"]) > 1
            else ""
        )
        + ("  " + "; ".join(flags) if flags else ""),
        flush=True,
    )


def print_table(result: dict[str, Any]) -> None:
    for name, data in result["databases"].items():
        pg = name == "postgresql"
        print(
            f"\n{name}: server CPU per request (ms), idle-corrected; {result['concurrency']} "
            f"connections, {result['seconds']:g} s windows"
        )
        header = (
            f"{'call':<44} {'requests':>8} {'2xx/429/other':>15} {'server ms/req':>13} "
            f"{'goal':>6} {'reference':>9}"
            + (f" {'db ms/req':>9}" if pg else "")
            + f" {'gen %core':>9} {'idle corr':>9} {'others':>6}"
        )
        print(header)
        rows = [*data["rows"], *data["reference"].values()]
        for row in rows:
            ref = row.get("reference_ms_per_request")
            mark = "" if row["valid"] else " (not valid)"
            mark += " (generator-limited)" if row["generator_limited"] else ""
            answers = f"{row['ok']}/{row['limited_429']}/{row['other']}"
            goal = "-" if row["goal_ms"] is None else f"{row['goal_ms']:g}"
            print(
                f"{row['label'][:44]:<44} {row['requests']:>8} {answers:>15} "
                f"{_ms(row['ms_per_request']):>13} {goal:>6} {_ms(ref):>9}"
                + (f" {_ms(row['db_ms_per_request']):>9}" if pg else "")
                + f" {'/'.join(f'{s * 100:.0f}' for s in row['generator_cpu_shares']):>9}"
                + f" {_pct(row['idle_share_of_window']):>9} {_pct(row['others_on_server_core']):>6}"
                + mark
            )
    print(
        "idle corr: share of the window's server CPU removed as the idle rate (near 100 %: the "
        "figure is mostly noise); others: other processes' share of the server's core"
    )
    print(f"machine: {result['machine']}")
    print(f"notes: {result['notes']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="each row's idle and load window"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections in all")
    parser.add_argument("--databases", default=",".join(DATABASES))
    parser.add_argument("--calls", default=",".join(c.key for c in CALLS), help="a subset of rows")
    parser.add_argument("--guests", type=int, default=400, help="guests signed in at setup")
    parser.add_argument(
        "--procs", type=int, default=0, help="generator processes (0: one per other core)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="measure each row N times (median)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    databases = [d for d in args.databases.split(",") if d]
    if not databases or any(d not in DATABASES for d in databases):
        parser.error(f"--databases: a comma-separated subset of {','.join(DATABASES)}")
    calls = [c for c in args.calls.split(",") if c]
    if not calls or any(c not in {k.key for k in CALLS} for c in calls):
        parser.error(f"--calls: a comma-separated subset of {','.join(c.key for c in CALLS)}")
    if not 0.5 <= args.seconds <= 120 or not 1 <= args.concurrency <= 512:
        parser.error("--seconds 0.5..120, --concurrency 1..512")
    if not 1 <= args.guests <= 60_000 or not 1 <= args.repeat <= 9:
        parser.error("--guests 1..60000, --repeat 1..9")
    others = sorted(os.sched_getaffinity(0) - SERVER_CORE)
    if not others or not SERVER_CORE.issubset(os.sched_getaffinity(0)):
        parser.error("needs core 0 for the server and at least one other core for the generator")
    procs = args.procs or len(others)
    if not 1 <= procs <= args.concurrency:
        parser.error("--procs 1..concurrency")
    began = time.monotonic()
    result = run(databases, calls, args.seconds, args.concurrency, args.guests, procs, args.repeat)
    result["wall_s"] = time.monotonic() - began
    print_table(result)
    print(f"wall time {result['wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
