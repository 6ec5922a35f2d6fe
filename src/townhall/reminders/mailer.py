"""Sending one mail over SMTP: the server, the sender and the TLS mode an operator configures.

The standard library's smtplib, run in a worker thread (it blocks), so the event loop only hands
messages over. One connection per mail: reminders come in bursts of a few hundred at a Space's
start at most per process, paced by the sender, and a fresh connection never inherits a
half-broken one's state.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Final

__all__ = ["TLS_MODES", "MailError", "SmtpConfig", "SmtpMailer"]

TLS_MODES: Final = ("starttls", "tls", "none")
TIMEOUT_S: Final = 20.0


@dataclass(frozen=True)
class SmtpConfig:
    """Where reminder mail goes out. No host: this server sends no mail (and says so when
    someone asks for a reminder by email)."""

    host: str = ""
    port: int = 587  # submission with STARTTLS; 465 with tls="tls"; 25 to a local relay
    tls: str = "starttls"  # "starttls" (upgrade after connecting), "tls" (from the start), "none"
    username: str = ""
    password: str = ""
    sender: str = ""  # the From address; "townhall <reminders@example.org>"
    per_second: float = 5.0  # mails per second for the whole deployment (the provider's limit)
    # Certificates to trust instead of the system's (a relay with a private CA); "": the system's.
    ca_file: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.host)


class MailError(Exception):
    """The server refused the mail or could not be reached; the message says which."""


class SmtpMailer:
    def __init__(self, config: SmtpConfig) -> None:
        if not config.enabled:
            raise ValueError("no SMTP server configured")
        self.config = config

    def message(
        self, to: str, subject: str, text: str, *, message_id: str, headers: dict[str, str]
    ) -> EmailMessage:
        """A plain-text mail from the configured sender."""
        message = EmailMessage()
        message["From"] = self.config.sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = message_id
        for name, value in headers.items():
            message[name] = value
        message.set_content(text)
        return message

    def message_id(self, local: str) -> str:
        """A stable Message-ID (a mail sent twice is recognisably one), in the sender's domain."""
        domain = self.config.sender.rpartition("@")[2].rstrip(">").strip() or "townhall"
        return f"<{local}@{domain}>"

    async def send(self, message: EmailMessage) -> None:
        """Hand the mail to the server; MailError if it is refused or out of reach."""
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(f"{type(exc).__name__}: {exc}"[:500]) from exc

    def _send(self, message: EmailMessage) -> None:
        config = self.config
        context = ssl.create_default_context(cafile=config.ca_file or None)
        smtp: smtplib.SMTP
        if config.tls == "tls":
            smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=TIMEOUT_S, context=context)
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=TIMEOUT_S)
        with smtp:
            if config.tls == "starttls":
                smtp.starttls(context=context)
            if config.username:
                smtp.login(config.username, config.password)
            smtp.send_message(message)
