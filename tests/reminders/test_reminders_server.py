"""The whole way, on a real server: the host schedules and moves a Space with the CLI, a person
asks to be reminded by email, and the server's own mail sender delivers the new time and, when
the host goes live, the reminder, to a real SMTP server on loopback."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.smtp_inbox import Inbox, smtp_env
from townhall.harness import REPO, start_server, wait_until

pytestmark = pytest.mark.e2e


def cli(url: str, token: str, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "townhall", "spaces", "--url", url, "--token", token, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def iso(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%MZ")


def test_a_server_mails_the_new_time_and_the_start_to_whoever_asked(
    tmp_path: Path, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    server = start_server(tmp_path / "data", smtp_env(port))
    try:
        host = server.call(
            "POST",
            "/api/auth/signup",
            json={"username": "hana", "password": "correct horse", "display_name": "Hana"},
        )["token"]
        ada = server.call(
            "POST",
            "/api/auth/signup",
            json={"username": "ada", "password": "correct horse", "display_name": "Ada"},
        )["token"]
        made = cli(server.url, host, "create", "Launch day", "--start", iso(time.time() + 900))
        space_id = str(made["space"]["id"])  # type: ignore[index]
        server.call("POST", f"/api/spaces/{space_id}/remind", ada, {"email": "ada@example.org"})

        later = time.time() + 1500
        moved = cli(server.url, host, "edit", space_id, "--start", iso(later))
        assert moved["space"]["scheduled_start"] == float(int(later) // 60 * 60)  # type: ignore[index]
        wait_until(lambda: len(inbox.messages) == 1, 30, "the mail with the new time")
        assert inbox.subjects("ada@example.org") == ["New time: Launch day"]

        cli(server.url, host, "open", space_id)
        cli(server.url, host, "go-live", space_id)
        wait_until(lambda: len(inbox.messages) == 2, 30, "the reminder")
        assert inbox.subjects("ada@example.org")[1] == "Live now: Launch day"
        assert f"{server.url}/s/{space_id}" in inbox.messages[1].get_content()
    finally:
        code = server.proc.stop()
    assert code == 0, server.proc.output()
