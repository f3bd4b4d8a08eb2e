"""Mail over TLS, as `SMTP_URL` promises: `smtp://` upgrades with STARTTLS whenever the
server offers it, `smtps://` speaks TLS from the first byte, and the URL's login is sent
only inside TLS. A real aiosmtpd server with a certificate made for the test; the
client trusts it through `SSL_CERT_FILE`, as an operator's private CA would be trusted."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import asgi_client
from tests.mail.conftest import mail_settings
from tests.mail.smtp import SmtpServer, _Keep
from users_api.app import create_app
from users_api.config import Settings

LOGIN, PASSWORD = "mailer", "s3cret-mail-password"
USER = {"email": "ada@example.com", "username": "ada", "password": "correct horse battery staple"}


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "users-api test SMTP")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp.pem", folder / "smtp.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Logins:
    """aiosmtpd's authenticator: which logins came, and whether each came inside TLS
    (a server in TLS from the first byte takes nothing else)."""

    def __init__(self, *, implicit: bool) -> None:
        self.implicit = implicit
        self.seen: list[tuple[bool, bool]] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        good = isinstance(auth_data, LoginPassword) and (
            auth_data.login == LOGIN.encode() and auth_data.password == PASSWORD.encode()
        )
        self.seen.append((self.implicit or session.ssl is not None, good))
        return AuthResult(success=good)


class _TlsServer(SmtpServer):
    """The test's SMTP server, with TLS: offered by STARTTLS (and required before any
    login or mail), or from the first byte (`implicit`)."""

    def __init__(self, context: ssl.SSLContext, *, implicit: bool) -> None:
        super().__init__()
        self.context, self.implicit, self.logins = context, implicit, _Logins(implicit=implicit)

    @property
    def url(self) -> str:
        scheme = "smtps" if self.implicit else "smtp"
        return f"{scheme}://{LOGIN}:{PASSWORD}@127.0.0.1:{self.port}"

    def start(self) -> None:
        tls: dict[str, Any] = (
            {"ssl_context": self.context, "auth_require_tls": False}  # all of it is TLS
            if self.implicit
            else {"tls_context": self.context, "require_starttls": True, "auth_require_tls": True}
        )
        self._controller = Controller(
            _Keep(self),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self.logins,
            auth_required=True,
            **tls,
        )
        self._controller.start()


@pytest.fixture
def certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    cert_path, key_path = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # the client trusts it, as a CA
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


@pytest.fixture(params=["starttls", "implicit"])
def tls_smtp(request: pytest.FixtureRequest, certificate: ssl.SSLContext) -> Iterator[_TlsServer]:
    server = _TlsServer(certificate, implicit=request.param == "implicit")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def tls_client(settings: Settings, tls_smtp: _TlsServer) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(mail_settings(settings, tls_smtp))
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        yield client


# aiosmtpd warns whenever AUTH is not tied to STARTTLS; with smtps:// all of it is TLS.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_mail_goes_over_tls_with_the_url_s_login(
    tls_client: httpx.AsyncClient, tls_smtp: _TlsServer
) -> None:
    """A sign-up's verification mail arrives through a server that takes nothing in the
    clear: the client upgraded (or began in TLS) and logged in there."""
    created = await tls_client.post("/api/v1/users", json=USER)
    assert created.status_code == 201, created.text
    [message] = await tls_smtp.wait_for(1)
    assert message["To"] == "ada@example.com"
    assert tls_smtp.logins.seen == [(True, True)]
