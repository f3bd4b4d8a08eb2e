"""Sessions: one factory per app, one session and one transaction per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Yield a session inside one transaction, committed when the handler returns.

    The dependency is declared with ``scope="function"`` below, so FastAPI runs the code
    after ``yield`` as soon as the path operation returns and *before* the response is
    sent: a failed commit propagates as an error response instead of a 2xx for data
    that was never stored. Any exception from the handler rolls the transaction back.
    """
    async with transaction(request.app.state.session_factory) as session:
        yield session


@asynccontextmanager
async def transaction(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session in one transaction: committed when the block ends, rolled back on error."""
    async with factory() as session, session.begin():
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
