"""The stage-cost breakdown's stack classifier, on folded stacks as py-spy 0.4 writes them."""

from __future__ import annotations

import pytest
from bench.stage_profile import (
    CATEGORIES,
    WAITING,
    classify,
    count_samples,
    parse_folded,
    shares,
    totals,
)

LOOP = (
    "thread (101): MainThread;_run_module_as_main (<frozen runpy>:198);"
    "run (asyncio/runners.py:190);BaseEventLoop._run_once (asyncio/base_events.py:1922);"
    "Handle._run (asyncio/events.py:80)"
)
WORKER = (
    "thread (202): media-abc_0;Thread._bootstrap (threading.py:1002);"
    "_worker (concurrent/futures/thread.py:83);_WorkItem.run (concurrent/futures/thread.py:58)"
)
DECODER = (
    "thread (303): audio-decoder;Thread._bootstrap (threading.py:1002);"
    "Thread.run (threading.py:982)"
)


@pytest.mark.parametrize(
    ("stack", "category"),
    [
        # the project's stages, innermost frame wins (audio.py is shared, so it does not decide)
        (
            f"{LOOP};SpeakerConnection._drain (townhall/media/ingest.py:109);"
            "_PcmAdapter.convert (townhall/media/ingest.py:56);"
            "downmix_interleaved (townhall/media/audio.py:35);_sum (numpy/_core/_methods.py:49)",
            "ingest",
        ),
        (
            f"{LOOP};MediaClock._run (townhall/media/clock.py:150);"
            "MediaClock.tick (townhall/media/clock.py:120);"
            "SpaceMedia.begin_tick (townhall/media/pipeline.py:290);"
            "Mixer.tick (townhall/media/mixer.py:230)",
            "mix",
        ),
        (
            f"{LOOP};SpaceMedia.begin_tick (townhall/media/pipeline.py:290);"
            "Mixer.tick (townhall/media/mixer.py:215);JitterBuffer.next_frame (townhall/media/jitter.py:220)",
            "ingest",
        ),
        (
            f"{WORKER};SpaceMedia._encode (townhall/media/pipeline.py:298);"
            "AacFmp4Encoder.encode (townhall/media/encoder.py:89)",
            "encode",
        ),
        (
            f"{WORKER};SpaceMedia._encode (townhall/media/pipeline.py:298);"
            "AacFmp4Encoder.encode (townhall/media/encoder.py:95);"
            "BoxSplitter.feed (townhall/media/fmp4.py:40)",
            "package",
        ),
        (
            f"{WORKER};SpaceMedia._encode (townhall/media/pipeline.py:304);"
            "OpusMixEncoder.encode (townhall/media/opus_return.py:36)",
            "return",
        ),
        (f"{WORKER};SpaceMedia._encode (townhall/media/pipeline.py:300)", "encode"),
        (
            f"{LOOP};SpaceMedia._deliver (townhall/media/pipeline.py:318);"
            "ReturnTrack.offer (townhall/media/pipeline.py:64)",
            "return",
        ),
        # aiortc: direction decides, even when the innermost frame is shared transport
        (
            f"{LOOP};RTCRtpSender._run_rtp (aiortc/rtcrtpsender.py:401);"
            "RTCDtlsTransport._send_rtp (aiortc/rtcdtlstransport.py:719);"
            "Connection.send (aioice/ice.py:755)",
            "return",
        ),
        (
            "thread (101): MainThread;RTCDtlsTransport._recv_next (aiortc/rtcdtlstransport.py:645);"
            "RTCDtlsTransport._handle_rtp_data (aiortc/rtcdtlstransport.py:624);"
            "RTCRtpReceiver._handle_rtp_packet (aiortc/rtcrtpreceiver.py:551)",
            "ingest",
        ),
        (
            "thread (101): MainThread;RTCDtlsTransport._send_rtp (aiortc/rtcdtlstransport.py:721);"
            "Connection.send (aioice/ice.py:755)",
            "return",
        ),
        (
            f"{LOOP};_SelectorDatagramTransport._read_ready (asyncio/selector_events.py:1169);"
            "StunProtocol.datagram_received (aioice/ice.py:293)",
            "ingest",
        ),
        (
            f"{LOOP};_SelectorDatagramTransport._read_ready (asyncio/selector_events.py:1159)",
            "ingest",
        ),
        (
            f"{DECODER};decoder_worker (aiortc/rtcrtpreceiver.py:76);"
            "OpusDecoder.decode (aiortc/codecs/opus.py:28)",
            "ingest",
        ),
        # HTTP: inside a request, even the packager's work is the audience's cost
        (
            f"{LOOP};RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:409);"
            "playlist (townhall/delivery/origin.py:120);"
            "LlHlsPackager.playlist (townhall/media/packager.py:300)",
            "http",
        ),
        (f"{LOOP};_SelectorSocketTransport._read_ready (asyncio/selector_events.py:1000)", "http"),
        # the loop itself, thread hand-offs, full file names
        (f"{LOOP};BaseSelectorEventLoop._read_from_self (asyncio/selector_events.py:119)", "other"),
        ("thread (101): MainThread", "other"),
        (
            "thread (101): MainThread;Mixer.tick (/opt/townhall/src/townhall/media/mixer.py:230)",
            "mix",
        ),
        # waits the OS reported runnable are not CPU
        (
            "thread (101): MainThread;BaseEventLoop._run_once (asyncio/base_events.py:1884);"
            "EpollSelector.select (selectors.py:468)",
            WAITING,
        ),
        (
            "thread (202): media-abc_0;Thread._bootstrap (threading.py:1002);"
            "_worker (concurrent/futures/thread.py:81)",
            WAITING,
        ),
        (
            f"{DECODER};decoder_worker (aiortc/rtcrtpreceiver.py:64);Queue.get (queue.py:171);"
            "Condition.wait (threading.py:327)",
            WAITING,
        ),
    ],
)
def test_classify(stack: str, category: str) -> None:
    assert classify(stack.split(";")) == category


FOLDED = f"""{WORKER};SpaceMedia._encode (townhall/media/pipeline.py:298);AacFmp4Encoder.encode (townhall/media/encoder.py:89) 30
{WORKER};SpaceMedia._encode (townhall/media/pipeline.py:304);OpusMixEncoder.encode (townhall/media/opus_return.py:36) 10
thread (101): MainThread;EpollSelector.select (selectors.py:468) 50
{LOOP} 10
{DECODER};decoder_worker (aiortc/rtcrtpreceiver.py:76);OpusDecoder.decode (aiortc/codecs/opus.py:28) 200
"""


def test_count_samples_by_thread() -> None:
    assert [n for _, n in parse_folded(FOLDED)] == [30, 10, 50, 10, 200]
    by_thread = count_samples(FOLDED)
    zero = dict.fromkeys((*CATEGORIES, WAITING), 0)
    assert by_thread == {
        101: {**zero, "other": 10, WAITING: 50},
        202: {**zero, "encode": 30, "return": 10},
        303: {**zero, "ingest": 200},
    }
    assert totals(by_thread)["ingest"] == 200


def test_shares_weight_threads_by_their_cpu_not_their_samples() -> None:
    # The decoder thread was runnable for 200 samples but ran 0.1 s; the worker ran 0.4 s.
    thread_cpu = {101: 0.1, 202: 0.4, 303: 0.1, 404: 0.2}  # 404: CPU but no Python samples
    breakdown = shares(count_samples(FOLDED), thread_cpu, 0.4)
    assert list(breakdown) == list(CATEGORIES)
    assert sum(breakdown.values()) == pytest.approx(0.4)
    assert breakdown["encode"] == pytest.approx(0.4 * 0.3 / 0.8)
    assert breakdown["return"] == pytest.approx(0.4 * 0.1 / 0.8)
    assert breakdown["ingest"] == pytest.approx(0.4 * 0.1 / 0.8)
    assert breakdown["other"] == pytest.approx(0.4 * 0.3 / 0.8)  # main thread's loop + thread 404


def test_shares_without_cpu_put_everything_in_other() -> None:
    breakdown = shares({}, {}, 0.04)
    assert breakdown["other"] == 0.04
    assert sum(breakdown.values()) == 0.04
