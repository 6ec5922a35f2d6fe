"""Just enough ISO-BMFF reading to cut a fragmented MP4 byte stream into what LL-HLS serves.

The muxer writes `ftyp`+`moov` (the init section) once, then one `moof`+`mdat` pair per fragment;
each pair is one LL-HLS part. We only walk top-level boxes and read one field of `trun`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass


class Fmp4Error(ValueError):
    """The bytes are not the fragmented MP4 we expect (truncated box, missing trun, …)."""


@dataclass(frozen=True)
class Box:
    type: str
    start: int
    end: int


def iter_boxes(
    data: bytes | bytearray | memoryview, start: int = 0, end: int | None = None
) -> Iterator[Box]:
    """Top-level boxes in data[start:end]; stops at an incomplete trailing box."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            raise Fmp4Error(f"box {kind!r} at {pos} has impossible size {size}")
        if pos + size > end:
            return
        yield Box(kind.decode("latin-1"), pos, pos + size)
        pos += size


def find_box(data: bytes, path: list[str], start: int = 0, end: int | None = None) -> Box | None:
    """Descend through container boxes by type, e.g. ['moof', 'traf', 'trun']."""
    head, *rest = path
    for box in iter_boxes(data, start, end):
        if box.type == head:
            if not rest:
                return box
            return find_box(data, rest, box.start + 8, box.end)
    return None


def fragment_sample_count(fragment: bytes) -> int:
    """Samples in a moof+mdat fragment (sum over its trun boxes' sample_count fields)."""
    moof = find_box(fragment, ["moof"])
    if moof is None:
        raise Fmp4Error("fragment has no moof box")
    total = 0
    for traf in iter_boxes(fragment, moof.start + 8, moof.end):
        if traf.type != "traf":
            continue
        for box in iter_boxes(fragment, traf.start + 8, traf.end):
            if box.type == "trun":
                # FullBox: size, type, version+flags (4 bytes), then sample_count.
                (count,) = struct.unpack_from(">I", fragment, box.start + 12)
                total += count
    if total == 0:
        raise Fmp4Error("fragment has no samples")
    return total


class BoxSplitter:
    """Reassembles a muxer's write() calls into whole top-level boxes, in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self._buffer += data
        out: list[tuple[str, bytes]] = []
        consumed = 0
        for box in iter_boxes(self._buffer):
            out.append((box.type, bytes(self._buffer[box.start : box.end])))
            consumed = box.end
        del self._buffer[:consumed]
        return out
