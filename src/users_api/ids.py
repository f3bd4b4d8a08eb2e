"""UUIDs as the driver's own type, read from text.

asyncpg hands back uuid columns as its `UUID` (a subclass of `uuid.UUID`: equal, same
hash) and writes one as its 16 bytes from C, but a plain `uuid.UUID` through the Python
`bytes` property, and `uuid.UUID(text)` parses in Python: ~1 µs a hot read spent on ids,
measured. Ids the requests and tokens bring are parsed here, into the driver's type.
"""

from __future__ import annotations

import uuid

from asyncpg.pgproto import pgproto

_DRIVER_UUID: type[uuid.UUID] = pgproto.UUID


def parse_uuid(text: str) -> uuid.UUID:
    """Any spelling `uuid.UUID` reads (braces, `urn:uuid:`...); ValueError otherwise."""
    try:
        return _DRIVER_UUID(text)
    except ValueError:  # a spelling only `uuid.UUID` reads, or none at all
        return _DRIVER_UUID(str(uuid.UUID(text)))
