"""Where a server process's CPU goes, by pipeline stage, from py-spy samples.

Used by `bench.stage_cost` to break the measured CPU share of the server into the stages of the
spec's stage budget: ingest, mix, encode, package, mix-minus return, HTTP serving, other. No product
code changes: py-spy reads the running process's Python stacks from outside (ptrace /
process_vm_readv), `--nonblocking` so the target is never paused (pausing it would add its own cost
and shift the 20 ms clock), and without `--idle` so only threads the OS reports running are sampled
(on-CPU samples, not wall clock). Native code (libopus, libavcodec, SRTP) runs under the Python
frame that called it, so attributing a sample to its Python frames attributes the native work too.

Classification is pure (`classify`) and unit-tested; it works on py-spy's `--format raw` output
(folded stacks: `frame;frame;…;innermost count`, outermost first, with `--threads` a leading
`thread (tid): name` item). A stack is assigned by tiers of rules, most specific first; within a
tier, the innermost matching frame wins:

1. Anything done inside an HTTP request or WebSocket (the web framework or townhall's HTTP-facing
   modules on the stack) is `http`, even if it renders a playlist: that cost grows with the
   audience, not with the stage.
2. The project's media modules and aiortc's direction-specific classes (RTCRtpReceiver and the Opus
   decoder are `ingest`; RTCRtpSender and the Opus encoder are `return`).
3. Send paths of the transport (DTLS transport's RTP send, SRTP protect, a UDP sendto) are
   `return`, even when no sender frame survived on a stack read without pausing the target.
4. The rest of the transport (aioice, aiortc's DTLS/RTCP, asyncio's UDP reads) is `ingest`
   (network receive); asyncio's TCP transport is `http`.
5. The thread: aiortc's `audio-decoder` threads are `ingest`.

Samples caught in a wait (see `_waiting`) are set aside as WAITING before any of this. Everything
else is `other`: the asyncio loop itself, thread hand-offs (the worker waking the loop), the media
clock's scheduling, the control plane, the database, GC.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CATEGORIES = ("ingest", "mix", "encode", "package", "return", "http", "other")
WAITING = "waiting"  # not CPU: see `_waiting`

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_THREAD = re.compile(r"^thread \((?P<tid>(?:0x)?[0-9a-fA-F]+)\): ?(?P<name>.*)$")
_SUMMARY = re.compile(r"Samples: (\d+) Errors: (\d+)")


@dataclass(frozen=True, slots=True)
class Frame:
    func: str  # py-spy 0.4 qualifies methods: "RTCRtpSender._run_rtp"
    file: str  # shortened to the package part ("aiortc/rtcrtpsender.py") unless --full-filenames


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text.strip())
    if match is None:  # a native frame or a format this parser does not know: keep the name
        return Frame(text.strip(), "")
    return Frame(match["func"], match["file"].replace("\\", "/"))


def _in(frame: Frame, *paths: str) -> bool:
    """The frame's file is one of `paths` (a module file or a package directory ending in "/"),
    whether py-spy printed short or full file names."""
    file = "/" + frame.file
    return any(f"/{p}" in file if p.endswith("/") else file.endswith(f"/{p}") for p in paths)


_HTTP_LIBS = ("starlette/", "fastapi/", "uvicorn/", "h11/", "httptools/", "websockets/", "anyio/")
_HTTP_PROJECT = ("townhall/api/", "townhall/web/", "townhall/delivery/origin.py")


def _http(frame: Frame) -> str | None:
    return "http" if _in(frame, *_HTTP_LIBS, *_HTTP_PROJECT) else None


_MEDIA_MODULES = {
    "townhall/media/ingest.py": "ingest",
    "townhall/media/jitter.py": "ingest",
    "townhall/media/clock.py": "mix",  # the node's 20 ms clock, as each Space's own clock was
    "townhall/media/mixer.py": "mix",
    "townhall/media/limiter.py": "mix",
    "townhall/media/delay.py": "mix",  # the green-room gate and broadcast delay, on the mix step
    "townhall/media/encoder.py": "encode",  # includes PyAV's fMP4 muxing inside the encoder
    "townhall/media/fmp4.py": "package",
    "townhall/media/packager.py": "package",
    "townhall/media/opus_return.py": "return",
}
# pipeline.py glues the stages together; its own time goes to the stage each method serves.
_PIPELINE_METHODS = {
    "ReturnTrack": "return",
    "SpaceMedia._deliver": "return",  # its own loop hands Opus packets to each speaker's track
    "SpaceMedia._package": "package",
    "SpaceMedia._notify": "package",
    "SpaceMedia.begin_tick": "mix",
    "SpaceMedia.wait_for": "package",
    "SpaceMedia._encode": "encode",
    "SpaceMedia.push": "ingest",
    "SpaceMedia.tick": "mix",
}


def _specific(frame: Frame) -> str | None:
    for path, category in _MEDIA_MODULES.items():
        if _in(frame, path):
            return category
    if _in(frame, "townhall/media/pipeline.py"):
        for prefix, category in _PIPELINE_METHODS.items():
            if frame.func == prefix or frame.func.startswith(prefix + "."):
                return category
        return None
    if _in(frame, "aiortc/rtcrtpreceiver.py", "aiortc/jitterbuffer.py"):
        return "ingest"
    if _in(frame, "aiortc/rtcrtpsender.py"):
        return "return"
    if _in(frame, "aiortc/codecs/"):
        if "Decoder" in frame.func or "depayload" in frame.func:
            return "ingest"
        if "Encoder" in frame.func:
            return "return"
    return None


def _transport_direction(frame: Frame) -> str | None:
    """Transport frames that tell sending from receiving."""
    if _in(frame, "aiortc/rtcdtlstransport.py") and "_send_rtp" in frame.func:
        return "return"
    if _in(frame, "pylibsrtp/"):
        return "ingest" if "unprotect" in frame.func else "return"
    if frame.func == "_SelectorDatagramTransport.sendto":
        return "return"
    return None


def _transport(frame: Frame) -> str | None:
    """Transport frames that do not: mostly receiving (ICE checks, DTLS, RTCP, UDP reads)."""
    if _in(frame, "aioice/", "aiortc/"):
        return "ingest"
    if _in(frame, "asyncio/selector_events.py"):  # the socket I/O itself, below any protocol
        if frame.func.startswith("_SelectorDatagramTransport."):  # UDP: WebRTC media and ICE
            return "ingest"
        if frame.func.startswith("_SelectorSocketTransport."):  # TCP: HTTP and WebSocket clients
            return "http"
    return None


_TIERS = (_http, _specific, _transport_direction, _transport)


def _waiting(frame: Frame) -> bool:
    """The thread is blocked in a wait (epoll, a queue, a condition), though the OS called it
    runnable when py-spy looked: on a loaded machine that is mostly a woken thread waiting for a
    core, and without pausing the target the state and the stack are read at different moments.
    Not CPU the server spent, so these samples stay out of the proportions (py-spy's own idle
    heuristic means to drop the same frames but misses py-spy 0.4's qualified names)."""
    name = frame.func.rpartition(".")[2]
    return (
        (_in(frame, "selectors.py") and name == "select")
        or (_in(frame, "threading.py") and name in ("wait", "acquire"))
        or (_in(frame, "queue.py") and name == "get")
        or (_in(frame, "concurrent/futures/thread.py") and name == "_worker")
    )


def classify(stack: Sequence[str]) -> str:
    """The category of one folded stack (its frames outermost first, as py-spy writes them)."""
    thread = ""
    frames: list[Frame] = []
    for item in stack:
        match = _THREAD.match(item)
        if match is not None and not frames:
            thread = match["name"]
        else:
            frames.append(parse_frame(item))
    if frames and _waiting(frames[-1]):
        return WAITING
    for tier in _TIERS:
        for frame in reversed(frames):
            category = tier(frame)
            if category is not None:
                return category
    if thread.startswith("audio-decoder"):
        return "ingest"
    return "other"


def parse_folded(text: str) -> Iterable[tuple[list[str], int]]:
    """(frames, sample count) per line of py-spy's raw (folded) output."""
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def _thread_id(stack: Sequence[str]) -> int:
    """The OS thread id py-spy's `--threads` puts first (0 if absent)."""
    match = _THREAD.match(stack[0]) if stack else None
    return int(match["tid"], 0) if match else 0


def count_samples(text: str) -> dict[int, dict[str, int]]:
    """Samples per OS thread and category (every category present, zero if none, and WAITING)."""
    by_thread: dict[int, dict[str, int]] = {}
    for stack, n in parse_folded(text):
        counts = by_thread.setdefault(_thread_id(stack), dict.fromkeys((*CATEGORIES, WAITING), 0))
        counts[classify(stack)] += n
    return by_thread


def totals(by_thread: dict[int, dict[str, int]]) -> dict[str, int]:
    """Samples per category over all threads."""
    return {c: sum(counts[c] for counts in by_thread.values()) for c in (*CATEGORIES, WAITING)}


def shares(
    by_thread: dict[int, dict[str, int]], thread_cpu: dict[int, float], core_share: float
) -> dict[str, float]:
    """Split a measured CPU share into categories, so the breakdown sums to it.

    Within a thread the samples give the proportions; across threads /proc's CPU time per thread
    (`thread_cpu`, same window) gives the weights. Sample counts alone would weight a thread by how
    long the OS called it runnable, and on a loaded 2-core machine a dozen decoder threads are
    runnable far longer than they run. A thread that used CPU but left no on-CPU sample (native
    only, or too brief) counts as `other`. WAITING samples are not CPU and count for nothing.
    """
    per_category = dict.fromkeys(CATEGORIES, 0.0)
    for tid, cpu in thread_cpu.items():
        counts = by_thread.get(tid, {})
        n = sum(counts.get(c, 0) for c in CATEGORIES)
        for c in CATEGORIES:
            per_category[c] += cpu * counts.get(c, 0) / n if n else (cpu if c == "other" else 0)
    total = sum(per_category.values())
    if total <= 0:
        return {c: (core_share if c == "other" else 0.0) for c in CATEGORIES}
    return {c: core_share * per_category[c] / total for c in CATEGORIES}


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) each thread of `pid` has used so far, by OS thread id."""
    # Per thread only under /proc/PID/task/: /proc/TID/stat answers for the whole process.
    ticks = os.sysconf("SC_CLK_TCK")
    result: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread just ended
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            result[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return result


@dataclass
class Profile:
    """One py-spy recording: samples per thread and category, CPU per thread, and what it cost."""

    by_thread: dict[int, dict[str, int]]
    thread_cpu: dict[int, float]  # CPU seconds each thread used during the recording
    seconds: float
    rate: int
    errors: int
    pyspy_cpu: float  # py-spy's own CPU, share of one core (it runs beside the target)
    raw: str = field(repr=False)

    @property
    def counts(self) -> dict[str, int]:
        return totals(self.by_thread)

    @property
    def samples(self) -> int:
        """On-CPU samples: the WAITING ones are not counted."""
        counts = self.counts
        return sum(counts[c] for c in CATEGORIES)

    @property
    def waiting(self) -> int:
        return self.counts[WAITING]

    @property
    def sampled_core_share(self) -> float:
        """The CPU share the on-CPU samples alone imply (a cross-check of /proc's figure)."""
        return self.samples / (self.rate * self.seconds)

    def breakdown(self, core_share: float) -> dict[str, float]:
        return shares(self.by_thread, self.thread_cpu, core_share)


def pyspy_path() -> str | None:
    """py-spy from the running interpreter's environment (the bench requirements), else PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, rate: int = 100) -> Profile:
    """Sample `pid` for `seconds` with py-spy (blocks that long). RuntimeError if py-spy is missing
    or cannot attach (no ptrace permission, not a CPython it knows)."""
    exe = pyspy_path()
    if exe is None:
        raise RuntimeError("py-spy not found: pip install 'py-spy>=0.3,<1'")
    duration = max(1, round(seconds))  # py-spy takes whole seconds
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "folded.txt"
        args = [exe, "record", "--pid", str(pid), "--rate", str(rate)]
        args += ["--duration", str(duration), "--format", "raw"]
        args += ["--output", str(out), "--nonblocking", "--threads"]
        log_path = Path(tmp) / "py-spy.log"
        cpu0 = thread_cpu_seconds(pid)
        with log_path.open("w") as log_file:
            popen = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
            # wait4, not Popen.wait, to get the child's own CPU time as well as its exit status.
            _, status, usage = os.wait4(popen.pid, 0)
        cpu1 = thread_cpu_seconds(pid)
        popen.returncode = code = os.waitstatus_to_exitcode(status)
        log = log_path.read_text()
        if code != 0 or not out.exists():
            raise RuntimeError(f"py-spy failed ({code}):\n{log[-2000:]}")
        raw = out.read_text()
    summary = _SUMMARY.search(log)
    return Profile(
        by_thread=count_samples(raw),
        thread_cpu={tid: cpu - cpu0.get(tid, 0.0) for tid, cpu in cpu1.items()},
        seconds=duration,
        rate=rate,
        errors=int(summary[2]) if summary else 0,
        pyspy_cpu=(usage.ru_utime + usage.ru_stime) / duration,
        raw=raw,
    )
