"""A real PgBouncer in transaction mode in front of a PostgreSQL server: for the tests,
and for CI's stage that runs the suite through one (the tests that reach it: conftest).

PgBouncer refuses to run as root: run as root, it runs as the unprivileged owner of the
server's socket folder (the embedded server's user) or as `nobody`. Its configuration,
log and pid file live in a temporary folder of its own. Debian's package is installed by
`.ci/services`.

    python -m tests.pgbouncer COMMAND...

runs COMMAND with `TEST_DATABASE_URL` pointing through a PgBouncer in front of
`TEST_DATABASE_URL`'s server (default: the local one), and `TEST_DIRECT_DATABASE_URL` at
that server itself, for what must not go through a pooler (creating databases,
migrating).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from users_api.config import normalize_database_url

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
# PgBouncer >= 1.21, which tracks prepared statements: built by scripts/build-pgbouncer
# (CI's .ci/services runs it) where that script puts it.
RECENT_VERSION = "1.24.1"
_CACHE = (
    Path("/var/cache")
    if os.geteuid() == 0
    else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
)
RECENT = _CACHE / "users-api" / f"pgbouncer-{RECENT_VERSION}" / "bin" / "pgbouncer"
START_TIMEOUT = 15.0
DEFAULT_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def available() -> bool:
    return Path(PGBOUNCER).exists()


def recent_available() -> bool:
    return RECENT.exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run_as(server_host: str) -> str | None:
    """The user to run as: none when not root; else the owner of a socket folder, if
    not root, else `nobody`."""
    if os.geteuid() != 0:
        return None
    if server_host.startswith("/"):
        owner = pwd.getpwuid(Path(server_host).stat().st_uid).pw_name
        if owner != "root":
            return owner
    return "nobody"


@contextmanager
def pgbouncer(
    server_url: str,
    *,
    pool_size: int = 20,
    binary: Path | str = PGBOUNCER,
    prepared_statements: int = 0,
) -> Iterator[str]:
    """Start PgBouncer (transaction mode) in front of the server of `server_url`; yield
    `server_url` as reached through it (any database of that server is reachable).
    `prepared_statements`: PgBouncer's `max_prepared_statements` (>= 1.21: `RECENT`)."""
    url = make_url(normalize_database_url(server_url))
    host = str(url.query.get("host") or url.host or "127.0.0.1")
    server_port = url.port or 5432
    user = _run_as(host)
    folder = Path(tempfile.mkdtemp(prefix="users-api-pgbouncer-"))
    port = _free_port()
    users = folder / "users.txt"
    users.write_text(f'"{url.username or "postgres"}" ""\n')
    config = folder / "pgbouncer.ini"
    config.write_text(
        f"""[databases]
* = host={host} port={server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 1000
server_reset_query =
ignore_startup_parameters = extra_float_digits
pidfile = {folder / "pgbouncer.pid"}
admin_users = {url.username or "postgres"}
"""
        + (f"max_prepared_statements = {prepared_statements}\n" if prepared_statements else "")
    )
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (folder, users, config):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    # Its log goes to standard error, into a file: never a pipe nobody reads, which
    # fills up and then blocks PgBouncer in the middle of its work.
    log = folder / "pgbouncer.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # our own command line
            [str(binary), str(config)],
            user=user,
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
    try:
        _wait_for(port, process, log)
        yield url.set(host="127.0.0.1", port=port, query={}).render_as_string(hide_password=False)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if keep := os.environ.get("TEST_PGBOUNCER_LOG"):  # for a failure's post-mortem
            shutil.copy(folder / "pgbouncer.log", keep)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pgbouncer exited with {process.returncode}: {error}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
            continue
        return
    raise RuntimeError(f"pgbouncer did not listen on port {port} within {START_TIMEOUT} s")


def main(command: list[str]) -> int:
    server = os.environ.get("TEST_DATABASE_URL") or DEFAULT_SERVER
    with pgbouncer(server) as pooled:
        environment = {
            **os.environ,
            "TEST_DATABASE_URL": pooled,
            "TEST_DIRECT_DATABASE_URL": server,
        }
        return subprocess.run(command, env=environment, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
