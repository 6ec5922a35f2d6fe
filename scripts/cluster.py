"""Try a townhall cluster on one machine: Redis, PostgreSQL, two API nodes, two media nodes and an
edge in front (Varnish, the recommended one, or nginx with --edge nginx), all on loopback. Prints the edge's URL and what runs where; Ctrl-C stops
everything it started (by PID). Run it through scripts/cluster.sh, which installs what it needs.

Everything lives under --dir (default ./cluster-data; the recordings there are shared by the media
nodes). Kill a media node (its PID is printed) while a Space is live to watch another take it over.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import threading
from pathlib import Path

from townhall.harness import (
    EDGE_KINDS,
    Proc,
    Server,
    free_port,
    redis_url_of,
    start_edge,
    start_postgres,
    start_redis,
    start_server,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="cluster-data", help="where the cluster keeps its data")
    parser.add_argument("--api-nodes", type=int, default=2)
    parser.add_argument("--media-nodes", type=int, default=2)
    parser.add_argument("--edge", choices=EDGE_KINDS, default="varnish", help="the edge in front")
    args = parser.parse_args()
    root = Path(args.dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    stopping: list[Proc] = []
    servers: list[tuple[str, Server]] = []
    postgres = None
    try:
        redis = start_redis(free_port(), root / "redis", persist=True)
        stopping.append(redis)
        redis_url = redis_url_of(redis)
        postgres = start_postgres()
        database_url = postgres.create_database("townhall")
        secret = secrets.token_urlsafe(48)
        env = {
            "TOWNHALL_REDIS_URL": redis_url,
            "TOWNHALL_DATABASE_URL": database_url,
            "TOWNHALL_SECRET": secret,
            "TOWNHALL_RECORDINGS_DIR": str(root / "recordings"),
            "TOWNHALL_TRUSTED_PROXIES": "127.0.0.1",
        }
        roles = ["api"] * args.api_nodes + ["media"] * args.media_nodes
        for n, role in enumerate(roles, 1):
            server = start_server(root / f"{role}-{n}", env={**env, "TOWNHALL_ROLE": role})
            stopping.append(server.proc)
            servers.append((role, server))
        edge = start_edge([s.url for _, s in servers], root / "edge", kind=args.edge)
        stopping.append(edge.proc)
        print(f"townhall cluster is up: open {edge.url}/  (Ctrl-C to stop)\n")
        print(f"  edge      {edge.kind:<11} {edge.url}   pid {edge.proc.popen.pid}")
        for role, server in servers:
            print(f"  {role:<9} townhall    {server.url}   pid {server.proc.popen.pid}")
        print(f"  redis                 {redis_url}   pid {redis.popen.pid}")
        print(f"  postgres              {database_url}")
        print(f"\n  data and shared recordings: {root}", flush=True)
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        done.wait()
    finally:
        for proc in reversed(stopping):
            proc.stop()
        if postgres is not None:
            postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
