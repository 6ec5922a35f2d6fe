"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, and can refuse: the
`smtp` fixture (tests/conftest.py) gives one per test."""

from __future__ import annotations

import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from townhall.harness import free_port


class Inbox:
    """What the server accepted, in order; `refuse` > 0 answers that many mails with a 451."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            if self.refuse > 0:
                self.refuse -= 1
                return "451 4.3.0 try again later"
            message = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    def subjects(self, address: str) -> list[str]:
        return [str(m["Subject"]) for m in self.to(address)]


def start_smtp() -> tuple[Inbox, int, Controller]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return inbox, port, controller


def smtp_env(port: int) -> dict[str, str]:
    """The settings that send a server's reminder mail to the test server on `port`."""
    return {
        "TOWNHALL_SMTP_HOST": "127.0.0.1",
        "TOWNHALL_SMTP_PORT": str(port),
        "TOWNHALL_SMTP_TLS": "none",
        "TOWNHALL_SMTP_FROM": "townhall <reminders@townhall.test>",
    }
