"""Start-up integrity check of the collector's SQLite database: detect, quarantine, salvage, say so.

``hush-collector serve`` calls :func:`check_db` before opening the store. A database that SQLite
cannot read through (``PRAGMA quick_check`` fails, or reading a table raises — a truncated file,
garbage pages, not a database at all) is moved aside to ``<db>.corrupt-<ts>`` (its ``-wal`` and
``-shm`` too), every row that can still be read is copied into a fresh database under the original
name, and the report says what was lost, table by table, so the operator can restore from a backup.
The collector then starts on the salvaged database.

Why this is safe for the guarantees: the key registry, tenants and quotas live in small early pages
and usually survive; a batch whose row was lost is simply absent (agents removed it from their outbox
when it was acknowledged, so it is not re-sent, and nothing is metered twice); a lost audit entry
breaks the audit chain, which ``audit verify`` then reports. The quarantined original stays on disk.

Synchronous stdlib sqlite3: it runs before the event loop opens the store.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from hushmetric.salvage import problems as sqlite_problems
from hushmetric.salvage import salvage as salvage_rows

__all__ = ["DbCheck", "check_db", "salvage"]

log = logging.getLogger("hush.collector.integrity")

_SIDE = ("", "-wal", "-shm")


class DbCheck(msgspec.Struct, frozen=True):
    ok: bool
    quarantined: list[str] = []  # files moved aside (new names)
    salvaged: dict[str, int] = {}  # table -> rows copied into the fresh database
    unreadable: dict[str, int] = {}  # table -> rows the original claimed but could not be read
    problems: list[str] = []

    def message(self) -> str:
        if self.ok:
            return "database integrity ok"
        parts = list(self.problems)
        if self.quarantined:
            parts.append("quarantined " + ", ".join(self.quarantined))
        parts.append(
            f"serving a salvaged database ({sum(self.salvaged.values())} rows kept"
            + (
                ", lost: " + ", ".join(f"{t} {n}" for t, n in sorted(self.unreadable.items()) if n)
                if any(self.unreadable.values())
                else ""
            )
            + "); restore from a backup if one is newer"
        )
        return "; ".join(parts)


def salvage(src: Path, dst: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Copy every readable row of ``src`` into a new database ``dst`` (schema from ``src``).

    Returns (rows copied per table, rows lost per table where ``src`` still knew its row count).
    Rate-limit buckets are rewritten in place, so their highest rowid says nothing about losses.
    """
    rows = salvage_rows(src, dst)
    return rows.copied, {t: (0 if t == "buckets" else n) for t, n in rows.lost.items()}


def check_db(db: Path, *, clock: Callable[[], float] = time.time) -> DbCheck:
    """Check ``db`` before serving; quarantine and salvage it when it cannot be read. Never raises for
    a damaged database (a missing one is left to the store's own "run init first" error)."""
    if not db.exists():
        return DbCheck(ok=True)
    problems = sqlite_problems(db)
    if not problems:
        return DbCheck(ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    moved: list[str] = []
    for side in _SIDE:
        src = db.with_name(db.name + side)
        if src.exists():
            dst = src.with_name(f"{src.name}.corrupt-{stamp}")
            src.replace(dst)
            moved.append(dst.name)
    work = Path(tempfile.mkdtemp(prefix=".salvage-", dir=db.parent))
    try:
        for name in moved:
            base = name.rsplit(".corrupt-", 1)[0]
            if base in (db.name, db.name + "-wal"):
                shutil.copyfile(db.parent / name, work / base.replace(db.name, "s.db"))
        copied, lost = salvage(work / "s.db", db)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = DbCheck(False, moved, copied, lost, problems)
    log.error("database integrity: %s", report.message())
    return report
