"""Provisioning tokens: made, listed and revoked by the CLI, checked on every SCIM request."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from uuid_utils.compat import uuid7

from users_api.db.database import Database, Record, Unit
from users_api.db.statements import Statement, compile_statement
from users_api.errors import NotFound
from users_api.events.writer import SYSTEM, EventWriter
from users_api.scim.models import ScimToken

# A prefix tells a provisioning token from a user's JWT at a glance (and to scanners).
PREFIX = "scim_"
_FIELDS = (ScimToken.id, ScimToken.name, ScimToken.created_at, ScimToken.last_used_at)
_SHOWN = (*_FIELDS, ScimToken.revoked_at)

_INSERT = compile_statement(
    insert(ScimToken)
    .values(id=bindparam("id"), name=bindparam("name"), token_hash=bindparam("token_hash"))
    .returning(*_SHOWN)
)
_LIST = compile_statement(select(*_SHOWN).order_by(ScimToken.created_at, ScimToken.id))
# Revoked at once: the next request with it finds no live row. `revoked_now`: whether
# this statement revoked it (RETURNING sees the new row; now() is the transaction's).
_REVOKE = compile_statement(
    update(ScimToken)
    .where(ScimToken.id == bindparam("id"))
    .values(revoked_at=func.coalesce(ScimToken.revoked_at, func.now()))
    .returning(*_SHOWN, (ScimToken.revoked_at == func.now()).label("revoked_now"))
)
# One statement per request: the live token's id; its use recorded at most once a
# minute, so parallel requests of one client do not queue on the token's row lock.
_USE = Statement(
    sql="""
WITH found AS (
    SELECT id, last_used_at FROM scim_tokens WHERE token_hash = $1 AND revoked_at IS NULL
), touched AS (
    UPDATE scim_tokens SET last_used_at = now() FROM found
    WHERE scim_tokens.id = found.id
      AND (found.last_used_at IS NULL OR found.last_used_at < now() - interval '1 minute')
)
SELECT id FROM found
""",
    names=("token_hash",),
)


def hash_token(token: str) -> str:
    """SHA-256 is enough: the token is 256 random bits, not a password to guess."""
    return hashlib.sha256(token.encode()).hexdigest()


def _as_dict(record: Record) -> dict[str, Any]:
    return {
        name: record[name] for name in ("id", "name", "created_at", "last_used_at", "revoked_at")
    }


@dataclass(frozen=True, slots=True)
class ScimTokens:
    db: Database
    events: EventWriter

    async def create(self, name: str) -> tuple[dict[str, Any], str]:
        """A new token: its row, and the token itself (shown once, never stored)."""
        token = PREFIX + secrets.token_urlsafe(32)
        values = {"id": uuid7(), "name": name, "token_hash": hash_token(token)}

        async def insert_token(unit: Unit) -> Record:
            record = await unit.one(_INSERT, **values)
            assert record is not None  # INSERT ... RETURNING
            await self._record(unit, "scim_token.created", record)
            return record

        return _as_dict(await self.db.run(insert_token)), token

    async def list(self) -> list[dict[str, Any]]:
        async def read(unit: Unit) -> list[Record]:
            return await unit.all(_LIST)

        return [_as_dict(record) for record in await self.db.run(read, transaction=False)]

    async def revoke(self, token_id: uuid.UUID) -> dict[str, Any]:
        async def revoke(unit: Unit) -> Record:
            record = await unit.one(_REVOKE, id=token_id)
            if record is None:
                raise NotFound("No provisioning token with this id.")
            if record["revoked_now"]:  # revoking a revoked token changes nothing
                await self._record(unit, "scim_token.revoked", record)
            return record

        return _as_dict(await self.db.run(revoke))

    async def _record(self, unit: Unit, type: str, record: Record) -> None:
        """The token's event, by the system (only the CLI manages tokens); its name, never
        the token or its hash."""
        await self.events.write(
            unit,
            type,
            actor=SYSTEM,
            subject_type="scim_token",
            subject_id=record["id"],
            data={"name": record["name"]},
        )

    async def authenticate(self, token: str | None) -> uuid.UUID | None:
        """The id of the live token `token` is, or None (unknown, revoked, or none sent)."""
        if not token or not token.startswith(PREFIX) or len(token) > 200:
            return None
        token_hash = hash_token(token)

        async def use(unit: Unit) -> uuid.UUID | None:
            found: uuid.UUID | None = await unit.value(_USE, token_hash=token_hash)
            return found

        return await self.db.run(use, transaction=False)
