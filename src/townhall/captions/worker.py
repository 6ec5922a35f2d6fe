"""The transcriber: Whisper (faster-whisper on CTranslate2) in a worker process of its own.

Why a process: transcribing a 5 s window costs about 0.6 s of CPU with tiny.en, with the GIL held
for much of it; in the media process it would delay the 20 ms clock. The worker is started with
`spawn` (never `fork` from a process with an event loop and threads), lowers its own priority
(`nice`), runs CTranslate2 on `threads` threads and loads the model once. It takes one window at
a time from a queue and answers with the phrases Whisper found, their times relative to the window,
and the CPU seconds it spent (counted per Space by the caller).

`Transcriber` is the asyncio adapter of one node: it hands windows to the worker through the
`Backlog` (bounded: merge, then drop), reads answers on a thread and delivers them on the loop.
A worker that dies is started again (counted) after a pause that doubles with each death before
it got ready (1 s up to a minute), so a model that cannot load never becomes a restart storm; the
window it held is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from townhall.captions.backlog import Backlog
from townhall.captions.chunker import Window

log = logging.getLogger(__name__)

WHISPER_RATE = 16_000
START_TIMEOUT_S = 120.0  # loading the model on a busy machine
RESTART_PAUSE_S = (1.0, 60.0)  # first and longest pause before starting a dead worker again
STOP_GRACE_S = 1.0  # how long a stopping node waits for its transcriber to exit by itself


@dataclass(frozen=True, slots=True)
class Phrase:
    start: float  # seconds from the window's start
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class Answer:
    phrases: tuple[Phrase, ...]
    cpu_s: float  # the worker's CPU time on this window


def to_whisper(pcm: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """48 kHz int16 → 16 kHz float32 in [-1, 1]: a three-sample box filter, then every third."""
    usable = len(pcm) - len(pcm) % 3
    wide = pcm[:usable].astype(np.float32).reshape(-1, 3).mean(axis=1)
    out: np.ndarray[Any, Any] = wide / 32768.0
    return out


def serve(
    model_dir: str, threads: int, niceness: int, jobs: Any, answers: Any
) -> None:  # pragma: no cover - runs in the worker process (covered by the e2e test)
    """The worker process: load the model, then transcribe windows until told to stop (None)."""
    with contextlib.suppress(OSError):
        os.nice(niceness)
    from faster_whisper import WhisperModel

    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=threads)
    answers.put(("ready", None))
    while True:
        job = jobs.get()
        if job is None:
            return
        ident, pcm = job
        started = time.process_time()
        audio = to_whisper(np.frombuffer(pcm, np.int16))
        segments, _ = model.transcribe(
            audio,
            language="en",
            beam_size=1,
            condition_on_previous_text=False,  # windows are cut on pauses: no carried context
            vad_filter=False,  # the chunker sends speech only
            without_timestamps=False,
        )
        phrases = tuple(
            Phrase(float(s.start), float(s.end), s.text.strip())
            for s in segments
            if s.text.strip() and s.no_speech_prob < 0.8
        )
        answers.put((ident, Answer(phrases, time.process_time() - started)))


Callback = Callable[[Hashable, Window, Answer | None], None]


class Transcriber:
    """One worker process for the node's captioned Spaces (see the module docstring)."""

    def __init__(
        self, model: Path, *, threads: int = 1, niceness: int = 10, max_pending_s: float = 10.0
    ) -> None:
        self._model = model
        self._threads = threads
        self._niceness = niceness
        self.backlog: Backlog[Hashable] = Backlog(max_pending_s)
        self._callbacks: dict[Hashable, Callback] = {}
        self._context = multiprocessing.get_context("spawn")
        self._jobs: Any = None
        self._answers: Any = None
        self._process: Any = None
        self._reader: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._stopping = False
        self._in_flight: tuple[Hashable, Window] | None = None
        self._pause = RESTART_PAUSE_S[0]
        self._restart: asyncio.TimerHandle | None = None
        self.restarts = 0

    @property
    def restart_pause(self) -> float:
        """Seconds the next dead worker waits before it is started again."""
        return self._pause

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the worker (the model loads in the background; windows wait in the backlog)."""
        self._loop = asyncio.get_running_loop()
        self._spawn()

    def _spawn(self) -> None:
        self._ready.clear()
        self._jobs = self._context.Queue()
        self._answers = self._context.Queue()
        self._process = self._context.Process(
            target=serve,
            args=(str(self._model), self._threads, self._niceness, self._jobs, self._answers),
            name="townhall-captions",
            daemon=True,
        )
        self._process.start()
        self._reader = threading.Thread(
            target=self._read, args=(self._answers, self._process), daemon=True
        )
        self._reader.start()

    async def wait_ready(self, within: float = START_TIMEOUT_S) -> bool:
        try:
            async with asyncio.timeout(within):
                await self._ready.wait()
            return True
        except TimeoutError:
            return False

    def _read(self, answers: Any, process: Any) -> None:
        """Reader thread: each answer goes to the loop; a dead worker is reported once."""
        loop = self._loop
        assert loop is not None
        while True:
            try:
                ident, answer = answers.get(timeout=1.0)
            except queue.Empty:
                if not process.is_alive():
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(self._died, process)
                    return
                continue
            except (EOFError, OSError):
                return
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(self._answered, ident, answer)

    # -- on the loop -------------------------------------------------------------------------------
    def register(self, key: Hashable, callback: Callback) -> None:
        """`callback(key, window, answer)` for each window of `key` (answer None: it was lost)."""
        self._callbacks[key] = callback

    def unregister(self, key: Hashable) -> None:
        self._callbacks.pop(key, None)
        self.backlog.forget(key)

    def submit(self, key: Hashable, window: Window) -> None:
        self.backlog.add(key, window)
        self._pump()

    def _pump(self) -> None:
        if not self._ready.is_set() or self._stopping:
            return
        job = self.backlog.next()
        if job is None:
            return
        self._in_flight = job
        key, window = job
        self._jobs.put((repr(key), window.pcm.tobytes()))

    def _answered(self, ident: str, answer: Answer | None) -> None:
        if ident == "ready":
            self._ready.set()
            self._pause = RESTART_PAUSE_S[0]  # it loaded: the next death starts from a short pause
            log.info("captions: transcriber ready (pid %s, model %s)", self.pid, self._model)
            self._pump()
            return
        job, self._in_flight = self._in_flight, None
        if job is not None:
            key = job[0]
            window = self.backlog.answered(key)
            callback = self._callbacks.get(key)
            if callback is not None and window is not None:
                callback(key, window, answer)
        self._pump()

    def _died(self, process: Any) -> None:
        if self._stopping or process is not self._process:
            return
        self.restarts += 1
        self._ready.clear()
        log.warning(
            "captions: transcriber exited (code %s); starting another in %.0f s",
            process.exitcode,
            self._pause,
        )
        job, self._in_flight = self._in_flight, None
        if job is not None:
            window = self.backlog.answered(job[0])
            callback = self._callbacks.get(job[0])
            if callback is not None and window is not None:
                callback(job[0], window, None)
        assert self._loop is not None
        self._restart = self._loop.call_later(self._pause, self._spawn)
        self._pause = min(self._pause * 2, RESTART_PAUSE_S[1])

    async def close(self) -> None:
        """Stop the worker (by its PID, through its queue first) and its reader."""
        self._stopping = True
        if self._restart is not None:
            self._restart.cancel()
        process = self._process
        if process is None:
            return
        with contextlib.suppress(Exception):
            self._jobs.put(None)
        # A transcriber in the middle of a chunk reads the stop only when done (seconds at its low
        # priority on a busy machine); it holds nothing to save, and a server's stop must not wait.
        await asyncio.to_thread(process.join, STOP_GRACE_S)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join, 5.0)
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 3.0)
        for q in (self._jobs, self._answers):
            q.close()
            q.cancel_join_thread()
