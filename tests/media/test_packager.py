"""The LL-HLS packager driven part by part; playlists are parsed, never compared as whole text."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from townhall.media.packager import (
    EncodedPart,
    LlHlsPackager,
    PackagerConfig,
    Verdict,
)

AAC_PART = 15 * 1024 / 48_000  # 0.32 s: 15 AAC frames at 48 kHz
START = 1_685_052_000.0  # 2023-05-25T22:00:00Z
STREAM = "run1"

READY = (Verdict.READY, "")
WAIT = (Verdict.WAIT, "")


# -- a small playlist parser ----------------------------------------------------------------------
@dataclass
class Part:
    duration: Decimal
    uri: str  # the segment the part is a byte range of
    independent: bool
    length: int
    offset: int
    index: int  # its position in its segment, counted from the segment's first part

    @property
    def address(self) -> tuple[int, int]:
        return uri_address(self.uri)[0], self.index


@dataclass
class Segment:
    duration: Decimal
    uri: str
    parts: list[Part]
    date_time: datetime | None


@dataclass
class Playlist:
    tags: dict[str, str] = field(default_factory=dict)  # header tag -> raw value
    segments: list[Segment] = field(default_factory=list)
    trailing_parts: list[Part] = field(default_factory=list)  # parts of the open segment
    first_date_time: datetime | None = None
    preload_hint: dict[str, str] | None = None
    ended: bool = False

    def attrs(self, tag: str) -> dict[str, str]:
        return parse_attributes(self.tags[tag])

    @property
    def media_sequence(self) -> int:
        return int(self.tags["EXT-X-MEDIA-SEQUENCE"])

    @property
    def target_duration(self) -> int:
        return int(self.tags["EXT-X-TARGETDURATION"])

    @property
    def part_target(self) -> Decimal:
        return Decimal(self.attrs("EXT-X-PART-INF")["PART-TARGET"])

    @property
    def all_parts(self) -> list[Part]:
        return [p for s in self.segments for p in s.parts] + self.trailing_parts


_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)(?:,|$)')
_HEADER_TAGS = {
    "EXT-X-VERSION",
    "EXT-X-TARGETDURATION",
    "EXT-X-SERVER-CONTROL",
    "EXT-X-PART-INF",
    "EXT-X-MEDIA-SEQUENCE",
    "EXT-X-MAP",
    "EXT-X-INDEPENDENT-SEGMENTS",
}


def parse_attributes(text: str) -> dict[str, str]:
    return {name: value.strip('"') for name, value in _ATTRIBUTE.findall(text)}


def parse_playlist(text: str) -> Playlist:
    lines = text.split("\n")
    assert lines[0] == "#EXTM3U"
    assert text.endswith("\n")
    playlist = Playlist()
    pending_parts: list[Part] = []
    pending_duration: Decimal | None = None
    pending_date: datetime | None = None
    for line in lines[1:]:
        if not line:
            continue
        assert not playlist.ended, "nothing may follow EXT-X-ENDLIST"
        assert playlist.preload_hint is None, "the preload hint is the last line"
        if not line.startswith("#"):
            assert pending_duration is not None, f"URI without EXTINF: {line}"
            assert all(p.uri == line for p in pending_parts), "a segment's parts are its ranges"
            playlist.segments.append(Segment(pending_duration, line, pending_parts, pending_date))
            pending_parts, pending_duration, pending_date = [], None, None
            continue
        name, _, value = line[1:].partition(":")
        if name in _HEADER_TAGS:
            assert not playlist.segments, f"{name} after media"
            assert not pending_parts, f"{name} after media"
            assert name not in playlist.tags, f"{name} twice"
            playlist.tags[name] = value
        elif name == "EXT-X-PROGRAM-DATE-TIME":
            date = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value)
            if playlist.first_date_time is None:
                playlist.first_date_time = date
            pending_date = date
        elif name == "EXT-X-PART":
            attrs = parse_attributes(value)
            independent = attrs.get("INDEPENDENT") == "YES"
            assert re.search(r'BYTERANGE="\d+@\d+"', value), value  # a quoted-string (4.4.4.9)
            length, offset = (int(n) for n in attrs["BYTERANGE"].split("@"))
            if pending_parts:  # contiguous byte ranges of one segment, from its first byte
                previous = pending_parts[-1]
                assert attrs["URI"] == previous.uri
                assert offset == previous.offset + previous.length
            else:
                assert offset == 0, value
            part = Part(
                Decimal(attrs["DURATION"]),
                attrs["URI"],
                independent,
                length,
                offset,
                len(pending_parts),
            )
            pending_parts.append(part)
        elif name == "EXTINF":
            duration, comma, _title = value.partition(",")
            assert comma, "EXTINF needs its comma"
            pending_duration = Decimal(duration)
        elif name == "EXT-X-PRELOAD-HINT":
            playlist.preload_hint = parse_attributes(value)
        elif name == "EXT-X-ENDLIST":
            playlist.ended = True
        else:
            raise AssertionError(f"unexpected tag {name}")
    assert pending_duration is None, "EXTINF without a URI"
    playlist.trailing_parts = pending_parts
    return playlist


def uri_address(uri: str) -> tuple[int, int]:
    """(msn, index) of a part's own URI, (msn, -1) of a segment URI."""
    match = re.fullmatch(rf"{STREAM}/(?:s(\d+)|p(\d+)\.(\d+))\.m4s", uri)
    assert match is not None, uri
    segment, msn, index = match.groups()
    return (int(segment), -1) if segment is not None else (int(msn), int(index))


# -- helpers --------------------------------------------------------------------------------------
def make(
    part_target: float = AAC_PART,
    *,
    parts_per_segment: int = 6,
    window_segments: int = 6,
    first_msn: int = 0,
) -> LlHlsPackager:
    config = PackagerConfig(
        part_target=part_target,
        parts_per_segment=parts_per_segment,
        window_segments=window_segments,
    )
    return LlHlsPackager(
        config, stream_id=STREAM, init_section=b"ftyp+moov", start_time=START, first_msn=first_msn
    )


def feed(packager: LlHlsPackager, count: int, duration: float | None = None) -> None:
    for _ in range(count):
        part = duration if duration is not None else packager.config.part_target
        packager.add_part(EncodedPart(f"part {packager.next_part}".encode(), part))


def playlist_of(packager: LlHlsPackager) -> Playlist:
    return parse_playlist(packager.media_playlist())


# -- playlist structure ---------------------------------------------------------------------------
def test_a_new_stream_lists_nothing_yet_and_hints_its_first_part() -> None:
    packager = make()
    playlist = playlist_of(packager)
    assert playlist.segments == []
    assert playlist.trailing_parts == []
    assert playlist.media_sequence == 0
    assert playlist.first_date_time is None
    assert playlist.preload_hint == {
        "TYPE": "PART",
        "URI": f"{STREAM}/s0.m4s",
        "BYTERANGE-START": "0",
    }
    assert packager.next_part == (0, 0)


def test_header_tags_describe_the_stream() -> None:
    packager = make()
    feed(packager, 8)
    playlist = playlist_of(packager)
    assert int(playlist.tags["EXT-X-VERSION"]) >= 6  # EXT-X-MAP without I-frames needs 6
    assert playlist.target_duration == 2  # ceil(6 × 0.32 s)
    assert playlist.part_target == Decimal("0.32000")
    control = playlist.attrs("EXT-X-SERVER-CONTROL")
    assert control["CAN-BLOCK-RELOAD"] == "YES"
    assert Decimal(control["PART-HOLD-BACK"]) >= 3 * playlist.part_target
    assert Decimal(control["PART-HOLD-BACK"]) <= 3 * playlist.part_target + Decimal("0.002")
    assert playlist.attrs("EXT-X-MAP") == {"URI": f"{STREAM}/init.mp4"}
    assert playlist.media_sequence == 0


@pytest.mark.parametrize("part_target", [AAC_PART, 10 * 1024 / 48_000, 0.2, 1 / 3, 0.5, 1.5])
def test_part_hold_back_is_at_least_three_part_targets(part_target: float) -> None:
    packager = make(part_target)
    feed(packager, 3)
    playlist = playlist_of(packager)
    hold_back = Decimal(playlist.attrs("EXT-X-SERVER-CONTROL")["PART-HOLD-BACK"])
    assert hold_back >= 3 * playlist.part_target
    assert float(hold_back) >= 3 * part_target  # also as binary floats, as a player compares
    assert float(playlist.part_target) >= part_target  # PART-TARGET is a maximum: never below


def test_1024_sample_aac_parts_never_exceed_the_written_part_target() -> None:
    part = 10 * 1024 / 48_000  # 0.213333… s
    packager = make(part, parts_per_segment=5)
    feed(packager, 12)
    playlist = playlist_of(packager)
    assert playlist.part_target == Decimal("0.21334")
    assert all(p.duration <= playlist.part_target for p in playlist.all_parts)


def test_a_segment_closes_after_parts_per_segment_parts() -> None:
    packager = make(parts_per_segment=4)
    addresses = [packager.add_part(EncodedPart(bytes([i]), AAC_PART)) for i in range(9)]
    assert addresses == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3), (2, 0)]
    playlist = playlist_of(packager)
    assert [s.uri for s in playlist.segments] == [f"{STREAM}/s0.m4s", f"{STREAM}/s1.m4s"]
    first = playlist.segments[0].parts
    assert [(p.uri, p.offset, p.length) for p in first] == [
        (f"{STREAM}/s0.m4s", i, 1) for i in range(4)
    ]
    assert all(p.independent for p in playlist.all_parts)
    assert [p.address for p in playlist.trailing_parts] == [(2, 0)]
    assert playlist.trailing_parts[0].uri == f"{STREAM}/s2.m4s"
    assert playlist.segments[0].duration == Decimal("1.28000")
    assert packager.segment(0) == bytes([0, 1, 2, 3])
    assert packager.segment(2) is None  # still open: only its parts exist


def test_the_preload_hint_always_names_the_next_part() -> None:
    packager = make(parts_per_segment=3)
    for _ in range(10):
        msn, index = packager.next_part
        assert playlist_of(packager).preload_hint == {
            "TYPE": "PART",
            "URI": f"{STREAM}/s{msn}.m4s",
            "BYTERANGE-START": str(index),  # every part here is one byte long
        }
        assert packager.is_future(msn, index)
        assert packager.part(msn, index) is None
        assert packager.add_part(EncodedPart(b"x", AAC_PART)) == (msn, index)
        assert not packager.is_future(msn, index)
        assert packager.part(msn, index) == b"x"


def test_a_segment_can_be_read_while_it_is_produced() -> None:
    packager = make(parts_per_segment=3)
    assert packager.segment_so_far(0) == ([], False)  # open, nothing written yet
    packager.add_part(EncodedPart(b"a", AAC_PART))
    packager.add_part(EncodedPart(b"bb", AAC_PART))
    assert packager.segment_so_far(0) == ([b"a", b"bb"], False)
    assert packager.segment_so_far(1) is None  # not open yet
    packager.add_part(EncodedPart(b"c", AAC_PART))
    assert packager.segment_so_far(0) == ([b"a", b"bb", b"c"], True)
    assert packager.segment_so_far(1) == ([], False)
    packager.end()
    assert packager.segment_so_far(1) is None  # the stream ended before it had a part


def test_only_the_hinted_part_is_the_future_one() -> None:
    packager = make(parts_per_segment=3)
    feed(packager, 4)  # next part is (1, 1)
    assert packager.is_future(1, 1)
    assert not packager.is_future(1, 2)
    assert not packager.is_future(2, 0)
    assert not packager.is_future(1, 0)  # already produced


def test_program_date_time_is_start_time_plus_the_durations_before() -> None:
    packager = make(parts_per_segment=2, window_segments=3)
    feed(packager, 2, 0.32)
    feed(packager, 30, 0.3)
    playlist = playlist_of(packager)
    first = playlist.media_sequence
    assert first > 0  # the window has slid
    elapsed = 0.64 + (first - 1) * 0.6
    assert playlist.first_date_time is not None
    assert playlist.first_date_time.timestamp() == pytest.approx(START + elapsed, abs=0.001)
    assert packager.media_playlist().count("#EXT-X-PROGRAM-DATE-TIME:") == 1


def test_program_date_time_is_utc_with_milliseconds() -> None:
    config = PackagerConfig(part_target=AAC_PART)
    packager = LlHlsPackager(config, stream_id=STREAM, init_section=b"i", start_time=START + 0.0456)
    feed(packager, 1)
    assert "#EXT-X-PROGRAM-DATE-TIME:2023-05-25T22:00:00.046Z\n" in packager.media_playlist()


def test_the_window_slides_and_forgets_old_media() -> None:
    packager = make(window_segments=4)  # 4 × 1.92 s ≥ 3 target durations: no need to raise it
    assert packager.window_size == 4
    feed(packager, 6 * 40 + 1)
    playlist = playlist_of(packager)
    assert [uri_address(s.uri)[0] for s in playlist.segments] == [36, 37, 38, 39]
    assert playlist.media_sequence == 36
    assert packager.segment(0) is None
    assert packager.part(0, 0) is None
    assert packager.segment(39) is not None
    assert packager.held_parts <= (packager.retained_segments + 1) * 6


def test_a_short_window_is_raised_to_three_target_durations() -> None:
    # 1-part segments of 0.32 s with a 1 s target duration: 3 s of playlist needs 10 segments.
    packager = make(parts_per_segment=1, window_segments=3)
    assert packager.window_size == 10
    feed(packager, 40)
    playlist = playlist_of(packager)
    assert len(playlist.segments) == 10
    assert sum(s.duration for s in playlist.segments) >= 3 * playlist.target_duration


def test_old_segments_lose_their_part_tags_but_the_parts_stay_downloadable() -> None:
    packager = make()  # 1.92 s segments, target duration 2 s: parts listed within 6 s of the end
    feed(packager, 6 * 6 + 2)
    playlist = playlist_of(packager)
    with_parts = [s for s in playlist.segments if s.parts]
    assert with_parts
    assert len(with_parts) < len(playlist.segments)
    # Tags are removed oldest first: segments with parts are the newest ones.
    assert playlist.segments[-len(with_parts) :] == with_parts
    end = sum(float(s.duration) for s in playlist.segments) + 2 * AAC_PART
    first_with_parts = len(playlist.segments) - len(with_parts)
    elapsed_to_oldest_end = sum(
        float(s.duration) for s in playlist.segments[: first_with_parts + 1]
    )
    assert end - elapsed_to_oldest_end <= 3 * playlist.target_duration
    for segment in playlist.segments:
        msn = uri_address(segment.uri)[0]
        assert packager.part(msn, 0) is not None


def test_end_closes_the_short_last_segment_and_ends_the_playlist() -> None:
    packager = make(parts_per_segment=4)
    feed(packager, 6)
    packager.add_part(EncodedPart(b"last", 0.1))
    packager.end()
    assert packager.ended
    playlist = playlist_of(packager)
    assert playlist.ended
    assert playlist.preload_hint is None
    assert playlist.trailing_parts == []
    last = playlist.segments[-1]
    assert uri_address(last.uri) == (1, -1)
    assert last.duration == Decimal("0.74000")  # 2 × 0.32 + 0.1
    assert packager.segment(1) == b"part (1, 0)part (1, 1)last"
    assert not packager.is_future(*packager.next_part)
    with pytest.raises(RuntimeError):
        packager.add_part(EncodedPart(b"late", AAC_PART))
    with pytest.raises(RuntimeError):
        packager.end()


def test_ending_on_a_segment_boundary_adds_no_empty_segment() -> None:
    packager = make(parts_per_segment=3)
    feed(packager, 6)
    packager.end()
    playlist = playlist_of(packager)
    assert [uri_address(s.uri)[0] for s in playlist.segments] == [0, 1]
    assert playlist.ended


def test_a_taken_over_stream_continues_the_sequence_numbers() -> None:
    packager = make(parts_per_segment=2, first_msn=500)
    assert packager.next_part == (500, 0)
    feed(packager, 5)
    playlist = playlist_of(packager)
    assert playlist.media_sequence == 500
    assert [uri_address(s.uri)[0] for s in playlist.segments] == [500, 501]
    assert packager.verdict(499, None) == READY  # before this run: nothing to wait for
    assert packager.verdict(502, 1) == WAIT


def test_the_multivariant_playlist_names_bandwidth_and_codecs() -> None:
    config = PackagerConfig(part_target=AAC_PART, codecs="mp4a.40.2", bandwidth=72_000)
    packager = LlHlsPackager(config, stream_id=STREAM, init_section=b"i", start_time=START)
    lines = packager.multivariant_playlist("media.m3u8").splitlines()
    assert lines[0] == "#EXTM3U"
    stream_inf = next(line for line in lines if line.startswith("#EXT-X-STREAM-INF:"))
    attrs = parse_attributes(stream_inf.partition(":")[2])
    assert attrs == {"BANDWIDTH": "72000", "CODECS": "mp4a.40.2"}
    assert lines[lines.index(stream_inf) + 1] == "media.m3u8"


def test_a_captioned_stream_names_its_subtitle_rendition_in_the_multivariant_playlist() -> None:
    config = PackagerConfig(part_target=AAC_PART, codecs="mp4a.40.2", bandwidth=72_000)
    packager = LlHlsPackager(config, stream_id=STREAM, init_section=b"i", start_time=START)
    lines = packager.multivariant_playlist("media.m3u8", "captions.m3u8").splitlines()
    media = next(line for line in lines if line.startswith("#EXT-X-MEDIA:"))
    attrs = parse_attributes(media.partition(":")[2])
    assert attrs["TYPE"] == "SUBTITLES"
    assert attrs["URI"] == "captions.m3u8"
    assert attrs["DEFAULT"] == "NO"  # captions are the listener's choice
    stream_inf = next(line for line in lines if line.startswith("#EXT-X-STREAM-INF:"))
    assert parse_attributes(stream_inf.partition(":")[2])["SUBTITLES"] == attrs["GROUP-ID"]
    assert lines[lines.index(stream_inf) + 1] == "media.m3u8"


def test_the_init_section_is_served_as_given() -> None:
    assert make().init_section() == b"ftyp+moov"


# -- blocking playlist reloads (RFC 8216bis 6.2.5.2) ----------------------------------------------
@pytest.fixture
def live() -> LlHlsPackager:
    """Segments 0-3 complete, segment 4 has parts 0-2; 6 parts per segment of 0.32 s."""
    packager = make()
    feed(packager, 4 * 6 + 3)
    assert packager.next_part == (4, 3)
    return packager


def test_a_plain_reload_is_answered_at_once(live: LlHlsPackager) -> None:
    assert live.verdict(None, None) == READY


def test_a_part_without_a_segment_number_is_a_bad_request(live: LlHlsPackager) -> None:
    verdict, reason = live.verdict(None, 2)
    assert verdict is Verdict.BAD_REQUEST
    assert "_HLS_msn" in reason


def test_negative_numbers_are_bad_requests(live: LlHlsPackager) -> None:
    assert live.verdict(-1, None)[0] is Verdict.BAD_REQUEST
    assert live.verdict(3, -1)[0] is Verdict.BAD_REQUEST


def test_what_is_already_produced_is_ready(live: LlHlsPackager) -> None:
    assert live.verdict(3, None) == READY  # segment 3 complete
    assert live.verdict(0, None) == READY
    assert live.verdict(3, 5) == READY
    assert live.verdict(4, 0) == READY
    assert live.verdict(4, 2) == READY  # the last part produced


def test_the_next_part_or_segment_waits(live: LlHlsPackager) -> None:
    assert live.verdict(4, 3) == WAIT  # the preload-hinted part
    assert live.verdict(4, None) == WAIT  # segment 4 is not complete yet
    assert live.verdict(5, None) == WAIT  # two past the last complete segment (3) is allowed
    assert live.verdict(5, 0) == WAIT


def test_a_waiting_request_becomes_ready_when_its_part_arrives(live: LlHlsPackager) -> None:
    feed(live, 1)
    assert live.verdict(4, 3) == READY
    assert live.verdict(4, None) == WAIT
    feed(live, 2)
    assert live.verdict(4, None) == READY


def test_a_part_index_past_the_segments_last_means_the_next_segments_first(
    live: LlHlsPackager,
) -> None:
    feed(live, 3)  # segment 4 complete with parts 0-5; next is (5, 0)
    assert live.verdict(4, 5) == READY
    assert live.verdict(4, 6) == WAIT  # = (5, 0), not yet produced
    assert live.verdict(4, 8) == WAIT
    feed(live, 1)
    assert live.verdict(4, 6) == READY
    assert live.verdict(4, 8) == READY  # any index past the last part is (5, 0)


def test_far_future_segments_are_bad_requests(live: LlHlsPackager) -> None:
    verdict, reason = live.verdict(6, None)  # last complete segment is 3
    assert verdict is Verdict.BAD_REQUEST
    assert "6" in reason
    assert live.verdict(6, 0)[0] is Verdict.BAD_REQUEST


def test_parts_beyond_the_advance_part_limit_are_bad_requests(live: LlHlsPackager) -> None:
    # PART-TARGET 0.32 s: the limit is 3 / 0.32 = 9.375 parts past the last part, (4, 2).
    assert live.advance_part_limit == pytest.approx(9.375)
    assert live.verdict(4, 11) == WAIT  # 9 parts ahead
    assert live.verdict(5, 5) == WAIT  # 9 parts ahead
    assert live.verdict(4, 12)[0] is Verdict.BAD_REQUEST  # 10 parts ahead
    assert live.verdict(5, 6)[0] is Verdict.BAD_REQUEST
    assert live.verdict(4, 1000)[0] is Verdict.BAD_REQUEST


def test_the_advance_part_limit_is_three_parts_for_long_parts() -> None:
    packager = make(1.5, parts_per_segment=2)
    feed(packager, 3)  # last part (1, 0)
    assert packager.advance_part_limit == 3
    assert packager.verdict(2, 1) == WAIT  # 3 ahead
    assert packager.verdict(3, 0)[0] is Verdict.BAD_REQUEST  # 4 ahead (and msn too far)
    assert packager.verdict(1, 4)[0] is Verdict.BAD_REQUEST  # 4 ahead


def test_expired_segments_are_ready() -> None:
    packager = make(window_segments=4)
    feed(packager, 6 * 11)
    assert packager.media_sequence == 7
    assert packager.segment(2) is None
    assert packager.verdict(2, None) == READY
    assert packager.verdict(2, 5) == READY
    assert packager.verdict(0, 0) == READY


def test_an_ended_stream_answers_every_reload_at_once(live: LlHlsPackager) -> None:
    live.end()
    assert live.verdict(4, 3) == READY
    assert live.verdict(5, None) == READY
    assert live.verdict(50, 0) == READY  # directives are ignored once EXT-X-ENDLIST is there


def test_the_first_part_of_a_new_stream_is_waited_for() -> None:
    packager = make()
    assert packager.verdict(0, 0) == WAIT
    assert packager.verdict(0, None) == WAIT
    assert packager.verdict(1, None) == WAIT
    assert packager.verdict(2, None)[0] is Verdict.BAD_REQUEST


# -- refused input --------------------------------------------------------------------------------
@pytest.mark.parametrize("duration", [0.0, -0.1, math.nan, math.inf, AAC_PART + 0.001])
def test_a_part_with_an_impossible_duration_is_refused(duration: float) -> None:
    packager = make()
    with pytest.raises(ValueError, match="part"):
        packager.add_part(EncodedPart(b"x", duration))
    assert packager.next_part == (0, 0)


def test_an_empty_part_is_refused() -> None:
    with pytest.raises(ValueError, match="data"):
        make().add_part(EncodedPart(b"", AAC_PART))


@pytest.mark.parametrize("stream_id", ["", "a/b", "a b", 'x"', "é"])
def test_stream_ids_must_be_url_safe(stream_id: str) -> None:
    with pytest.raises(ValueError, match="stream_id"):
        LlHlsPackager(
            PackagerConfig(part_target=AAC_PART),
            stream_id=stream_id,
            init_section=b"i",
            start_time=START,
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"part_target": 0.0},
        {"part_target": 0.0001},
        {"part_target": -1.0},
        {"part_target": math.nan},
        {"part_target": 0.32, "parts_per_segment": 0},
        {"part_target": 0.32, "window_segments": 0},
        {"part_target": 0.32, "bandwidth": 0},
        {"part_target": 0.32, "codecs": 'mp4a"'},
    ],
)
def test_impossible_configurations_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must"):
        PackagerConfig(**kwargs)  # type: ignore[arg-type]


# -- invariants over random streams ---------------------------------------------------------------
PART_TARGETS = [AAC_PART, 10 * 1024 / 48_000, 0.2, 1 / 3, 0.5, 1.0, 1.5]


@st.composite
def streams(draw: st.DrawFn) -> tuple[PackagerConfig, int, list[float], bool]:
    part_target = draw(st.sampled_from(PART_TARGETS))
    config = PackagerConfig(
        part_target=part_target,
        parts_per_segment=draw(st.integers(1, 7)),
        window_segments=draw(st.integers(1, 7)),
    )
    first_msn = draw(st.integers(0, 1_000))
    # Long enough runs for the window to slide many times; mostly full parts (what the encoder
    # makes), with some shorter ones anywhere.
    count = draw(st.integers(0, 150))
    short = st.floats(part_target * 0.5, part_target, allow_nan=False)
    shorter = draw(st.dictionaries(st.integers(0, max(0, count - 1)), short, max_size=count // 4))
    durations = [shorter.get(i, part_target) for i in range(count)]
    return config, first_msn, durations, draw(st.booleans())


def check_invariants(
    packager: LlHlsPackager,
    produced: dict[tuple[int, int], EncodedPart],
    target_duration: int,
) -> None:
    playlist = playlist_of(packager)
    config = packager.config
    pps = config.parts_per_segment

    assert playlist.target_duration == target_duration  # never changes (RFC 8216bis 6.2.1)
    hold_back = Decimal(playlist.attrs("EXT-X-SERVER-CONTROL")["PART-HOLD-BACK"])
    assert hold_back >= 3 * playlist.part_target

    # Sequence numbers: MEDIA-SEQUENCE + position, strictly increasing.
    msns = [uri_address(s.uri)[0] for s in playlist.segments]
    assert msns == list(range(playlist.media_sequence, playlist.media_sequence + len(msns)))
    assert len(msns) <= packager.window_size
    closed = packager.next_part[0] - min(m for m, _ in produced) if produced else 0
    assert len(msns) == min(closed, packager.window_size)
    if packager.window_size > config.window_segments:
        # Only raised (and only as far as needed) when window_segments full segments, as
        # written to 5 decimals, cannot hold three target durations (6.2.2).
        written = pps * config.part_target - 1e-5
        assert (packager.window_size - 1) * written < 3 * target_duration

    # Every listed segment and part is downloadable with exactly the bytes given.
    for segment in playlist.segments:
        msn = uri_address(segment.uri)[0]
        parts = [produced[(msn, i)] for i in range(pps) if (msn, i) in produced]
        assert packager.segment(msn) == b"".join(p.data for p in parts)
        assert abs(segment.duration - Decimal(sum(p.duration for p in parts))) <= Decimal("1e-5")
        extinf_rounded = segment.duration.quantize(Decimal(1), rounding=ROUND_HALF_UP)
        assert extinf_rounded <= playlist.target_duration
        if segment.parts:
            assert [p.address for p in segment.parts] == [(msn, i) for i in range(len(parts))]
            parts_sum = sum(p.duration for p in segment.parts)
            assert abs(segment.duration - parts_sum) <= Decimal("0.5e-5") * (len(parts) + 1)
    for part in playlist.all_parts:
        address = part.address
        assert packager.part(*address) == produced[address].data
        so_far = packager.segment_so_far(address[0])
        assert so_far is not None
        assert (
            b"".join(so_far[0])[part.offset : part.offset + part.length] == produced[address].data
        )
        assert abs(part.duration - Decimal(produced[address].duration)) <= Decimal("0.5e-5")
        assert part.duration <= playlist.part_target
    # Part tags disappear oldest first: once a segment shows its parts, all later ones do too.
    shows = [bool(s.parts) for s in playlist.segments]
    assert shows == sorted(shows)

    # The open segment's parts are all listed, in order, and the hint names what comes next.
    open_msn, next_index = packager.next_part
    assert [p.address for p in playlist.trailing_parts] == [
        (open_msn, i) for i in range(next_index)
    ]
    if playlist.ended:
        assert playlist.preload_hint is None
    else:
        written = sum(len(produced[(open_msn, i)].data) for i in range(next_index))
        assert playlist.preload_hint == {
            "TYPE": "PART",
            "URI": f"{STREAM}/s{open_msn}.m4s",
            "BYTERANGE-START": str(written),
        }
        assert packager.segment_so_far(open_msn) == (
            [produced[(open_msn, i)].data for i in range(next_index)],
            False,
        )

    # Date-times: start_time + the durations of everything before the first listed segment.
    if playlist.segments or playlist.trailing_parts:
        first = playlist.media_sequence
        before = math.fsum(p.duration for (m, _), p in produced.items() if m < first)
        assert playlist.first_date_time is not None
        assert playlist.first_date_time.timestamp() == pytest.approx(START + before, abs=0.0011)

    # Memory is bounded however long the stream runs.
    assert packager.held_parts <= (packager.retained_segments + 1) * pps

    # Blocking reloads: everything listed is ready, the hinted part is waited for.
    for address in [p.address for p in playlist.all_parts]:
        assert packager.verdict(*address) == READY
    for msn in msns:
        assert packager.verdict(msn, None) == READY
    if not playlist.ended:
        assert packager.verdict(open_msn, next_index) == WAIT
        assert packager.is_future(open_msn, next_index)


@settings(max_examples=150, deadline=None)
@given(streams())
def test_random_streams_keep_every_playlist_invariant(
    stream: tuple[PackagerConfig, int, list[float], bool],
) -> None:
    config, first_msn, durations, ends = stream
    packager = LlHlsPackager(
        config, stream_id=STREAM, init_section=b"init", start_time=START, first_msn=first_msn
    )
    target_duration = playlist_of(packager).target_duration
    produced: dict[tuple[int, int], EncodedPart] = {}
    check_invariants(packager, produced, target_duration)
    for n, duration in enumerate(durations):
        part = EncodedPart(n.to_bytes(4, "big") * (n % 3 + 1), duration)
        address = packager.add_part(part)
        assert address not in produced
        produced[address] = part
        check_invariants(packager, produced, target_duration)
    if ends:
        packager.end()
        check_invariants(packager, produced, target_duration)
        assert playlist_of(packager).ended


@settings(max_examples=60, deadline=None)
@given(
    part_target=st.sampled_from(PART_TARGETS),
    parts_per_segment=st.integers(1, 7),
    window_segments=st.integers(1, 7),
    count=st.integers(0, 150),
)
def test_full_length_parts_keep_the_spec_time_horizons(
    part_target: float, parts_per_segment: int, window_segments: int, count: int
) -> None:
    """With the encoder's full parts (RFC 8216bis 6.2.2): the playlist spans ≥ 3 target durations
    once it slides; a part stays downloadable ≥ 3 target durations after its tag left the playlist;
    a segment stays downloadable for its Availability Duration (its duration plus the longest
    playlist that held it) after it first appeared."""
    packager = make(
        part_target, parts_per_segment=parts_per_segment, window_segments=window_segments
    )
    target_duration = packager.target_duration
    last_listed: dict[tuple[int, int], float] = {}  # part -> elapsed time it was last listed
    first_listed: dict[int, tuple[float, float]] = {}  # segment -> (elapsed, its duration)
    longest_playlist: dict[int, float] = {}  # segment -> longest playlist that listed it
    elapsed = 0.0
    for _ in range(count):
        feed(packager, 1)
        elapsed += part_target
        playlist = playlist_of(packager)
        span = float(
            sum(s.duration for s in playlist.segments)
            + sum(p.duration for p in playlist.trailing_parts)
        )
        if playlist.media_sequence > 0:
            assert span >= 3 * target_duration
        for part in playlist.all_parts:
            last_listed[part.address] = elapsed
        for segment in playlist.segments:
            msn = uri_address(segment.uri)[0]
            first_listed.setdefault(msn, (elapsed, float(segment.duration)))
            longest_playlist[msn] = max(longest_playlist.get(msn, 0.0), span)
        for address, seen in last_listed.items():
            if elapsed - seen <= 3 * target_duration:
                assert packager.part(*address) is not None, (address, seen, elapsed)
        for msn, (seen, duration) in first_listed.items():
            if elapsed - seen <= duration + longest_playlist[msn] - 1e-9:
                assert packager.segment(msn) is not None, (msn, seen, elapsed)


# -- a run that continues an earlier one (restart, take-over) -------------------------------------
def test_a_continuing_run_holds_a_question_about_the_earlier_run_until_its_first_part() -> None:
    packager = LlHlsPackager(
        PackagerConfig(part_target=AAC_PART),
        stream_id=STREAM,
        init_section=b"ftyp+moov",
        start_time=START,
        first_msn=40,
        discontinuity_sequence=40,
    )
    assert packager.verdict(37, 3) == WAIT  # the earlier run's blocking reload: nothing to give yet
    packager.add_part(EncodedPart(b"p", AAC_PART))
    assert packager.verdict(37, 3) == READY  # now the live edge, with the first part
    assert not packager.answers(37, 3)  # ...which is not what was asked: not for caching long
    assert packager.answers(40, 0)
    assert not packager.answers(None, None)
    playlist = packager.media_playlist()
    assert "#EXT-X-MEDIA-SEQUENCE:40\n#EXT-X-DISCONTINUITY-SEQUENCE:40\n" in playlist


def test_a_stream_of_its_own_writes_no_discontinuity_sequence() -> None:
    assert "DISCONTINUITY-SEQUENCE" not in make().media_playlist()
