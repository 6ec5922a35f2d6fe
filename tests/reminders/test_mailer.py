"""Mail goes out the way the operator set it: STARTTLS with the server's certificate checked and a
sign-in over the encrypted connection; a server that insists on TLS refuses a plain connection,
and the refusal is a MailError (retried later), never a crash. A real aiosmtpd on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.smtp_inbox import Inbox
from townhall.harness import free_port
from townhall.reminders.mailer import MailError, SmtpConfig, SmtpMailer


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: its own CA, as a private relay's would be."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class Accounts:
    """The server's sign-in: one user, one password."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        login = data.login.decode()
        self.seen.append(login)
        return AuthResult(success=(login, data.password) == ("townhall", b"s3cret"))


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[Inbox, int, Path, Accounts]]:
    cert, key = certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox, accounts, port = Inbox(), Accounts(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=accounts,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield inbox, port, cert, accounts
    finally:
        controller.stop()


def mail(mailer: SmtpMailer) -> Any:
    return mailer.message(
        "ada@example.org", "Live now: Launch day", "On air.\n", message_id="<r-1@t>", headers={}
    )


async def test_starttls_checks_the_certificate_and_signs_in_over_it(
    tls_smtp: tuple[Inbox, int, Path, Accounts],
) -> None:
    inbox, port, cert, accounts = tls_smtp
    config = SmtpConfig(
        host="127.0.0.1",
        port=port,
        tls="starttls",
        username="townhall",
        password="s3cret",
        sender="reminders@townhall.test",
        ca_file=str(cert),
    )
    mailer = SmtpMailer(config)
    await mailer.send(mail(mailer))
    assert inbox.subjects("ada@example.org") == ["Live now: Launch day"]
    assert accounts.seen == ["townhall"]


async def test_a_server_that_insists_on_tls_or_an_unknown_certificate_is_a_mail_error(
    tls_smtp: tuple[Inbox, int, Path, Accounts],
) -> None:
    inbox, port, _, _ = tls_smtp
    plain = SmtpMailer(SmtpConfig(host="127.0.0.1", port=port, tls="none", sender="r@t.test"))
    with pytest.raises(MailError):
        await plain.send(mail(plain))
    untrusted = SmtpMailer(SmtpConfig(host="127.0.0.1", port=port, sender="r@t.test"))
    with pytest.raises(MailError, match="CERTIFICATE_VERIFY_FAILED"):
        await untrusted.send(mail(untrusted))
    assert inbox.messages == []
