"""Every limit a stranger can hit, defined once, and the one way to take a token from one.

A limit is a token bucket per caller: `burst` tries at once, then `per_second` more. The buckets
live in the shared store (`LiveState.take_token`): in-process when embedded, in Redis when many
processes share it, so a deployment of N processes allows what one process allows — a password
guesser gets the same ten tries whichever node each guess reaches. Times are wall-clock UNIX
seconds (`time.time()`), the one clock every process of a deployment shares.

Refusal is an exception, `Limited`, mapped once to 429 + Retry-After by the API's error seam
(api/errors.py), wherever it is raised: in a route or in a domain command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from townhall.ratelimit.bucket import retry_after


@dataclass(frozen=True)
class Limit:
    """One named limit. The name prefixes every bucket key, so two limits never share a bucket."""

    name: str
    per_second: float
    burst: int
    message: str  # what a refused caller is told
    why: str = ""

    def key(self, caller: str) -> str:
        return f"{self.name}:{caller}"


# Password work costs ~0.1 s of CPU (argon2) on purpose; these bound guessing from one address and,
# whatever the number of addresses, against one account. Ten tries, then one every 2 s / 10 s.
SIGNIN_PER_ADDRESS = Limit(
    "signin-address", 0.5, 10, "too many sign-in attempts; wait a moment", "password guessing"
)
SIGNIN_PER_ACCOUNT = Limit(
    "signin-account",
    0.1,
    10,
    "too many sign-in attempts for this account; wait a moment",
    "password guessing from many addresses",
)
SIGNUP = Limit("signup", 0.5, 10, "too many sign-ups; wait a moment", "argon2 CPU, account spam")
GUEST = Limit("guest", 1.0, 20, "too many guest names; wait a moment", "identity minting")
# A listener beacons every 30 s; five at once leaves room for a few tabs behind one address.
PRESENCE = Limit("presence", 1.0, 5, "too many beacons", "inflating the listener count")
RTC_PER_ADDRESS = Limit(
    "rtc-address", 5.0, 30, "too many connection attempts; slow down", "a whole stage behind a NAT"
)
RTC_PER_PERSON = Limit(
    "rtc-person", 0.5, 5, "too many connection attempts; slow down", "reconnect loops"
)
CLIP = Limit("clip", 1 / 20, 3, "one clip at a time; wait a moment", "remux work per clip")
REACT = Limit("react", 2.0, 10, "slow down with the reactions", "per person per Space")
# Raising and lowering a hand each reach every stage client as an event: toggling is log spam.
HAND = Limit("hand", 0.2, 6, "slow down with the hand; wait a moment", "per person per Space")

# A new Space may take a media node's slot (a green room runs its mixer at once): creation is what
# a stranger would repeat to fill a node. Three at once per person, then one a minute; ten at once
# per address (guest identities are free, addresses are not), then one every 10 s.
SPACE_PER_PERSON = Limit(
    "space-person",
    1 / 60,
    3,
    "you have started several Spaces just now; wait a minute",
    "filling media nodes",
)
SPACE_PER_ADDRESS = Limit(
    "space-address",
    0.1,
    10,
    "many Spaces were started from your address just now; wait a moment",
    "filling media nodes with free guest identities",
)
# Clips are kept with their recording (30 days by default): besides one at a time (CLIP), a
# person makes at most 20 a day, and an address 60 (a few people behind one NAT), so minting
# identities does not multiply the disk a stranger can fill. Each clip is at most 60 s.
CLIP_DAILY_PER_PERSON = Limit(
    "clip-day-person",
    20 / 86_400,
    20,
    "you have made today's clips; try again tomorrow",
    "disk: clips per identity",
)
CLIP_DAILY_PER_ADDRESS = Limit(
    "clip-day-address",
    60 / 86_400,
    60,
    "many clips were made from your address today; try again later",
    "disk: clips with free identities",
)

# "Remind me" can send mail: a person sets a few at once, then one every 10 s; and an address
# is mailed about at most 20 Spaces a day whoever asks, so nobody can flood a stranger's inbox.
REMIND = Limit("remind", 0.1, 10, "too many reminders just now; wait a moment", "mail per person")
REMIND_EMAIL = Limit(
    "remind-email",
    20 / 86_400,
    20,
    "that address gets as many reminders as it can today; try again tomorrow",
    "mail to one address, whoever asks",
)

# Subscribing a browser to Web Push writes a record: a few at once (a person with several tabs
# or browsers), then one a minute; the number kept per person is capped too (state/push_outbox).
PUSH_SUBSCRIBE = Limit(
    "push-subscribe", 1 / 60, 5, "too many browsers subscribed just now; wait a minute", "records"
)

LIMITS: tuple[Limit, ...] = (
    SIGNIN_PER_ADDRESS,
    SIGNIN_PER_ACCOUNT,
    SIGNUP,
    GUEST,
    PRESENCE,
    RTC_PER_ADDRESS,
    RTC_PER_PERSON,
    CLIP,
    REACT,
    HAND,
    SPACE_PER_PERSON,
    SPACE_PER_ADDRESS,
    CLIP_DAILY_PER_PERSON,
    CLIP_DAILY_PER_ADDRESS,
    REMIND,
    REMIND_EMAIL,
    PUSH_SUBSCRIBE,
)


class Limited(Exception):
    """A caller is over a limit; they may try again after `wait` seconds (429 + Retry-After)."""

    code = "rate_limited"  # the error code the API answers with

    def __init__(self, limit: Limit, wait: float) -> None:
        super().__init__(limit.message)
        self.limit = limit
        self.wait = wait

    @property
    def retry_after(self) -> str:
        return retry_after(self.wait)


class QuotaExceeded(Limited):
    """A caller's storage budget (`storage.StorageQuota`) cannot pay for what they ask:
    429 `quota_exceeded` + Retry-After (the budget refills over time)."""

    code = "quota_exceeded"


class TokenStore(Protocol):
    """What `take` needs of a store: `LiveState.take_token` (embedded or Redis)."""

    async def take_token(
        self, key: str, per_second: float, burst: int, now: float, cost: float = 1.0
    ) -> float: ...


async def take(
    store: TokenStore,
    limit: Limit,
    caller: str,
    now: float,
    *,
    cost: float = 1.0,
    refusal: type[Limited] = Limited,
) -> None:
    """Take `cost` of `caller`'s tokens for `limit` from the shared store (one a request), or
    raise `refusal` (a `Limited`) and take nothing."""
    wait = await store.take_token(limit.key(caller), limit.per_second, limit.burst, now, cost)
    if wait > 0:
        raise refusal(limit, wait)
