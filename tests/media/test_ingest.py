"""Offers a stage client sends, good and bad, against the real aiortc in-process (no network).

A bad offer is the client's fault: SdpError (400 at the API), never another exception (500), and
never at the cost of the connection the speaker already has.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from townhall.config import MediaConfig
from townhall.media.audio import SpeakerId
from townhall.media.ingest import Ingest, SdpError
from townhall.media.pipeline import SpaceMedia

SPEAKER = SpeakerId("u-speaker00000")


async def an_offer() -> str:
    client = RTCPeerConnection()
    client.addTrack(AudioStreamTrack())
    await client.setLocalDescription(await client.createOffer())
    sdp = str(client.localDescription.sdp)
    await client.close()
    return sdp


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    media = SpaceMedia("abcdefghij", MediaConfig(), on_air=False)  # its clock is not started
    ingest = Ingest(media, ())
    yield ingest
    await ingest.close()
    await media.stop()


BROKEN = [  # the offers an attack test answered 500 to
    lambda sdp: re.sub(r"m=audio \d+ ", "m=audio -1 ", sdp),
    lambda sdp: "\r\n".join(line for line in sdp.split("\r\n") if not line.startswith("a=rtpmap")),
    lambda sdp: sdp + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" * 150,
]


@pytest.mark.parametrize("breaks", range(len(BROKEN)))
async def test_a_bad_offer_is_refused_and_the_speaker_stays_connected(
    ingest: Ingest, breaks: int
) -> None:
    first = await an_offer()
    await ingest.connect(SPEAKER, first)
    connected = ingest.connections[SPEAKER]
    with pytest.raises(SdpError):
        await ingest.connect(SPEAKER, BROKEN[breaks](first))
    assert ingest.connections[SPEAKER] is connected, "the bad offer replaced the good connection"
    assert not connected.closed.is_set()
    assert SPEAKER in ingest.media.mixer.speakers, "the speaker is still in the mix"


@st.composite
def mangled(draw: st.DrawFn, sdp: str) -> str:
    """A real offer with some of its lines dropped, repeated, or cut short."""
    lines = sdp.split("\r\n")
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["drop", "repeat", "cut", "junk"]))
        if how == "drop" and len(lines) > 2:
            del lines[at]
        elif how == "repeat":
            lines.insert(at, lines[at])
        elif how == "cut":
            lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
        else:
            lines[at] = lines[at] + draw(st.text(max_size=8))
    return "\r\n".join(lines)


OFFER: list[str] = []


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_a_mangled_offer_is_answered_or_refused_never_an_error(
    ingest: Ingest, data: st.DataObject
) -> None:
    if not OFFER:
        OFFER.append(await an_offer())
    offer = data.draw(mangled(OFFER[0]))
    try:
        answer = await ingest.connect(SPEAKER, offer)
    except SdpError:
        return
    assert answer.startswith("v=0")
