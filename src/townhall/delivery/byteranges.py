"""HTTP byte ranges of media objects (RFC 9110 §14): what a `Range` header asks for, and answers.

The live playlist lists each part as a byte range of its segment (RFC 8216bis §4.4.4.9), so a
part-by-part player (hls.js, Safari) asks for `Range: bytes=first-last` of a segment, and a player
following the preload hint asks for `bytes=first-` (an open end: the part's length is not known
until it is encoded). Only a single byte range is understood; anything else is ignored and the
whole object is answered with 200, which HTTP allows (§14.2) and every client must accept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ByteRange", "requested_range"]

_SINGLE = re.compile(r"^bytes=(\d{1,15})?-(\d{1,15})?$")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """One byte range as asked: `first`-`last` (inclusive), `first`- (open end) or -`suffix`."""

    first: int | None
    last: int | None

    def within(self, length: int) -> tuple[int, int] | None:
        """The (start, end) slice of an object of `length` bytes this range selects; None if it
        is unsatisfiable (416). A last position past the end means the end (§14.1.2)."""
        if self.first is None:
            suffix = self.last or 0
            return (max(0, length - suffix), length) if suffix > 0 and length > 0 else None
        if self.first >= length:
            return None
        end = length if self.last is None else min(self.last + 1, length)
        return self.first, end


def requested_range(header: str | None) -> ByteRange | None:
    """The single byte range a `Range` header asks for; None if absent, several or malformed."""
    if header is None:
        return None
    match = _SINGLE.fullmatch(header.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if first_text is None and last_text is None:
        return None
    first = int(first_text) if first_text is not None else None
    last = int(last_text) if last_text is not None else None
    if first is not None and last is not None and last < first:
        return None  # invalid (§14.1.1): ignored, as a server may
    return ByteRange(first, last)
