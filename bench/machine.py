"""What the benchmarks ran on: the figures mean little without the machine and the versions."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "not found"


def _cpu_model() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    found = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    return found.group(1).strip() if found else "unknown"


def _memory_gib() -> float | None:
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    found = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    return int(found.group(1)) / 2**20 if found else None


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _hlsjs() -> str:
    try:
        meta = json.loads((ROOT / "node_modules/hls.js/package.json").read_text())
    except (OSError, ValueError):
        return "not installed"
    return str(meta.get("version", "unknown"))


def describe() -> dict[str, object]:
    """The machine, the OS and every server and library version a figure depends on."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "townhall_commit": _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "versions": {
            "aiortc": _package("aiortc"),
            "av (PyAV)": _package("av"),
            "uvicorn": _package("uvicorn"),
            "nginx": _first_line(["nginx", "-v"]).removeprefix("nginx version: "),
            "icecast": _first_line(["icecast2", "-v"]),
            "ffmpeg": _first_line(["ffmpeg", "-version"]).split(" Copyright")[0],
            "chromium": _first_line(["chromium", "--version"]),
            "hls.js": _hlsjs(),
        },
    }
