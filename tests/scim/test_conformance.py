"""scim2-tester, the python-scim project's RFC 7643/7644 conformance checker, against
`users-api serve` as a real process: every check it runs passes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.processes import clean_environment, run_cli
from tests.resilience.serve import Served, serve

SECRET_KEY = "a-secret-key-for-the-served-instance-of-the-tests"
# Statuses that mean the server does what the RFCs say (MUST, SHOULD, or a MAY it uses).
PASSED = {"SUCCESS", "COMPLIANT", "ACCEPTABLE", "SKIPPED"}


@pytest.fixture(scope="module")
def served(
    database_url: str, engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    with serve(
        tmp_path_factory.mktemp("scim"), DATABASE_URL=database_url, SECRET_KEY=SECRET_KEY
    ) as server:
        yield server


def test_scim2_tester_finds_nothing_wrong(
    served: Served, tmp_path: Path, database_url: str
) -> None:
    # Imported here, not at collection: scim2-client builds its models at import (about
    # 3 s of CPU), which every pytest worker paid to collect this one test.
    from httpx2 import Client
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import check_server

    env = clean_environment(tmp_path, DATABASE_URL=database_url, SECRET_KEY=SECRET_KEY)
    made = run_cli("scim-token", "create", "--name", "scim2-tester", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    http = Client(
        base_url=f"{served.base_url}/scim/v2", headers={"Authorization": f"Bearer {token}"}
    )
    with http:
        client = SyncSCIMClient(http)
        results = check_server(client)
    failed = [
        f"{result.status.name} {result.resource_type or ''} {result.title}: {result.reason}"
        for result in results
        if result.status.name not in PASSED
    ]
    assert results
    assert not failed, "\n".join(failed)
