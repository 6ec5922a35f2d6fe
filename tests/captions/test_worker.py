"""The transcriber worker process: real Whisper on a spoken sentence, CPU counted, and a worker
that cannot start is retried with growing pauses rather than in a loop."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import pytest

from townhall.captions.chunker import Window
from townhall.captions.model import default_model
from townhall.captions.worker import Answer, Transcriber
from townhall.client.sources import decode_file
from townhall.harness import wait_until_async

pytestmark = pytest.mark.skipif(
    default_model() is None or shutil.which("espeak-ng") is None,
    reason="needs the captions extra and espeak-ng",
)


@pytest.fixture
def sentence(tmp_path: Path) -> np.ndarray:  # type: ignore[type-arg]
    wav = tmp_path / "s.wav"
    text = "Thank you all for listening."
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), text], check=True, timeout=30)
    return decode_file(str(wav), 30)


async def test_a_spoken_sentence_comes_back_as_its_words_with_the_cpu_it_cost(
    sentence: np.ndarray,  # type: ignore[type-arg]
) -> None:
    pcm = sentence
    model = default_model()
    assert model is not None
    transcriber = Transcriber(model, niceness=0)
    answers: list[Answer | None] = []

    def answered(_key: Hashable, _window: Window, answer: Answer | None) -> None:
        answers.append(answer)

    transcriber.register("space", answered)
    transcriber.start()
    try:
        transcriber.submit("space", Window(48_000, pcm.astype(np.int16)))
        await wait_until_async(lambda: bool(answers), 120, "the transcriber's answer")
    finally:
        await transcriber.close()
    answer = answers[0]
    assert answer is not None
    words = " ".join(p.text for p in answer.phrases).lower()
    assert "thank you" in words
    assert "listening" in words
    assert answer.cpu_s > 0
    assert all(0 <= p.start < p.end <= len(pcm) / 48_000 + 0.5 for p in answer.phrases)


async def test_a_worker_that_cannot_load_its_model_is_restarted_with_growing_pauses(
    tmp_path: Path,
) -> None:
    transcriber = Transcriber(tmp_path, niceness=0)  # no model there: the worker exits at once
    transcriber.start()
    try:
        await wait_until_async(lambda: transcriber.restarts >= 1, 120, "the worker to die")
        assert transcriber.restarts == 1  # not started again at once: it waits a second
        assert transcriber.restart_pause == 2.0  # and the next pause is longer
    finally:
        await transcriber.close()
