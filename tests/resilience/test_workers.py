"""`users-api serve --workers N` on the embedded database: N workers, one outbox sender."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from tests.resilience.conftest import SECRET_KEY
from tests.resilience.serve import serve
from users_api.db.embedded import DATABASE_NAME, EmbeddedPostgres, server_pid

pytestmark = pytest.mark.own_database

WORKERS = 2


@pytest.fixture
def workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="users-api-workers-"))
    try:
        yield folder
    finally:
        data = folder / ".data"
        if server_pid(data / "pgdata") is not None:  # serve died without stopping it
            embedded = EmbeddedPostgres(data)
            embedded.start()
            embedded.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def test_workers_share_the_embedded_database_and_one_holds_the_sender(
    workdir: Path,
) -> None:
    with serve(workdir, "--workers", str(WORKERS), SECRET_KEY=SECRET_KEY) as served:
        dsn = f"postgresql://postgres@/{DATABASE_NAME}?host={served.embedded_socket_dir()}"
        async with httpx.AsyncClient(base_url=served.base_url) as client:
            answers = await asyncio.gather(*(client.get("/readyz") for _ in range(20)))
        assert {answer.status_code for answer in answers} == {200}
        for _ in range(50):  # every worker has started (and its sender has polled)
            if served.output.count("Application startup complete") == WORKERS:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # more than a poll: each sender has tried the lease
        connection = await asyncpg.connect(dsn)
        try:
            holders = await connection.fetch(
                "SELECT name, holder FROM cluster_leases WHERE name = 'outbox-sender'"
            )
            backends = await connection.fetchval(
                "SELECT count(DISTINCT pid) FROM pg_stat_activity "
                "WHERE application_name = 'users-api'"
            )
        finally:
            await connection.close()
        assert len(holders) == 1  # one worker holds the sender's lease
        assert backends >= WORKERS  # each worker has its own pool
        served.terminate()
        assert await asyncio.to_thread(served.wait, 20) == 0, served.output
    assert served.output.count("Application startup complete") == WORKERS
    assert "embedded PostgreSQL stopped" in served.output


def test_workers_stop_when_serve_is_killed(workdir: Path) -> None:
    """SIGKILL to `serve` (no chance to stop them): its workers stop by themselves and the
    port is free for the next start; before, they served on for ever and held it."""
    with serve(workdir, "--workers", str(WORKERS), SECRET_KEY=SECRET_KEY) as served:
        for _ in range(100):  # every worker has started
            if served.output.count("Application startup complete") == WORKERS:
                break
            time.sleep(0.1)
        workers = [  # not multiprocessing's resource tracker beside them
            child
            for child in psutil.Process(served.process.pid).children()
            if "spawn_main" in " ".join(child.cmdline())
        ]
        assert len(workers) == WORKERS
        served.process.kill()
        served.process.wait()
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert alive == []
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{served.base_url}/healthz", timeout=2)
