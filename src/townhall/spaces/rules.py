"""Who may do what to whom in a Space: the permission rules, as tables, with no I/O.

Theory of operation
===================

Every request that changes a Space or the people in it — from any adapter: HTTP, WebSocket,
CLI — is first put to `decide(actor, action, target)`:

* `actor` is the role of the person asking (`Role`: host > cohost > speaker > listener);
* `action` is what they want (`Action`);
* `target` is the role of the person it is aimed at, or None for actions on the Space itself or
  on oneself; `is_self` says that the target is the actor (so that "unmute user X" called by X
  is the speaker unmuting themselves);
* `actor_banned` is whether the asker is banned from this Space.

The answer is a `Decision`: allowed or not, and a machine-readable reason the API maps to an
error code. The rules are data — three tables below — and `decide()` only looks them up:

``UNTARGETED``
    Actions on the Space or on oneself (END_SPACE, MUTE_SELF, RAISE_HAND, ...): action → roles
    that may do it. They take no target.
``TARGETED``
    Actions on someone else (MUTE, BAN, INVITE_TO_SPEAK, ...): action → actor role → the target
    roles it may act on.
``ON_SELF``
    A targeted action aimed at oneself is the matching self action (MUTE of oneself is
    MUTE_SELF, MOVE_TO_AUDIENCE of oneself is LEAVE_STAGE, REMOVE_COHOST of oneself is
    STEP_DOWN); any other targeted action on oneself is refused ("cannot_target_self").

What a role *is* is decided elsewhere (the store knows who is on the stage); what the Space's
state allows (no GO_LIVE once live) is lifecycle.py's; how many people fit on the stage is
`check_capacity`'s. `decide` answers only "may this role do this to that role".

The rules
---------
From the issue:

* Host and co-hosts moderate: invite to speak, accept or decline a request, move a speaker back
  to the audience, mute, remove, ban. Nobody acts on the host (the host is unique, so targeting
  the host is always someone else doing it). Only the host may remove, ban or move a co-host.
* Only the speaker can unmute themselves: UNMUTE of someone else is refused for everyone,
  the host included ("only_self_can_unmute"); a host mute sets a flag only its owner clears.
* Host only: ADD_COHOST, REMOVE_COHOST, TRANSFER_HOST, END_SPACE, and ROTATE_INVITE (who may
  hear a private Space is the host's decision, like whether it exists at all).
* Stage members mute and unmute themselves and leave the stage.
* A banned actor may do nothing at all, not even LISTEN.

Where the issue is silent, what Twitter/X Spaces, Clubhouse and Discord Stage users expect:

* **GO_LIVE is the host's alone**, like END_SPACE: SPEC and issue say "until the host presses Go
  live", and the on-air switch is one person's so that nobody is put on air mid-sentence by
  someone else's click (the 2023-05-24 hot mic).
* **Invite links** (spaces/invite_links.py): host and co-hosts make, list and revoke speaker
  links (SPEAKER_LINKS); only the host makes or revokes co-host links (COHOST_LINKS), since
  whoever opens one moderates.
* **SET_DELAY, DUMP, PIN_LINK, EDIT_SPACE: host and co-hosts.** The issue gives dump to both, and
  the delay is the dump's other half; co-hosts are the producers who pin links and fix a title
  (Twitter lets co-hosts pin). Edits are visible and reversible.
* **A co-host may mute another co-host** (not the host). Muting is the hot-mic safety valve and
  the muted person undoes it themselves, so it is not an act *against* a co-host the way
  removing, banning or moving them is.
* **A co-host may step down** (REMOVE_COHOST on oneself, or STEP_DOWN) and becomes a speaker, as
  on Twitter; they may also leave the stage altogether.
* **The host cannot leave the stage** ("host_cannot_leave_stage"): they transfer the host role
  or end the Space first, so a Space is never without its host by anyone's choice. (A host who
  disconnects is handled by lifecycle.should_auto_end.)
* **Raising a hand is for listeners** (own hand only; stage members are already on stage:
  "already_on_stage"). Lowering someone else's hand is DECLINE_REQUEST.
* **ADD_COHOST** takes a speaker or a listener (a listener goes straight on stage as co-host);
  **TRANSFER_HOST** takes a co-host or a speaker, someone already on stage and audible.
* **INVITE_TO_SPEAK, ACCEPT_REQUEST, DECLINE_REQUEST** target listeners (whether their hand is
  up is the hand queue's business, not a role's).
* **REMOVE** takes a person out of the Space (they may come back); **BAN** also keeps them out.
  Both work on listeners too, so a listener who spams reactions can be removed.
* **REACT and LISTEN: everyone** not banned, stage members included. That a listener needs an
  identity (account or guest) to react or raise a hand is the API's check: it is about who the
  person is, not about their role.
* **JOIN_STAGE** (connect stage audio) is for stage members only.
* Inputs that do not make sense are refused with their own reason, never guessed at: a target on
  an action that takes none ("unexpected_target"), no target where one is needed
  ("target_required"), `is_self` with a target role that is not the actor's ("inconsistent_self").
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from townhall.spaces.model import Role, StageLimits, StageMember

__all__ = [
    "EVERYONE",
    "MODERATORS",
    "ON_SELF",
    "REASONS",
    "STAGE",
    "TARGETED",
    "UNTARGETED",
    "Action",
    "Decision",
    "check_capacity",
    "decide",
]


class Action(enum.StrEnum):
    # Moderation: host and co-hosts, on someone else.
    INVITE_TO_SPEAK = "invite_to_speak"
    ACCEPT_REQUEST = "accept_request"
    DECLINE_REQUEST = "decline_request"
    MOVE_TO_AUDIENCE = "move_to_audience"
    MUTE = "mute"
    UNMUTE = "unmute"  # only ever on oneself
    REMOVE = "remove"
    BAN = "ban"
    # Host only, on someone else.
    ADD_COHOST = "add_cohost"
    REMOVE_COHOST = "remove_cohost"
    TRANSFER_HOST = "transfer_host"
    # On the Space.
    END_SPACE = "end_space"
    GO_LIVE = "go_live"
    SET_DELAY = "set_delay"
    DUMP = "dump"
    PIN_LINK = "pin_link"
    EDIT_SPACE = "edit_space"
    SPEAKER_LINKS = "speaker_links"  # make, list and revoke speaker invite links
    COHOST_LINKS = "cohost_links"  # make and revoke co-host invite links
    ROTATE_INVITE = "rotate_invite"  # a private Space's new invite code: old links stop working
    # On oneself.
    LEAVE_STAGE = "leave_stage"
    STEP_DOWN = "step_down"  # a co-host gives the role up and becomes a speaker
    MUTE_SELF = "mute_self"
    UNMUTE_SELF = "unmute_self"
    JOIN_STAGE = "join_stage"  # connect stage audio
    RAISE_HAND = "raise_hand"
    LOWER_HAND = "lower_hand"
    REACT = "react"
    LISTEN = "listen"


# Reasons, as the API sees them in {"error": {"code": ...}}.
OK: Final = "ok"
BANNED: Final = "banned"
NOT_HOST: Final = "not_host"
NOT_MODERATOR: Final = "not_moderator"  # neither host nor co-host
NOT_COHOST: Final = "not_cohost"
NOT_ON_STAGE: Final = "not_on_stage"
ALREADY_ON_STAGE: Final = "already_on_stage"
HOST_CANNOT_LEAVE_STAGE: Final = "host_cannot_leave_stage"
ONLY_SELF_CAN_UNMUTE: Final = "only_self_can_unmute"
CANNOT_TARGET_HOST: Final = "cannot_target_host"
CANNOT_TARGET_SELF: Final = "cannot_target_self"
COHOST_CANNOT_TARGET_COHOST: Final = "cohost_cannot_target_cohost"
TARGET_NOT_LISTENER: Final = "target_not_listener"
TARGET_NOT_ON_STAGE: Final = "target_not_on_stage"
TARGET_NOT_COHOST: Final = "target_not_cohost"
TARGET_ALREADY_COHOST: Final = "target_already_cohost"
TARGET_REQUIRED: Final = "target_required"
UNEXPECTED_TARGET: Final = "unexpected_target"
INCONSISTENT_SELF: Final = "inconsistent_self"
STAGE_FULL: Final = "stage_full"
COHOSTS_FULL: Final = "cohosts_full"

REASONS: Final = frozenset(
    {
        OK,
        BANNED,
        NOT_HOST,
        NOT_MODERATOR,
        NOT_COHOST,
        NOT_ON_STAGE,
        ALREADY_ON_STAGE,
        HOST_CANNOT_LEAVE_STAGE,
        ONLY_SELF_CAN_UNMUTE,
        CANNOT_TARGET_HOST,
        CANNOT_TARGET_SELF,
        COHOST_CANNOT_TARGET_COHOST,
        TARGET_NOT_LISTENER,
        TARGET_NOT_ON_STAGE,
        TARGET_NOT_COHOST,
        TARGET_ALREADY_COHOST,
        TARGET_REQUIRED,
        UNEXPECTED_TARGET,
        INCONSISTENT_SELF,
        STAGE_FULL,
        COHOSTS_FULL,
    }
)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # OK when allowed, otherwise one of REASONS


ALLOW: Final = Decision(True, OK)


def _deny(reason: str) -> Decision:
    return Decision(False, reason)


HOST, COHOST, SPEAKER, LISTENER = Role.HOST, Role.COHOST, Role.SPEAKER, Role.LISTENER
EVERYONE: Final = frozenset(Role)
STAGE: Final = frozenset({HOST, COHOST, SPEAKER})
MODERATORS: Final = frozenset({HOST, COHOST})
_HOST_ONLY: Final = frozenset({HOST})


@dataclass(frozen=True)
class _Untargeted:
    by: frozenset[Role]  # roles that may
    refusal: str  # reason given to everyone else


@dataclass(frozen=True)
class _Targeted:
    by: Mapping[Role, frozenset[Role]]  # actor role → target roles it may act on
    not_actor: str  # reason given to an actor role missing from `by`
    bad_target: str  # reason for a target outside the actor's set, when nothing better fits


# Actions on the Space or on oneself: who may.
UNTARGETED: Final[Mapping[Action, _Untargeted]] = {
    Action.END_SPACE: _Untargeted(_HOST_ONLY, NOT_HOST),
    Action.GO_LIVE: _Untargeted(_HOST_ONLY, NOT_HOST),
    Action.SET_DELAY: _Untargeted(MODERATORS, NOT_MODERATOR),
    Action.DUMP: _Untargeted(MODERATORS, NOT_MODERATOR),
    Action.PIN_LINK: _Untargeted(MODERATORS, NOT_MODERATOR),
    Action.EDIT_SPACE: _Untargeted(MODERATORS, NOT_MODERATOR),
    Action.SPEAKER_LINKS: _Untargeted(MODERATORS, NOT_MODERATOR),
    Action.COHOST_LINKS: _Untargeted(_HOST_ONLY, NOT_HOST),
    Action.ROTATE_INVITE: _Untargeted(_HOST_ONLY, NOT_HOST),
    Action.LEAVE_STAGE: _Untargeted(frozenset({COHOST, SPEAKER}), NOT_ON_STAGE),
    Action.STEP_DOWN: _Untargeted(frozenset({COHOST}), NOT_COHOST),
    Action.MUTE_SELF: _Untargeted(STAGE, NOT_ON_STAGE),
    Action.UNMUTE_SELF: _Untargeted(STAGE, NOT_ON_STAGE),
    Action.JOIN_STAGE: _Untargeted(STAGE, NOT_ON_STAGE),
    Action.RAISE_HAND: _Untargeted(frozenset({LISTENER}), ALREADY_ON_STAGE),
    Action.LOWER_HAND: _Untargeted(frozenset({LISTENER}), ALREADY_ON_STAGE),
    Action.REACT: _Untargeted(EVERYONE, OK),  # never refused (but for a ban)
    Action.LISTEN: _Untargeted(EVERYONE, OK),  # never refused (but for a ban)
}

# Where one role is refused for a reason of its own.
_UNTARGETED_REFUSAL_FOR: Final[Mapping[tuple[Action, Role], str]] = {
    (Action.LEAVE_STAGE, HOST): HOST_CANNOT_LEAVE_STAGE,  # transfer the host role or end first
}

_ON_LISTENERS: Final = frozenset({LISTENER})

# Actions on someone else: who may act on whom.
TARGETED: Final[Mapping[Action, _Targeted]] = {
    Action.INVITE_TO_SPEAK: _Targeted(
        {HOST: _ON_LISTENERS, COHOST: _ON_LISTENERS}, NOT_MODERATOR, TARGET_NOT_LISTENER
    ),
    Action.ACCEPT_REQUEST: _Targeted(
        {HOST: _ON_LISTENERS, COHOST: _ON_LISTENERS}, NOT_MODERATOR, TARGET_NOT_LISTENER
    ),
    Action.DECLINE_REQUEST: _Targeted(
        {HOST: _ON_LISTENERS, COHOST: _ON_LISTENERS}, NOT_MODERATOR, TARGET_NOT_LISTENER
    ),
    Action.MOVE_TO_AUDIENCE: _Targeted(
        {HOST: frozenset({COHOST, SPEAKER}), COHOST: frozenset({SPEAKER})},
        NOT_MODERATOR,
        TARGET_NOT_ON_STAGE,
    ),
    Action.MUTE: _Targeted(
        # A co-host may mute a co-host: the hot-mic valve, undone by the muted person.
        {HOST: frozenset({COHOST, SPEAKER}), COHOST: frozenset({COHOST, SPEAKER})},
        NOT_MODERATOR,
        TARGET_NOT_ON_STAGE,
    ),
    Action.UNMUTE: _Targeted({}, ONLY_SELF_CAN_UNMUTE, ONLY_SELF_CAN_UNMUTE),
    Action.REMOVE: _Targeted(
        {HOST: frozenset({COHOST, SPEAKER, LISTENER}), COHOST: frozenset({SPEAKER, LISTENER})},
        NOT_MODERATOR,
        CANNOT_TARGET_HOST,
    ),
    Action.BAN: _Targeted(
        {HOST: frozenset({COHOST, SPEAKER, LISTENER}), COHOST: frozenset({SPEAKER, LISTENER})},
        NOT_MODERATOR,
        CANNOT_TARGET_HOST,
    ),
    Action.ADD_COHOST: _Targeted(
        {HOST: frozenset({SPEAKER, LISTENER})}, NOT_HOST, TARGET_ALREADY_COHOST
    ),
    Action.REMOVE_COHOST: _Targeted({HOST: frozenset({COHOST})}, NOT_HOST, TARGET_NOT_COHOST),
    Action.TRANSFER_HOST: _Targeted(
        {HOST: frozenset({COHOST, SPEAKER})}, NOT_HOST, TARGET_NOT_ON_STAGE
    ),
}

# A targeted action aimed at oneself is this self action; the rest cannot be aimed at oneself.
ON_SELF: Final[Mapping[Action, Action]] = {
    Action.MUTE: Action.MUTE_SELF,
    Action.UNMUTE: Action.UNMUTE_SELF,
    Action.MOVE_TO_AUDIENCE: Action.LEAVE_STAGE,
    Action.REMOVE_COHOST: Action.STEP_DOWN,
}


def decide(
    actor: Role,
    action: Action,
    target: Role | None = None,
    *,
    is_self: bool = False,
    actor_banned: bool = False,
) -> Decision:
    """May `actor` do `action` to `target`? See the module docstring for the rules."""
    if actor_banned:
        return _deny(BANNED)
    untargeted = UNTARGETED.get(action)
    if untargeted is not None:
        if target is not None:
            return _deny(UNEXPECTED_TARGET)
        return _decide_untargeted(actor, action, untargeted)
    if is_self:
        if target is not None and target is not actor:
            return _deny(INCONSISTENT_SELF)
        own = ON_SELF.get(action)
        if own is None:
            return _deny(CANNOT_TARGET_SELF)
        return _decide_untargeted(actor, own, UNTARGETED[own])
    if target is None:
        return _deny(TARGET_REQUIRED)
    rule = TARGETED[action]
    targets = rule.by.get(actor)
    if targets is None:
        return _deny(rule.not_actor)
    if target in targets:
        return ALLOW
    if target is HOST:
        return _deny(CANNOT_TARGET_HOST)
    if actor is COHOST and target is COHOST and COHOST in rule.by.get(HOST, frozenset()):
        return _deny(COHOST_CANNOT_TARGET_COHOST)  # the host may; a co-host may not
    return _deny(rule.bad_target)


def _decide_untargeted(actor: Role, action: Action, rule: _Untargeted) -> Decision:
    if actor in rule.by:
        return ALLOW
    return _deny(_UNTARGETED_REFUSAL_FOR.get((action, actor), rule.refusal))


def check_capacity(stage: Sequence[StageMember], limits: StageLimits, new_role: Role) -> Decision:
    """May one more person take `new_role` on this stage? Call before promoting anyone.

    Co-hosts and speakers are counted separately against their own limits (SPEC: host, up to 2
    co-hosts, up to 10 speakers), so a co-host stepping down needs a free speaker place. The host
    role is never full — there is exactly one and TRANSFER_HOST swaps it — and the audience is
    unbounded.
    """
    if new_role is COHOST:
        cohosts = sum(1 for m in stage if m.role is COHOST)
        return ALLOW if cohosts < limits.max_cohosts else _deny(COHOSTS_FULL)
    if new_role is SPEAKER:
        speakers = sum(1 for m in stage if m.role is SPEAKER)
        return ALLOW if speakers < limits.max_speakers else _deny(STAGE_FULL)
    return ALLOW
