"""The subtitle rendition: segments aligned with the audio's, published once transcribed, final."""

from __future__ import annotations

from dataclasses import replace

from townhall.captions.track import CaptionTrack, TrackShape
from townhall.captions.vtt import Cue

SHAPE = TrackShape(
    stream_id="abcd",
    first_msn=100,
    origin=192.0,  # segment 100 starts at 192 s of media time
    segment_s=1.92,
    start_time=1_800_000_000.0,
    target_duration=2,
    window=6,
    retained=8,
)


def test_nothing_is_listed_until_transcription_is_done_through_a_segment() -> None:
    track = CaptionTrack(SHAPE)
    track.advance(193.0)
    assert "#EXTINF" not in track.media_playlist()
    assert track.segment(100) is None
    track.advance(193.92)
    playlist = track.media_playlist()
    assert "#EXT-X-MEDIA-SEQUENCE:100" in playlist
    assert "#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:00.000Z" in playlist
    assert playlist.count("#EXTINF:1.92000,") == 1
    assert "abcd/c100.vtt" in playlist


def test_a_segment_holds_the_cues_that_overlap_it_on_the_media_timeline() -> None:
    track = CaptionTrack(SHAPE)
    track.add(Cue(192.5, 193.0, "hello there"))
    track.add(Cue(193.5, 194.5, "across the boundary"))
    track.advance(196.0)
    first, second = track.segment(100), track.segment(101)
    assert first is not None
    assert second is not None
    assert "X-TIMESTAMP-MAP=MPEGTS:17280000,LOCAL:00:03:12.000" in first
    assert "hello there" in first
    assert "across the boundary" in first
    assert "hello there" not in second
    assert "across the boundary" in second


def test_a_published_segment_never_changes() -> None:
    track = CaptionTrack(SHAPE)
    track.advance(193.92)
    before = track.segment(100)
    track.add(Cue(193.0, 193.5, "too late"))  # wholly in published time: dropped
    track.add(Cue(193.5, 195.0, "straddling"))  # clipped to where published time ends
    assert track.segment(100) == before
    assert track.late_cues == 2
    track.advance(196.0)
    assert "00:03:13.920 --> 00:03:15.000" in (track.segment(101) or "")


def test_the_window_slides_and_old_segments_are_forgotten() -> None:
    track = CaptionTrack(SHAPE)
    track.add(Cue(192.5, 193.0, "old"))
    track.advance(192.0 + 20 * 1.92)
    playlist = track.media_playlist()
    assert "#EXT-X-MEDIA-SEQUENCE:114" in playlist
    assert playlist.count("#EXTINF") == 6
    assert track.segment(100) is None
    assert track.segment(112) is not None


def test_an_ended_track_lists_its_short_last_segment_and_endlist() -> None:
    track = CaptionTrack(SHAPE)
    track.add(Cue(194.0, 194.5, "the end"))
    track.end(194.5)
    playlist = track.media_playlist()
    assert playlist.rstrip().endswith("#EXT-X-ENDLIST")
    assert "#EXTINF:0.58000," in playlist
    assert "the end" in (track.segment(101) or "")


def test_segments_published_in_a_burst_each_stay_listed_for_a_windows_time() -> None:
    track = CaptionTrack(replace(SHAPE, retained=64))
    track.add(Cue(192.5, 193.0, "early words"))
    # The answer for the first segment comes 30 s late: 15 segments are published at once.
    track.advance(192.0 + 15 * 1.92, now=192.0 + 15 * 1.92)
    playlist = track.media_playlist()
    assert "#EXT-X-MEDIA-SEQUENCE:100" in playlist
    assert playlist.count("#EXTINF") == 15
    assert "early words" in (track.segment(100) or "")
    # A window's time later the burst has slid out; what was published since is listed.
    later = 192.0 + 22 * 1.92
    track.advance(later, now=later)
    assert "#EXT-X-MEDIA-SEQUENCE:115" in track.media_playlist()
