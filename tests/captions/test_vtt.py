"""WebVTT text: timestamps, escaping and the X-TIMESTAMP-MAP that ties cues to media time."""

from __future__ import annotations

import pytest

from townhall.captions.vtt import Cue, document, parse, timestamp


def test_timestamps_always_carry_hours_and_round_to_the_millisecond() -> None:
    assert timestamp(0) == "00:00:00.000"
    assert timestamp(3723.4567) == "01:02:03.457"
    assert timestamp(400_000) == "111:06:40.000"


def test_a_segment_maps_its_local_start_to_the_same_media_time_in_90_khz() -> None:
    text = document([Cue(10.0, 11.5, "hello")], mapped_at=8.0)
    lines = text.splitlines()
    assert lines[0] == "WEBVTT"
    assert lines[1] == "X-TIMESTAMP-MAP=MPEGTS:720000,LOCAL:00:00:08.000"
    assert "00:00:10.000 --> 00:00:11.500" in lines
    assert lines[lines.index("00:00:10.000 --> 00:00:11.500") + 1] == "hello"


def test_cue_text_cannot_break_the_file() -> None:
    text = document([Cue(0, 1, "a <b> & c --> d\n\nnext")])
    assert "a &lt;b&gt; &amp; c --&gt; d next" in text.splitlines()


def test_a_download_starts_at_zero() -> None:
    text = document([Cue(100.0, 101.0, "first")], offset=99.5)
    assert "00:00:00.500 --> 00:00:01.500" in text


def test_a_cue_must_end_after_it_starts() -> None:
    with pytest.raises(ValueError, match="end after"):
        Cue(2.0, 2.0, "x")


def test_what_is_written_reads_back() -> None:
    cues = [Cue(10.0, 11.5, "hello"), Cue(3700.25, 3701.0, "an hour in")]
    assert parse(document(cues, mapped_at=8.0)) == (8.0, cues)
