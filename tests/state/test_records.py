"""The durable records on both databases they run on, a SQLite file and a real PostgreSQL server:
every method round-trips, the invariants hold across processes (two `Records` on one database
stand for two server processes), and data survives a restart."""

from __future__ import annotations

import asyncio
import stat
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from townhall.harness import Postgres
from townhall.spaces.lifecycle import NOT_OVER
from townhall.spaces.model import (
    Account,
    Ban,
    Role,
    Space,
    SpaceId,
    SpaceState,
    StageLimits,
    StageMember,
    UserId,
    Visibility,
)
from townhall.state.records import (
    Announced,
    Announcement,
    Banned,
    Conflict,
    DeliveryStatus,
    NotFound,
    Records,
    StageFull,
    UsernameTaken,
    WebhookEndpoint,
    alembic_config,
    open_records,
)
from townhall.state.schema import Base

T0 = 1_700_000_000.0
SPACE = SpaceId("space00001")
HOST = UserId("u-host00000001")
LIMITS = StageLimits(max_cohosts=2, max_speakers=10)


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def url(database_url: str) -> str:
    """A new, empty database: a SQLite file, or a database on the session's PostgreSQL server."""
    return database_url


def a_space(space_id: SpaceId = SPACE, *, created_at: float = T0, **changes: object) -> Space:
    space = Space(id=space_id, title="Launch", host_id=HOST, created_at=created_at)
    return replace(space, **changes)  # type: ignore[arg-type]


def user(n: int) -> UserId:
    return UserId(f"u-user{n:08d}")


def a_member(
    n: int, role: Role = Role.SPEAKER, *, joined_at: float | None = None, space: SpaceId = SPACE
) -> StageMember:
    at = T0 + n if joined_at is None else joined_at
    return StageMember(space, user(n), role, f"User {n}", at)


def an_account(username: str, user_id: UserId = HOST) -> Account:
    return Account(
        user_id, username, "The Host", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", T0
    )


async def raw(records: Records, sql: str, **params: object) -> None:
    async with records.engine.begin() as connection:
        await connection.execute(sa.text(sql), params)


# --- migrations and restarts -------------------------------------------------------------------


def head_revision(url: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    return head


def every_revision(url: str) -> tuple[str, ...]:
    """The migrations a new database gets, oldest first."""
    script = ScriptDirectory.from_config(alembic_config(url))
    return tuple(reversed([r.revision for r in script.walk_revisions()]))


async def stored_revision(records: Records) -> str | None:
    async with records.engine.connect() as connection:
        return await connection.scalar(sa.text("SELECT version_num FROM alembic_version"))


async def test_a_fresh_database_is_migrated_to_head_and_reopening_applies_nothing(url: str) -> None:
    first = await open_records(url)
    try:
        assert first.applied_migrations == every_revision(url)
        assert first.applied_migrations[0] == "0001"
        assert await stored_revision(first) == head_revision(url)
    finally:
        await first.close()

    again = await open_records(url)
    try:
        assert again.applied_migrations == ()
        assert await stored_revision(again) == head_revision(url)
    finally:
        await again.close()


async def test_the_migrated_schema_matches_the_models(records: Records) -> None:
    def differences(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    async with records.engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_a_sqlite_database_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    records = await open_records(sqlite_url(tmp_path / "townhall.db"))
    try:
        async with records.engine.connect() as connection:
            assert await connection.scalar(sa.text("PRAGMA journal_mode")) == "wal"
            assert await connection.scalar(sa.text("PRAGMA foreign_keys")) == 1
            assert await connection.scalar(sa.text("PRAGMA busy_timeout")) == 5000
    finally:
        await records.close()


async def test_the_sqlite_files_holding_password_hashes_are_the_owners_alone(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    records = await open_records(sqlite_url(data / "townhall.db"))
    try:
        await records.create_account(an_account("ada"))
        files = sorted(data.glob("townhall.db*"))
        assert {f.name for f in files} >= {"townhall.db", "townhall.db-wal"}
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
    finally:
        await records.close()
    # A database made before this rule, readable by everyone, is tightened when opened.
    (data / "townhall.db").chmod(0o644)
    again = await open_records(sqlite_url(data / "townhall.db"))
    await again.close()
    assert stat.S_IMODE((data / "townhall.db").stat().st_mode) == 0o600


async def test_two_servers_opening_a_new_database_at_once_migrate_it_once(url: str) -> None:
    both = await asyncio.gather(open_records(url), open_records(url))
    try:
        assert sorted(r.applied_migrations for r in both) == [(), every_revision(url)]
    finally:
        for opened in both:
            await opened.close()


def test_processes_starting_together_on_a_new_database_all_come_up(url: str) -> None:
    db_url = url
    script = textwrap.dedent(
        f"""
        import asyncio
        from townhall.state.records import open_records

        async def main():
            records = await open_records({db_url!r})
            print(",".join(records.applied_migrations) or "-")
            await records.close()

        asyncio.run(main())
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    results = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, [err.decode() for _, err in results]
    assert sorted(out.decode().strip() for out, _ in results) == [
        "-",
        "-",
        "-",
        ",".join(every_revision(url)),
    ]


async def test_a_process_keeps_to_its_postgresql_pool_and_fails_fast_when_it_is_used_up(
    postgres: Postgres, postgres_url: str
) -> None:
    records = await open_records(postgres_url, pool_size=2, max_overflow=1, pool_timeout_s=1)
    database = postgres_url.rsplit("/", 1)[1]

    def connections() -> int:
        return int(
            postgres.sql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'")
        )

    try:
        await records.create_space(a_space())
        await asyncio.gather(*[records.stage(SPACE) for _ in range(30)])
        assert connections() <= 2  # the overflow connection closed when it came back
        engine = records.engine
        async with engine.connect() as one, engine.connect() as two, engine.connect() as three:
            await asyncio.gather(*(c.execute(sa.text("SELECT 1")) for c in (one, two, three)))
            assert connections() == 3
            with pytest.raises(sa.exc.TimeoutError):
                await records.space(SPACE)
    finally:
        await records.close()
    assert connections() == 0


async def test_everything_is_still_there_after_a_restart(url: str) -> None:
    first = await open_records(url)
    try:
        await first.create_account(an_account("host"))
        await first.create_space(a_space(state=SpaceState.LIVE, delay_s=7.5))
        await first.put_stage_member(a_member(1, Role.HOST), LIMITS)
        await first.put_stage_member(a_member(2), LIMITS)
        await first.ban(Ban(SPACE, user(3), user(1), T0))
        await first.add_reminder(SPACE, user(5))
        await first.put_invitation(SPACE, user(6), Role.SPEAKER, user(1), T0)
        endpoint = await first.add_webhook("https://example.test/hook", "s3cret", ["*"], now=T0)
        await first.enqueue_delivery("space.started", '{"id": "space00001"}', T0)
    finally:
        await first.close()

    second = await open_records(url)
    try:
        assert second.applied_migrations == ()
        assert await second.account_by_username("host") == an_account("host")
        space = await second.space(SPACE)
        assert space == a_space(state=SpaceState.LIVE, delay_s=7.5)
        assert [m.user_id for m in await second.stage(SPACE)] == [user(1), user(2)]
        assert await second.is_banned(SPACE, user(3))
        assert await second.reminders(SPACE) == [user(5)]
        assert await second.take_invitation(SPACE, user(6)) is Role.SPEAKER
        assert await second.webhooks() == [endpoint]
        [delivery] = await second.claim_due_deliveries(T0, limit=10, lease_s=30)
        assert delivery.event_type == "space.started"
    finally:
        await second.close()


# --- the schema refuses corrupt records ---------------------------------------------------------

SPACE_INSERT = (
    "INSERT INTO spaces (id, title, description, host_id, state, visibility, invite_code,"
    " created_at, record, max_cohosts, max_speakers, delay_s, scheduled_start)"
    " VALUES (:id, 't', '', 'u-x', :state, :visibility, '', 0, :record, :cohosts, 10, :delay,"
    " :start)"
)
GOOD_SPACE: dict[str, object] = {
    "id": "s1",
    "state": "live",
    "visibility": "public",
    "record": False,
    "cohosts": 2,
    "delay": 0.0,
    "start": None,
}


async def test_a_valid_raw_space_row_is_accepted(records: Records) -> None:
    await raw(records, SPACE_INSERT, **GOOD_SPACE)
    assert (await records.space(SpaceId("s1"))) is not None


@pytest.mark.parametrize(
    "corruption",
    [
        {"state": "on_fire"},
        {"visibility": "secret"},
        {"delay": 30.5},
        {"delay": -1.0},
        {"cohosts": -1},
        {"record": 2},
        {"state": "scheduled", "start": None},
        {"id": None},
    ],
)
async def test_the_schema_refuses_a_corrupt_space(
    records: Records, corruption: dict[str, object]
) -> None:
    # SQLite's CHECK refuses a flag that is not 0/1; PostgreSQL's boolean type refuses it sooner,
    # in the driver (DataError, not an integrity error).
    refusal = DBAPIError if "record" in corruption else IntegrityError
    with pytest.raises(refusal):
        await raw(records, SPACE_INSERT, **{**GOOD_SPACE, **corruption})


async def test_the_schema_refuses_a_listener_on_the_stage_or_a_seat_in_no_space(
    records: Records,
) -> None:
    await records.create_space(a_space())
    insert = (
        "INSERT INTO stage_members (space_id, user_id, role, display_name, joined_at,"
        " muted_by_host, self_muted) VALUES (:space, 'u-1', :role, 'x', 0, false, false)"
    )
    with pytest.raises(IntegrityError):
        await raw(records, insert, space=SPACE, role="listener")
    with pytest.raises(IntegrityError):
        await raw(records, insert, space="nosuchspace", role="speaker")


async def test_the_schema_refuses_an_upper_case_username_or_a_duplicate_ban(
    records: Records,
) -> None:
    with pytest.raises(IntegrityError):
        await raw(
            records,
            "INSERT INTO accounts VALUES ('u-1', 'Host', 'Host', 'h', 0)",
        )
    await records.create_space(a_space())
    await records.ban(Ban(SPACE, user(1), HOST, T0))
    with pytest.raises(IntegrityError):
        await raw(
            records,
            "INSERT INTO bans (space_id, user_id, banned_by, at) VALUES (:space, :user, 'u-2', 0)",
            space=SPACE,
            user=user(1),
        )


# --- accounts ----------------------------------------------------------------------------------


async def test_an_account_round_trips_by_id_and_by_username(records: Records) -> None:
    stored = await records.create_account(an_account("host_1"))
    assert stored == an_account("host_1")
    assert await records.account(HOST) == stored
    assert await records.account_by_username("host_1") == stored
    assert await records.account(UserId("u-nobody000000")) is None
    assert await records.account_by_username("nobody") is None


async def test_usernames_are_unique_ignoring_case_and_stored_lower_case(records: Records) -> None:
    stored = await records.create_account(an_account("MixedCase"))
    assert stored.username == "mixedcase"
    assert await records.account_by_username("MIXEDCASE") == stored
    with pytest.raises(UsernameTaken):
        await records.create_account(an_account("mixedCASE", UserId("u-other0000000")))


async def test_an_account_id_cannot_be_reused(records: Records) -> None:
    await records.create_account(an_account("first"))
    with pytest.raises(Conflict) as caught:
        await records.create_account(an_account("second"))
    assert not isinstance(caught.value, UsernameTaken)


async def test_an_account_the_schema_refuses_is_not_reported_as_a_conflict(
    records: Records,
) -> None:
    with pytest.raises(IntegrityError):
        await records.create_account(an_account("ab"))  # too short


# --- spaces ------------------------------------------------------------------------------------


async def test_a_space_round_trips_with_every_field(records: Records) -> None:
    space = a_space(
        state=SpaceState.SCHEDULED,
        description="All about it",
        visibility=Visibility.PRIVATE,
        invite_code="inv1te",
        scheduled_start=T0 + 3600,
        record=True,
        limits=StageLimits(max_cohosts=1, max_speakers=4),
        delay_s=12.5,
        pinned_link="https://example.test/",
    )
    await records.create_space(space)
    assert await records.space(SPACE) == space
    assert await records.space(SpaceId("nosuchspac")) is None
    # Many at once, as a node reads every Space it runs: those that exist.
    assert await records.spaces([SPACE, SpaceId("nosuchspac")]) == {SPACE: space}
    assert await records.spaces([]) == {}
    with pytest.raises(Conflict):
        await records.create_space(space)


async def test_updating_a_space_replaces_it(records: Records) -> None:
    await records.create_space(a_space())
    live = a_space().with_state(SpaceState.LIVE, T0 + 5)
    changed = replace(live, title="Renamed", delay_s=30.0, host_id=user(9))
    assert await records.update_space(changed) == changed
    assert await records.space(SPACE) == changed
    with pytest.raises(NotFound):
        await records.update_space(a_space(SpaceId("nosuchspac")))


async def test_go_live_is_compare_and_set_on_the_state(records: Records) -> None:
    await records.create_space(a_space())
    live = a_space().with_state(SpaceState.LIVE, T0 + 5)
    await records.update_space(live, expect_state=SpaceState.GREEN_ROOM)
    with pytest.raises(Conflict):
        await records.update_space(
            a_space().with_state(SpaceState.CANCELLED, T0 + 6), expect_state=SpaceState.GREEN_ROOM
        )
    assert await records.space(SPACE) == live
    with pytest.raises(NotFound):
        await records.update_space(a_space(SpaceId("nosuchspac")), expect_state=SpaceState.LIVE)


async def test_of_two_processes_ending_a_space_at_once_exactly_one_wins(
    records: Records, other_process: Records
) -> None:
    await records.create_space(a_space(state=SpaceState.LIVE))
    attempts = [
        store.update_space(
            a_space(state=SpaceState.LIVE, title=f"ended by {n}").ended(T0 + n),
            expect_state=SpaceState.LIVE,
        )
        for n, store in enumerate([records, other_process] * 5)
    ]
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    winners = [o for o in outcomes if isinstance(o, Space)]
    assert len(winners) == 1
    assert all(isinstance(o, Conflict) for o in outcomes if not isinstance(o, Space))
    assert await records.space(SPACE) == winners[0]


async def test_the_home_page_lists_public_spaces_in_given_states_newest_first(
    records: Records,
) -> None:
    await records.create_space(
        a_space(SpaceId("live000001"), created_at=T0 + 1, state=SpaceState.LIVE)
    )
    await records.create_space(
        a_space(
            SpaceId("sched00001"), created_at=T0 + 2, state=SpaceState.SCHEDULED, scheduled_start=T0
        )
    )
    await records.create_space(
        a_space(SpaceId("ended00001"), created_at=T0 + 3, state=SpaceState.ENDED)
    )
    await records.create_space(
        a_space(
            SpaceId("unlist0001"),
            created_at=T0 + 4,
            state=SpaceState.LIVE,
            visibility=Visibility.UNLISTED,
        )
    )
    listed = await records.list_spaces(
        [SpaceState.LIVE, SpaceState.SCHEDULED], visibility=Visibility.PUBLIC
    )
    assert [s.id for s in listed] == ["sched00001", "live000001"]
    everything_live = await records.list_spaces([SpaceState.LIVE])
    assert [s.id for s in everything_live] == ["unlist0001", "live000001"]
    assert await records.list_spaces([]) == []


async def test_paging_through_spaces_skips_and_repeats_none_even_when_created_together(
    records: Records,
) -> None:
    ids = [SpaceId(f"space{n:05d}") for n in range(7)]
    for n, space_id in enumerate(ids):
        # Pairs share a creation time, so the id must break the tie across page boundaries.
        await records.create_space(a_space(space_id, created_at=T0 + n // 2, state=SpaceState.LIVE))
    seen: list[SpaceId] = []
    page = await records.list_spaces([SpaceState.LIVE], limit=3)
    while page:
        seen += [s.id for s in page]
        last = page[-1]
        page = await records.list_spaces(
            [SpaceState.LIVE], limit=3, before=last.created_at, before_id=last.id
        )
    assert seen == sorted(ids, key=lambda i: (T0 + ids.index(i) // 2, i), reverse=True)
    older = await records.list_spaces([SpaceState.LIVE], before=T0 + 1)
    assert [s.id for s in older] == ["space00001", "space00000"]


async def test_a_hosts_spaces_are_counted_by_state(records: Records) -> None:
    states = [SpaceState.SCHEDULED, SpaceState.GREEN_ROOM, SpaceState.LIVE, SpaceState.ENDED]
    for n, state in enumerate(states):
        await records.create_space(
            a_space(SpaceId(f"mine{n:06d}"), state=state, scheduled_start=T0 + 60)
        )
    await records.create_space(
        a_space(SpaceId("theirs0001"), host_id=user(9), state=SpaceState.LIVE)
    )
    assert await records.count_hosted(HOST, NOT_OVER) == 3
    assert await records.count_hosted(HOST, [SpaceState.ENDED]) == 1
    assert await records.count_hosted(user(9), NOT_OVER) == 1
    assert await records.count_hosted(user(8), NOT_OVER) == 0
    assert await records.count_hosted(HOST, []) == 0


async def test_scheduled_spaces_fall_due_when_their_start_passes(records: Records) -> None:
    for n, start in enumerate([T0 + 60, T0 - 60, T0]):
        await records.create_space(
            a_space(SpaceId(f"sched{n:05d}"), state=SpaceState.SCHEDULED, scheduled_start=start)
        )
    await records.create_space(a_space(state=SpaceState.LIVE, scheduled_start=T0 - 600))
    assert [s.id for s in await records.spaces_due(T0)] == ["sched00001", "sched00002"]
    assert [s.id for s in await records.spaces_due(T0 + 60)] == [
        "sched00001",
        "sched00002",
        "sched00000",
    ]


# --- the stage ---------------------------------------------------------------------------------


async def test_the_stage_lists_host_then_cohosts_then_speakers_by_join_time(
    records: Records,
) -> None:
    await records.create_space(a_space())
    joins = [
        a_member(1, Role.SPEAKER, joined_at=T0 + 1),
        a_member(2, Role.COHOST, joined_at=T0 + 5),
        a_member(3, Role.HOST, joined_at=T0 + 9),
        a_member(4, Role.SPEAKER, joined_at=T0 + 0.5),
        a_member(5, Role.COHOST, joined_at=T0 + 2),
    ]
    for member in joins:
        assert await records.put_stage_member(member, LIMITS) == member
    assert [m.user_id for m in await records.stage(SPACE)] == [
        user(3),
        user(5),
        user(2),
        user(4),
        user(1),
    ]
    assert await records.stage_member(SPACE, user(2)) == joins[1]
    assert await records.stage_member(SPACE, user(99)) is None


async def test_moving_someone_between_roles_respects_the_seats(records: Records) -> None:
    await records.create_space(a_space())
    limits = StageLimits(max_cohosts=1, max_speakers=2)
    await records.put_stage_member(a_member(1, Role.COHOST), limits)
    await records.put_stage_member(a_member(2), limits)
    await records.put_stage_member(a_member(3), limits)
    with pytest.raises(StageFull):
        await records.put_stage_member(a_member(4), limits)
    with pytest.raises(StageFull):
        await records.put_stage_member(a_member(2, Role.COHOST), limits)
    # The co-host steps down to speaker: no speaker seat free …
    with pytest.raises(StageFull):
        await records.put_stage_member(a_member(1, Role.SPEAKER), limits)
    # … until a speaker leaves; then a speaker can be promoted into the freed co-host seat.
    assert await records.remove_stage_member(SPACE, user(3))
    assert not await records.remove_stage_member(SPACE, user(3))
    await records.put_stage_member(a_member(1, Role.SPEAKER), limits)
    await records.put_stage_member(a_member(2, Role.COHOST), limits)
    roles = {m.user_id: m.role for m in await records.stage(SPACE)}
    assert roles == {user(1): Role.SPEAKER, user(2): Role.COHOST}


async def test_a_space_has_one_host(records: Records) -> None:
    await records.create_space(a_space())
    await records.put_stage_member(a_member(1, Role.HOST), LIMITS)
    with pytest.raises(Conflict):
        await records.put_stage_member(a_member(2, Role.HOST), LIMITS)
    # Rewriting the host's own seat is fine.
    await records.put_stage_member(replace(a_member(1, Role.HOST), display_name="Renamed"), LIMITS)
    assert (await records.stage(SPACE))[0].display_name == "Renamed"


async def test_listeners_and_unknown_spaces_get_no_seat(records: Records) -> None:
    with pytest.raises(ValueError, match="listeners"):
        await records.put_stage_member(a_member(1, Role.LISTENER), LIMITS)
    with pytest.raises(NotFound):
        await records.put_stage_member(a_member(1, space=SpaceId("nosuchspac")), LIMITS)


async def test_updating_a_member_changes_mute_flags_but_not_the_role(records: Records) -> None:
    await records.create_space(a_space())
    member = await records.put_stage_member(a_member(1), LIMITS)
    muted = replace(member, muted_by_host=True, self_muted=True)
    assert await records.update_stage_member(muted) == muted
    assert await records.stage_member(SPACE, user(1)) == muted
    with pytest.raises(Conflict):
        await records.update_stage_member(replace(muted, role=Role.COHOST))
    with pytest.raises(NotFound):
        await records.update_stage_member(a_member(2))


async def test_twenty_joins_from_two_processes_fill_exactly_ten_speaker_seats(
    records: Records, other_process: Records
) -> None:
    await records.create_space(a_space())
    joins = [
        store.put_stage_member(a_member(n), StageLimits(max_speakers=10))
        for n, store in enumerate([records, other_process] * 10)
    ]
    outcomes = await asyncio.gather(*joins, return_exceptions=True)
    seated = [o for o in outcomes if isinstance(o, StageMember)]
    refused = [o for o in outcomes if not isinstance(o, StageMember)]
    assert len(seated) == 10
    assert all(isinstance(o, StageFull) for o in refused), refused
    assert len(refused) == 10
    assert {m.user_id for m in await other_process.stage(SPACE)} == {m.user_id for m in seated}


async def test_handing_over_the_host_role_swaps_both_seats_and_the_space(
    records: Records,
) -> None:
    await records.create_space(a_space(host_id=user(1)))
    await records.put_stage_member(a_member(1, Role.HOST), LIMITS)
    await records.put_stage_member(a_member(2, Role.SPEAKER), LIMITS)
    space = await records.transfer_host(SPACE, user(1), user(2), LIMITS)
    assert space == a_space(host_id=user(2))
    assert await records.space(SPACE) == space
    roles = [(m.user_id, m.role) for m in await records.stage(SPACE)]
    assert roles == [(user(2), Role.HOST), (user(1), Role.COHOST)]


async def test_a_handed_over_host_becomes_a_speaker_when_no_cohost_seat_is_free(
    records: Records,
) -> None:
    limits = StageLimits(max_cohosts=1, max_speakers=1)
    await records.create_space(a_space(host_id=user(1)))
    await records.put_stage_member(a_member(1, Role.HOST), limits)
    await records.put_stage_member(a_member(2, Role.COHOST), limits)
    await records.put_stage_member(a_member(3, Role.SPEAKER), limits)
    await records.transfer_host(SPACE, user(1), user(3), limits)
    roles = {m.user_id: m.role for m in await records.stage(SPACE)}
    assert roles == {user(3): Role.HOST, user(2): Role.COHOST, user(1): Role.SPEAKER}


async def test_only_the_current_host_can_hand_over_and_only_to_the_stage(
    records: Records,
) -> None:
    await records.create_space(a_space(host_id=user(1)))
    await records.put_stage_member(a_member(1, Role.HOST), LIMITS)
    await records.put_stage_member(a_member(2, Role.SPEAKER), LIMITS)
    with pytest.raises(NotFound):
        await records.transfer_host(SPACE, user(1), user(9), LIMITS)
    await records.transfer_host(SPACE, user(1), user(2), LIMITS)
    with pytest.raises(Conflict):  # a second, racing hand-over by the old host
        await records.transfer_host(SPACE, user(1), user(1), LIMITS)
    with pytest.raises(NotFound):
        await records.transfer_host(SpaceId("nosuchspac"), user(1), user(2), LIMITS)


# --- invitations to speak ----------------------------------------------------------------------


async def test_an_invitation_is_taken_once(records: Records) -> None:
    await records.create_space(a_space())
    await records.put_invitation(SPACE, user(1), Role.SPEAKER, HOST, T0)
    await records.put_invitation(SPACE, user(1), Role.COHOST, HOST, T0 + 1)  # replaces
    assert await records.take_invitation(SPACE, user(1)) is Role.COHOST
    assert await records.take_invitation(SPACE, user(1)) is None
    with pytest.raises(ValueError, match="co-host or a speaker"):
        await records.put_invitation(SPACE, user(1), Role.HOST, HOST, T0)
    with pytest.raises(NotFound):
        await records.put_invitation(SpaceId("nosuchspac"), user(1), Role.SPEAKER, HOST, T0)


async def test_a_ban_withdraws_the_invitation_and_blocks_new_ones(records: Records) -> None:
    await records.create_space(a_space())
    await records.put_invitation(SPACE, user(1), Role.SPEAKER, HOST, T0)
    await records.ban(Ban(SPACE, user(1), HOST, T0 + 1))
    assert await records.take_invitation(SPACE, user(1)) is None
    with pytest.raises(Banned):
        await records.put_invitation(SPACE, user(1), Role.SPEAKER, HOST, T0 + 2)


# --- bans --------------------------------------------------------------------------------------


async def test_a_ban_takes_the_user_off_the_stage(records: Records) -> None:
    await records.create_space(a_space())
    await records.put_stage_member(a_member(1), LIMITS)

    assert await records.ban(Ban(SPACE, user(1), HOST, T0 + 2))
    assert await records.stage(SPACE) == []
    assert await records.is_banned(SPACE, user(1))
    assert not await records.is_banned(SPACE, user(2))


async def test_a_banned_user_cannot_take_the_stage(records: Records) -> None:
    await records.create_space(a_space())
    await records.ban(Ban(SPACE, user(1), HOST, T0))
    with pytest.raises(Banned):
        await records.put_stage_member(a_member(1), LIMITS)


async def test_banning_twice_keeps_the_first_ban(records: Records) -> None:
    await records.create_space(a_space())
    first = Ban(SPACE, user(1), HOST, T0)
    assert await records.ban(first)
    assert not await records.ban(Ban(SPACE, user(1), user(7), T0 + 9))
    await records.ban(Ban(SPACE, user(2), HOST, T0 + 1))
    assert await records.bans(SPACE) == [first, Ban(SPACE, user(2), HOST, T0 + 1)]
    with pytest.raises(NotFound):
        await records.ban(Ban(SpaceId("nosuchspac"), user(1), HOST, T0))


# --- reminders ---------------------------------------------------------------------------------


async def test_remind_me_is_set_once_and_can_be_removed(records: Records) -> None:
    await records.create_space(a_space(state=SpaceState.SCHEDULED, scheduled_start=T0 + 60))
    assert await records.add_reminder(SPACE, user(2))
    assert await records.add_reminder(SPACE, user(1))
    assert not await records.add_reminder(SPACE, user(1))
    assert await records.reminders(SPACE) == [user(1), user(2)]
    assert await records.remove_reminder(SPACE, user(1))
    assert not await records.remove_reminder(SPACE, user(1))
    assert await records.reminders(SPACE) == [user(2)]
    with pytest.raises(NotFound):
        await records.add_reminder(SpaceId("nosuchspac"), user(1))


# --- webhooks ----------------------------------------------------------------------------------


async def test_webhook_endpoints_round_trip_and_hide_their_secret(records: Records) -> None:
    hook = await records.add_webhook(
        "https://a.test/h", "s3cret", ["space.started", "stage.*"], now=T0
    )
    assert hook == WebhookEndpoint(
        hook.id, "https://a.test/h", "s3cret", ("space.started", "stage.*"), T0
    )
    assert "s3cret" not in repr(hook)
    assert await records.webhooks() == [hook]
    assert await records.remove_webhook(hook.id)
    assert not await records.remove_webhook(hook.id)
    assert await records.webhooks() == []


def test_an_endpoint_wants_exact_types_families_and_everything() -> None:
    hook = WebhookEndpoint(1, "https://a.test", "s", ("space.started", "stage.*"), T0)
    assert hook.wants("space.started")
    assert hook.wants("stage.changed")
    assert not hook.wants("space.ended")
    assert not hook.wants("stagehand")
    assert WebhookEndpoint(2, "https://b.test", "s", ("*",), T0).wants("anything")


async def test_an_event_is_queued_once_for_each_endpoint_that_wants_it(records: Records) -> None:
    everything = await records.add_webhook("https://a.test", "a", ["*"], now=T0)
    stage_only = await records.add_webhook("https://b.test", "b", ["stage.*"], now=T0)
    assert await records.enqueue_delivery("space.started", '{"n": 1}', T0) == 1
    assert await records.enqueue_delivery("stage.changed", '{"n": 2}', T0 + 1) == 2
    claimed = await records.claim_due_deliveries(T0 + 1, limit=10, lease_s=30)
    assert [(d.endpoint, d.event_type, d.payload) for d in claimed] == [
        (everything, "space.started", '{"n": 1}'),
        (everything, "stage.changed", '{"n": 2}'),
        (stage_only, "stage.changed", '{"n": 2}'),
    ]
    assert all(d.status is DeliveryStatus.PENDING and d.attempts == 1 for d in claimed)


def announcement(event_type: str, *, reminders: int = 0) -> Announcement:
    """An announcement whose payload shows what the transaction wrote."""

    def payload(written: Announced) -> str:
        space = written.space
        return f"{space.state} {space.host_id} remind={','.join(written.reminders)}"

    return Announcement(event_type, T0, payload, reminders)


async def test_an_announced_change_queues_its_webhook_from_what_it_wrote(records: Records) -> None:
    await records.add_webhook("https://a.test", "a", ["*"], now=T0)
    await records.create_space(a_space(), announce=announcement("space.scheduled"))
    await records.put_stage_member(a_member(1), LIMITS, announce=announcement("stage.changed"))
    for n in (3, 2):
        await records.add_reminder(SPACE, user(n))
    live = replace(a_space(), state=SpaceState.LIVE, started_at=T0)
    started = announcement("space.started", reminders=1)
    await records.update_space(live, expect_state=SpaceState.GREEN_ROOM, announce=started)
    await records.transfer_host(SPACE, HOST, user(1), LIMITS, announce=announcement("host"))
    queued = [(d.event_type, d.payload, d.created_at) for d in await records.deliveries()]
    assert queued[::-1] == [
        ("space.scheduled", f"green_room {HOST} remind=", T0),
        ("stage.changed", f"green_room {HOST} remind=", T0),
        ("space.started", f"live {HOST} remind={user(2)}", T0),  # the first, by user id
        ("host", f"live {user(1)} remind=", T0),  # the hand-over, as written
    ]


async def test_a_refused_change_queues_none_of_its_webhooks(records: Records) -> None:
    await records.add_webhook("https://a.test", "a", ["*"], now=T0)
    await records.create_space(a_space())
    with pytest.raises(Conflict):
        await records.update_space(
            replace(a_space(), state=SpaceState.ENDED),
            expect_state=SpaceState.LIVE,
            announce=announcement("space.ended"),
        )
    with pytest.raises(StageFull):
        await records.put_stage_member(
            a_member(1), StageLimits(max_speakers=0), announce=announcement("stage.changed")
        )
    with pytest.raises(Conflict):
        await records.transfer_host(SPACE, user(9), HOST, LIMITS, announce=announcement("x"))
    with pytest.raises(Conflict):
        await records.create_space(a_space(), announce=announcement("space.scheduled"))
    assert await records.deliveries() == []


async def test_a_delivered_webhook_is_not_claimed_again(records: Records) -> None:
    await records.add_webhook("https://a.test", "a", ["*"], now=T0)
    await records.enqueue_delivery("space.started", "{}", T0)
    [delivery] = await records.claim_due_deliveries(T0, limit=10, lease_s=30)
    await records.mark_delivered(delivery.id, T0 + 1)
    assert await records.claim_due_deliveries(T0 + 100, limit=10, lease_s=30) == []
    stored = await records.delivery(delivery.id)
    assert stored is not None
    assert (stored.status, stored.delivered_at) == (DeliveryStatus.DELIVERED, T0 + 1)
    with pytest.raises(NotFound):
        await records.mark_delivered(9999, T0)


async def test_the_webhook_backlog_counts_what_is_neither_delivered_nor_given_up(
    records: Records,
) -> None:
    await records.add_webhook("https://a.test", "a", ["*"], now=T0)
    for n in range(3):
        await records.enqueue_delivery("space.started", f'{{"n": {n}}}', T0)
    assert await records.pending_deliveries() == 3
    first, second, _ = await records.claim_due_deliveries(T0, limit=10, lease_s=30)
    assert await records.pending_deliveries() == 3, "a claimed delivery is still owed"
    await records.mark_delivered(first.id, T0 + 1)
    assert not await records.mark_failed(second.id, T0 + 1, None, "HTTP 410 Gone")
    assert await records.pending_deliveries() == 1


async def test_a_leased_delivery_is_hidden_until_the_lease_runs_out(records: Records) -> None:
    await records.add_webhook("https://a.test", "a", ["*"], now=T0)
    await records.enqueue_delivery("space.started", "{}", T0)
    [first] = await records.claim_due_deliveries(T0, limit=10, lease_s=30)
    assert await records.claim_due_deliveries(T0 + 29, limit=10, lease_s=30) == []
    [again] = await records.claim_due_deliveries(T0 + 30, limit=10, lease_s=30)  # claimer died
    assert again.id == first.id
    assert again.attempts == 2


async def test_a_failed_delivery_is_retried_later_then_given_up_and_kept(url: str) -> None:
    records = await open_records(url, max_delivery_attempts=3)
    try:
        await records.add_webhook("https://a.test", "a", ["*"], now=T0)
        await records.enqueue_delivery("space.started", "{}", T0)
        now = T0
        for attempt in (1, 2):
            [delivery] = await records.claim_due_deliveries(now, limit=10, lease_s=30)
            assert delivery.attempts == attempt
            assert await records.mark_failed(delivery.id, now, now + 60, f"HTTP 50{attempt}")
            assert await records.claim_due_deliveries(now + 59, limit=10, lease_s=30) == []
            now += 60
        [last] = await records.claim_due_deliveries(now, limit=10, lease_s=30)
        assert not await records.mark_failed(last.id, now, now + 60, "HTTP 503")
        assert await records.claim_due_deliveries(now + 3600, limit=10, lease_s=30) == []
        [failed] = await records.deliveries(DeliveryStatus.FAILED)
        assert (failed.id, failed.attempts, failed.last_error) == (last.id, 3, "HTTP 503")
        assert await records.deliveries(DeliveryStatus.PENDING) == []
    finally:
        await records.close()


async def test_a_delivery_can_be_given_up_at_once(records: Records) -> None:
    await records.add_webhook("https://a.test", "a", ["*"], now=T0)
    await records.enqueue_delivery("space.started", "{}", T0)
    [delivery] = await records.claim_due_deliveries(T0, limit=10, lease_s=30)
    assert not await records.mark_failed(delivery.id, T0, None, "HTTP 410 Gone")
    stored = await records.delivery(delivery.id)
    assert stored is not None
    assert stored.status is DeliveryStatus.FAILED
    with pytest.raises(NotFound):
        await records.mark_failed(9999, T0, None, "x")


async def test_a_delivery_whose_last_claimer_vanished_is_given_up(url: str) -> None:
    records = await open_records(url, max_delivery_attempts=1)
    try:
        await records.add_webhook("https://a.test", "a", ["*"], now=T0)
        await records.enqueue_delivery("space.started", "{}", T0)
        [delivery] = await records.claim_due_deliveries(T0, limit=10, lease_s=30)
        assert await records.claim_due_deliveries(T0 + 30, limit=10, lease_s=30) == []
        stored = await records.delivery(delivery.id)
        assert stored is not None
        assert stored.status is DeliveryStatus.FAILED
        assert stored.last_error is not None
    finally:
        await records.close()


async def test_two_processes_never_claim_the_same_delivery(
    records: Records, other_process: Records
) -> None:
    await records.add_webhook("https://a.test", "a", ["*"], now=T0)
    for n in range(40):
        await records.enqueue_delivery("stage.changed", f'{{"n": {n}}}', T0)
    claims = await asyncio.gather(
        *[
            store.claim_due_deliveries(T0, limit=7, lease_s=30)
            for store in [records, other_process] * 4
        ]
    )
    claimed = [d.id for batch in claims for d in batch]
    assert len(claimed) == len(set(claimed)) == 40


async def test_removing_an_endpoint_drops_its_deliveries(records: Records) -> None:
    hook = await records.add_webhook("https://a.test", "a", ["*"], now=T0)
    await records.enqueue_delivery("space.started", "{}", T0)
    await records.remove_webhook(hook.id)
    assert await records.deliveries() == []
    assert await records.claim_due_deliveries(T0, limit=10, lease_s=30) == []
