"""Start and stop real townhall processes on loopback: the server, speaker bots, and the engines
they run on (PostgreSQL, Redis, the nginx or Varnish edge).

Used by the end-to-end tests and the benchmarks, so both drive the product the way an operator
would: as separate processes, stopped by their own PID.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import redis

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll `condition` until it holds; fail the test with `what` if the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


async def wait_until_async(
    condition: Callable[[], bool], within: float, what: str, interval: float = 0.02
) -> None:
    """`wait_until` for a test whose condition is brought about by the event loop it runs on."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {within}s waiting for {what}")


@dataclass
class Proc:
    """A child process whose output lines are collected in the background."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        def pump() -> None:
            assert self.popen.stdout is not None
            with self.popen.stdout:
                for line in self.popen.stdout:
                    self.lines.append(line.rstrip("\n"))

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout)
        self._pump.join(5)
        return code

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def stop(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.wait(5)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.wait(5)


def spawn(args: list[str], env: dict[str, str] | None = None) -> Proc:
    popen = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        cwd=REPO,
    )
    return Proc(popen)


def polite_request(
    method: str, url: str, *, headers: dict[str, str], json: object = None
) -> httpx.Response:
    """One request, as a well-behaved client makes it: a 503 or 429 is retried after its
    Retry-After (a few times at most); the last answer is returned whatever it is."""
    for _attempt in range(4):
        response = httpx.request(method, url, json=json, headers=headers, timeout=15)
        if response.status_code not in (429, 503):
            break
        time.sleep(min(5.0, float(response.headers.get("Retry-After", "1"))))  # as told
    return response


@dataclass(frozen=True)
class HostedSpace:
    id: str
    host_token: str
    stage_url: str  # for the host's bot: pass with --token host_token
    listen_url: str
    playlist_url: str

    def host_bot_args(self) -> list[str]:
        return [self.stage_url, "--token", self.host_token]


@dataclass
class Server:
    url: str
    proc: Proc
    data_dir: Path

    def call(self, method: str, path: str, token: str | None = None, json: object = None) -> Any:
        """One API call, as a well-behaved client makes it (`polite_request`); any failure raises
        with the server's message."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = polite_request(method, f"{self.url}{path}", headers=headers, json=json)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} failed: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def host_identity(self, name: str = "Host") -> str:
        """A guest identity for a test host (bearer token)."""
        return str(self.call("POST", "/api/auth/guest", json={"display_name": name})["token"])

    def create_space(
        self,
        title: str = "Test Space",
        *,
        live: bool = True,
        record: bool = False,
        captions: bool = False,
    ) -> HostedSpace:
        """A Space with a host identity, put on air unless `live` is False (it stays in the green room);
        recorded if `record`, captioned live if `captions`."""
        token = self.host_identity()
        body: dict[str, object] = {"title": title}
        if record:
            body["record"] = True
        if captions:
            body["captions"] = True
        created = self.call("POST", "/api/spaces", token, body)
        space_id = str(created["space"]["id"])
        if live:
            self.call("POST", f"/api/spaces/{space_id}/go-live", token)
        return HostedSpace(
            id=space_id,
            host_token=token,
            stage_url=f"{self.url}/s/{space_id}/stage",
            listen_url=str(created["links"]["listen"]),
            playlist_url=str(created["links"]["playlist"]),
        )

    def restart(self, env: dict[str, str] | None = None) -> None:
        """Start the server again (after `proc.kill()`, say: a crash) on the same port and data
        directory, as a supervisor would; `proc` is the new process from then on."""
        assert self.proc.popen.poll() is not None, "stop or kill the server first"
        port = int(self.url.rsplit(":", 1)[1])
        self.proc = start_server(self.data_dir, env, port=port).proc

    def invite(self, space: HostedSpace, role: str = "speaker") -> str:
        """An invite link (…/stage#invite=…) that seats whoever opens it."""
        link = self.call(
            "POST", f"/api/spaces/{space.id}/invite-links", space.host_token, {"role": role}
        )
        return str(link["url"])


def start_server(
    tmp: Path,
    env: dict[str, str] | None = None,
    port: int | None = None,
    args: Sequence[str] = (),
    within: float = 30.0,
) -> Server:
    """A `townhall serve` on loopback with its data in `tmp`, on `port` (default: a free one),
    with extra `serve` options `args` (e.g. `--access-log`), started within `within` seconds (a
    bench on a loaded machine may allow more)."""
    port = port or free_port()
    proc = spawn(
        [
            sys.executable,
            "-m",
            "townhall",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(tmp),
            *args,
        ],
        env=env,
    )
    try:
        wait_until(
            lambda: proc.saw("is live at") or proc.popen.poll() is not None,
            within,
            "the server to start",
        )
    except TimeoutError:
        proc.kill()
        raise
    if proc.popen.poll() is not None:
        raise RuntimeError(f"server exited:\n{proc.output()}")
    return Server(f"http://127.0.0.1:{port}", proc, tmp)


def start_speaker(stage_url: str, *extra: str) -> Proc:
    """A `townhall speak` bot in its own process (e.g. `--tone 440`)."""
    return spawn([sys.executable, "-m", "townhall", "speak", stage_url, *extra])


def wait_connected(bot: Proc, timeout: float = 60) -> None:
    """Wait until a speaker bot says it is on stage; fail with its output if it exits first."""
    wait_until(
        lambda: bot.saw("connected") or bot.popen.poll() is not None,
        timeout,
        "a speaker bot to connect",
    )
    if bot.popen.poll() is not None:
        raise RuntimeError(f"speaker bot exited:\n{bot.output()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


CHROMIUM = Path("/usr/lib/chromium/chromium")  # Debian's build; the /usr/bin wrapper prints noise
# --- The edge: nginx or Varnish in front of the origin ------------------------------------------

EdgeKind = Literal["nginx", "varnish"]
EDGE_KINDS: tuple[EdgeKind, ...] = ("nginx", "varnish")
NGINX_CONFIG = REPO / "deploy" / "nginx" / "townhall.conf"
VARNISH_CONFIG = REPO / "deploy" / "varnish" / "townhall.vcl"
NGINX = "/usr/sbin/nginx"
VARNISHD = "/usr/sbin/varnishd"
VARNISHSTAT = "/usr/bin/varnishstat"


@dataclass(frozen=True)
class EdgeCounts:
    """What an edge has answered since it started (its own start-up checks left out)."""

    client: int  # requests clients made to the edge
    origin: int  # requests the edge made to an origin node (misses, pass-through, pipes)
    hits: int  # answers from the cache, a fill still streaming included

    def __sub__(self, earlier: EdgeCounts) -> EdgeCounts:
        return EdgeCounts(
            self.client - earlier.client, self.origin - earlier.origin, self.hits - earlier.hits
        )


@dataclass
class Edge:
    """A shipped edge config running in front of one or more origin nodes; it counts what it
    answers and what it asked the origin, so tests and benches can see the cache at work."""

    kind: EdgeKind
    url: str
    proc: Proc
    directory: Path
    baseline: EdgeCounts = EdgeCounts(0, 0, 0)  # what it had counted when it was ready

    def raw_counts(self) -> EdgeCounts:
        """Everything it has counted since it started."""
        raise NotImplementedError

    def counts(self) -> EdgeCounts:
        return self.raw_counts() - self.baseline

    def origin_requests(self) -> int:
        return self.counts().origin

    def client_requests(self) -> int:
        return self.counts().client


@dataclass
class NginxEdge(Edge):
    """nginx: its access log names each request's upstream (`-` when answered from the cache)."""

    access_log: Path = Path()
    _read: int = 0  # bytes of the log already counted
    _seen: EdgeCounts = EdgeCounts(0, 0, 0)

    def raw_counts(self) -> EdgeCounts:
        with self.access_log.open("rb") as log:
            log.seek(self._read)
            chunk = log.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line nginx is still writing waits
        self._read += len(complete)
        client, origin, hits = self._seen.client, self._seen.origin, self._seen.hits
        for line in complete.splitlines():
            upstream, cache = [*line.split(b" ", 2), b""][:2]
            client += 1
            origin += upstream != b"-"
            hits += cache == b"HIT"
        self._seen = EdgeCounts(client, origin, hits)
        return self._seen


@dataclass
class VarnishEdge(Edge):
    """varnishd: counted from its statistics (varnishstat on its working directory)."""

    workdir: Path = Path()

    def raw_counts(self) -> EdgeCounts:
        fields = (
            *("MAIN.client_req", "MAIN.busy_wakeup"),
            *("MAIN.backend_req", "MAIN.s_pipe", "MAIN.cache_hit"),
        )
        done = subprocess.run(
            [VARNISHSTAT, "-n", str(self.workdir), "-1", "-j", *(f"-f{f}" for f in fields)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        counters = json.loads(done.stdout)["counters"]
        value = {name: int(counters.get(name, {}).get("value", 0)) for name in fields}
        return EdgeCounts(
            # A request parked on a fill in progress is counted again when it is woken.
            value["MAIN.client_req"] - value["MAIN.busy_wakeup"],
            value["MAIN.backend_req"] + value["MAIN.s_pipe"],
            value["MAIN.cache_hit"],
        )


def start_edge(
    origin_url: str | Sequence[str],
    tmp: Path,
    *,
    kind: EdgeKind = "nginx",
    connections: int = 4096,
    api_in_flight: int | None = None,
) -> Edge:
    """Run the shipped `kind` edge (deploy/nginx/townhall.conf or deploy/varnish/townhall.vcl) in
    the foreground on a free loopback port, rewritten for `origin_url` (one node, or several that
    it takes in turn), with its cache and working files under `tmp`; stop it with `edge.proc`.

    `connections`: how many client connections it must hold at once (capacity benches hold many
    thousand listeners, two connections each). `api_in_flight`: the API calls each node may have
    in flight through the edge, instead of the shipped config's."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    origins = [origin_url] if isinstance(origin_url, str) else list(origin_url)
    nodes = [url.removeprefix("http://").rsplit(":", 1) for url in origins]
    targets = [(host, int(node_port)) for host, node_port in nodes]
    if kind == "varnish":
        edge, probes = _start_varnish(targets, tmp, port, connections, api_in_flight)
    else:
        edge, probes = _start_nginx(targets, tmp, port, connections, api_in_flight)

    answered = 0

    def answers() -> bool:
        nonlocal answered
        try:
            ok = httpx.get(f"{edge.url}/api/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
        answered += 1
        return ok

    wait_until(lambda: edge.proc.popen.poll() is not None or answers(), 30, f"{kind} to start")
    if edge.proc.popen.poll() is not None:
        raise RuntimeError(f"{kind} exited:\n{edge.proc.output()}\n{probes()}")
    # Count from here: the start-up checks are not listeners.
    wait_until(lambda: edge.raw_counts().client >= answered, 10, f"{kind} to count its requests")
    edge.baseline = edge.raw_counts()
    return edge


def _start_nginx(
    nodes: list[tuple[str, int]],
    tmp: Path,
    port: int,
    connections: int,
    api_in_flight: int | None = None,
) -> tuple[Edge, Callable[[], str]]:
    site = NGINX_CONFIG.read_text()

    def every_node(shipped: re.Match[str]) -> str:
        params = shipped.group(1) or ""
        if api_in_flight is not None:
            params = re.sub(r"max_conns=\d+", f"max_conns={api_in_flight}", params)
        return "\n    ".join(f"server {host}:{node_port}{params};" for host, node_port in nodes)

    site, upstreams = re.subn(r"server 127\.0\.0\.1:8080( [^;]*)?;", every_node, site)
    assert upstreams, "the shipped nginx config names no origin to replace"
    site = site.replace("/var/cache/nginx/townhall", str(tmp / "cache"))
    site = site.replace("listen 127.0.0.1:8081;", f"listen 127.0.0.1:{port};")
    (tmp / "townhall.conf").write_text(site)
    # One worker may hold no more files than the hard limit (it cannot raise that here): enough
    # workers that each one's share of connections, plus cache files and upstream connections,
    # fits under it.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    workers = -(-(connections + 1024) // hard)
    access_log = tmp / "access.log"
    (tmp / "nginx.conf").write_text(
        f"""daemon off;
worker_processes {workers};
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile {min(hard, connections // workers + 1024)};
events {{ worker_connections {connections}; }}
http {{
    log_format edge '$upstream_addr $upstream_cache_status $status $request_uri $request_time';
    access_log {access_log} edge;
    client_body_temp_path {tmp}/client_temp;
    proxy_temp_path {tmp}/proxy_temp;
    include {tmp}/townhall.conf;
}}
"""
    )
    proc = spawn([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf")])
    access_log.touch()
    edge = NginxEdge("nginx", f"http://127.0.0.1:{port}", proc, tmp, access_log=access_log)
    error_log = tmp / "error.log"
    return edge, lambda: error_log.read_text() if error_log.exists() else ""


def _varnish_vcl_for(vcl: str, nodes: list[tuple[str, int]]) -> str:
    """The shipped VCL with its `node1…` backends (the media one and the capped API one) and
    their `add_backend` lines repeated for every node, each pointing at its node."""
    blocks = re.findall(r"\nbackend node1(?:_\w+)? \{\n.*?\n\}\n", vcl, re.DOTALL)
    adds = re.findall(r"    \w+\.add_backend\(node1(?:_\w+)?\);\n", vcl)
    assert blocks, "the shipped VCL names no backend to replace"
    assert adds, "the shipped VCL adds no backend to its director"
    for block in blocks:
        copies = []
        for n, (host, node_port) in enumerate(nodes, 1):
            copy = block.replace("node1", f"node{n}")
            copy = copy.replace('.host = "127.0.0.1";', f'.host = "{host}";')
            copies.append(copy.replace('.port = "8080";', f'.port = "{node_port}";'))
        vcl = vcl.replace(block, "".join(copies))
    for add in adds:
        vcl = vcl.replace(
            add, "".join(add.replace("node1", f"node{n}") for n in range(1, len(nodes) + 1))
        )
    return vcl


def _start_varnish(
    nodes: list[tuple[str, int]],
    tmp: Path,
    port: int,
    connections: int,
    api_in_flight: int | None = None,
) -> tuple[Edge, Callable[[], str]]:
    vcl = _varnish_vcl_for(VARNISH_CONFIG.read_text(), nodes)
    if api_in_flight is not None:
        vcl, changed = re.subn(
            r"\.max_connections = \d+;", f".max_connections = {api_in_flight};", vcl
        )
        assert changed, "the shipped VCL caps no backend's connections"
    (tmp / "townhall.vcl").write_text(vcl)
    workdir = tmp / "varnish"
    # A client connection in use holds a worker thread (two pools share `connections`); parked
    # waiters hold none, and those woken beyond the pool's threads queue for one. Capped: every
    # thread is a process id, and a test machine has a few tens of thousands for everyone.
    # Statistics are published after every request, so counts are exact at once.
    threads = min(2000, max(200, connections // 2 + 100))
    # A capacity bench ramps hundreds of streamed responses (each holding a thread for its
    # segment) in seconds, faster than the pools add threads one by one: listeners then fell
    # behind with neither core saturated (1,000 held; started full, 2,000). Tests start small.
    prestarted = threads if connections > 4096 else 100
    args = [VARNISHD, "-F", "-j", "none", "-n", str(workdir), "-T", "none"]
    args += ["-a", f"127.0.0.1:{port}", "-f", str(tmp / "townhall.vcl"), "-s", "malloc,256m"]
    for name, value in {
        "pipe_timeout": "120",  # an idle stage WebSocket outlives the 60 s default
        "backend_idle_timeout": "4",  # under the origin's keep-alive (api/bounds.py KEEP_ALIVE_S)
        "thread_pool_min": str(prestarted),
        "thread_pool_max": str(threads),
        # Past its threads a pool queues new sessions, and past this many queued it closes them
        # unanswered (default 20): a join storm beyond the threads waits its turn instead.
        "thread_queue_limit": str(max(20, connections // 2)),
        "thread_stats_rate": "1",
    }.items():
        args += ["-p", f"{name}={value}"]
    proc = spawn(args)
    edge = VarnishEdge("varnish", f"http://127.0.0.1:{port}", proc, tmp, workdir=workdir)
    return edge, lambda: ""


# --- PostgreSQL ------------------------------------------------------------------------------

POSTGRES_USER = "postgres"  # Debian's system user for the server, and the superuser initdb makes
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's programs (Debian keeps them off PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version_key)
    return Path(found[-1]).parent if found else None


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path))


@dataclass
class Postgres:
    """A throwaway PostgreSQL server on loopback: trust authentication for the `postgres`
    superuser over TCP, durability off (fsync), everything under its own temporary directory."""

    host: str
    port: int
    proc: Proc
    directory: Path
    bin_dir: Path

    def url(self, database: str = "postgres") -> str:
        """A URL for `database`, in the form an operator writes (the driver is filled in later)."""
        return f"postgresql://{POSTGRES_USER}@{self.host}:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql; its output, tuples only."""
        done = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                *("-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"),
                *("-h", self.host, "-p", str(self.port), "-U", POSTGRES_USER, "-d", database),
                *("-c", statement),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql {statement!r} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL."""
        if not _DATABASE_NAME.fullmatch(name):
            raise ValueError(f"not a plain database name: {name!r}")
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop it, disconnecting whoever is still connected."""
        if not _DATABASE_NAME.fullmatch(name):
            raise ValueError(f"not a plain database name: {name!r}")
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> int:
        """Fast shutdown (SIGINT: disconnect clients, checkpoint, exit), then remove the files."""
        if self.proc.popen.poll() is None:
            self.proc.popen.send_signal(signal.SIGINT)
        code = self.proc.stop(timeout=30)
        shutil.rmtree(self.directory, ignore_errors=True)
        return code


def start_postgres(*, max_connections: int = 100) -> Postgres:
    """initdb and start a PostgreSQL server on 127.0.0.1 and a free port, in a new temporary
    directory that the server's user owns; stop it with `Postgres.stop`.

    PostgreSQL refuses to run as root: as root, initdb and the server run as the `postgres` system
    user (the directory is made theirs, outside root-only test directories); as anyone else, as
    that user. `max_connections` is PostgreSQL's own default unless a test needs another.
    """
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (scripts/setup.sh --test installs it)")
    as_user: dict[str, Any] = {}
    directory = Path(tempfile.mkdtemp(prefix="townhall-pg-"))
    if os.getuid() == 0:
        account = pwd.getpwnam(POSTGRES_USER)
        os.chown(directory, account.pw_uid, account.pw_gid)
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    data = directory / "data"
    env = {**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    initdb = subprocess.run(
        [
            *(str(bin_dir / "initdb"), "-D", str(data), "-U", POSTGRES_USER, "--auth=trust"),
            *("--encoding=UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"),
        ],
        capture_output=True,
        text=True,
        cwd=directory,
        env=env,
        timeout=120,
        check=False,
        **as_user,
    )
    if initdb.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
    port = free_port()
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(directory),
        "max_connections": str(max_connections),
        # A test server: losing it in a power cut loses nothing anyone needs.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    args = [str(bin_dir / "postgres"), "-D", str(data)]
    for name, value in settings.items():
        args += ["-c", f"{name}={value}"]
    popen = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=directory,
        env=env,
        **as_user,
    )
    server = Postgres("127.0.0.1", port, Proc(popen), directory, bin_dir)
    try:
        wait_until(
            lambda: server.proc.saw("ready to accept connections") or popen.poll() is not None,
            60,
            "PostgreSQL to start",
        )
        if popen.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited:\n{server.proc.output()}")
    except BaseException:
        server.stop()
        raise
    return server


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _answers_ping(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=1) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def start_redis(port: int, data_dir: Path, *, persist: bool = False) -> Proc:
    """A redis-server on loopback `port`, started and answering PING; with `persist` it keeps an
    append-only file in `data_dir`, so a restart comes back with its data (as a production Redis
    does), else it persists nothing.

    Tests that take Redis away and bring it back call this twice with the same port; the cluster
    script and the failover bench start theirs here too."""
    if not Path(REDIS_SERVER).exists():
        raise RuntimeError(
            "redis-server is not installed (the project's setup installs it with apt)"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = spawn(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if persist else "no",
            "--dir",
            str(data_dir),
        ]
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(
            lambda: proc.popen.poll() is not None or _answers_ping(url), 15, "redis-server to start"
        )
    except TimeoutError:
        proc.kill()
        raise
    if proc.popen.poll() is not None:
        raise RuntimeError(f"redis-server exited:\n{proc.output()}")
    return proc


def redis_url_of(proc: Proc) -> str:
    """The URL of a redis-server that `start_redis` started."""
    args = [str(arg) for arg in proc.popen.args]  # type: ignore[union-attr]
    return f"redis://127.0.0.1:{args[args.index('--port') + 1]}/0"
