"""The kept roster's raised hands: the same answers as a plain set, without copying the queue."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from townhall.spaces.hands import HandSet
from townhall.spaces.model import UserId

USERS = [UserId(f"g-user{n:08d}") for n in range(60)]
CHANGES = st.lists(st.tuples(st.booleans(), st.sampled_from(USERS)), max_size=400)


@given(start=st.frozensets(st.sampled_from(USERS)), changes=CHANGES)
def test_hands_going_up_and_down_read_as_a_plain_set_would(
    start: frozenset[UserId], changes: list[tuple[bool, UserId]]
) -> None:
    hands, plain = HandSet.of(start), set(start)
    for up, user in changes:
        before, as_it_was = hands, frozenset(hands)
        hands = hands.plus(user) if up else hands.minus(user)
        plain.add(user) if up else plain.discard(user)
        assert hands == plain
        assert plain == hands
        assert len(hands) == len(plain)
        assert sorted(hands) == sorted(plain)
        assert all((u in hands) == (u in plain) for u in USERS)
        assert before == as_it_was  # a change never alters the set it was made from
    assert hash(hands) == hash(frozenset(plain))  # interchangeable with the frozenset it stands for


def test_one_hand_in_a_full_queue_does_not_copy_the_queue() -> None:
    queue = HandSet.of(frozenset(UserId(f"g-{n:012d}") for n in range(10_000)))
    raised = queue.plus(UserId("g-newcomer000"))
    lowered = raised.minus(UserId("g-000000000001"))
    assert raised._base is queue._base
    assert lowered._base is queue._base
    assert UserId("g-newcomer000") in lowered
    assert UserId("g-000000000001") not in lowered
    assert len(lowered) == 10_000
