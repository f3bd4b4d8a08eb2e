"""Whether DATABASE_URL is a connection pooler such as PgBouncer (DB_PGBOUNCER).

`auto` finds out with one connection at start-up: PostgreSQL tells every client, in its
BackendKeyData message, the process id of the backend serving it, and `pg_backend_pid()`
then names the same process. PgBouncer makes up its own key data for its clients (they
cancel through it, and the server connection behind them changes with every
transaction), so the two differ there: a pooler, or some other proxy that does not hand
the session through, and nothing we could rely on for session state either way. The
check needs no privilege, no admin console and no knowledge of ports.

When the database cannot be reached at start-up, `auto` takes the safe side: the pooler
mode is correct on a direct connection too, only slower (`database.py`).

Whether a pooler keeps prepared statements (PgBouncer >= 1.21 with
`max_prepared_statements`) cannot be told from a client connection: 1.18 may even seem
to keep one, when the next transaction happens to get the same server connection. So
`auto` never assumes it; `DB_PGBOUNCER=prepared` says it.
"""

from __future__ import annotations

import logging

import asyncpg

from users_api.config import Settings

log = logging.getLogger(__name__)


async def behind_pooler(
    settings: Settings, *, url: str | None = None, name: str = "DATABASE_URL"
) -> bool:
    """DB_PGBOUNCER, or with `auto` whether the database at `url` (DATABASE_URL) is
    reached through a pooler; when that cannot be told, as if it were. `name`: what the
    logs call it."""
    pooled = await detect_pooler(settings, url=url)
    if pooled is None:
        log.warning("cannot tell whether %s is a pooler: running as behind one", name)
        return True
    if pooled and settings.db_pgbouncer == "auto":
        log.info("%s is a connection pooler: no session state is relied on", name)
    return pooled


async def detect_pooler(settings: Settings, *, url: str | None = None) -> bool | None:
    """DB_PGBOUNCER, or with `auto` what one connection tells (None: it could not be
    made: refused, unreachable, starting up)."""
    if settings.db_pgbouncer != "auto":
        return settings.db_pgbouncer in ("true", "prepared")
    from users_api.db.database import connect_arguments

    try:
        connection = await asyncpg.connect(**connect_arguments(settings, pooled=True, url=url))
        try:
            backend: int = await connection.fetchval("SELECT pg_backend_pid()")
            pooled: bool = backend != connection.get_server_pid()
            return pooled
        finally:
            await connection.close()
    except Exception:  # no answer: nothing to tell from
        return None
