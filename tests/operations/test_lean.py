"""Untraced, nothing of OpenTelemetry's SDK, exporter or instrumentation is loaded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from users_api.config import Settings, describe_error

_PROGRAM = """
import asyncio, json, sys
import httpx
from users_api.app import create_app
from users_api.config import Settings

endpoint = sys.argv[1] or None
app = create_app(Settings(
    database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none",
    secret_key="lean-secret-key-that-is-at-least-32-bytes",
    otel_exporter_otlp_endpoint=endpoint,
    _env_file=None,
))

async def main() -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lean") as client:
        assert (await client.get("/healthz")).status_code == 200

asyncio.run(main())
print(json.dumps(sorted(name for name in sys.modules if name.startswith("opentelemetry."))))
"""

_HEAVY = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instrumentation")


@pytest.mark.parametrize("endpoint", ["", "http://127.0.0.1:9"])
def test_tracing_is_loaded_only_when_an_endpoint_is_set(endpoint: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, endpoint],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = json.loads(done.stdout.splitlines()[-1])
    heavy = [name for name in loaded if name.startswith(_HEAVY)]
    if endpoint:
        assert heavy
    else:
        assert heavy == []


@pytest.mark.parametrize("endpoint", ["collector:4318", "ftp://collector", "http://"])
def test_a_bad_otlp_endpoint_is_one_clear_line(endpoint: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(otel_exporter_otlp_endpoint=endpoint, database_url=None, _env_file=None)
    line = describe_error(caught.value)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in line
    assert "\n" not in line


def test_a_blank_otlp_endpoint_is_unset() -> None:
    settings = Settings(otel_exporter_otlp_endpoint=" ", _env_file=None)
    assert settings.otel_exporter_otlp_endpoint is None
