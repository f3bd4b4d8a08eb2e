"""The declarative base every model inherits from."""

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Deterministic constraint names: migrations can drop them by name, and the service
# maps an IntegrityError to the field it concerns by reading the name back.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """No `AsyncAttrs`: requests run compiled statements (`db/statements.py`), never a
    lazy load, and leaving it out keeps SQLAlchemy's asyncio layer and greenlet out of
    every worker (~1.6 MiB)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
