"""Icecast 2.4 as a reference server for the density bench: install, configure, start, feed, stop.

The comparison is only fair if Icecast serves the same audio at the same bitrate as townhall does:
an ffmpeg source publishes AAC-LC in ADTS (`-c:a aac -b:a <townhall's AAC bitrate>`, 48 kHz mono)
of a 440 Hz tone — what a `townhall speak --tone 440` bot sends — paced in real time (`-re`), in
input frames of one townhall part (0.32 s), so Icecast forwards the stream in chunks of the same
length as the parts an LL-HLS listener fetches. Icecast runs with:
- a small burst on connect (`burst_bytes`, default 0): a large initial burst would hand every
  listener seconds of buffer and hide stalls;
- a high `<clients>` limit, bound to 127.0.0.1 only, its own config and log directory;
- `<changeowner>` to nobody/nogroup: Icecast refuses to run as root, and the benches run as root.

Because an AAC encoder does not hit its nominal bitrate exactly (a steady tone needs fewer bits),
`measure_byte_rate` listens for a few seconds and counts ADTS frames (1024 samples each) against
bytes, so listeners can turn bytes received into seconds of media.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from townhall.harness import Proc, free_port, spawn, wait_until

ICECAST = "/usr/bin/icecast2"
FFMPEG = "/usr/bin/ffmpeg"
MOUNT = "/live.aac"
SAMPLE_RATE = 48_000
PASSWORD = "bench-source"  # loopback only; a throwaway server


def ensure_installed() -> None:
    """Install the Debian package `icecast2` if it is missing, without starting its service.

    As scripts/setup.sh does for nginx and redis: a policy-rc.d that answers 101 keeps the
    package's own service from starting, and is removed again if we added it."""
    if Path(ICECAST).exists():
        return
    if os.geteuid() != 0:
        raise RuntimeError("icecast2 is missing; install it (apt-get install icecast2) as root")
    policy = Path("/usr/sbin/policy-rc.d")
    added = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        added = True
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "icecast2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "icecast2"],
                env=env,
                check=True,
                capture_output=True,
                timeout=600,
            )
    finally:
        if added:
            policy.unlink(missing_ok=True)


CONFIG = """<icecast>
    <location>loopback</location>
    <admin>bench@localhost</admin>
    <limits>
        <clients>{clients}</clients>
        <sources>2</sources>
        <queue-size>1048576</queue-size>
        <client-timeout>30</client-timeout>
        <header-timeout>15</header-timeout>
        <source-timeout>10</source-timeout>
        <burst-on-connect>{burst_on}</burst-on-connect>
        <burst-size>{burst_bytes}</burst-size>
    </limits>
    <authentication>
        <source-password>{password}</source-password>
        <admin-user>admin</admin-user>
        <admin-password>{password}</admin-password>
    </authentication>
    <hostname>127.0.0.1</hostname>
    <listen-socket>
        <port>{port}</port>
        <bind-address>127.0.0.1</bind-address>
    </listen-socket>
    <fileserve>0</fileserve>
    <paths>
        <basedir>/usr/share/icecast2</basedir>
        <logdir>{logdir}</logdir>
        <webroot>/usr/share/icecast2/web</webroot>
        <adminroot>/usr/share/icecast2/admin</adminroot>
        <pidfile>{logdir}/icecast.pid</pidfile>
    </paths>
    <logging>
        <accesslog>access.log</accesslog>
        <errorlog>error.log</errorlog>
        <loglevel>2</loglevel>
    </logging>
    <security>
        <chroot>0</chroot>
        <changeowner><user>nobody</user><group>nogroup</group></changeowner>
    </security>
</icecast>
"""


@dataclass
class Icecast:
    """A running Icecast with its ffmpeg source; `stream_url` is the mount listeners GET."""

    proc: Proc
    source: Proc | None
    port: int
    workdir: Path
    bitrate: int

    @property
    def stream_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{MOUNT}"

    def mount_live(self) -> bool:
        """Whether the mount is on air (Icecast answers 404 for a mount without a source)."""
        try:
            with httpx.stream("GET", self.stream_url, timeout=2) as response:
                return response.status_code == 200
        except httpx.HTTPError:
            return False

    def start_source(self, part_seconds: float) -> Proc:
        """ffmpeg publishing a 440 Hz tone as AAC-LC ADTS at `bitrate`, in real time, flushed
        per packet, in input frames of `part_seconds` (so chunks match townhall's parts)."""
        frame = round(part_seconds * SAMPLE_RATE)
        self.source = spawn(
            [
                FFMPEG,
                "-hide_banner",
                "-loglevel",
                "warning",
                "-nostdin",
                "-re",
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=440:sample_rate={SAMPLE_RATE}:samples_per_frame={frame}",
                "-ac",
                "1",
                "-c:a",
                "aac",
                "-b:a",
                str(self.bitrate),
                "-f",
                "adts",
                "-flush_packets",
                "1",
                "-content_type",
                "audio/aac",
                f"icecast://source:{PASSWORD}@127.0.0.1:{self.port}{MOUNT}",
            ]
        )
        wait_until(
            lambda: (
                self.mount_live() or self.source is None or self.source.popen.poll() is not None
            ),
            20,
            "the ffmpeg source to go on air",
            interval=0.2,
        )
        if self.source.popen.poll() is not None:
            raise RuntimeError(f"ffmpeg source exited:\n{self.source.output()}")
        return self.source

    def stop(self) -> None:
        """Stop the source, then Icecast, by their own PIDs; remove the work directory."""
        if self.source is not None:
            self.source.stop()
        self.proc.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_icecast(bitrate: int, clients: int = 20_000, burst_bytes: int = 0) -> Icecast:
    """Icecast on a free loopback port with its own config and log directory (readable and
    writable by `nobody`, which Icecast switches to)."""
    ensure_installed()
    workdir = Path(tempfile.mkdtemp(prefix="townhall-icecast-"))
    workdir.chmod(0o755)
    logdir = workdir / "log"
    logdir.mkdir()
    logdir.chmod(0o777)
    port = free_port()
    config = workdir / "icecast.xml"
    config.write_text(
        CONFIG.format(
            clients=clients,
            burst_on=1 if burst_bytes else 0,
            burst_bytes=burst_bytes,
            password=PASSWORD,
            port=port,
            logdir=logdir,
        )
    )
    config.chmod(0o644)
    proc = spawn([ICECAST, "-c", str(config)])

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_until(lambda: proc.popen.poll() is not None or answers(), 15, "icecast to start")
    except TimeoutError:
        proc.kill()
        raise
    if proc.popen.poll() is not None:
        errors = (logdir / "error.log").read_text() if (logdir / "error.log").exists() else ""
        raise RuntimeError(f"icecast exited:\n{proc.output()}\n{errors}")
    return Icecast(proc, None, port, workdir, bitrate)


def measure_byte_rate(url: str, seconds: float = 4.0) -> float:
    """Bytes per second of media in an ADTS stream: bytes of whole frames ÷ their duration.

    Reads the stream for `seconds` (bounded) and walks ADTS headers (12-bit sync, 13-bit frame
    length); each frame holds 1024 samples at the header's sample rate."""
    rates = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
    data = bytearray()
    deadline = time.monotonic() + seconds
    with httpx.stream("GET", url, timeout=5) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            data += chunk
            if time.monotonic() > deadline or len(data) > 2**22:
                break
    start = next(
        (i for i in range(min(len(data) - 1, 8192)) if data[i] == 0xFF and data[i + 1] >> 4 == 0xF),
        None,
    )
    if start is None:
        raise RuntimeError("no ADTS sync word in the stream")
    pos, frames, media = start, 0, 0.0
    while pos + 7 <= len(data) and frames < 100_000:
        if data[pos] != 0xFF or data[pos + 1] >> 4 != 0xF:
            raise RuntimeError(f"lost ADTS sync at byte {pos}")
        rate = rates[(data[pos + 2] >> 2) & 0xF]
        length = ((data[pos + 3] & 0x3) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
        if length < 7 or pos + length > len(data):
            break
        frames += 1
        media += 1024 / rate
        pos += length
    if media <= 0:
        raise RuntimeError("no whole ADTS frame in the stream")
    return (pos - start) / media
