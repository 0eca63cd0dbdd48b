"""Choosing and opening a :class:`~collector.store.Store` from a ``--db`` URL.

``PATH``, ``sqlite:PATH`` or ``sqlite:///PATH`` open the embedded SQLite store; ``postgresql://``
is reserved for the PostgreSQL store.
"""

from __future__ import annotations

from pathlib import Path

import nacl.signing

from collector.store import Store
from hushmetric.errors import ConfigError

__all__ = ["DEFAULT_DB", "default_key_path", "open_store", "sqlite_path"]

DEFAULT_DB = "./hushmetric.db"


def sqlite_path(url: str) -> Path | None:
    """The SQLite file a URL names, or None for a server URL."""
    if url.startswith(("postgresql://", "postgres://")):
        return None
    for prefix in ("sqlite:///", "sqlite://", "sqlite:"):
        if url.startswith(prefix):
            url = url[len(prefix) :]
            break
    if not url:
        raise ConfigError("--db must name a file or a postgresql:// URL")
    return Path(url)


def default_key_path(url: str) -> Path:
    """The collector's audit key lives next to a SQLite database (``<db>.key``), else in the cwd."""
    path = sqlite_path(url)
    return Path(f"{path}.key") if path is not None else Path("collector.key")


async def open_store(
    url: str, *, signing_key: nacl.signing.SigningKey | None = None, create: bool = False
) -> Store:
    path = sqlite_path(url)
    if path is None:
        from collector.store.pg.store import open_pg_store  # asyncpg is an optional extra ([postgres])

        return await open_pg_store(url, signing_key=signing_key, create=create)
    from collector.store.sqlite.store import SqliteStore  # the backend is chosen at run time

    return await SqliteStore.open(path, signing_key=signing_key, create=create)
