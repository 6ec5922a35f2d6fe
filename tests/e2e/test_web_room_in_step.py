"""What a listener sees travels with what they hear: with a 5 s broadcast delay the listener page
shows a speaker speaking when their voice plays, not 5 s before, and a speaker whose words the
host dumped is never shown speaking.

Judged in the page's own media time: a sampler in the page records, every 20 ms, the playback
position (currentTime), the level of each speaker's tone in what the page plays, and who the page
shows speaking. The onsets are compared on that timeline, so a slow machine changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.conftest import Proc, Server
from tests.e2e.polling import poll_page
from tests.e2e.test_audio_path import on_stage
from tests.e2e.test_browser import CHROMIUM, new_person

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]

DELAY_S = 5
HOST_HZ, GUEST_HZ = 440, 660
HEARD_DB = -50.0  # a tone's FFT bin at least this loud is heard (the bots' tones play near -16)
DEADLINE_S = 60.0  # generous: a busy machine; the delay alone is 5 s
# The page's analyser looks at an 8192-sample (170 ms) window, so it hears an onset some tens of
# milliseconds after it plays; the indicator is due at the onset itself (± a 20 ms tick).
IN_STEP_S = 0.2

SAMPLER = """([host, guest]) => {
    window.roomSamples = [];
    setInterval(() => window.roomSamples.push({
        t: window.townhall.currentTime(),
        host: window.townhall.levelAt(host),
        guest: window.townhall.levelAt(guest),
        speaking: window.townhall.speakingShown(),
    }), 20);
}"""


def samples(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("() => window.roomSamples")
    return found


def latest(page: Page) -> dict[str, Any]:
    found: dict[str, Any] = page.evaluate(
        "() => window.roomSamples[window.roomSamples.length - 1] || {t: 0, speaking: []}"
    )
    return found


def first(taken: list[dict[str, Any]], holds: Callable[[dict[str, Any]], bool]) -> float | None:
    return next((s["t"] for s in taken if holds(s)), None)


def test_speaking_shows_with_the_delayed_audio_and_a_dumped_speaker_never_shows(
    server: Server, speakers: Callable[..., Proc], browser: Browser
) -> None:
    space = server.create_space("In step")
    server.call("PUT", f"/api/spaces/{space.id}/delay", space.host_token, {"seconds": DELAY_S})
    context, page, errors = new_person(browser, microphone=False)
    page.goto(space.listen_url)
    page.get_by_role("button", name="Play").click()
    page.wait_for_function("() => window.townhall.roomStreamed", timeout=DEADLINE_S * 1000)
    page.evaluate(SAMPLER, [HOST_HZ, GUEST_HZ])

    # The host speaks for a few seconds; the page hears it DELAY_S later and shows it then.
    on_stage(speakers(*space.host_bot_args(), "--tone", str(HOST_HZ), "--duration", "4"))
    poll_page(
        page,
        latest,
        "the host's tone, then silence again",
        lambda s: (
            any(x["host"] > HEARD_DB for x in samples(page))
            and s["host"] is not None
            and s["host"] < HEARD_DB - 10
            and not s["speaking"]
        ),
        DEADLINE_S,
    )
    taken = samples(page)
    heard = first(taken, lambda s: s["host"] is not None and s["host"] > HEARD_DB)
    shown = first(taken, lambda s: bool(s["speaking"]))
    print(f"\nhost heard at {heard:.3f} s, shown speaking at {shown} s of media time")
    assert heard is not None
    assert shown is not None, "the page never showed the host speaking"
    assert abs(shown - heard) <= IN_STEP_S, (shown, heard)

    # A guest speaks briefly; the host dumps while it is all still in the delay line.
    mark = latest(page)["t"]
    guest = speakers(server.invite(space), "--name", "Guest", "--tone", str(GUEST_HZ))
    on_stage(guest)
    # The stage hears the guest at once: the live (undelayed) flags say the tone is flowing.
    server_side = poll_page(
        page,
        lambda _: server.call("GET", f"/api/spaces/{space.id}/snapshot"),
        "the guest speaking on the stage",
        lambda snapshot: any(m["speaking"] for m in snapshot["stage"]),
        DEADLINE_S,
    )
    guest.stop()
    server.call("POST", f"/api/spaces/{space.id}/dump", space.host_token)
    print(f"dumped after {len(server_side)} snapshot reads")
    poll_page(
        page,
        latest,
        f"{DELAY_S + 4} s of media after the guest joined",
        lambda s: s["t"] > mark + DELAY_S + 4,
        DEADLINE_S,
    )
    after = [s for s in samples(page) if s["t"] > mark]
    assert not [s for s in after if s["guest"] is not None and s["guest"] > HEARD_DB], (
        "the dumped guest was heard"
    )
    assert not [s for s in after if s["speaking"]], "a dumped speaker was shown speaking"
    assert page.evaluate("() => window.townhall.roomMessages()") > 0
    assert errors == [], errors
    context.close()
