"""What only the SQLite store promises: durability settings of its connection."""

from __future__ import annotations

from pathlib import Path

import nacl.signing

from collector.store.sqlite.store import SqliteStore


async def test_acknowledged_batches_survive_power_loss_synchronous_is_full(tmp_path: Path) -> None:
    store = await SqliteStore.open(
        tmp_path / "c.db", signing_key=nacl.signing.SigningKey.generate(), create=True
    )
    try:
        db = store._db  # the store's own connection: the pragma is per connection
        [(mode,)] = list(await db.execute_fetchall("PRAGMA journal_mode"))
        [(sync,)] = list(await db.execute_fetchall("PRAGMA synchronous"))
    finally:
        await store.close()
    assert mode == "wal"
    assert sync == 2  # FULL (NORMAL = 1 can lose the last commits of a WAL database on power loss)
