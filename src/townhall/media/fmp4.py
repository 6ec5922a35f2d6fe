"""Just enough ISO-BMFF reading to cut a fragmented MP4 byte stream into what LL-HLS serves.

The muxer writes `ftyp`+`moov` (the init section) once, then one `moof`+`mdat` pair per fragment;
each pair is one LL-HLS part. We only walk top-level boxes and read `trun`'s sample count and
`tfdt`'s decode time. One box is written: the `emsg` (DASH event message, version 1, ISO/IEC
23009-1 §5.10.3.3) that carries the room state in front of a part's `moof` (see
`media.roomstate`); CMAF allows event messages before a fragment's `moof`, and players that do not
know a scheme skip the box.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple


class Fmp4Error(ValueError):
    """The bytes are not the fragmented MP4 we expect (truncated box, missing trun, …)."""


class Box(NamedTuple):
    """A box's type and where it lies (header included) in the bytes it was read from. A tuple,
    not a frozen dataclass: a listener walks several boxes per part, and a frozen dataclass costs
    ~1 µs to build (load generators holding thousands of listeners measured it)."""

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
    return moof_sample_count(fragment, moof.start, moof.end)


def moof_sample_count(data: bytes, start: int = 0, end: int | None = None) -> int:
    """Samples in the `moof` box at data[start:end] (sum over its trun boxes' sample_count).

    Walked with offsets, not `iter_boxes`: every simulated listener of a load generator counts
    the samples of every part it receives (5 µs a part that way, a quarter of it this way)."""
    end = len(data) if end is None else end
    total = 0
    pos = start + 8
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size < 8 or pos + size > end:
            raise Fmp4Error(f"box {kind!r} in moof has a bad size {size}")
        if kind == b"traf":
            inner = pos + 8
            while inner + 8 <= pos + size:
                inner_size, inner_kind = struct.unpack_from(">I4s", data, inner)
                if inner_size < 8:
                    raise Fmp4Error(f"box {inner_kind!r} in traf has a bad size {inner_size}")
                if inner_kind == b"trun" and inner + 16 <= pos + size:
                    # FullBox: size, type, version+flags (4 bytes), then sample_count.
                    total += struct.unpack_from(">I", data, inner + 12)[0]
                inner += inner_size
        pos += size
    if total == 0:
        raise Fmp4Error("fragment has no samples")
    return int(total)


def fragment_decode_time(fragment: bytes) -> int:
    """The base media decode time (`tfdt`) of a moof+mdat fragment's first track, in its timescale."""
    tfdt = find_box(fragment, ["moof", "traf", "tfdt"])
    if tfdt is None or tfdt.end - tfdt.start < 16:
        raise Fmp4Error("fragment has no tfdt box")
    version = fragment[tfdt.start + 8]
    if version == 1:
        if tfdt.end - tfdt.start < 20:
            raise Fmp4Error("tfdt version 1 is too short")
        (time,) = struct.unpack_from(">Q", fragment, tfdt.start + 12)
    else:
        (time,) = struct.unpack_from(">I", fragment, tfdt.start + 12)
    return int(time)


@dataclass(frozen=True)
class EventMessage:
    """An `emsg` box, version 1: an event at an absolute presentation time of the track."""

    scheme_id_uri: str
    value: str
    timescale: int
    presentation_time: int
    duration: int
    id: int
    data: bytes


def emsg_box(message: EventMessage) -> bytes:
    """The `emsg` box (version 1) for `message`."""
    for text in (message.scheme_id_uri, message.value):
        if "\0" in text:
            raise ValueError("emsg strings are NUL-terminated: no NUL inside")
    body = (
        struct.pack(
            ">IQII",
            message.timescale,
            message.presentation_time,
            message.duration,
            message.id & 0xFFFFFFFF,
        )
        + message.scheme_id_uri.encode()
        + b"\0"
        + message.value.encode()
        + b"\0"
        + message.data
    )
    return struct.pack(">I4sI", 12 + len(body), b"emsg", 1 << 24) + body


def read_emsg(data: bytes, box: Box) -> EventMessage:
    """The event message in the `emsg` box `box` of `data` (version 1 only: what we write)."""
    if box.type != "emsg" or box.end - box.start < 12 + 20 + 2:
        raise Fmp4Error("not an emsg box of version 1")
    if data[box.start + 8] != 1:
        raise Fmp4Error(f"emsg version {data[box.start + 8]} is not read here")
    timescale, time, duration, ident = struct.unpack_from(">IQII", data, box.start + 12)
    rest = data[box.start + 32 : box.end]
    scheme, sep1, rest = rest.partition(b"\0")
    value, sep2, payload = rest.partition(b"\0")
    if not (sep1 and sep2):
        raise Fmp4Error("emsg strings are not NUL-terminated")
    return EventMessage(
        scheme.decode(), value.decode(), timescale, time, duration, ident, bytes(payload)
    )


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
