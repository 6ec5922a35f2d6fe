"""The server on the engines a cluster runs on: records in a real PostgreSQL server, live state in a
real redis-server, both started by the tests on loopback. An event is heard end to end, and several
servers starting at once on a fresh database migrate it exactly once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory

from tests.audio_analysis import decode_mono, tone_strength
from tests.conftest import Proc, Server
from tests.e2e.test_audio_path import listen_with_ffmpeg, on_stage
from tests.e2e.test_redis_node import node_db
from townhall.harness import Postgres, start_server
from townhall.state.database import alembic_config

pytestmark = pytest.mark.e2e


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest.fixture
def cluster_node(tmp_path: Path, redis_url: str, postgres_url: str) -> Iterator[Server]:
    """One `townhall serve` with its records in PostgreSQL and its live state in Redis."""
    env = {"TOWNHALL_REDIS_URL": node_db(redis_url), "TOWNHALL_DATABASE_URL": postgres_url}
    srv = start_server(tmp_path / "data", env=env)
    yield srv
    assert srv.proc.stop() == 0, srv.proc.output()


def test_a_space_on_postgresql_and_redis_goes_live_and_is_heard(
    cluster_node: Server,
    speakers: Callable[..., Proc],
    postgres: Postgres,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    space = cluster_node.create_space("On PostgreSQL")  # created, then put on air
    on_stage(speakers(*space.host_bot_args(), "--tone", "440"))

    audio = decode_mono(listen_with_ffmpeg(space.playlist_url, tmp_path / "on.wav", 2))
    assert tone_strength(audio, 440) > 0.5
    stored = postgres.sql(
        f"SELECT state FROM spaces WHERE id = '{space.id}'", database_name(postgres_url)
    )
    assert stored == "live"  # the record really lives in PostgreSQL, not in a SQLite file
    assert not (cluster_node.data_dir / "townhall.db").exists()


def test_three_servers_starting_at_once_on_a_new_database_migrate_it_once(
    tmp_path: Path, redis_url: str, postgres: Postgres, postgres_url: str
) -> None:
    env = {"TOWNHALL_REDIS_URL": node_db(redis_url), "TOWNHALL_DATABASE_URL": postgres_url}
    with ThreadPoolExecutor(3) as pool:  # start_server waits for its own: start them together
        starting = [pool.submit(start_server, tmp_path / f"node{n}", env) for n in range(3)]
        errors = [f.exception() for f in starting]
    servers = [f.result() for f in starting if f.exception() is None]
    try:
        assert errors == [None] * 3, [str(e) for e in errors]
        for server in servers:
            assert httpx.get(f"{server.url}/api/health", timeout=10).status_code == 200
        appliers = [s for s in servers if s.proc.saw("records: applied migrations")]
        assert len(appliers) == 1, [s.proc.output() for s in servers]
        head = ScriptDirectory.from_config(alembic_config(postgres_url)).get_current_head()
        versions = postgres.sql(
            "SELECT version_num FROM alembic_version", database_name(postgres_url)
        )
        assert versions.split() == [head]
        # Every node works on the one schema: a Space made on one is seen by the others.
        space = servers[0].create_space("Seen everywhere", live=False)
        for server in servers[1:]:
            assert server.call("GET", f"/api/spaces/{space.id}")["space"]["id"] == space.id
    finally:
        codes = [server.proc.stop() for server in servers]
    assert codes == [0] * len(servers)
