"""The Users tests act as an admin, who may call every endpoint.

Authorization itself (who may call what) is tested in tests/auth/test_roles.py; here the
subject is what each endpoint does. The admin is a row in the table too: tests that
count rows account for it through `ADMIN_USERNAME`.
"""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture
def client(admin_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return admin_client
