"""Statements written with SQLAlchemy, compiled once to asyncpg's `$n` form.

SQLAlchemy stays the language of the schema and of every statement (typed models, Core
constructs, Alembic); what runs per request is the compiled text, which asyncpg keeps
as a prepared statement per connection. Through the ORM or Core's DB-API layer a
statement cost ~150 µs of Python on top of asyncpg (bench/README.md has the profile).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it untyped


@dataclass(frozen=True, slots=True)
class Statement:
    """SQL in asyncpg's `$n` form, and the bind parameter each `$n` stands for."""

    sql: str
    names: tuple[str, ...]
    # `operator.itemgetter`: the values in `names` order, picked in C.
    _pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pick", _picker(self.names))

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        return self._pick(values)


def _picker(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    if len(names) > 1:
        pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] = itemgetter(*names)
        return pick
    return lambda values: tuple(values[name] for name in names)  # itemgetter(one) is no tuple


def compile_statement(statement: ClauseElement) -> Statement:
    """Compile once (at import, or once per query shape) and reuse for every request."""
    compiled = statement.compile(dialect=_DIALECT)
    assert isinstance(compiled, SQLCompiler)  # a statement, so SQL with positions
    return Statement(sql=str(compiled), names=tuple(compiled.positiontup or ()))
