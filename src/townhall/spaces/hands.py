"""The raised hands a kept roster holds: an immutable set whose one-hand changes cost little.

A process keeps each busy Space's roster and follows the Space's log to keep it current
(spaces/roster.py). Every raise and every lower is an event, and a busy Space has thousands of
hands up (up to `HANDS_LIMIT`), so a roster that copied a frozenset of every hand per event paid
for the whole queue on every click: profiled with py-spy at ~5,000 hands up, that copy was the
largest single item of a hand raise's CPU (docs/architecture.md, "What a hand costs").

`HandSet` is a shared `base` plus the few hands `added` and `removed` since: a change copies only
the small sets, and once they grow past about the square root of the base they are folded into a
new base. Each change so costs O(√n) amortized instead of O(n) (about 100 entries instead of
10,000 at the limit), and a set that is never changed after it was read costs nothing extra.
It stays a value: nothing is changed in place, so a roster handed to a caller never moves under it.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Set

from townhall.spaces.model import UserId

_MIN_CHANGES = 32  # below this many pending changes, folding would cost more than it saves


class HandSet(Set[UserId]):
    """An immutable set of user ids with cheap `plus` / `minus` (module docstring).

    Invariants: `added` and `base` are disjoint; `removed` is a subset of `base`."""

    __slots__ = ("_added", "_base", "_removed")

    def __init__(
        self,
        base: Iterable[UserId] = (),
        added: frozenset[UserId] = frozenset(),
        removed: frozenset[UserId] = frozenset(),
    ) -> None:
        self._base = base if isinstance(base, frozenset) else frozenset(base)
        self._added = added
        self._removed = removed

    @classmethod
    def of(cls, hands: Set[UserId]) -> HandSet:
        """`hands` as a HandSet (itself if it is one already)."""
        return hands if isinstance(hands, HandSet) else cls(frozenset(hands))

    def plus(self, user: UserId) -> HandSet:
        """This set with `user`'s hand up."""
        if user in self:
            return self
        if user in self._removed:
            return self._folded(self._added, self._removed - {user})
        return self._folded(self._added | {user}, self._removed)

    def minus(self, user: UserId) -> HandSet:
        """This set with `user`'s hand down."""
        if user not in self:
            return self
        if user in self._added:
            return self._folded(self._added - {user}, self._removed)
        return self._folded(self._added, self._removed | {user})

    def _folded(self, added: frozenset[UserId], removed: frozenset[UserId]) -> HandSet:
        """A set with these pending changes, folded into a new base once they are many."""
        if len(added) + len(removed) > max(_MIN_CHANGES, math.isqrt(len(self._base))):
            return HandSet((self._base - removed) | added)
        return HandSet(self._base, added, removed)

    def __contains__(self, user: object) -> bool:
        return user in self._added or (user in self._base and user not in self._removed)

    def __iter__(self) -> Iterator[UserId]:
        removed = self._removed
        yield from (u for u in self._base if u not in removed)
        yield from self._added

    def __len__(self) -> int:
        return len(self._base) - len(self._removed) + len(self._added)

    def __repr__(self) -> str:
        return f"HandSet({set(self)!r})"

    def __hash__(self) -> int:  # equal to a frozenset of the same hands, so hashed alike
        return self._hash()
