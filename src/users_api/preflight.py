"""Checks made before anything starts, so that what would fail later fails now, in one line.

Without them a data folder that cannot be written, a first admin the password policy
refuses or a port already taken showed up as a traceback of forty lines or more, after
the embedded database had started and, for the last two, after "serving" was said. Each
check costs milliseconds (no database, no app) and raises `Refused`, whose message names
the setting or option at fault.
"""

from __future__ import annotations

import errno
import socket
import tempfile

from pydantic import ValidationError

from users_api.config import Settings


class Refused(Exception):
    """Start-up would fail; the message says why in one line, naming what to change."""

    def __init__(self, message: str, *, exit_status: int = 2) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def check_data_dir(settings: Settings, *, serving: bool) -> None:
    """DATA_DIR must be a folder files can be created in, if anything is to be kept there:
    the embedded database (no DATABASE_URL) or, for a server (`serving`), the generated
    secret key (no SECRET_KEY) and the mail it writes as files (no SMTP_URL)."""
    keeps_files = settings.database_url is None or (
        serving and (settings.secret_key is None or settings.smtp_url is None)
    )
    if not keeps_files:
        return
    path = settings.data_dir
    if path.exists() and not path.is_dir():
        raise Refused(f"invalid setting DATA_DIR: {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise Refused(f"invalid setting DATA_DIR: cannot keep files in {path}: {reason}") from exc


def check_secret_key(settings: Settings) -> None:
    """Without SECRET_KEY, the key generated into DATA_DIR must be readable and long
    enough (it is made now if no run has made it): a broken one stopped every worker
    with a traceback, and with `--workers` they were started again for ever."""
    from users_api.security.secret import SecretKeyError, resolve_secret_key

    try:
        resolve_secret_key(settings)
    except SecretKeyError as exc:
        raise Refused(f"{exc}: remove it to have a new one made, or set SECRET_KEY") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise Refused(f"cannot make the secret key in DATA_DIR: {reason}") from None


def check_first_admin(settings: Settings) -> None:
    """FIRST_ADMIN_*: the admin must be one the service will create, by its own rules.

    (All three or none is a rule of `Settings`.) The email and username go through the
    same input model as `POST /users`, the password through the same policy as any
    other; the password itself is never repeated in the message.
    """
    if settings.first_admin_password is None:
        return
    # Imported here: the rules' homes, and the cost of loading them, belong to serving.
    from users_api.security.passwords import policy_violation
    from users_api.users.schemas import UserCreate

    email, username = settings.first_admin_email or "", settings.first_admin_username or ""
    password = settings.first_admin_password.get_secret_value()
    reason = policy_violation(
        password, email=email, username=username, min_length=settings.password_min_length
    )
    if reason is not None:  # (the policy's limits include the input model's)
        raise Refused(f"invalid setting FIRST_ADMIN_PASSWORD: the password {reason}")
    try:
        UserCreate(email=email, username=username, password=password, is_admin=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = f"FIRST_ADMIN_{error['loc'][0]}".upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        raise Refused(f"invalid setting {name}: {message}") from None


def check_can_listen(host: str, port: int) -> None:
    """Bind `host:port` as uvicorn will (SO_REUSEADDR), and let it go at once.

    A port that is already taken otherwise failed only once the database was up and the
    app had started, and uvicorn then shut it all down again.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise Refused(f"invalid option --host {host}: {exc.strerror}") from None
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if family == socket.AF_INET6 and exc.errno == errno.EADDRNOTAVAIL:
                    continue  # IPv6 is off here; asyncio skips such an address too
                reason = (exc.strerror or str(exc)).lower()
                raise Refused(
                    f"cannot listen on {host}:{port} (option --port): {reason}", exit_status=1
                ) from None
