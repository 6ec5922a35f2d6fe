"""The control plane's commands: every change to a Space or its people goes through here.

Theory of operation. A command names an actor (who is asking), a Space and maybe a target
person. It (1) loads the Space and the roles involved from the durable records, (2) asks
`rules.decide` whether that role may do that to that role and `lifecycle` whether the Space's
state allows it, (3) writes the change to the records — atomically where a limit is involved
(stage capacity, compare-and-set on the lifecycle state) — and (4) appends one event to the
Space's ordered log in LiveState, through the event outbox (state/outbox.py): a command first
checks the live store answers, so with the store down it fails before (3) and nothing changes;
an event whose append fails after (3) is held and delivered when the store is back, so the
records and the log never disagree for good. Nothing else happens here: the media node applies mutes,
removals, Go live, delay and dump by following the same event log, stage clients follow it over
their WebSocket, and webhooks are queued in the records' outbox in step (3), in the same
transaction as the change they announce (an `Announcement` handed to the Records write), so a
change and its webhook commit together or not at all. Any process can run any command; all a
process keeps is the rosters of recently used Spaces (stage, bans, hands), and only while the
Space's log has not moved since it read them (`roster`), which is what makes an authenticated
read or a reaction cost no database round trip.
"""

from __future__ import annotations

import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from townhall.ratelimit.table import HAND, REACT, REMIND, REMIND_EMAIL, SPACE_PER_PERSON, take
from townhall.spaces import invite_links, lifecycle, rules
from townhall.spaces.invite_links import (
    REFUSAL_SENTENCES,
    InviteLink,
    InviteLinkId,
    LinkState,
    Refusal,
    link_action,
)
from townhall.spaces.lifecycle import LifecycleAction, ScheduleError
from townhall.spaces.model import (
    Ban,
    IllegalTransition,
    RaisedHand,
    Role,
    Space,
    SpaceId,
    SpaceState,
    StageLimits,
    StageMember,
    UserId,
    Visibility,
    new_space_id,
)
from townhall.spaces.roster import follow
from townhall.spaces.rules import Action
from townhall.state.live import Event, Hand, HandsFull, LiveState
from townhall.state.outbox import EventOutbox
from townhall.state.recording_accounts import RecordingDeposit
from townhall.state.records import (
    Announced,
    Announcement,
    Banned,
    Conflict,
    LinkRefused,
    LogEvent,
    NotFound,
    Notice,
    NoticeKind,
    Records,
    Roster,
    StageFull,
    Standing,
    TooManyLinks,
)
from townhall.state.unavailable import UNAVAILABLE_ERRORS, is_unavailable

REACTIONS = ("👏", "😂", "❤️", "🔥", "💯", "👍", "😮", "🙏")
MAX_DELAY_S = 30.0
MAX_REMINDERS_IN_WEBHOOK = 10_000
ROSTERS_KEPT = 10_000  # Spaces: more than a node has open at once
ROSTER_FOLLOW_MAX = 200  # events a kept roster follows; further behind, it is read afresh


class ControlError(Exception):
    """A command was refused. `code` is machine-readable; `kind` maps to an HTTP status (in the
    API's one error seam, `api/errors.py`: CONTROL_KINDS).

    kinds: not_found (404), forbidden (403), conflict (409), invalid (422), gone (410)
    """

    def __init__(self, kind: str, code: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message


def _not_found(what: str = "Space") -> ControlError:
    return ControlError(
        "not_found", f"{what.lower().replace(' ', '_')}_not_found", f"no such {what}"
    )


_REFUSALS = {
    rules.BANNED: "you are banned from this Space",
    rules.NOT_HOST: "only the host can do this",
    rules.NOT_MODERATOR: "only the host or a co-host can do this",
    rules.NOT_ON_STAGE: "you are not on the stage",
    rules.ALREADY_ON_STAGE: "you are already on the stage",
    rules.ONLY_SELF_CAN_UNMUTE: "only the speaker can unmute themselves",
    rules.CANNOT_TARGET_HOST: "nobody can do this to the host",
    rules.HOST_CANNOT_LEAVE_STAGE: "the host cannot leave the stage: hand the host role over or end the Space",
    rules.NOT_COHOST: "only a co-host can do this",
    rules.CANNOT_TARGET_SELF: "you cannot do this to yourself",
    rules.COHOST_CANNOT_TARGET_COHOST: "only the host can do this to a co-host",
    rules.TARGET_NOT_LISTENER: "that person is already on the stage",
    rules.TARGET_NOT_ON_STAGE: "that person is not on the stage",
    rules.TARGET_NOT_COHOST: "that person is not a co-host",
    rules.TARGET_ALREADY_COHOST: "that person is already a co-host",
    rules.TARGET_REQUIRED: "say whom this is for",
    rules.UNEXPECTED_TARGET: "this is not done to someone else",
    rules.INCONSISTENT_SELF: "this request contradicts itself",
    rules.STAGE_FULL: "the stage is full: move a speaker to the audience first",
    rules.COHOSTS_FULL: "there are already as many co-hosts as allowed: make one a speaker first",
}


@dataclass(frozen=True)
class Actor:
    user_id: UserId
    display_name: str
    is_guest: bool = False


@dataclass(frozen=True)
class ControlConfig:
    default_limits: StageLimits = field(default_factory=StageLimits)
    schedule_max_ahead_s: float = 30 * 86400
    early_open_s: float = 30 * 60
    # Who may create Spaces, and how many one host may hold open. Unset here (no policy); the
    # deployment's defaults and the reasons for them are in config.Config.
    guests_may_create: bool = True
    max_open_per_host: int = 0  # scheduled + green room + live; 0: no cap
    sends_mail: bool = False  # an SMTP server is configured: reminders may go by email
    captions: bool = False  # this deployment can caption Spaces (config.CaptionsConfig)


@dataclass(frozen=True)
class NewSpace:
    title: str
    description: str = ""
    visibility: Visibility = Visibility.PUBLIC
    scheduled_start: float | None = None
    record: bool = False
    captions: bool = False
    limits: StageLimits | None = None


class SpaceControl:
    def __init__(
        self,
        records: Records,
        live: LiveState,
        config: ControlConfig = ControlConfig(),
        *,
        clock: Callable[[], float] = time.time,
        invite_code: Callable[[], str] | None = None,
        events: EventOutbox | None = None,
    ) -> None:
        self.records = records
        self.live = live
        # The composition root gives one that also sweeps what other processes left queued.
        self.events = events or EventOutbox(records, live)
        self.config = config
        self._clock = clock
        self._invite_code = invite_code or _random_invite_code
        # Rosters read recently, with the log position they are current for (`roster`).
        self._rosters: OrderedDict[str, tuple[tuple[str, int], Roster]] = OrderedDict()

    # -- reading --------------------------------------------------------------------------------
    async def space(self, space_id: str) -> Space:
        space = await self.records.space(SpaceId(space_id))
        if space is None:
            raise _not_found()
        return space

    async def role_of(self, space: Space, user: UserId | None) -> Role:
        """The person's role in the Space, from the kept roster like every other standing."""
        return (await self.standing(space.id, user)).role

    async def standing(
        self, space_id: str, user: UserId | None, target: UserId | None = None
    ) -> Standing:
        """The Space and where `user` (and `target`) stand in it; 404 if there is no such Space."""
        return (await self.roster(space_id)).standing(user, target)

    async def roster(self, space_id: str) -> Roster:
        """The Space, its stage, bans and raised hands; 404 if there is no such Space.

        Read from the records once, then kept and brought up to date from the Space's log: every
        change to a Space's records is followed by an event in its log (this module, through
        the event outbox), so an unchanged position means an unchanged roster, and the events
        since its position say what changed (spaces/roster.py; the few they cannot say cost a
        fresh read). A join storm of listeners nobody has seen before costs no database round
        trip each, nor do hands going up and down in a busy Space. The position is read before
        the records, so a roster is never tagged newer than what it holds. With the live store
        out of reach it is read from the records each time (reads keep working; commands are
        refused later, by `_open_space`)."""
        try:
            position: tuple[str, int] | None = await self.live.position(space_id)
        except UNAVAILABLE_ERRORS as exc:
            if not is_unavailable(exc):
                raise
            position = None
        kept = self._rosters.get(space_id)
        if kept is not None and position is not None:
            (kept_log, kept_seq), roster = kept
            if (kept_log, kept_seq) == position or (
                kept_log and kept_log == position[0] and kept_seq > position[1]
            ):
                # Current, or newer still on the same log: another call followed or appended
                # (`_kept_past`) while this one waited for the position; a fresh read would only
                # go back. (An empty log has no id: a roster past it is not trusted this way.)
                self._rosters.move_to_end(space_id)
                return roster
            if kept_log == position[0] and 0 < position[1] - kept_seq <= ROSTER_FOLLOW_MAX:
                events = await self.live.events_since(space_id, kept_seq, ROSTER_FOLLOW_MAX)
                followed = follow(roster, events) if events else None
                if followed is not None and events:
                    self._rosters[space_id] = ((kept_log, events[-1].seq), followed)
                    self._rosters.move_to_end(space_id)
                    return followed
        found = await self.records.roster(SpaceId(space_id))
        if found is None:
            raise _not_found()
        if position is not None:  # the live store answers: its hands complete the roster
            hands = frozenset(UserId(h.user_id) for h in await self.live.hands(space_id))
            found = replace(found, hands=hands)
            self._rosters[space_id] = (position, found)
            if len(self._rosters) > ROSTERS_KEPT:
                self._rosters.popitem(last=False)
        return found

    def _kept_past(self, space_id: str, event: Event | None) -> None:
        """Move the kept roster past `event`, which this process has just appended, if it was
        current up to the event before: the Space's next call then finds it current without
        reading its own event back from the log (on Redis a transaction, the largest item of a
        hand raised there). Anything else — another event in between, a log started again under
        a new id (the position's id then differs) — is left to `roster`."""
        kept = self._rosters.get(space_id)
        if event is None or kept is None:
            return
        (log_id, seq), roster = kept
        if not log_id or seq + 1 != event.seq:
            return  # an empty log when read: the id this event's log has is not known here
        followed = follow(roster, [event])
        if followed is not None:
            self._rosters[space_id] = ((log_id, event.seq), followed)

    @staticmethod
    def _authorize(
        standing: Standing, actor: Actor, action: Action, target: UserId | None = None
    ) -> tuple[Role, StageMember | None]:
        """Refuse unless `actor` may do `action` to `target`; returns the target's role and
        member. `standing` was read for this actor and target."""
        target_member = standing.target if target is not None else None
        target_role: Role | None = None
        if target is not None:
            target_role = target_member.role if target_member is not None else Role.LISTENER
        decision = rules.decide(
            standing.role,
            action,
            target_role,
            is_self=target == actor.user_id,
            actor_banned=standing.banned,
        )
        if not decision.allowed:
            if decision.reason != rules.BANNED and not standing.role.on_stage:
                _check_invite(standing, None)  # a private Space: no such Space to them
            raise ControlError(
                "forbidden",
                decision.reason,
                _REFUSALS.get(decision.reason, "you are not allowed to do this"),
            )
        return target_role or standing.role, target_member

    async def _open_space(
        self,
        space_id: str,
        actor: Actor | None = None,
        target: UserId | None = None,
        *,
        audience: bool = False,
        invite_code: str | None = None,
        proven: bool = False,
    ) -> Standing:
        """The Space a command acts on, and where its actor and target stand. Every command but
        `create` starts here, so this is where a live store that cannot take the command's event
        refuses it, before any record changes. An `audience` command (a listener's) on a private
        Space needs its `invite_code` (else 404, before anything else is said about it); any
        other command by someone off a private Space's stage is answered 404, not "it ended",
        unless they showed a proof of their own (`proven`: an invite link)."""
        await self.events.ready()
        standing = await self.standing(space_id, actor.user_id if actor else None, target)
        space = standing.space
        if audience:
            _check_invite(standing, invite_code)
        elif space.state.is_over and actor is not None and not proven:
            _check_invite(standing, None)
        if space.state.is_over:
            raise ControlError(
                "gone",
                f"space_{space.state.value}",
                f"this Space has {space.state.value.replace('_', ' ')}",
            )
        return standing

    # -- events and webhooks --------------------------------------------------------------------
    def _event(self, space: Space, type: str, data: Mapping[str, Any]) -> LogEvent:
        """The live-log event for the Records write to queue in the change's own transaction;
        `_delivered` then moves it into the log (state/outbox.py)."""
        return LogEvent(type, {"space_id": space.id, **data}, self._clock())

    async def _delivered(self, space: Space) -> None:
        await self.events.deliver(space.id)

    def _announcement(
        self, type: str, extra: Mapping[str, Any] | None = None, *, remind: bool = False
    ) -> Announcement:
        """The webhook `type` for the Records write to queue in the change's own transaction. Its
        payload: the Space as that transaction left it, `extra`, and with `remind` who asked to be
        reminded (read in the same transaction, so nobody who asked before the change is missed).
        """
        at = self._clock()

        def payload(written: Announced) -> str:
            body = {"type": type, "at": at, "space": space_json(written.space), **(extra or {})}
            if remind:
                body["remind"] = list(written.reminders)
            return json.dumps(body)

        return Announcement(type, at, payload, MAX_REMINDERS_IN_WEBHOOK if remind else 0)

    # -- lifecycle ------------------------------------------------------------------------------
    async def admit_new_space(self, actor: Actor) -> None:
        """Whether `actor` may create a Space now: guests only where the operator allows it, a
        person's creation rate (cluster-wide, `SPACE_PER_PERSON`), and at most
        `max_open_per_host` open Spaces per host. Raises ControlError or `Limited`."""
        if actor.is_guest and not self.config.guests_may_create:
            raise ControlError(
                "forbidden",
                "guests_cannot_create",
                "sign in to start a Space: on this server guests listen, react and speak when invited",
            )
        cap = self.config.max_open_per_host
        # Checked before the write, not in its transaction: two creations at the same moment
        # may both pass, and the person's rate limit bounds by how much. Before the rate limit,
        # so that a host at the cap who ends a Space can start the next one at once.
        if cap > 0 and await self.records.count_hosted(actor.user_id, lifecycle.NOT_OVER) >= cap:
            raise ControlError(
                "conflict",
                "too_many_open_spaces",
                f"you already have {cap} Spaces open or scheduled; end or cancel one first",
            )
        await take(self.live, SPACE_PER_PERSON, actor.user_id, self._clock())

    async def create(
        self, actor: Actor, spec: NewSpace, *, deposit: RecordingDeposit | None = None
    ) -> Space:
        """A new Space with `actor` as its host. The caller asks `admit_new_space` first (and the
        media capacity, for a Space that opens now) so that a refusal writes nothing. A recorded
        Space's `deposit` (what its recording was paid at creation, and from which address) is
        kept with it, for the media nodes that charge its recording as it grows."""
        await self.events.ready()
        now = self._clock()
        if spec.scheduled_start is not None:
            try:
                lifecycle.validate_schedule(
                    spec.scheduled_start, now, self.config.schedule_max_ahead_s
                )
            except ScheduleError as exc:
                raise ControlError("invalid", exc.code, str(exc)) from None
        if spec.captions and not self.config.captions:
            raise ControlError(
                "conflict",
                "captions_unavailable",
                "live captions are switched off on this server",
            )
        space = Space(
            id=new_space_id(),
            title=spec.title,
            host_id=actor.user_id,
            created_at=now,
            state=SpaceState.SCHEDULED
            if spec.scheduled_start is not None
            else SpaceState.GREEN_ROOM,
            description=spec.description,
            visibility=spec.visibility,
            invite_code=self._invite_code() if spec.visibility is Visibility.PRIVATE else "",
            scheduled_start=spec.scheduled_start,
            record=spec.record,
            captions=spec.captions,
            limits=spec.limits or self.config.default_limits,
        )
        scheduled = space.state is SpaceState.SCHEDULED
        await self.records.create_space(
            space,
            host=StageMember(space.id, actor.user_id, Role.HOST, actor.display_name, now),
            announce=self._announcement("space.scheduled") if scheduled else None,
            event=self._event(space, "space.created", {"space": space_json(space)}),
            deposit=deposit if space.record else None,
        )
        await self._delivered(space)
        return space

    async def _transition(
        self,
        space: Space,
        action: LifecycleAction,
        announce: Announcement | None = None,
        on_air: bool | None = None,
    ) -> Space:
        """Move the Space to its next state; its event says the state (and `on_air` if given).
        Going on air and being called off are news for everyone reminded of it by email."""
        try:
            new = lifecycle.transition(space, action, self._clock())
        except IllegalTransition as exc:
            raise ControlError("conflict", "illegal_transition", str(exc)) from None
        data: dict[str, Any] = {"state": new.state.value}
        if on_air is not None:
            data["on_air"] = on_air
        news = {SpaceState.LIVE: NoticeKind.STARTING, SpaceState.CANCELLED: NoticeKind.CANCELLED}
        kind = news.get(new.state)
        notify = Notice(kind, self._clock()) if kind is not None else None
        return await self._save(space, new, "space.state", data, announce, notify)

    async def open(self, actor: Actor, space_id: str) -> Space:
        standing = await self._open_space(space_id, actor)
        space = standing.space
        self._authorize(standing, actor, Action.GO_LIVE)  # the host's switch, like Go live
        if not lifecycle.is_due(space, self._clock(), self.config.early_open_s):
            raise ControlError(
                "conflict", "not_due", "it is too early to open this Space; edit its start time"
            )
        return await self._transition(space, LifecycleAction.OPEN)

    async def go_live(self, actor: Actor, space_id: str) -> Space:
        standing = await self._open_space(space_id, actor)
        space = standing.space
        self._authorize(standing, actor, Action.GO_LIVE)
        # The webhook says who asked to be reminded, so an integrator can notify them on other
        # channels; those who gave an email address are mailed (`_transition`).
        started = self._announcement("space.started", remind=True)
        return await self._transition(space, LifecycleAction.GO_LIVE, started, on_air=True)

    async def cancel_no_shows(self, limit_s: float) -> list[Space]:
        """Cancel scheduled Spaces whose host never opened them `limit_s` after their start."""
        now = self._clock()
        cancelled = []
        for space in await self.records.spaces_due(now):
            if lifecycle.should_auto_cancel(space, now, limit_s):
                try:
                    cancelled.append(await self.end(None, space.id))
                except ControlError:
                    continue  # opened or ended meanwhile
        return cancelled

    async def end(self, actor: Actor | None, space_id: str) -> Space:
        """End (or, before it went live, cancel) a Space. `actor=None` is the system (auto-end)."""
        standing = await self._open_space(space_id, actor)
        space = standing.space
        if actor is not None:
            self._authorize(standing, actor, Action.END_SPACE)
        action = LifecycleAction.END if space.state is SpaceState.LIVE else LifecycleAction.CANCEL
        return await self._transition(
            space, action, self._announcement("space.ended"), on_air=False
        )

    async def edit(
        self,
        actor: Actor,
        space_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        scheduled_start: float | None = None,
        visibility: Visibility | None = None,
    ) -> Space:
        """Change what a Space is called and, before it opens, when it starts and who can find
        it. A new start time must pass `lifecycle.validate_schedule`, and everyone reminded of
        the Space by email is told of it in the same transaction. Only what is given changes."""
        standing = await self._open_space(space_id, actor)
        space = standing.space
        self._authorize(standing, actor, Action.EDIT_SPACE)
        if space.state is not SpaceState.SCHEDULED and (
            scheduled_start is not None or visibility is not None
        ):
            raise ControlError(
                "conflict",
                "not_scheduled",
                "the start time and visibility can only be changed before the Space opens",
            )
        if scheduled_start is not None:
            try:
                lifecycle.validate_schedule(
                    scheduled_start, self._clock(), self.config.schedule_max_ahead_s
                )
            except ScheduleError as exc:
                raise ControlError("invalid", exc.code, str(exc)) from None
        new = replace(
            space,
            title=title if title is not None else space.title,
            description=description if description is not None else space.description,
            scheduled_start=scheduled_start
            if scheduled_start is not None
            else space.scheduled_start,
            visibility=visibility or space.visibility,
        )
        if new.visibility is Visibility.PRIVATE and not new.invite_code:
            new = replace(new, invite_code=self._invite_code())
        moved = new.scheduled_start != space.scheduled_start
        notify = (
            Notice(NoticeKind.CHANGED, self._clock(), {"before": space.scheduled_start})
            if moved
            else None
        )
        data = {
            "title": new.title,
            "description": new.description,
            "scheduled_start": new.scheduled_start,
            "visibility": new.visibility.value,
        }
        announce = self._announcement("space.scheduled") if moved else None
        return await self._save(space, new, "space.edited", data, announce, notify)

    async def remind(
        self,
        actor: Actor,
        space_id: str,
        *,
        email: str | None = None,
        soon: bool = False,
        push: bool = False,
        invite_code: str | None = None,
    ) -> bool:
        """'Remind me' of a scheduled Space the actor may listen to; by email to `email` (signed-in
        people only: a guest has no way to prove or later manage an address), with `push` by Web
        Push to the browsers they subscribed (guests too: a browser is theirs), and, with
        `soon`, 10 minutes before too. Limited per person and per address mailed, so nobody can flood
        a stranger's inbox. False if they had asked already (the new choice replaces the old).
        A private Space needs its `invite_code`, as for listening; the code is kept with the
        reminder, for its links while it stays the Space's (state/reminder_links.py)."""
        standing = await self.can_listen(actor, space_id, invite_code)
        space = standing.space
        shown = invite_code if _is_invite(space, invite_code) else None
        if space.visibility is Visibility.PRIVATE and standing.role in (Role.HOST, Role.COHOST):
            shown = space.invite_code  # theirs to hand out: their stage answers carry it
        if space.state is not SpaceState.SCHEDULED:
            raise ControlError(
                "conflict", "not_scheduled", "only a Space that has not started can be reminded of"
            )
        if email is not None and not self.config.sends_mail:
            raise ControlError(
                "invalid",
                "no_email",
                "this server sends no email; you are reminded on this page while it is open",
            )
        if email is not None and actor.is_guest:
            raise ControlError(
                "forbidden",
                "guests_cannot_get_email",
                "sign in to be reminded by email; as a guest you are reminded on this page",
            )
        now = self._clock()
        await take(self.live, REMIND, actor.user_id, now)
        if email is not None:
            await take(self.live, REMIND_EMAIL, email.lower(), now)
        return await self.records.add_reminder(
            space.id, actor.user_id, email=email, soon=soon, push=push, invite_code=shown
        )

    async def _save(
        self,
        old: Space,
        new: Space,
        event: str,
        data: Mapping[str, Any],
        announce: Announcement | None = None,
        notify: Notice | None = None,
    ) -> Space:
        """Write `new` over `old` if the Space is still in `old`'s state (else 409)."""
        try:
            await self.records.update_space(
                new,
                expect_state=old.state,
                announce=announce,
                event=self._event(new, event, data),
                notify=notify,
            )
        except Conflict:
            raise ControlError(
                "conflict", "state_changed", "the Space changed meanwhile; reload"
            ) from None
        await self._delivered(new)
        return new

    # -- producer controls ----------------------------------------------------------------------
    async def set_delay(self, actor: Actor, space_id: str, seconds: float) -> Space:
        if not 0.0 <= seconds <= MAX_DELAY_S:
            raise ControlError("invalid", "bad_delay", f"the delay is 0–{MAX_DELAY_S:g} seconds")
        standing = await self._open_space(space_id, actor)
        space = standing.space
        self._authorize(standing, actor, Action.SET_DELAY)
        return await self._save(
            space,
            replace(space, delay_s=round(seconds, 2)),
            "delay.set",
            {"delay_s": round(seconds, 2)},
        )

    async def dump(self, actor: Actor, space_id: str) -> None:
        standing = await self._open_space(space_id, actor)
        space = standing.space
        self._authorize(standing, actor, Action.DUMP)
        await self.records.log_event(
            space.id, self._event(space, "delay.dumped", {"by": actor.user_id})
        )
        await self._delivered(space)

    async def pin_link(self, actor: Actor, space_id: str, url: str | None) -> Space:
        standing = await self._open_space(space_id, actor)
        space = standing.space
        self._authorize(standing, actor, Action.PIN_LINK)
        return await self._save(
            space, replace(space, pinned_link=url), "space.pinned", {"url": url}
        )

    # -- the stage ------------------------------------------------------------------------------
    async def stage(self, space_id: str) -> list[StageMember]:
        return list((await self.roster(space_id)).stage)

    async def _put_on_stage(
        self, space: Space, user: UserId, name: str, role: Role, link: InviteLink | None = None
    ) -> StageMember:
        """Seat `user` as `role`: by a moderator's act, or with `link` by an invite link (whose
        checks and use are in the seat's own transaction)."""
        current = await self.records.stage(space.id)
        verdict = rules.check_capacity(
            [m for m in current if m.user_id != user], space.limits, role
        )
        if not verdict.allowed:
            raise ControlError("conflict", verdict.reason, _REFUSALS[verdict.reason])
        existing = next((m for m in current if m.user_id == user), None)
        member = StageMember(
            space.id,
            user,
            role,
            name,
            existing.joined_at if existing else self._clock(),
            muted_by_host=existing.muted_by_host if existing else False,
            self_muted=existing.self_muted if existing else False,
        )
        changed = self._announcement("stage.changed", {"member": member_json(member)})
        seated = self._event(
            space,
            "stage.joined" if existing is None else "stage.role",
            {"member": member_json(member), **({"invite_link": link.id} if link else {})},
        )
        try:
            if link is None:
                await self.records.put_stage_member(
                    member, space.limits, announce=changed, event=seated
                )
            else:
                await self.records.seat_with_invite_link(
                    member, space.limits, link.id, self._clock(), announce=changed, event=seated
                )
        except LinkRefused as exc:
            raise _link_refused(exc.refusal) from None
        except StageFull:
            # Another command took the last seat between the check above and this write.
            raise ControlError("conflict", rules.STAGE_FULL, _REFUSALS[rules.STAGE_FULL]) from None
        except Banned:
            raise ControlError("forbidden", rules.BANNED, _REFUSALS[rules.BANNED]) from None
        except Conflict as exc:
            raise ControlError("conflict", "stage_conflict", str(exc)) from None
        await self._delivered(space)
        await self._hand_gone(space, user)  # seated: no longer waiting to speak
        return member

    async def _take_off_stage(self, space: Space, user: UserId, by: UserId) -> None:
        """Back to the audience; moved there by someone else, no invite link seats them again
        until a moderator does (spaces/invite_links.py)."""
        left = self._announcement("stage.changed", {"left": user})
        await self.records.remove_stage_member(
            space.id,
            user,
            bar=(by, self._clock()) if by != user else None,
            announce=left,
            event=self._event(space, "stage.left", {"user_id": user, "by": by}),
        )
        await self._delivered(space)

    async def accept_request(self, actor: Actor, space_id: str, target: UserId) -> StageMember:
        standing = await self._open_space(space_id, actor, target)
        space = standing.space
        self._authorize(standing, actor, Action.ACCEPT_REQUEST, target)
        hand = await self._hand_of(space, target)
        if hand is None:
            raise ControlError("conflict", "no_request", "that person has not asked to speak")
        return await self._put_on_stage(space, target, hand.display_name, Role.SPEAKER)

    async def decline_request(self, actor: Actor, space_id: str, target: UserId) -> None:
        standing = await self._open_space(space_id, actor, target)
        space = standing.space
        self._authorize(standing, actor, Action.DECLINE_REQUEST, target)
        declined = self._event(space, "hand.declined", {"user_id": target})
        await self.live.lower_hand(space.id, target, declined)

    async def invite_to_speak(self, actor: Actor, space_id: str, target: UserId) -> None:
        """Offer a listener a place on the stage; they take it with `accept_invitation`."""
        standing = await self._open_space(space_id, actor, target)
        space = standing.space
        self._authorize(standing, actor, Action.INVITE_TO_SPEAK, target)
        await self.records.put_invitation(
            space.id,
            target,
            Role.SPEAKER,
            actor.user_id,
            self._clock(),
            event=self._event(space, "stage.invited", {"user_id": target, "by": actor.user_id}),
        )
        await self._delivered(space)

    async def accept_invitation(self, actor: Actor, space_id: str) -> StageMember:
        standing = await self._open_space(space_id, actor)
        space = standing.space
        if standing.banned:
            raise ControlError("forbidden", rules.BANNED, _REFUSALS[rules.BANNED])
        role = await self.records.take_invitation(space.id, actor.user_id)
        if role is None:
            raise ControlError("conflict", "no_invitation", "you have no invitation to speak here")
        return await self._put_on_stage(space, actor.user_id, actor.display_name, role)

    async def join_with_invite_link(
        self, actor: Actor, space_id: str, link_id: InviteLinkId
    ) -> StageMember:
        """Take the seat an invite link offers (its token verified by the caller), if its record
        still allows it for this person (the rule: spaces/invite_links.py). Someone already on
        the stage in that role or a higher one keeps their seat and costs the link no use."""
        standing = await self._open_space(space_id, actor, proven=True)
        if standing.banned:
            raise ControlError("forbidden", rules.BANNED, _REFUSALS[rules.BANNED])
        link = await self.records.invite_link(standing.space.id, link_id)
        if link is None:
            raise _link_refused(Refusal.UNKNOWN)
        if standing.member is not None and _RANK[standing.member.role] <= _RANK[link.role]:
            return standing.member
        return await self._put_on_stage(
            standing.space, actor.user_id, actor.display_name, link.role, link
        )

    # -- invite links ---------------------------------------------------------------------------
    async def create_invite_link(
        self,
        actor: Actor,
        space_id: str,
        role: Role,
        *,
        max_uses: int = invite_links.USES_DEFAULT,
        ttl_s: float = invite_links.TTL_DEFAULT_S,
    ) -> InviteLink:
        """A link that seats up to `max_uses` people as `role` for `ttl_s` seconds (bounds in
        spaces/invite_links.py; the API checks them first, naming the field)."""
        if role not in invite_links.ROLES:
            raise ControlError(
                "invalid", "bad_role", "An invite link is for a speaker or a co-host."
            )
        if not 1 <= max_uses <= invite_links.USES_MAX:
            raise ControlError(
                "invalid",
                "bad_max_uses",
                f"An invite link can be used from 1 to {invite_links.USES_MAX} times.",
            )
        if not invite_links.TTL_MIN_S <= ttl_s <= invite_links.TTL_MAX_S:
            raise ControlError(
                "invalid",
                "bad_expiry",
                "An invite link works for 5 minutes at least and 7 days at most.",
            )
        standing = await self._open_space(space_id, actor)
        space = standing.space
        self._authorize(standing, actor, link_action(role))
        now = self._clock()
        link = InviteLink(
            id=invite_links.new_link_id(),
            space_id=space.id,
            role=role,
            max_uses=max_uses,
            uses=0,
            created_by=actor.user_id,
            created_by_name=actor.display_name,
            created_at=now,
            expires_at=now + ttl_s,
        )
        made = self._event(
            space,
            "invite_link.created",
            {"link_id": link.id, "role": role.value, "by": actor.user_id},
        )
        try:
            await self.records.create_invite_link(link, open_max=invite_links.OPEN_MAX, event=made)
        except TooManyLinks:
            raise ControlError(
                "conflict",
                "too_many_invite_links",
                f"This Space already has {invite_links.OPEN_MAX} invite links that still work: "
                "revoke some first.",
            ) from None
        await self._delivered(space)
        return link

    async def invite_links(self, actor: Actor, space_id: str) -> list[tuple[InviteLink, LinkState]]:
        """The Space's invite links, newest first, each with where it stands now (host and
        co-hosts; also once the Space is over)."""
        roster = await self.roster(space_id)
        self._authorize(roster.standing(actor.user_id), actor, Action.SPEAKER_LINKS)
        now = self._clock()
        links = await self.records.invite_links(roster.space.id, limit=invite_links.LISTED_MAX)
        return [(link, link.state(now, roster.standing(link.created_by).role)) for link in links]

    async def revoke_invite_link(
        self, actor: Actor, space_id: str, link_id: InviteLinkId
    ) -> InviteLink:
        """Stop a link seating anyone, at once (host: any; co-host: speaker links). Those it
        already seated stay on the stage. Revoking it again changes nothing."""
        standing = await self._open_space(space_id, actor)
        space = standing.space
        link = await self.records.invite_link(space.id, link_id)
        if link is None:
            raise _not_found("invite link")
        self._authorize(standing, actor, link_action(link.role))
        revoked = self._event(
            space, "invite_link.revoked", {"link_id": link.id, "by": actor.user_id}
        )
        try:
            done = await self.records.revoke_invite_link(
                space.id, link.id, self._clock(), event=revoked
            )
        except NotFound:
            raise _not_found("invite link") from None
        await self._delivered(space)
        return done

    async def move_to_audience(self, actor: Actor, space_id: str, target: UserId) -> None:
        standing = await self._open_space(space_id, actor, target)
        space = standing.space
        self._authorize(standing, actor, Action.MOVE_TO_AUDIENCE, target)
        await self._take_off_stage(space, target, actor.user_id)

    async def leave_stage(self, actor: Actor, space_id: str) -> None:
        standing = await self._open_space(space_id, actor)
        space = standing.space
        self._authorize(standing, actor, Action.LEAVE_STAGE)
        await self._take_off_stage(space, actor.user_id, actor.user_id)

    async def mute(self, actor: Actor, space_id: str, target: UserId) -> StageMember:
        standing = await self._open_space(space_id, actor, target)
        space = standing.space
        _, member = self._authorize(standing, actor, Action.MUTE, target)
        assert member is not None
        if target == actor.user_id:
            member = replace(member, self_muted=True)
        else:
            member = replace(member, muted_by_host=True)
        return await self._update_member(space, member, actor)

    async def unmute(self, actor: Actor, space_id: str, target: UserId) -> StageMember:
        standing = await self._open_space(space_id, actor, target)
        space = standing.space
        _, member = self._authorize(standing, actor, Action.UNMUTE, target)
        assert member is not None
        return await self._update_member(
            space, replace(member, self_muted=False, muted_by_host=False), actor
        )

    async def _update_member(self, space: Space, member: StageMember, actor: Actor) -> StageMember:
        muted = self._event(
            space, "stage.muted", {"member": member_json(member), "by": actor.user_id}
        )
        await self.records.update_stage_member(member, event=muted)
        await self._delivered(space)
        return member

    async def remove(self, actor: Actor, space_id: str, target: UserId) -> None:
        standing = await self._open_space(space_id, actor, target)
        space = standing.space
        role, _ = self._authorize(standing, actor, Action.REMOVE, target)
        await self.records.remove_stage_member(
            space.id,
            target,
            bar=(actor.user_id, self._clock()),
            announce=self._announcement("stage.changed", {"left": target})
            if role.on_stage
            else None,
            event=self._event(space, "user.removed", {"user_id": target, "by": actor.user_id}),
        )
        await self._delivered(space)
        await self._hand_gone(space, target)

    async def ban(self, actor: Actor, space_id: str, target: UserId) -> None:
        standing = await self._open_space(space_id, actor, target)
        space = standing.space
        role, _ = self._authorize(standing, actor, Action.BAN, target)
        left = self._announcement("stage.changed", {"left": target}) if role.on_stage else None
        await self.records.ban(
            Ban(space.id, target, actor.user_id, self._clock()),
            announce=left,
            event=self._event(space, "user.banned", {"user_id": target, "by": actor.user_id}),
        )
        await self._delivered(space)
        await self._hand_gone(space, target)

    async def add_cohost(
        self, actor: Actor, space_id: str, target: UserId, display_name: str | None = None
    ) -> StageMember:
        standing = await self._open_space(space_id, actor, target)
        space = standing.space
        _, member = self._authorize(standing, actor, Action.ADD_COHOST, target)
        name = (
            member.display_name
            if member
            else (display_name or await self._display_name(space, target))
        )
        return await self._put_on_stage(space, target, name, Role.COHOST)

    async def remove_cohost(self, actor: Actor, space_id: str, target: UserId) -> StageMember:
        standing = await self._open_space(space_id, actor, target)
        space = standing.space
        _, member = self._authorize(standing, actor, Action.REMOVE_COHOST, target)
        assert member is not None
        return await self._put_on_stage(space, target, member.display_name, Role.SPEAKER)

    async def transfer_host(self, actor: Actor, space_id: str, target: UserId) -> Space:
        standing = await self._open_space(space_id, actor, target)
        space = standing.space
        _, member = self._authorize(standing, actor, Action.TRANSFER_HOST, target)
        assert member is not None
        handed_over = self._announcement("stage.changed", {"host": target})
        try:
            new_space = await self.records.transfer_host(
                space.id,
                actor.user_id,
                target,
                space.limits,
                announce=handed_over,
                event=self._event(space, "host.transferred", {"from": actor.user_id, "to": target}),
            )
        except (Conflict, StageFull) as exc:
            raise ControlError(
                "conflict", "transfer_failed", f"the host role could not be handed over: {exc}"
            ) from None
        await self._delivered(new_space)
        return new_space

    async def hands(self, space_id: str) -> list[RaisedHand]:
        """The raised hands of a Space, first raised first (live state, state/live.py)."""
        return [
            RaisedHand(SpaceId(space_id), UserId(h.user_id), h.display_name, h.raised_at)
            for h in await self.live.hands(space_id)
        ]

    async def _hand_of(self, space: Space, user: UserId) -> RaisedHand | None:
        return next((h for h in await self.hands(space.id) if h.user_id == user), None)

    async def _hand_gone(self, space: Space, user: UserId) -> None:
        """Lower `user`'s hand after a change whose own event says they no longer wait (seated,
        removed, banned). Best effort: with the live store out of reach the hand stays up, and
        every roster followed from the log drops it anyway."""
        try:
            await self.live.lower_hand(space.id, user)
        except UNAVAILABLE_ERRORS as exc:
            if not is_unavailable(exc):
                raise

    async def _display_name(self, space: Space, user: UserId) -> str:
        hand = await self._hand_of(space, user)
        if hand is not None:
            return hand.display_name
        account = await self.records.account(user)
        return account.display_name if account is not None else "Guest"

    # -- the audience ---------------------------------------------------------------------------
    async def admit(self, user: UserId | None, space_id: str, invite_code: str | None) -> Standing:
        """The Space and `user`'s standing in it, if they may know it exists: 404 for a private
        Space unless they show its current invite code or are on its stage (signed in)."""
        standing = await self.standing(space_id, user)
        _check_invite(standing, invite_code)
        return standing

    async def can_listen(
        self, actor: Actor | None, space_id: str, invite_code: str | None = None
    ) -> Standing:
        """The Space and the listener's standing in it, if they may listen; 404 for a private
        Space without its code (unless they are on its stage), 403 for someone banned."""
        standing = await self.admit(actor.user_id if actor else None, space_id, invite_code)
        if actor is not None:
            self._authorize(standing, actor, Action.LISTEN)
        return standing

    async def rotate_invite(self, actor: Actor, space_id: str) -> Space:
        """Give a private Space a new invite code (host): every link with the old one, and every
        media URL made from it, stops working (see delivery.capability). Also once the Space is
        over, since its replay and clips are still served."""
        await self.events.ready()
        standing = await self.admit(actor.user_id, space_id, None)  # off its stage: 404
        space = standing.space
        self._authorize(standing, actor, Action.ROTATE_INVITE)
        if space.visibility is not Visibility.PRIVATE:
            raise ControlError(
                "conflict", "not_private", "only a private Space has an invite code to replace"
            )
        # The event says only that it changed: the log reaches every stage member, and the code
        # is the host's to hand out. A kept roster reads the Space afresh on it (roster.py).
        return await self._save(
            space, replace(space, invite_code=self._invite_code()), "space.invite_rotated", {}
        )

    async def raise_hand(self, actor: Actor, space_id: str, invite_code: str | None = None) -> bool:
        """Ask to speak; raises `Limited` when the person toggles their hand too fast."""
        standing = await self._open_space(space_id, actor, audience=True, invite_code=invite_code)
        space = standing.space
        self._authorize(standing, actor, Action.RAISE_HAND)
        await take(self.live, HAND, f"{space.id}:{actor.user_id}", self._clock())
        hand = Hand(actor.user_id, actor.display_name, self._clock())
        event = self._event(
            space, "hand.raised", {"user_id": actor.user_id, "display_name": actor.display_name}
        )
        try:
            appended = await self.live.raise_hand(space.id, hand, event)
        except HandsFull:
            raise ControlError(
                "unavailable",
                "hands_full",
                "too many hands are up in this Space: try again when the host has answered some",
            ) from None
        self._kept_past(space.id, appended)
        # Whoever asks to speak is listening: the host's audience list shows them at once.
        await self.live.mark_present(space.id, actor.user_id, actor.display_name, self._clock())
        return appended is not None

    async def lower_hand(self, actor: Actor, space_id: str, invite_code: str | None = None) -> bool:
        standing = await self._open_space(space_id, actor, audience=True, invite_code=invite_code)
        space = standing.space
        self._authorize(standing, actor, Action.LOWER_HAND)
        await take(self.live, HAND, f"{space.id}:{actor.user_id}", self._clock())
        event = self._event(space, "hand.lowered", {"user_id": actor.user_id})
        appended = await self.live.lower_hand(space.id, actor.user_id, event)
        self._kept_past(space.id, appended)
        return appended is not None

    async def react(
        self, actor: Actor, space_id: str, emoji: str, invite_code: str | None = None
    ) -> None:
        """Count a reaction; raises `Limited` when the person is over their limit."""
        if emoji not in REACTIONS:
            raise ControlError(
                "invalid", "bad_reaction", f"reactions are one of {' '.join(REACTIONS)}"
            )
        standing = await self._open_space(space_id, actor, audience=True, invite_code=invite_code)
        space = standing.space
        self._authorize(standing, actor, Action.REACT)
        now = self._clock()
        await take(self.live, REACT, f"{space.id}:{actor.user_id}", now)
        await self.live.add_reaction(space.id, emoji, int(now))
        # Whoever reacts is listening: one bounded write, shed with the reaction under load.
        await self.live.mark_present(space.id, actor.user_id, actor.display_name, now)


# Stage roles by authority, for "already seated at least as high as the link offers".
_RANK = {Role.HOST: 0, Role.COHOST: 1, Role.SPEAKER: 2, Role.LISTENER: 3}


def _link_refused(refusal: Refusal) -> ControlError:
    return ControlError("forbidden", refusal.value, REFUSAL_SENTENCES[refusal])


def _check_invite(standing: Standing, invite_code: str | None) -> None:
    """404 for a private Space unless `invite_code` is its current one or the person asking is
    on its stage: to everyone else a private Space does not exist."""
    space = standing.space
    if space.visibility is not Visibility.PRIVATE or standing.role.on_stage:
        return
    if not _is_invite(space, invite_code):
        raise _not_found()


def _is_invite(space: Space, invite_code: str | None) -> bool:
    """Whether `invite_code` is the private Space's current invite code (in constant time)."""
    return (
        space.visibility is Visibility.PRIVATE
        and invite_code is not None
        and hmac.compare_digest(invite_code.encode(), space.invite_code.encode())
    )


def _random_invite_code() -> str:
    import secrets

    return secrets.token_urlsafe(12)


def space_json(space: Space) -> dict[str, Any]:
    """The public face of a Space (never the private invite code)."""
    data = asdict(space)
    data.pop("invite_code")
    data["state"] = space.state.value
    data["visibility"] = space.visibility.value
    return data


def member_json(member: StageMember) -> dict[str, Any]:
    return {
        "user_id": member.user_id,
        "display_name": member.display_name,
        "role": member.role.value,
        "muted": member.muted_by_host or member.self_muted,
        "muted_by_host": member.muted_by_host,
        "self_muted": member.self_muted,
        "joined_at": member.joined_at,
    }
