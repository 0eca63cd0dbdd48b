"""PostgreSQL for tests: a fresh, uniquely named database on 127.0.0.1:5432, dropped afterwards.

The server is reached as ``postgres``, else as ``root`` (trust auth on loopback). Tests are skipped
(with the reason) only when no server answers at all; a server that answers but refuses both users
is an error, not a skip. Database names carry this run's id (``hush_t<pid>_<random>_<n>``), so
leftovers of a killed run are recognisable and never collide with another run.

Use::

    @pytest.fixture
    async def pg_url() -> AsyncIterator[str]:
        async with temp_database() as url:
            yield url
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

__all__ = ["HOST", "PORT", "RUN_ID", "server_url", "temp_database"]

HOST, PORT = "127.0.0.1", 5432
USERS = ("postgres", "root")
RUN_ID = f"{os.getpid()}_{secrets.token_hex(3)}"
_counter = itertools.count(1)
_found: list[str] = []  # the first user/server URL that answered, without a database


async def server_url() -> str:
    """``postgresql://USER@127.0.0.1:5432`` for the first user that can log in; skip if no server."""
    if _found:
        return _found[0]
    unreachable: list[str] = []
    refused: list[str] = []
    for user in USERS:
        base = f"postgresql://{user}@{HOST}:{PORT}"
        for db in ("postgres", "test"):
            try:
                conn = await asyncpg.connect(f"{base}/{db}", timeout=5)
            except (OSError, TimeoutError) as exc:
                unreachable.append(f"{user}/{db}: {exc}")
                continue
            except asyncpg.PostgresError as exc:
                refused.append(f"{user}/{db}: {exc}")
                continue
            await conn.close()
            _found.append(base)
            return base
    if refused:
        raise RuntimeError(f"PostgreSQL at {HOST}:{PORT} answers but refuses us: {'; '.join(refused)}")
    pytest.skip(f"no PostgreSQL server answers at {HOST}:{PORT} ({'; '.join(unreachable)})")


async def _admin(base: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(f"{base}/postgres", timeout=5)
    except asyncpg.InvalidCatalogNameError:
        return await asyncpg.connect(f"{base}/test", timeout=5)


@asynccontextmanager
async def temp_database() -> AsyncIterator[str]:
    """Create a new empty database, yield its URL, and drop it (closing any left connections)."""
    base = await server_url()
    name = f"hush_t{RUN_ID}_{next(_counter)}"
    conn = await _admin(base)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"{base}/{name}"
    finally:
        conn = await _admin(base)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
