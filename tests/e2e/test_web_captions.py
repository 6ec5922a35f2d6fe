"""A listener turns on CC and reads what the speaker says under the player, from the stream's own
subtitle rendition; the caption line is a polite live region, and the button says it is on. The
line follows the playback position when it plays the recording too: rewound to the start of a
live Space, and in the replay of an ended one (the captions kept with the recording)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Proc, Server
from tests.e2e.polling import poll_page
from tests.e2e.test_browser import CHROMIUM, new_person
from tests.e2e.test_captions import needs_captions, speech, transcriber_ready
from townhall.harness import wait_connected

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
    *needs_captions,
]

DEADLINE_S = 90.0  # generous: a busy machine transcribes slowly


def read_words(page: Page, what: str) -> None:
    poll_page(
        page,
        lambda p: p.locator("#captions").inner_text().lower(),
        what,
        lambda text: "morning" in text or "welcome" in text or "meeting" in text,
        DEADLINE_S,
    )


def test_a_listener_turns_on_cc_and_reads_the_speakers_words_live_rewound_and_in_the_replay(
    server: Server, speakers: Callable[..., Proc], browser: Browser, tmp_path: Path
) -> None:
    sentence = speech(tmp_path, "welcome", "Good morning everyone, and welcome to our meeting.")
    space = server.create_space("Captioned on the page", captions=True, record=True)
    transcriber_ready(server)
    wait_connected(speakers(*space.host_bot_args(), "--file", str(sentence), "--loop"), 60)
    _context, page, errors = new_person(browser, microphone=False)
    page.goto(space.listen_url)
    page.get_by_role("button", name="Play").click()
    cc = page.locator("#cc")
    cc.wait_for(state="visible", timeout=DEADLINE_S * 1000)
    assert cc.get_attribute("aria-pressed") == "false"  # off until the listener asks
    cc.click()
    assert cc.get_attribute("aria-pressed") == "true"
    line = page.locator("#captions")
    assert line.get_attribute("aria-live") == "polite"
    read_words(page, "the speaker's words under the player")

    # Rewound to the start (DVR): the line follows the recording's position, from its captions.
    page.get_by_role("button", name="From the start").click()
    expect(page.get_by_role("button", name="Jump to live")).to_be_visible(timeout=30_000)
    read_words(page, "the words of the recording's start, rewound")
    assert page.evaluate("() => document.querySelector('#player').currentTime") < 60
    cc.click()
    assert line.is_hidden()

    # The replay: CC again, and the words at the replay's position.
    server.call("POST", f"/api/spaces/{space.id}/end", space.host_token)
    play = page.get_by_role("button", name="Play the replay")
    expect(play).to_be_visible(timeout=60_000)
    play.click()
    expect(cc).to_be_visible()
    assert cc.get_attribute("aria-pressed") == "false"
    cc.click()
    read_words(page, "the words in the replay")
    assert not errors, errors
