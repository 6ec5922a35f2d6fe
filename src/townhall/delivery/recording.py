"""Recording: every part listeners got, appended to durable storage as the packager produces it.

Built on the packager's own output (no second encode): the media pipeline hands each numbered part
to `SpaceRecorder.on_part`, which appends it to the current run's files. Audio dumped by the
broadcast delay never reaches the packager, so it is never recorded either.

Layout, one directory per stream run (a run = one packager: a (re)start of the Space's media gets a
new stream id, so a restart never appends to an old run)::

    <recordings_dir>/<space_id>/<stream_id>/
        init.mp4     the run's init section (ftyp+moov), written whole (temp file + rename) first
        run.json     codecs and bandwidth for the replay's multivariant playlist, written likewise
        media.m4s    the run's parts (moof+mdat) back to back, append-only: init.mp4 + media.m4s
                     is a playable fragmented MP4
        index.txt    append-only, one line per part, written after the part's bytes:
                     "msn index duration pdt offset length crc32\\n"

Theory of operation (durability):

* A part's bytes are appended to media.m4s with `os.write`, then its index line to index.txt,
  before `on_part` returns, i.e. before the next part exists. Bytes handed to the kernel survive
  the death of the process (SIGKILL, OOM kill), so a `kill -9` loses at most the part in flight.
* Power loss or a kernel crash is bounded by fsync: both files are fsync'd every `sync_every` parts
  (default every part) on a background thread so the event loop never blocks on the disk; a sync
  is coalesced with one already running. The loss bound on power loss is therefore the parts since
  the last fsync that completed: about one part plus the disk's fsync latency.
* Reading trusts the index up to its last complete, checksummed line whose bytes are in media.m4s
  at the offset that follows the previous line: a torn last line (no newline, bad checksum) and any
  media bytes past the last line are ignored. What remains is intact and playable.
* Any OSError (ENOSPC when the disk is full, EIO, …) stops the recording of the whole Space: the
  error is kept (`SpaceRecorder.error`) and reported once through `on_error`; nothing is raised to
  the caller, so the live stream never notices. What was written before the error stays playable.
* Only parts delivered while the Space is ON AIR are recorded: the green room is not.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from townhall.media.packager import PackagedPart

__all__ = [
    "INDEX_NAME",
    "INIT_NAME",
    "MEDIA_NAME",
    "RUN_NAME",
    "AppendFile",
    "IndexEntry",
    "RecordedRun",
    "RunRecorder",
    "SpaceRecorder",
    "load_runs",
    "parse_index",
    "recorded_bytes",
]

log = logging.getLogger(__name__)

INIT_NAME = "init.mp4"
RUN_NAME = "run.json"
MEDIA_NAME = "media.m4s"
INDEX_NAME = "index.txt"

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # space and stream ids become directory names


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One recorded part: its address in the run, its timing and where its bytes are."""

    msn: int
    index: int
    duration: float  # seconds
    pdt: float  # UNIX seconds of its first sample
    offset: int  # into media.m4s
    length: int

    def line(self) -> bytes:
        body = (
            f"{self.msn} {self.index} {self.duration:.6f} {self.pdt:.6f} {self.offset} "
            f"{self.length}"
        )
        return f"{body} {zlib.crc32(body.encode()):08x}\n".encode()

    @property
    def end(self) -> int:
        return self.offset + self.length


def parse_index(data: bytes, media_size: int | None = None) -> list[IndexEntry]:
    """The trustworthy prefix of an index file: complete lines with a good checksum, each starting
    where the previous part ended, each (if `media_size` is given) within the media file."""
    entries: list[IndexEntry] = []
    expected_offset = 0
    for raw in data.split(b"\n")[:-1]:  # the last element is empty or a torn line: ignored
        entry = _parse_line(raw)
        if entry is None or entry.offset != expected_offset:
            break
        if media_size is not None and entry.end > media_size:
            break  # the index outlived its media (power loss between the two): stop here
        entries.append(entry)
        expected_offset = entry.end
    return entries


def _parse_line(raw: bytes) -> IndexEntry | None:
    try:
        text = raw.decode("ascii")
        body, _, crc = text.rpartition(" ")
        if int(crc, 16) != zlib.crc32(body.encode()):
            return None
        msn, index, duration, pdt, offset, length = body.split(" ")
        entry = IndexEntry(
            int(msn), int(index), float(duration), float(pdt), int(offset), int(length)
        )
    except ValueError:  # UnicodeDecodeError is one
        return None
    if entry.msn < 0 or entry.index < 0 or entry.length <= 0 or not entry.duration > 0:
        return None
    return entry


class AppendFile(Protocol):
    """Where the recorder writes: an append-only file. Any method may raise OSError."""

    def write(self, data: bytes) -> None: ...  # all of it, or OSError

    def sync(self) -> None: ...  # make what was written durable (may complete in the background)

    def close(self) -> None: ...


class RunRecorder:
    """Sans-I/O-ish core for one run: numbers bytes into index lines and writes them in the order
    that keeps the index trustworthy (part bytes first, then its line). Never raises OSError: the
    first one stops the run and is kept in `error`."""

    def __init__(self, media: AppendFile, index: AppendFile, *, sync_every: int = 1) -> None:
        if sync_every < 1:
            raise ValueError("sync_every must be at least 1")
        self._media = media
        self._index = index
        self._sync_every = sync_every
        self._offset = 0
        self._unsynced = 0
        self.parts = 0
        self.error: OSError | None = None
        self._closed = False

    @property
    def bytes_written(self) -> int:
        return self._offset

    def add(self, msn: int, index: int, data: bytes, duration: float, pdt: float) -> bool:
        """Append one part; False if the run has stopped (now or before) and it was not recorded."""
        if self.error is not None or self._closed:
            return False
        entry = IndexEntry(msn, index, duration, pdt, self._offset, len(data))
        try:
            self._media.write(data)
            self._index.write(entry.line())
            self._offset = entry.end
            self.parts += 1
            self._unsynced += 1
            if self._unsynced >= self._sync_every:
                self._unsynced = 0
                self._media.sync()
                self._index.sync()
        except OSError as exc:
            self._fail(exc)
            return False
        return True

    def close(self) -> None:
        """Make everything durable and release the files (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for file in (self._media, self._index):
            try:
                if self.error is None:
                    file.sync()
            except OSError as exc:
                self._fail(exc)
            finally:
                with contextlib.suppress(OSError):
                    file.close()

    def _fail(self, exc: OSError) -> None:
        if self.error is None:
            self.error = exc


class _OsAppendFile:
    """An O_APPEND file written with os.write (no user-space buffer: a write is in the kernel when
    it returns) and fsync'd on a worker thread, one fsync at a time, coalesced."""

    def __init__(self, path: Path, syncer: concurrent.futures.Executor) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._syncer = syncer
        self._pending: concurrent.futures.Future[None] | None = None
        self._again = False

    def write(self, data: bytes) -> None:
        self._raise_sync_error()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def sync(self) -> None:
        self._raise_sync_error()
        if self._pending is not None and not self._pending.done():
            self._again = True  # one more after the running one: it may have missed our bytes
            return
        self._pending = self._syncer.submit(self._fsync)

    def _fsync(self) -> None:
        os.fsync(self._fd)
        while self._again:
            self._again = False
            os.fsync(self._fd)

    def _raise_sync_error(self) -> None:
        if self._pending is not None and self._pending.done():
            pending, self._pending = self._pending, None
            pending.result()  # raises the background fsync's OSError here, on the caller's side

    def close(self) -> None:
        try:
            if self._pending is not None:
                self._pending.result()
                self._pending = None
            os.fsync(self._fd)
        finally:
            os.close(self._fd)


def _write_whole(path: Path, data: bytes) -> None:
    """Write a small file so that it is either absent or complete (temp file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


ErrorCallback = Callable[[str, OSError], None]  # (space id, error)


class SpaceRecorder:
    """The file adapter for one Space: follows `PackagedPart`s from the pipeline (`on_part`) and
    writes each on-air part into the current run's directory, opening a new run when the stream id
    changes. Stops for good on the first OSError, reporting it once; never raises."""

    def __init__(
        self,
        root: Path,
        space_id: str,
        *,
        codecs: str,
        bandwidth: int,
        on_error: ErrorCallback | None = None,
        sync_every: int = 1,
    ) -> None:
        if not _NAME.fullmatch(space_id):
            raise ValueError(f"space id cannot name a directory: {space_id!r}")
        self.directory = root / space_id
        self.space_id = space_id
        self._codecs = codecs
        self._bandwidth = bandwidth
        self._on_error = on_error
        self._sync_every = sync_every
        self._syncer = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"record-{space_id}"
        )
        self._run: RunRecorder | None = None
        self._stream_id: str | None = None
        self._bytes_before = 0  # bytes of this process's earlier runs
        self.error: OSError | None = None
        self._closed = False

    @property
    def recording(self) -> bool:
        return self.error is None and not self._closed

    @property
    def bytes_written(self) -> int:
        return self._bytes_before + (self._run.bytes_written if self._run is not None else 0)

    def on_part(self, packaged: PackagedPart) -> None:
        """The pipeline's observer: record the part if on air (never raises)."""
        if not packaged.on_air or not self.recording:
            return
        if packaged.stream_id != self._stream_id:
            self._close_run()
            self._run = self._open_run(packaged)
            self._stream_id = packaged.stream_id
            if self._run is None:
                return
        run = self._run
        if run is None:
            return
        part = packaged.part
        if not run.add(packaged.msn, packaged.index, part.data, part.duration, packaged.pdt):
            assert run.error is not None
            self._fail(run.error)

    def stop(self, reason: OSError) -> None:
        """Stop recording for good, as a write error would (its host's storage quota is used
        up): what was written stays, `reason` is reported once."""
        self._fail(reason)

    def close(self) -> None:
        """The end of the Space's media in this process: make the run durable, stop the syncer."""
        if self._closed:
            return
        self._close_run()
        self._closed = True
        self._syncer.shutdown(wait=True)

    def _open_run(self, packaged: PackagedPart) -> RunRecorder | None:
        if not _NAME.fullmatch(packaged.stream_id):
            self._fail(OSError(f"stream id cannot name a directory: {packaged.stream_id!r}"))
            return None
        directory = self.directory / packaged.stream_id
        try:
            directory.mkdir(parents=True, exist_ok=True)
            _write_whole(directory / INIT_NAME, packaged.init_section)
            meta = {"codecs": self._codecs, "bandwidth": self._bandwidth}
            _write_whole(directory / RUN_NAME, json.dumps(meta).encode())
            media = _OsAppendFile(directory / MEDIA_NAME, self._syncer)
            try:
                index = _OsAppendFile(directory / INDEX_NAME, self._syncer)
            except OSError:
                media.close()
                raise
            _fsync_dir(directory)
            _fsync_dir(self.directory)
        except OSError as exc:
            self._fail(exc)
            return None
        log.info("space %s: recording run %s", self.space_id, packaged.stream_id)
        return RunRecorder(media, index, sync_every=self._sync_every)

    def _close_run(self) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        run.close()
        self._bytes_before += run.bytes_written
        if run.error is not None:
            self._fail(run.error)

    def _fail(self, exc: OSError) -> None:
        if self.error is not None:
            return
        self.error = exc
        log.error("space %s: recording stopped (%s); the live stream continues", self.space_id, exc)
        if self._run is not None:
            with contextlib.suppress(Exception):
                self._run.close()
        if self._on_error is not None:
            try:
                self._on_error(self.space_id, exc)
            except Exception:  # a reporting failure must not reach the media pipeline
                log.exception("space %s: reporting the recording error failed", self.space_id)


@dataclass(frozen=True)
class RecordedRun:
    """What one run left on disk, up to its last trustworthy index line."""

    stream_id: str
    directory: Path
    codecs: str
    bandwidth: int
    entries: tuple[IndexEntry, ...]

    @property
    def media_path(self) -> Path:
        return self.directory / MEDIA_NAME

    @property
    def init_path(self) -> Path:
        return self.directory / INIT_NAME

    @property
    def duration(self) -> float:
        return sum(e.duration for e in self.entries)


def load_runs(space_dir: Path) -> list[RecordedRun]:
    """Every run of a Space with at least one trustworthy part, oldest first (by first PDT)."""
    runs = []
    try:
        children = list(space_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    for directory in children:
        if not _NAME.fullmatch(directory.name) or not directory.is_dir():
            continue
        try:
            meta = json.loads((directory / RUN_NAME).read_bytes())
            if not (directory / INIT_NAME).is_file():
                continue
            media_size = (directory / MEDIA_NAME).stat().st_size
            entries = parse_index((directory / INDEX_NAME).read_bytes(), media_size)
        except (OSError, ValueError):
            continue  # a run that died before its first part: nothing to replay
        if entries:
            runs.append(
                RecordedRun(
                    directory.name,
                    directory,
                    str(meta.get("codecs", "mp4a.40.2")),
                    int(meta.get("bandwidth", 72_000)),
                    tuple(entries),
                )
            )
    runs.sort(key=lambda r: (r.entries[0].pdt, r.stream_id))
    return runs


def recorded_bytes(space_dir: Path) -> int:
    """The bytes of parts every run of a Space left on storage (blocking: a stat per run). What a
    node taking the recording over counts as already written (see node.recording_meter): the
    size of each run's media file, as each run's recorder counted what it wrote."""
    total = 0
    try:
        children = list(space_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for directory in children:
        if not _NAME.fullmatch(directory.name):
            continue
        with contextlib.suppress(OSError):  # not a run (the clips), or a run without parts
            total += (directory / MEDIA_NAME).stat().st_size
    return total
