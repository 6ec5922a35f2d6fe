"""The host's audience list: the signed-in and guest listeners present, for the host and co-hosts.

Built on presence that is already there, so it costs nothing per listener on the audio path: the
sampled presence beacon (api/live_routes.py) of a listener who has an identity, and their reactions
and raised hands, mark them by name in the live state (`LiveState.mark_present`, one bounded write);
this route reads that set once per request and pages it (spaces/audience.py). What the list is:

* everyone with an account or a guest name whose page beaconed, reacted or raised a hand in the
  last minute, but the stage. Listeners without an identity are in the count, not here: there is
  no name to show or act on;
* at small audiences (up to live_routes.PRESENCE_TARGET listeners every page beacons) that is
  everyone named; beyond, beacons are sampled and at most `AUDIENCE_KEPT` people are held, so the
  list is a sample, and says so (`complete: false`). Someone not in it who reacts or raises a hand
  is in it at once.

Private to the host and co-hosts (403 for anyone else), never cached (`private, no-store`).
"""

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from townhall.api.auth import RequiredIdentity
from townhall.api.errors import BadRequest, Forbidden
from townhall.api.params import SpaceIdP
from townhall.spaces.audience import QUERY_MAX, BadCursor, audience_page
from townhall.spaces.control import SpaceControl
from townhall.spaces.counts import presence_sample
from townhall.spaces.model import UserId
from townhall.spaces.rules import MODERATORS
from townhall.state.live import AUDIENCE_KEPT, LISTENER_WINDOW_S


def build_audience_router(
    control: Callable[[], SpaceControl], clock: Callable[[], float] = time.time
) -> APIRouter:
    router = APIRouter(prefix="/api/spaces", tags=["spaces"])

    @router.get(
        "/{space_id}/audience",
        summary="Listeners present with an account or guest name, searchable (host, co-hosts)",
        description=(
            "Those seen in the last minute (presence beacon, reaction, raised hand), the stage "
            "left out, ordered by name. `q`: every word must appear in the name (case and "
            "accents ignored). `cursor`: the `next_cursor` of the previous page. `complete` is "
            "false when the audience is large enough that the list is a sample."
        ),
    )
    async def audience(
        space_id: SpaceIdP,
        response: Response,
        who: RequiredIdentity,
        q: Annotated[str, Query(max_length=QUERY_MAX)] = "",
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        response.headers["Cache-Control"] = "private, no-store"
        ctl = control()
        roster = await ctl.roster(space_id)
        if roster.standing(UserId(who.user_id)).role not in MODERATORS:
            raise Forbidden(
                "only the host or a co-host sees who is listening", code="not_moderator"
            )
        now = clock()
        present = await ctl.live.present(roster.space.id, now)
        try:
            page = audience_page(present, roster, q, cursor)
        except BadCursor:
            raise BadRequest("that page of the list is not ours", code="bad_cursor") from None
        sampled = presence_sample(await ctl.live.listener_count(roster.space.id, now)) < 1
        return {
            "people": [
                {
                    "user_id": p.user_id,
                    "display_name": p.display_name,
                    "guest": p.guest,
                    "seen": p.seen,
                    "hand_raised": p.hand_raised,
                    "banned": p.banned,
                }
                for p in page.people
            ],
            "matching": page.matching,
            "next_cursor": page.next_cursor,
            "complete": not sampled and len(present) < AUDIENCE_KEPT,
            "window_s": LISTENER_WINDOW_S,
        }

    return router
