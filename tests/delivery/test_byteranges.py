"""What a Range header asks of a media object, and which bytes that selects."""

from __future__ import annotations

import pytest

from townhall.delivery.byteranges import ByteRange, requested_range


@pytest.mark.parametrize(
    ("header", "asked"),
    [
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=100-", ByteRange(100, None)),  # the preload hint's open end
        ("bytes=-10", ByteRange(None, 10)),  # the last ten bytes
        (" bytes=5-5 ", ByteRange(5, 5)),
        (None, None),  # no Range: the whole object
        ("bytes=0-1,5-9", None),  # several ranges: not understood, the whole object
        ("bytes=9-5", None),  # last before first: invalid, ignored
        ("bytes=-", None),
        ("items=0-9", None),
        ("bytes=0x1-", None),
    ],
)
def test_a_single_byte_range_is_understood_and_anything_else_means_the_whole_object(
    header: str | None, asked: ByteRange | None
) -> None:
    assert requested_range(header) == asked


@pytest.mark.parametrize(
    ("asked", "length", "selected"),
    [
        (ByteRange(0, 99), 50, (0, 50)),  # a last position past the end means the end
        (ByteRange(10, 19), 50, (10, 20)),
        (ByteRange(49, None), 50, (49, 50)),
        (ByteRange(50, None), 50, None),  # starts past the end: 416
        (ByteRange(None, 10), 50, (40, 50)),
        (ByteRange(None, 99), 50, (0, 50)),
        (ByteRange(None, 0), 50, None),
        (ByteRange(0, None), 0, None),
    ],
)
def test_a_range_selects_the_bytes_of_an_object_it_lies_within(
    asked: ByteRange, length: int, selected: tuple[int, int] | None
) -> None:
    assert asked.within(length) == selected
