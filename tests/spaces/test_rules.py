"""Who may do what to whom: the whole permission matrix, and the rules in the product's words."""

from __future__ import annotations

import itertools

import pytest

from townhall.spaces.model import Role, SpaceId, StageLimits, StageMember, UserId
from townhall.spaces.rules import REASONS, Action, Decision, check_capacity, decide

# The expected matrix, written out by hand from the issue and the rules module's docstring — not
# derived from rules.py's tables. For each action, every allowed (actor, target); anything not
# listed is refused.
#   "host"            the action takes no target: target=None (is_self makes no difference)
#   "host>speaker"    the host on a speaker who is someone else (is_self=False)
#   "speaker>self"    a speaker on themselves: is_self=True, target None or their own role
MODERATE_LISTENER = {"host>listener", "cohost>listener"}
REMOVE_OR_BAN = {
    "host>cohost",
    "host>speaker",
    "host>listener",
    "cohost>speaker",
    "cohost>listener",
}
STAGE_SELF = {"host>self", "cohost>self", "speaker>self"}
HOST_AND_COHOSTS = {"host", "cohost"}
STAGE_MEMBERS = {"host", "cohost", "speaker"}
ANYONE = {"host", "cohost", "speaker", "listener"}

ALLOWED: dict[Action, set[str]] = {
    Action.INVITE_TO_SPEAK: MODERATE_LISTENER,
    Action.ACCEPT_REQUEST: MODERATE_LISTENER,
    Action.DECLINE_REQUEST: MODERATE_LISTENER,
    Action.MOVE_TO_AUDIENCE: {"host>cohost", "host>speaker", "cohost>speaker"}
    | {"cohost>self", "speaker>self"},
    Action.MUTE: {"host>cohost", "host>speaker", "cohost>cohost", "cohost>speaker"} | STAGE_SELF,
    Action.UNMUTE: STAGE_SELF,
    Action.REMOVE: REMOVE_OR_BAN,
    Action.BAN: REMOVE_OR_BAN,
    Action.ADD_COHOST: {"host>speaker", "host>listener"},
    Action.REMOVE_COHOST: {"host>cohost", "cohost>self"},
    Action.TRANSFER_HOST: {"host>cohost", "host>speaker"},
    Action.END_SPACE: {"host"},
    Action.GO_LIVE: {"host"},
    Action.SET_DELAY: HOST_AND_COHOSTS,
    Action.DUMP: HOST_AND_COHOSTS,
    Action.PIN_LINK: HOST_AND_COHOSTS,
    Action.EDIT_SPACE: HOST_AND_COHOSTS,
    Action.SPEAKER_LINKS: HOST_AND_COHOSTS,
    Action.COHOST_LINKS: {"host"},
    Action.ROTATE_INVITE: {"host"},
    Action.LEAVE_STAGE: {"cohost", "speaker"},
    Action.STEP_DOWN: {"cohost"},
    Action.MUTE_SELF: STAGE_MEMBERS,
    Action.UNMUTE_SELF: STAGE_MEMBERS,
    Action.JOIN_STAGE: STAGE_MEMBERS,
    Action.RAISE_HAND: {"listener"},
    Action.LOWER_HAND: {"listener"},
    Action.REACT: ANYONE,
    Action.LISTEN: ANYONE,
}

TARGETS: list[Role | None] = [None, *Role]


def expected(actor: Role, action: Action, target: Role | None, is_self: bool) -> bool:
    entries = ALLOWED[action]
    if target is None and actor.value in entries:
        return True
    if is_self:
        return target in (None, actor) and f"{actor}>self" in entries
    return target is not None and f"{actor}>{target}" in entries


def all_cases() -> list[tuple[Role, Action, Role | None, bool]]:
    return list(itertools.product(Role, Action, TARGETS, [False, True]))


def test_the_expected_table_covers_every_action_and_spells_every_role_right() -> None:
    assert set(ALLOWED) == set(Action)
    words = {r.value for r in Role}
    for action, entries in ALLOWED.items():
        for entry in entries:
            actor, _, target = entry.partition(">")
            assert actor in words, (action, entry)
            assert target in words | {"self", ""}, (action, entry)


def test_every_actor_action_target_combination_matches_the_table() -> None:
    wrong = []
    for actor, action, target, is_self in all_cases():
        got = decide(actor, action, target, is_self=is_self)
        want = expected(actor, action, target, is_self)
        if got.allowed != want:
            wrong.append(f"{actor} {action} {target} is_self={is_self}: got {got}, want {want}")
    assert wrong == [], "\n".join(wrong)


def test_every_answer_carries_a_known_reason() -> None:
    for actor, action, target, is_self in all_cases():
        got = decide(actor, action, target, is_self=is_self)
        assert got.reason in REASONS
        assert (got.reason == "ok") == got.allowed, (actor, action, target, is_self, got)


def test_a_banned_person_can_do_nothing_at_all() -> None:
    for actor, action, target, is_self in all_cases():
        got = decide(actor, action, target, is_self=is_self, actor_banned=True)
        assert got == Decision(False, "banned"), (actor, action, target, is_self)


def refused(reason: str) -> Decision:
    return Decision(False, reason)


ALLOWED_DECISION = Decision(True, "ok")


# --- Banned --------------------------------------------------------------------------------------


def test_a_banned_listener_cannot_react() -> None:
    assert decide(Role.LISTENER, Action.REACT, actor_banned=True) == refused("banned")


def test_a_banned_listener_cannot_listen_with_a_new_join() -> None:
    assert decide(Role.LISTENER, Action.LISTEN, actor_banned=True) == refused("banned")


def test_a_banned_listener_cannot_raise_a_hand() -> None:
    assert decide(Role.LISTENER, Action.RAISE_HAND, actor_banned=True) == refused("banned")


# --- Mute and unmute -----------------------------------------------------------------------------


def test_only_the_speaker_can_unmute_themselves() -> None:
    assert decide(Role.SPEAKER, Action.UNMUTE_SELF) == ALLOWED_DECISION
    assert decide(Role.SPEAKER, Action.UNMUTE, Role.SPEAKER, is_self=True) == ALLOWED_DECISION
    for moderator in (Role.HOST, Role.COHOST):
        assert decide(moderator, Action.UNMUTE, Role.SPEAKER) == refused("only_self_can_unmute")


def test_not_even_the_host_can_unmute_a_co_host() -> None:
    assert decide(Role.HOST, Action.UNMUTE, Role.COHOST) == refused("only_self_can_unmute")


def test_the_host_and_co_hosts_can_mute_a_speaker() -> None:
    assert decide(Role.HOST, Action.MUTE, Role.SPEAKER) == ALLOWED_DECISION
    assert decide(Role.COHOST, Action.MUTE, Role.SPEAKER) == ALLOWED_DECISION


def test_a_co_host_can_mute_another_co_host_for_a_hot_mic() -> None:
    assert decide(Role.COHOST, Action.MUTE, Role.COHOST) == ALLOWED_DECISION


def test_a_co_host_cannot_mute_the_host() -> None:
    assert decide(Role.COHOST, Action.MUTE, Role.HOST) == refused("cannot_target_host")


def test_a_speaker_cannot_mute_another_speaker() -> None:
    assert decide(Role.SPEAKER, Action.MUTE, Role.SPEAKER) == refused("not_moderator")


def test_muting_a_listener_makes_no_sense() -> None:
    assert decide(Role.HOST, Action.MUTE, Role.LISTENER) == refused("target_not_on_stage")


def test_a_listener_has_no_microphone_to_mute() -> None:
    assert decide(Role.LISTENER, Action.MUTE_SELF) == refused("not_on_stage")


# --- Remove and ban ------------------------------------------------------------------------------


def test_a_co_host_cannot_ban_the_host() -> None:
    assert decide(Role.COHOST, Action.BAN, Role.HOST) == refused("cannot_target_host")


def test_a_co_host_cannot_remove_or_ban_another_co_host_but_the_host_can() -> None:
    for action in (Action.REMOVE, Action.BAN, Action.MOVE_TO_AUDIENCE):
        assert decide(Role.COHOST, action, Role.COHOST) == refused("cohost_cannot_target_cohost")
        assert decide(Role.HOST, action, Role.COHOST) == ALLOWED_DECISION


def test_a_co_host_can_remove_and_ban_speakers_and_listeners() -> None:
    for action, target in itertools.product(
        (Action.REMOVE, Action.BAN), (Role.SPEAKER, Role.LISTENER)
    ):
        assert decide(Role.COHOST, action, target) == ALLOWED_DECISION


def test_the_host_cannot_remove_or_ban_themselves() -> None:
    for action in (Action.REMOVE, Action.BAN):
        assert decide(Role.HOST, action, Role.HOST, is_self=True) == refused("cannot_target_self")


def test_a_listener_cannot_ban_anyone() -> None:
    assert decide(Role.LISTENER, Action.BAN, Role.LISTENER) == refused("not_moderator")


# --- The stage -----------------------------------------------------------------------------------


def test_host_and_co_hosts_invite_listeners_to_speak() -> None:
    for moderator in (Role.HOST, Role.COHOST):
        for action in (Action.INVITE_TO_SPEAK, Action.ACCEPT_REQUEST, Action.DECLINE_REQUEST):
            assert decide(moderator, action, Role.LISTENER) == ALLOWED_DECISION


def test_a_speaker_cannot_invite_anyone_to_speak() -> None:
    assert decide(Role.SPEAKER, Action.INVITE_TO_SPEAK, Role.LISTENER) == refused("not_moderator")


def test_inviting_someone_already_on_stage_makes_no_sense() -> None:
    assert decide(Role.HOST, Action.INVITE_TO_SPEAK, Role.SPEAKER) == refused("target_not_listener")


def test_the_host_cannot_leave_the_stage_without_handing_over() -> None:
    assert decide(Role.HOST, Action.LEAVE_STAGE) == refused("host_cannot_leave_stage")
    assert decide(Role.HOST, Action.MOVE_TO_AUDIENCE, is_self=True) == refused(
        "host_cannot_leave_stage"
    )


def test_speakers_and_co_hosts_can_leave_the_stage() -> None:
    assert decide(Role.SPEAKER, Action.LEAVE_STAGE) == ALLOWED_DECISION
    assert decide(Role.COHOST, Action.LEAVE_STAGE) == ALLOWED_DECISION


def test_only_stage_members_connect_stage_audio() -> None:
    assert decide(Role.SPEAKER, Action.JOIN_STAGE) == ALLOWED_DECISION
    assert decide(Role.LISTENER, Action.JOIN_STAGE) == refused("not_on_stage")


# --- Hands and reactions -------------------------------------------------------------------------


def test_a_listener_raises_and_lowers_their_own_hand() -> None:
    assert decide(Role.LISTENER, Action.RAISE_HAND) == ALLOWED_DECISION
    assert decide(Role.LISTENER, Action.LOWER_HAND) == ALLOWED_DECISION


def test_a_speaker_does_not_raise_a_hand() -> None:
    assert decide(Role.SPEAKER, Action.RAISE_HAND) == refused("already_on_stage")


def test_everyone_may_react_and_listen() -> None:
    for role in Role:
        assert decide(role, Action.REACT) == ALLOWED_DECISION
        assert decide(role, Action.LISTEN) == ALLOWED_DECISION


# --- Host only -----------------------------------------------------------------------------------


def test_only_the_host_can_end_the_space() -> None:
    assert decide(Role.HOST, Action.END_SPACE) == ALLOWED_DECISION
    assert decide(Role.COHOST, Action.END_SPACE) == refused("not_host")


def test_only_the_host_goes_live() -> None:
    assert decide(Role.HOST, Action.GO_LIVE) == ALLOWED_DECISION
    assert decide(Role.COHOST, Action.GO_LIVE) == refused("not_host")


def test_a_co_host_can_dump_the_delay_buffer_but_a_speaker_cannot() -> None:
    assert decide(Role.COHOST, Action.DUMP) == ALLOWED_DECISION
    assert decide(Role.SPEAKER, Action.DUMP) == refused("not_moderator")


def test_only_the_host_adds_and_removes_co_hosts() -> None:
    assert decide(Role.HOST, Action.ADD_COHOST, Role.SPEAKER) == ALLOWED_DECISION
    assert decide(Role.HOST, Action.REMOVE_COHOST, Role.COHOST) == ALLOWED_DECISION
    assert decide(Role.COHOST, Action.ADD_COHOST, Role.SPEAKER) == refused("not_host")
    assert decide(Role.COHOST, Action.REMOVE_COHOST, Role.COHOST) == refused("not_host")


def test_a_co_host_cannot_be_made_co_host_twice() -> None:
    assert decide(Role.HOST, Action.ADD_COHOST, Role.COHOST) == refused("target_already_cohost")


def test_a_co_host_can_step_down_and_a_speaker_has_nothing_to_step_down_from() -> None:
    assert decide(Role.COHOST, Action.STEP_DOWN) == ALLOWED_DECISION
    assert decide(Role.COHOST, Action.REMOVE_COHOST, is_self=True) == ALLOWED_DECISION
    assert decide(Role.SPEAKER, Action.STEP_DOWN) == refused("not_cohost")


def test_the_host_hands_over_to_someone_on_stage_only() -> None:
    assert decide(Role.HOST, Action.TRANSFER_HOST, Role.COHOST) == ALLOWED_DECISION
    assert decide(Role.HOST, Action.TRANSFER_HOST, Role.SPEAKER) == ALLOWED_DECISION
    assert decide(Role.HOST, Action.TRANSFER_HOST, Role.LISTENER) == refused("target_not_on_stage")
    assert decide(Role.COHOST, Action.TRANSFER_HOST, Role.SPEAKER) == refused("not_host")


# --- Inputs that make no sense -------------------------------------------------------------------


def test_an_action_on_someone_needs_a_target() -> None:
    assert decide(Role.HOST, Action.BAN) == refused("target_required")


def test_an_action_on_the_space_takes_no_target() -> None:
    assert decide(Role.HOST, Action.END_SPACE, Role.SPEAKER) == refused("unexpected_target")


def test_acting_on_yourself_with_someone_elses_role_is_refused() -> None:
    assert decide(Role.SPEAKER, Action.MUTE, Role.COHOST, is_self=True) == refused(
        "inconsistent_self"
    )


# --- Capacity ------------------------------------------------------------------------------------


def member(n: int, role: Role) -> StageMember:
    return StageMember(SpaceId("aaaaaaaaaa"), UserId(f"u-{n:012d}"), role, f"p{n}", 0.0)


def stage(cohosts: int, speakers: int) -> list[StageMember]:
    people = [member(0, Role.HOST)]
    people += [member(1 + i, Role.COHOST) for i in range(cohosts)]
    people += [member(100 + i, Role.SPEAKER) for i in range(speakers)]
    return people


def test_an_eleventh_speaker_does_not_fit_on_a_default_stage() -> None:
    limits = StageLimits()
    assert check_capacity(stage(2, 9), limits, Role.SPEAKER) == ALLOWED_DECISION
    assert check_capacity(stage(2, 10), limits, Role.SPEAKER) == refused("stage_full")


def test_a_third_co_host_does_not_fit_on_a_default_stage() -> None:
    limits = StageLimits()
    assert check_capacity(stage(1, 10), limits, Role.COHOST) == ALLOWED_DECISION
    assert check_capacity(stage(2, 0), limits, Role.COHOST) == refused("cohosts_full")


def test_stage_limits_are_configurable() -> None:
    limits = StageLimits(max_cohosts=0, max_speakers=3)
    assert check_capacity(stage(0, 0), limits, Role.COHOST) == refused("cohosts_full")
    assert check_capacity(stage(0, 2), limits, Role.SPEAKER) == ALLOWED_DECISION
    assert check_capacity(stage(0, 3), limits, Role.SPEAKER) == refused("stage_full")


@pytest.mark.parametrize("role", [Role.HOST, Role.LISTENER])
def test_the_host_role_and_the_audience_are_never_full(role: Role) -> None:
    limits = StageLimits(max_cohosts=0, max_speakers=0)
    assert check_capacity(stage(5, 50), limits, role) == ALLOWED_DECISION
