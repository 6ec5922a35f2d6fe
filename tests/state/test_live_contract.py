"""The LiveState contract, run against both implementations (the `live` fixture: embedded, redis).

`peer` stands for a second process on the same shared state. Nothing here sleeps to synchronise:
tests wait for a condition with a deadline (`until`), and time-based behaviour uses the `now` the
caller passes. A few tests at the end look at what only one implementation has (Redis keys and
subscriptions; the embedded store's memory).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio

from townhall.ratelimit.table import LIMITS, Limit, Limited, take
from townhall.state import embedded_live as embedded_live_module
from townhall.state import redis_live as redis_live_module
from townhall.state.embedded_live import EmbeddedLiveState, HyperLogLog
from townhall.state.live import (
    AUDIENCE_KEPT,
    EVENT_LOG_LIMIT,
    HANDS_LIMIT,
    LISTENER_BUCKET_S,
    LISTENER_WINDOW_S,
    REACTION_RETENTION_S,
    SPEAKING_TTL_S,
    Hand,
    HandsFull,
    LiveState,
    LogEvent,
    Present,
)
from townhall.state.redis_live import RedisLiveState

SPACE = "sp_townhall"
OTHER = "sp_elsewhere"
T0 = 1_700_000_000.0  # a plausible UNIX time to pass as `now`
DOCS = Path(__file__).resolve().parents[2] / "docs" / "redis-keys.md"


async def until(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Wait for `condition` with a deadline (never a fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.005)


# -- the event log ----------------------------------------------------------------------------


async def test_sequence_numbers_count_up_from_one_without_gaps_under_200_concurrent_appends(
    live: LiveState,
) -> None:
    events = await asyncio.gather(
        *(live.append(SPACE, "hand.raised", {"n": n}, T0) for n in range(200))
    )
    assert sorted(e.seq for e in events) == list(range(1, 201))
    assert await live.latest_seq(SPACE) == 200
    held = await live.events_since(SPACE, 0, limit=500)
    assert held is not None
    assert [e.seq for e in held] == list(range(1, 201))
    # What each append was told is exactly what the log holds under that number.
    assert {e.seq: e.data["n"] for e in held} == {e.seq: e.data["n"] for e in events}


async def test_two_processes_appending_at_once_share_one_gapless_sequence(
    live: LiveState, peer: LiveState
) -> None:
    writes = [
        (live if n % 2 else peer).append(SPACE, "stage.changed", {"n": n}, T0) for n in range(200)
    ]
    events = await asyncio.gather(*writes)
    assert sorted(e.seq for e in events) == list(range(1, 201))
    for reader in (live, peer):
        held = await reader.events_since(SPACE, 0, limit=500)
        assert held is not None
        assert [e.seq for e in held] == list(range(1, 201))
        assert sorted(e.data["n"] for e in held) == list(range(200))


async def test_each_space_has_its_own_sequence(live: LiveState) -> None:
    await live.append(SPACE, "space.live", {}, T0)
    await live.append(SPACE, "stage.changed", {}, T0)
    first_elsewhere = await live.append(OTHER, "space.live", {}, T0)
    assert first_elsewhere.seq == 1
    assert await live.latest_seq(SPACE) == 2


async def test_a_reconnecting_client_resumes_exactly_after_its_last_seq(live: LiveState) -> None:
    for n in range(10):
        await live.append(SPACE, "hand.raised", {"user": f"u{n}"}, T0 + n)
    missed = await live.events_since(SPACE, 4)
    assert missed is not None
    assert [e.seq for e in missed] == [5, 6, 7, 8, 9, 10]
    assert [e.data["user"] for e in missed] == ["u4", "u5", "u6", "u7", "u8", "u9"]
    assert [e.at for e in missed] == [T0 + n for n in range(4, 10)]
    assert {e.type for e in missed} == {"hand.raised"}
    assert await live.events_since(SPACE, 10) == []


async def test_a_long_backlog_is_read_in_pages_of_at_most_limit(live: LiveState) -> None:
    for n in range(25):
        await live.append(SPACE, "hand.raised", {"n": n}, T0)
    seen: list[int] = []
    while (page := await live.events_since(SPACE, seen[-1] if seen else 0, limit=10)) != []:
        assert page is not None
        assert len(page) <= 10
        seen += [e.seq for e in page]
    assert seen == list(range(1, 26))


async def test_event_data_comes_back_as_json_would_carry_it(live: LiveState) -> None:
    data = {"roster": ("alice", "bob"), "levels": {"alice": -20.5}, "live": True, "n": None}
    appended = await live.append(SPACE, "stage.changed", data, 1_700_000_000.123456)
    [held] = await live.events_since(SPACE, 0) or []
    expected = {"roster": ["alice", "bob"], "levels": {"alice": -20.5}, "live": True, "n": None}
    assert held == appended
    assert held.data == expected
    assert held.at == 1_700_000_000.123456
    with pytest.raises(TypeError):
        await live.append(SPACE, "stage.changed", {"not json": object()}, T0)


async def test_an_empty_log_has_nothing_to_resume(live: LiveState) -> None:
    assert await live.latest_seq(SPACE) == 0
    assert await live.events_since(SPACE, 0) == []


async def test_history_beyond_the_log_limit_answers_none_so_the_client_resyncs(
    live: LiveState,
) -> None:
    total = EVENT_LOG_LIMIT + 5
    for n in range(total):
        await live.append(SPACE, "reaction.burst", {"n": n}, T0)
    dropped = total - EVENT_LOG_LIMIT  # seqs 1..5 are gone
    assert await live.events_since(SPACE, 0) is None
    assert await live.events_since(SPACE, dropped - 1) is None
    oldest_resumable = await live.events_since(SPACE, dropped, limit=EVENT_LOG_LIMIT)
    assert oldest_resumable is not None
    assert [e.seq for e in oldest_resumable] == list(range(dropped + 1, total + 1))
    assert [e.seq for e in await live.events_since(SPACE, total - 1) or []] == [total]


async def test_a_client_ahead_of_the_log_must_resync(live: LiveState) -> None:
    # E.g. the store restarted (embedded) or the Space's log was forgotten, and started again.
    await live.append(SPACE, "space.live", {}, T0)
    assert await live.events_since(SPACE, 57) is None


# -- waking waiters ---------------------------------------------------------------------------


async def test_a_waiting_client_wakes_when_another_process_appends(
    live: LiveState, peer: LiveState
) -> None:
    await live.append(SPACE, "space.live", {}, T0)
    waiter = asyncio.create_task(live.wait_for_events(SPACE, 1, timeout=30))
    await until(lambda: live.waiting(SPACE) == 1, "the client to be waiting")
    await peer.append(SPACE, "stage.changed", {}, T0)
    assert await asyncio.wait_for(waiter, 5) is True
    assert live.waiting(SPACE) == 0


async def test_waiting_for_events_that_are_already_there_returns_at_once(live: LiveState) -> None:
    await live.append(SPACE, "space.live", {}, T0)
    assert await asyncio.wait_for(live.wait_for_events(SPACE, 0, timeout=30), 5) is True
    assert await live.wait_for_events(SPACE, 0, timeout=0) is True
    assert await live.wait_for_events(SPACE, 1, timeout=0) is False


async def test_a_wait_times_out_when_nothing_is_appended(live: LiveState) -> None:
    await live.append(SPACE, "space.live", {}, T0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await live.wait_for_events(SPACE, 1, timeout=0.2) is False
    assert loop.time() - started >= 0.19
    assert live.waiting(SPACE) == 0


async def test_an_event_in_another_space_does_not_wake_a_waiter(
    live: LiveState, peer: LiveState
) -> None:
    waiter = asyncio.create_task(live.wait_for_events(SPACE, 0, timeout=0.3))
    await until(lambda: live.waiting(SPACE) == 1, "the client to be waiting")
    await peer.append(OTHER, "space.live", {}, T0)
    assert await waiter is False


async def test_a_thousand_waiting_clients_all_wake_on_one_append(
    live: LiveState, peer: LiveState
) -> None:
    waiters = [
        asyncio.create_task(live.wait_for_events(SPACE, 0, timeout=30)) for _ in range(1_000)
    ]
    await until(lambda: live.waiting(SPACE) == 1_000, "a thousand clients to be waiting")
    await peer.append(SPACE, "space.live", {}, T0)
    assert await asyncio.wait_for(asyncio.gather(*waiters), 10) == [True] * 1_000


# -- reactions --------------------------------------------------------------------------------


async def test_reaction_totals_sum_each_emoji_over_the_chosen_seconds(live: LiveState) -> None:
    await live.add_reaction(SPACE, "🔥", 100, count=3)
    await live.add_reaction(SPACE, "👏", 101)
    await live.add_reaction(SPACE, "🔥", 102)
    await live.add_reaction(SPACE, "🔥", 102)
    await live.add_reaction(OTHER, "🔥", 101, count=50)
    assert await live.reaction_totals(SPACE, 100, 101) == {"🔥": 3, "👏": 1}
    assert await live.reaction_totals(SPACE, 100, 102) == {"🔥": 5, "👏": 1}
    assert await live.reaction_totals(SPACE, 102, 102) == {"🔥": 2}
    assert await live.reaction_totals(SPACE, 103, 110) == {}


async def test_reactions_from_two_processes_add_up(live: LiveState, peer: LiveState) -> None:
    await asyncio.gather(
        *((live if n % 2 else peer).add_reaction(SPACE, "❤️", 200 + n % 3) for n in range(300))
    )
    assert await live.reaction_totals(SPACE, 200, 202) == {"❤️": 300}


async def test_reactions_older_than_the_retention_are_forgotten(live: LiveState) -> None:
    await live.add_reaction(SPACE, "🔥", 1_000)
    await live.add_reaction(SPACE, "👏", 1_001)
    later = 1_000 + REACTION_RETENTION_S + 1
    await live.add_reaction(SPACE, "😂", later)
    assert await live.reaction_totals(SPACE, 1_000, 1_000) == {}
    assert await live.reaction_totals(SPACE, 0, later) == {"👏": 1, "😂": 1}
    # A reaction that arrives for a second already past retention is not kept either.
    await live.add_reaction(SPACE, "🔥", 1_000)
    assert await live.reaction_totals(SPACE, 1_000, 1_000) == {}


# -- listener count ---------------------------------------------------------------------------


async def test_ten_thousand_distinct_listeners_are_counted_within_three_percent(
    live: LiveState,
) -> None:
    keys = [f"listener-{n}" for n in range(10_000)]
    for start in range(0, len(keys), 500):
        await live.mark_listeners(SPACE, keys[start : start + 500], T0)
    count = await live.listener_count(SPACE, T0)
    assert abs(count - 10_000) <= 300, count


async def test_a_listener_marked_many_times_counts_once(live: LiveState) -> None:
    for second in range(50):
        for key in ("alice", "bob", "carol"):
            await live.mark_listener(SPACE, key, T0 + second)
    assert await live.listener_count(SPACE, T0 + 50) == 3
    assert await live.listener_count(OTHER, T0 + 50) == 0


async def test_listeners_seen_by_two_processes_are_not_counted_twice(
    live: LiveState, peer: LiveState
) -> None:
    await live.mark_listeners(SPACE, ["alice", "bob"], T0)
    await peer.mark_listeners(SPACE, ["bob", "carol"], T0 + 1)
    assert await live.listener_count(SPACE, T0 + 2) == 3
    assert await peer.listener_count(SPACE, T0 + 2) == 3


async def test_a_listener_stops_counting_once_the_window_has_passed(live: LiveState) -> None:
    await live.mark_listener(SPACE, "alice", T0)
    assert await live.listener_count(SPACE, T0) == 1
    assert await live.listener_count(SPACE, T0 + LISTENER_WINDOW_S) == 1
    gone = T0 + LISTENER_WINDOW_S + LISTENER_BUCKET_S
    assert await live.listener_count(SPACE, gone) == 0


async def test_a_listener_who_keeps_listening_keeps_counting(live: LiveState) -> None:
    for minute in range(5):
        await live.mark_listener(SPACE, "alice", T0 + 50 * minute)
    await live.mark_listener(SPACE, "bob", T0)
    assert await live.listener_count(SPACE, T0 + 200) == 1
    assert await live.listener_count(SPACE, T0 + 200 + LISTENER_WINDOW_S) == 1


# -- who is present, by name ------------------------------------------------------------------


async def test_people_present_are_listed_most_recently_seen_first_under_their_latest_name(
    live: LiveState, peer: LiveState
) -> None:
    await live.mark_present(SPACE, "u-alice", "Alice", T0)
    await peer.mark_present(SPACE, "g-bob", "Bob", T0 + 5)
    await live.mark_present(SPACE, "u-alice", "Alice L.", T0 + 10)
    await live.mark_present(OTHER, "u-carol", "Carol", T0)
    for reader in (live, peer):
        assert await reader.present(SPACE, T0 + 10) == [
            Present("u-alice", "Alice L.", T0 + 10),
            Present("g-bob", "Bob", T0 + 5),
        ]
    assert [p.user_id for p in await live.present(OTHER, T0 + 10)] == ["u-carol"]


async def test_someone_not_seen_for_the_window_is_no_longer_present(live: LiveState) -> None:
    await live.mark_present(SPACE, "u-alice", "Alice", T0)
    await live.mark_present(SPACE, "g-bob", "Bob", T0 + 30)
    assert len(await live.present(SPACE, T0 + LISTENER_WINDOW_S)) == 2
    later = await live.present(SPACE, T0 + LISTENER_WINDOW_S + 1)
    assert [p.user_id for p in later] == ["g-bob"]


async def test_a_mark_from_a_slower_clock_does_not_move_someone_back(
    live: LiveState, peer: LiveState
) -> None:
    await live.mark_present(SPACE, "u-alice", "Alice", T0 + 20)
    await peer.mark_present(SPACE, "u-alice", "Alice", T0 + 19)
    assert await live.present(SPACE, T0 + 20) == [Present("u-alice", "Alice", T0 + 20)]


async def test_at_most_audience_kept_are_held_and_the_least_recently_seen_go_first(
    live: LiveState,
) -> None:
    for n in range(AUDIENCE_KEPT + 50):
        await live.mark_present(SPACE, f"g-{n}", f"Guest {n}", T0 + n / 100)
    now = T0 + AUDIENCE_KEPT / 100
    found = await live.present(SPACE, now)
    assert len(found) == AUDIENCE_KEPT
    assert found[0].user_id == f"g-{AUDIENCE_KEPT + 49}"
    assert found[-1].user_id == "g-50"  # g-0 … g-49 were dropped for the newer ones


# -- speaking ---------------------------------------------------------------------------------


async def test_speaking_flags_are_replaced_by_each_publish(
    live: LiveState, peer: LiveState
) -> None:
    assert await live.speaking(SPACE) == {}
    await live.set_speaking(SPACE, {"alice": -20.0, "bob": -31.5}, T0)
    assert await peer.speaking(SPACE) == {"alice": -20.0, "bob": -31.5}
    await live.set_speaking(SPACE, {"carol": -12.25}, T0 + 0.2)
    assert await peer.speaking(SPACE) == {"carol": -12.25}
    await live.set_speaking(SPACE, {}, T0 + 0.4)
    assert await peer.speaking(SPACE) == {}


# -- rate limits ------------------------------------------------------------------------------


async def test_a_rate_limit_allows_a_burst_then_makes_callers_wait(live: LiveState) -> None:
    taken = [await live.take_token("react:alice", 2.0, 3, T0) for _ in range(3)]
    assert taken == [0.0, 0.0, 0.0]
    assert await live.take_token("react:alice", 2.0, 3, T0) == pytest.approx(0.5)
    assert await live.take_token("react:alice", 2.0, 3, T0 + 0.25) == pytest.approx(0.25)
    assert await live.take_token("react:alice", 2.0, 3, T0 + 0.5) == 0.0


async def test_a_rate_limit_is_shared_by_two_processes(live: LiveState, peer: LiveState) -> None:
    assert await live.take_token("hand:bob", 1.0, 3, T0) == 0.0
    assert await peer.take_token("hand:bob", 1.0, 3, T0) == 0.0
    assert await live.take_token("hand:bob", 1.0, 3, T0) == 0.0
    assert await peer.take_token("hand:bob", 1.0, 3, T0) > 0.9
    assert await live.take_token("hand:bob", 1.0, 3, T0 + 1.0) == 0.0


async def test_a_byte_budget_is_taken_by_cost_across_processes_and_refunds_return(
    live: LiveState, peer: LiveState
) -> None:
    """A storage quota (ratelimit.storage) takes bytes, not requests, from the shared bucket."""
    assert await live.take_token("storage:alice", 10.0, 1_000_000, T0, 600_000) == 0.0
    assert await peer.take_token("storage:alice", 10.0, 1_000_000, T0, 600_000) == pytest.approx(
        20_000.0
    )  # 400,000 left, 200,000 short at 10 bytes/s; and nothing was taken
    assert await peer.take_token("storage:alice", 10.0, 1_000_000, T0, 400_000) == 0.0
    assert await live.take_token("storage:alice", 10.0, 1_000_000, T0, -300_000) == 0.0
    assert await peer.take_token("storage:alice", 10.0, 1_000_000, T0, 300_000) == 0.0
    assert await live.take_token("storage:alice", 10.0, 1_000_000, T0, -5_000_000) == 0.0
    assert await live.take_token("storage:alice", 10.0, 1_000_000, T0, 1_000_001) > 0


async def test_rate_limits_for_different_callers_are_independent(live: LiveState) -> None:
    assert await live.take_token("react:alice", 1.0, 1, T0) == 0.0
    assert await live.take_token("react:alice", 1.0, 1, T0) > 0
    assert await live.take_token("react:bob", 1.0, 1, T0) == 0.0


# -- sessions ---------------------------------------------------------------------------------


async def test_a_session_signed_out_in_one_process_is_refused_by_every_other(
    live: LiveState, peer: LiveState
) -> None:
    assert not await peer.session_revoked("fp-alice", T0)
    await live.revoke_session("fp-alice", T0 + 3600, T0)
    assert await peer.session_revoked("fp-alice", T0 + 1)
    assert await live.session_revoked("fp-alice", T0 + 1)
    assert not await peer.session_revoked("fp-bob", T0 + 1)


async def test_a_session_that_has_expired_anyway_is_not_remembered(live: LiveState) -> None:
    await live.revoke_session("fp-old", T0 - 1, T0)
    assert not await live.session_revoked("fp-old", T0)


@pytest.mark.parametrize("limit", LIMITS, ids=lambda limit: limit.name)
async def test_every_named_limit_allows_its_burst_across_processes_then_refuses(
    live: LiveState, peer: LiveState, limit: Limit
) -> None:
    for i in range(limit.burst):  # spread over two processes, as over two nodes
        await take(live if i % 2 else peer, limit, "10.0.0.7", T0)
    with pytest.raises(Limited) as refused:
        await take(live, limit, "10.0.0.7", T0)
    assert refused.value.wait == pytest.approx(1 / limit.per_second)
    await take(peer, limit, "10.0.0.8", T0)  # another caller has their own bucket
    await take(peer, limit, "10.0.0.7", T0 + 1 / limit.per_second)  # one token refilled


# -- forgetting a Space -----------------------------------------------------------------------


async def _fill(live: LiveState, space_id: str) -> None:
    await live.append(space_id, "space.live", {"title": "launch"}, T0)
    await live.add_reaction(space_id, "🔥", int(T0))
    await live.mark_listeners(space_id, ["alice", "bob"], T0)
    await live.mark_present(space_id, "u-alice", "Alice", T0)
    await live.set_speaking(space_id, {"alice": -20.0}, T0)
    await live.raise_hand(space_id, Hand("carol", "Carol", T0), LogEvent("hand.raised", {}, T0))


async def test_forgetting_a_space_drops_everything_it_held_and_nothing_else(
    live: LiveState,
) -> None:
    await _fill(live, SPACE)
    await _fill(live, OTHER)
    await live.forget_space(SPACE)
    assert await live.latest_seq(SPACE) == 0
    assert await live.events_since(SPACE, 0) == []
    assert await live.reaction_totals(SPACE, int(T0) - 10, int(T0)) == {}
    assert await live.listener_count(SPACE, T0) == 0
    assert await live.present(SPACE, T0) == []
    assert await live.speaking(SPACE) == {}
    assert await live.hands(SPACE) == []
    assert (await live.append(SPACE, "space.live", {}, T0)).seq == 1
    assert await live.latest_seq(OTHER) == 2  # its event and its raised hand's
    assert await live.reaction_totals(OTHER, int(T0) - 10, int(T0)) == {"🔥": 1}
    assert await live.listener_count(OTHER, T0) == 2
    assert [p.display_name for p in await live.present(OTHER, T0)] == ["Alice"]
    assert await live.speaking(OTHER) == {"alice": -20.0}
    assert [h.user_id for h in await live.hands(OTHER)] == ["carol"]


async def test_a_client_waiting_on_a_forgotten_space_sees_its_new_log(
    live: LiveState, peer: LiveState
) -> None:
    for _ in range(3):
        await live.append(SPACE, "stage.changed", {}, T0)
    waiter = asyncio.create_task(live.wait_for_events(SPACE, 3, timeout=30))
    await until(lambda: live.waiting(SPACE) == 1, "the client to be waiting")
    await peer.forget_space(SPACE)
    for _ in range(4):
        await peer.append(SPACE, "stage.changed", {}, T0)
    assert await asyncio.wait_for(waiter, 5) is True
    assert await live.latest_seq(SPACE) == 4


async def test_closing_the_store_releases_waiting_clients_at_once(live: LiveState) -> None:
    waiter = asyncio.create_task(live.wait_for_events(SPACE, 0, timeout=30))
    await until(lambda: live.waiting(SPACE) == 1, "the client to be waiting")
    await live.close()
    assert await asyncio.wait_for(waiter, 5) is False


async def test_asking_for_history_before_the_first_event_or_in_empty_pages_is_a_bug(
    live: LiveState,
) -> None:
    with pytest.raises(ValueError, match="after_seq"):
        await live.events_since(SPACE, -1)
    with pytest.raises(ValueError, match="limit"):
        await live.events_since(SPACE, 0, limit=0)


# -- raised hands ----------------------------------------------------------------------------


def raised(user: str, at: float = T0) -> tuple[Hand, LogEvent]:
    return Hand(user, user.title(), at), LogEvent("hand.raised", {"user_id": user}, at)


async def test_a_hand_and_its_event_go_up_together_and_only_once(
    live: LiveState, peer: LiveState
) -> None:
    event = await live.raise_hand(SPACE, *raised("alice"))
    assert event is not None
    assert (event.seq, event.type) == (1, "hand.raised")
    assert await peer.raise_hand(SPACE, *raised("alice", T0 + 1)) is None  # already up
    assert await live.latest_seq(SPACE) == 1
    assert await peer.hands(SPACE) == [Hand("alice", "Alice", T0)]


async def test_hands_are_listed_first_raised_first(live: LiveState, peer: LiveState) -> None:
    await live.raise_hand(SPACE, *raised("carol", T0 + 2))
    await peer.raise_hand(SPACE, *raised("alice", T0))
    await live.raise_hand(SPACE, *raised("bob", T0 + 1))
    assert [h.user_id for h in await live.hands(SPACE)] == ["alice", "bob", "carol"]
    assert await live.hands(OTHER) == []


async def test_lowering_a_hand_appends_its_event_only_if_it_was_up(
    live: LiveState, peer: LiveState
) -> None:
    await live.raise_hand(SPACE, *raised("alice"))
    lowered = await peer.lower_hand(SPACE, "alice", LogEvent("hand.lowered", {}, T0))
    assert lowered is not None
    assert (lowered.seq, lowered.type) == (2, "hand.lowered")
    assert await live.lower_hand(SPACE, "alice", LogEvent("hand.lowered", {}, T0)) is None
    assert await live.lower_hand(SPACE, "nobody", LogEvent("hand.lowered", {}, T0)) is None
    assert await live.latest_seq(SPACE) == 2
    assert await live.hands(SPACE) == []


async def test_a_hand_lowered_because_of_another_change_appends_nothing(live: LiveState) -> None:
    await live.raise_hand(SPACE, *raised("alice"))
    assert await live.lower_hand(SPACE, "alice") is None  # seated: the seat's event says so
    assert await live.hands(SPACE) == []
    assert await live.latest_seq(SPACE) == 1


async def test_two_processes_raising_the_same_hand_at_once_append_one_event(
    live: LiveState, peer: LiveState
) -> None:
    results = await asyncio.gather(
        *(store.raise_hand(SPACE, *raised("alice")) for store in [live, peer] * 10)
    )
    assert sum(1 for r in results if r is not None) == 1
    assert await live.latest_seq(SPACE) == 1


async def test_a_space_holds_at_most_the_limit_of_hands(
    live: LiveState, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (redis_live_module, embedded_live_module):
        monkeypatch.setattr(module, "HANDS_LIMIT", 3)
    for user in ("a", "b", "c"):
        await live.raise_hand(SPACE, *raised(user))
    with pytest.raises(HandsFull):
        await live.raise_hand(SPACE, *raised("d"))
    assert len(await live.hands(SPACE)) == 3
    assert await live.latest_seq(SPACE) == 3
    await live.lower_hand(SPACE, "a")
    assert await live.raise_hand(SPACE, *raised("d")) is not None
    assert HANDS_LIMIT >= 1_000  # the real limit: far above what a host can read


# -- Redis only: keys, expiry, subscriptions --------------------------------------------------


def _space_keys(keys: list[str], space_id: str) -> list[str]:
    return [k for k in keys if f"{{{space_id}}}" in k]


async def test_redis_forgetting_a_space_leaves_no_key_of_it(
    redis_live: RedisLiveState, raw_redis: redis.asyncio.Redis
) -> None:
    await _fill(redis_live, SPACE)
    await _fill(redis_live, OTHER)
    await redis_live.take_token("react:alice", 1.0, 3, T0)
    assert _space_keys([k async for k in raw_redis.scan_iter()], SPACE)
    await redis_live.forget_space(SPACE)
    remaining = [k async for k in raw_redis.scan_iter()]
    assert _space_keys(remaining, SPACE) == []
    assert _space_keys(remaining, OTHER)
    assert [k for k in remaining if SPACE in k] == []


async def test_redis_every_key_expires_by_itself(
    redis_live: RedisLiveState, raw_redis: redis.asyncio.Redis
) -> None:
    await _fill(redis_live, SPACE)
    await redis_live.take_token("react:alice", 2.0, 10, T0)
    keys = [k async for k in raw_redis.scan_iter()]
    assert len(keys) >= 7
    ttls = {k: await raw_redis.pttl(k) for k in keys}
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    speaking_key = redis_live_module.SPEAKING_KEY.format(prefix="townhall", space=SPACE)
    assert ttls[speaking_key] <= SPEAKING_TTL_S * 1000
    assert set(_space_keys(keys, SPACE)) <= set(redis_live.space_keys(SPACE))


async def test_redis_the_event_log_holds_only_the_limit(
    redis_live: RedisLiveState, raw_redis: redis.asyncio.Redis
) -> None:
    for n in range(EVENT_LOG_LIMIT + 20):
        await redis_live.append(SPACE, "reaction.burst", {"n": n}, T0)
    log_key = redis_live_module.EVENT_LOG_KEY.format(prefix="townhall", space=SPACE)
    assert await raw_redis.xlen(log_key) == EVENT_LOG_LIMIT


async def test_redis_a_process_holds_one_subscription_per_space_however_many_wait(
    redis_live: RedisLiveState, raw_redis: redis.asyncio.Redis
) -> None:
    waiters = [
        asyncio.create_task(redis_live.wait_for_events(space, 0, timeout=30))
        for space in (SPACE, OTHER)
        for _ in range(200)
    ]
    await until(
        lambda: redis_live.waiting(SPACE) == 200 and redis_live.waiting(OTHER) == 200,
        "four hundred clients to be waiting",
    )
    channels = [
        redis_live_module.EVENT_CHANNEL.format(prefix="townhall", space=s) for s in (SPACE, OTHER)
    ]
    assert dict(await raw_redis.pubsub_numsub(*channels)) == dict.fromkeys(channels, 1)
    assert await raw_redis.pubsub_numpat() == 0
    await redis_live.append(SPACE, "space.live", {}, T0)
    await redis_live.append(OTHER, "space.live", {}, T0)
    assert await asyncio.wait_for(asyncio.gather(*waiters), 10) == [True] * 400


async def test_redis_a_waiting_client_still_wakes_after_the_subscription_connection_drops(
    redis_live: RedisLiveState, raw_redis: redis.asyncio.Redis, redis_url: str
) -> None:
    waiter = asyncio.create_task(redis_live.wait_for_events(SPACE, 0, timeout=30))
    await until(lambda: redis_live.waiting(SPACE) == 1, "the client to be waiting")
    assert await raw_redis.client_kill_filter(_type="pubsub") == 1
    other = RedisLiveState.from_url(redis_url)
    try:
        await other.append(SPACE, "space.live", {}, T0)  # may land while we are disconnected
    finally:
        await other.close()
    assert await asyncio.wait_for(waiter, 10) is True


def test_every_redis_key_is_documented() -> None:
    documented = DOCS.read_text()
    templates = {
        name: value
        for name, value in vars(redis_live_module).items()
        if re.fullmatch(r"[A-Z_]+_(KEY|CHANNEL)", name) and isinstance(value, str)
    }
    assert len(templates) >= 8
    for name, template in templates.items():
        shown = template.format(prefix="townhall", space="<space>", slot="<slot>", key="<key>")
        assert f"`{shown}`" in documented, f"{name} ({shown}) is missing from {DOCS.name}"


# -- embedded only: memory stays bounded ------------------------------------------------------


async def test_embedded_revocations_are_forgotten_once_their_tokens_expire() -> None:
    live = EmbeddedLiveState()
    for n in range(10_000):  # each revocation lives a second; a new one arrives every 10 ms
        now = T0 + n / 100
        await live.revoke_session(f"fp-{n}", now + 1.0, now)
    assert len(live._revoked) < 2_500
    assert await live.session_revoked("fp-9999", T0 + 99.995)


async def test_embedded_memory_stays_bounded_however_long_and_large_the_space() -> None:
    live = EmbeddedLiveState()
    for n in range(3 * EVENT_LOG_LIMIT):
        await live.append(SPACE, "reaction.burst", {"n": n}, T0)
    for second in range(1_000):
        await live.add_reaction(SPACE, "🔥", second)
    for bucket in range(20):
        now = T0 + bucket * LISTENER_BUCKET_S
        await live.mark_listeners(SPACE, [f"{bucket}-{n}" for n in range(5_000)], now)
    assert len(live._logs[SPACE].events) == EVENT_LOG_LIMIT
    assert len(live._reactions[SPACE].seconds) <= REACTION_RETENTION_S + 1
    buckets = live._listeners[SPACE].buckets
    assert len(buckets) <= LISTENER_WINDOW_S // LISTENER_BUCKET_S + 2
    assert all(sketch.nbytes <= HyperLogLog.M for sketch in buckets.values())
    assert await live.listener_count(SPACE, now) == pytest.approx(35_000, rel=0.03)
    await live.close()


@pytest.mark.parametrize("n", [1, 7, 256, 257, 1_000, 20_000, 200_000])
def test_the_embedded_listener_sketch_is_exact_when_small_and_close_when_large(n: int) -> None:
    halves = HyperLogLog(), HyperLogLog()
    for i in range(n):
        halves[i % 2].add(HyperLogLog.hash(f"listener-{i}"))
        halves[(i + 1) % 2].add(HyperLogLog.hash(f"listener-{i // 2}"))  # overlap, duplicates
    estimate = HyperLogLog.count_union(halves)
    if n <= HyperLogLog.SPARSE_LIMIT:
        assert estimate == n
    else:
        assert estimate == pytest.approx(n, rel=0.03)
    assert all(sketch.nbytes <= HyperLogLog.M for sketch in halves)


async def test_a_log_that_starts_again_has_a_new_id_so_resuming_clients_can_tell(
    live: LiveState,
) -> None:
    assert await live.log_id("logid") == ""
    await live.append("logid", "a", {}, 1.0)
    first = await live.log_id("logid")
    await live.append("logid", "b", {}, 2.0)
    assert first
    assert await live.log_id("logid") == first  # stable while the log lives
    await live.forget_space("logid")
    await live.append("logid", "c", {}, 3.0)
    assert await live.log_id("logid") not in ("", first)


async def test_the_position_of_a_log_changes_with_every_event_and_every_new_log(
    live: LiveState, peer: LiveState
) -> None:
    assert await live.position("pos") == ("", 0)
    await live.append("pos", "a", {}, 1.0)
    first = await peer.position("pos")
    assert first == (await live.log_id("pos"), 1)
    await peer.append("pos", "b", {}, 2.0)
    assert await live.position("pos") == (first[0], 2)
    await live.forget_space("pos")
    await live.append("pos", "c", {}, 3.0)
    log_id, seq = await peer.position("pos")
    assert seq == 1
    assert log_id not in ("", first[0]), "same number, new log: the position still differs"
