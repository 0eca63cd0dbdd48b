"""Start-up integrity check of the agent's state: detect, quarantine, salvage, and block releases
until an operator acknowledges — never start silently with an under-counted privacy ledger.

What can go wrong with ``state/agent.db`` (and its ``-wal``) between runs, and what happens:

- **Unreadable** (truncated, garbage pages, not a database; ``PRAGMA quick_check`` fails or
  reading raises): the files are moved aside to ``agent.db.corrupt-<ts>`` (``-wal``/``-shm`` too),
  every row still readable is copied into a fresh ``agent.db`` (journal, outbox, ledger…: an
  acknowledged event or a signed batch that can be read is not thrown away), and the ledger is
  marked unverified.
- **Readable but inconsistent**: :func:`agent.ledger.verify` fails (running total ≠ sum of charges).
- **Rolled back**: SQLite silently ignores a truncated or corrupt WAL from the first bad frame on,
  and a restored backup is older than the truth — committed charges vanish without any error. To
  catch it, :func:`record_head` writes ``ledger.head`` (total ρ/ε/δ, releases and last seq, spend
  per period) next to the database after every release, atomically; a database whose ledger is
  *behind* its head was rolled back. (``agent.db`` gone while the head remains counts too.)

In each case a ``LEDGER_UNVERIFIED`` marker (JSON: when, why, what was quarantined) is written into
the state directory, and :attr:`IntegrityReport.blocked` stays true — the runtime refuses releases,
keeping the windows in the journal — until ``hush-agent ledger --acknowledge-reset --note TEXT``
(:func:`acknowledge_reset`) restores the ledger to at least the last head (a ``reset`` charge per
period for what is missing; without a readable head, the whole cap of the current period) and
removes the marker. Over-counting is the safe direction; under-counting never happens silently.

Pure stdlib + :mod:`agent.ledger` (which owns every read and write of the ledger tables: this module
checks the files and the head, and decides what to charge); synchronous; called once before
:func:`agent.state.open_state`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from agent import ledger
from agent.policy import Policy
from agent.release import Release
from agent.state import STATE_FILE, transaction
from hushmetric.salvage import problems as sqlite_problems
from hushmetric.salvage import salvage as salvage_rows

__all__ = [
    "HEAD_FILE",
    "MARKER",
    "Head",
    "IntegrityReport",
    "acknowledge_reset",
    "check_state",
    "is_blocked",
    "read_head",
    "record_head",
    "salvage",
]

log = logging.getLogger("hush.agent.integrity")

MARKER = "LEDGER_UNVERIFIED"
HEAD_FILE = "ledger.head"
_SLACK = 1e-9
_SIDE = ("", "-wal", "-shm")


class Head(msgspec.Struct, frozen=True):
    """The ledger's high-water mark, written after every release."""

    releases: int
    rho: float
    epsilon: float
    delta: float
    last_seq: int
    periods: dict[str, tuple[float, float, float]] = {}  # period -> (rho, epsilon, delta) charged
    at: float = 0.0


class IntegrityReport(msgspec.Struct, frozen=True):
    ok: bool  # nothing wrong found now
    blocked: bool  # releases must wait for ``acknowledge_reset`` (marker present)
    quarantined: list[str] = []  # files moved aside (new names)
    salvaged: dict[str, int] = {}  # table -> rows copied into the fresh database
    problems: list[str] = []

    def message(self) -> str:
        if self.ok and not self.blocked:
            return "state integrity ok"
        parts = list(self.problems)
        if self.quarantined:
            parts.append("quarantined " + ", ".join(self.quarantined))
        if self.salvaged:
            parts.append(f"salvaged {sum(self.salvaged.values())} readable rows into a fresh database")
        if self.blocked:
            parts.append(
                "releases are BLOCKED until an operator runs "
                "`hush-agent ledger --acknowledge-reset --note TEXT`"
            )
        return "; ".join(parts)


# -- the head ---------------------------------------------------------------------------------------

_head_decoder = msgspec.json.Decoder(Head)


def record_head(state_dir: Path, conn: sqlite3.Connection, *, clock: Callable[[], float] = time.time) -> Head:
    """Write ``ledger.head`` from the committed ledger (call after each release's COMMIT)."""
    total = ledger.total(conn)
    periods = ledger.charged_by_period(conn)
    head = Head(
        total.releases, total.rho, total.epsilon, total.delta, ledger.last_seq(conn), periods, clock()
    )
    _write_atomic(state_dir / HEAD_FILE, msgspec.json.encode(head))
    return head


def read_head(state_dir: Path) -> Head | None:
    """The recorded head; None when there is none. Raises ``ValueError`` when it is unreadable."""
    path = state_dir / HEAD_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return _head_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path.name} is unreadable: {exc}") from exc


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# -- the check --------------------------------------------------------------------------------------


def is_blocked(state_dir: Path) -> bool:
    return (state_dir / MARKER).exists()


def _mark(state_dir: Path, reasons: list[str], quarantined: list[str], now: float) -> None:
    path = state_dir / MARKER
    previous: list[object] = []
    if path.exists():
        try:
            previous = list(json.loads(path.read_text()).get("history", []))
        except (OSError, ValueError, AttributeError):
            previous = []
    doc = {"at": now, "reasons": reasons, "quarantined": quarantined}
    _write_atomic(path, json.dumps({**doc, "history": [*previous, doc]}, indent=2).encode() + b"\n")


# quick_check does not decode every record: read what the ledger and delivery depend on, too.
_CHECKED_TABLES = ("privacy_charge", "privacy_total", "outbox", "journal_blocks")


def _blank(db: Path) -> bool:
    """A database with no table at all: a first start stopped before its schema committed (the
    schema is created in one transaction). Nothing was ever recorded in it, so nothing can be lost."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return False
    try:
        return int(conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]) == 0
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def _quick_check(db: Path) -> list[str]:
    """Problems reading ``db`` (empty when it is sound)."""
    return sqlite_problems(db, _CHECKED_TABLES)


def _quarantine(db: Path, now: float) -> list[str]:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    moved = []
    for side in _SIDE:
        src = db.with_name(db.name + side)
        if src.exists():
            dst = src.with_name(f"{src.name}.corrupt-{stamp}")
            src.replace(dst)
            moved.append(dst.name)
    return moved


def salvage(src: Path, dst: Path) -> dict[str, int]:
    """Copy every readable row of ``src`` into a new database ``dst``; rows copied per table."""
    return salvage_rows(src, dst).copied


def _salvage_quarantined(state_dir: Path, moved: list[str], db: Path) -> dict[str, int]:
    """Salvage from copies of the quarantined files (database and its WAL under matching names, so
    SQLite applies the WAL's valid frames); the quarantined originals stay untouched."""
    work = Path(tempfile.mkdtemp(prefix=".salvage-", dir=state_dir))
    try:
        for name in moved:
            base = name.rsplit(".corrupt-", 1)[0]
            if base in (STATE_FILE, STATE_FILE + "-wal"):
                shutil.copyfile(state_dir / name, work / base.replace(STATE_FILE, "s.db"))
        return salvage(work / "s.db", db)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_state(state_dir: Path, *, clock: Callable[[], float] = time.time) -> IntegrityReport:
    """Check ``state_dir`` before the agent opens it; quarantine, salvage and mark as needed.

    Never raises for damaged state (only for a state directory it cannot write to); the report says
    what was found and whether releases are blocked.
    """
    now = clock()
    db = state_dir / STATE_FILE
    problems: list[str] = []
    quarantined: list[str] = []
    salvaged: dict[str, int] = {}
    if not state_dir.exists():
        return IntegrityReport(ok=True, blocked=False)
    try:
        head = read_head(state_dir)
    except ValueError as exc:
        problems.append(str(exc))
        head = None
        quarantined += _quarantine(state_dir / HEAD_FILE, now)
    if db.exists() and not _blank(db):
        unreadable = _quick_check(db)
        if unreadable:
            problems += unreadable
            moved = _quarantine(db, now)
            quarantined += moved
            salvaged = _salvage_quarantined(state_dir, moved, db)
        else:
            problems += _ledger_problems(db, head)
    elif head is not None and head.releases > 0:
        problems.append(f"{STATE_FILE} is missing but {HEAD_FILE} records {head.releases} releases")
    elif not db.exists() and (db.with_name(STATE_FILE + "-wal")).exists():
        problems.append(f"{STATE_FILE}-wal exists without {STATE_FILE}")
        quarantined += _quarantine(db, now)
    if problems:
        _mark(state_dir, problems, quarantined, now)
        log.error(
            "state integrity: %s",
            "; ".join(problems),
            extra={"fields": {"quarantined": quarantined, "salvaged": salvaged}},
        )
    blocked = is_blocked(state_dir)
    return IntegrityReport(not problems, blocked, quarantined, salvaged, problems)


def _ledger_problems(db: Path, head: Head | None) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        check = ledger.verify(conn)
        total = ledger.total(conn)
        last_seq = ledger.last_seq(conn)
    except sqlite3.Error as exc:
        return [f"{db.name}: cannot read the privacy ledger: {exc}"]
    finally:
        conn.close()
    problems = [f"privacy ledger inconsistent: {p}" for p in check.problems]
    if head is not None:
        behind = []
        if total.releases < head.releases:
            behind.append(f"{head.releases - total.releases} releases")
        for name in ("rho", "epsilon", "delta"):
            have, want = getattr(total, name), getattr(head, name)
            if have < want * (1 - _SLACK) - 1e-15:
                behind.append(f"{name} {want - have:.6g}")
        if last_seq < head.last_seq:
            behind.append(f"seq {last_seq} < {head.last_seq}")
        if behind:
            problems.append(
                f"privacy ledger is behind {HEAD_FILE} ({', '.join(behind)}): "
                "committed charges were lost (truncated WAL or restored backup)"
            )
    return problems


# -- the operator's acknowledgement -----------------------------------------------------------------


def acknowledge_reset(
    state_dir: Path,
    conn: sqlite3.Connection,
    policy: Policy,
    *,
    note: str,
    clock: Callable[[], float] = time.time,
) -> list[str]:
    """Bring the ledger back to at least its last head, remove the marker; returns what was charged.

    For each period of the head the database is short of, a ``reset`` charge (negative seq, no
    batch) makes up the difference; without a readable head, the current period's whole cap is
    charged (nothing more may be released today). The acknowledgement and ``note`` are appended to
    ``integrity.log``. Runs in one transaction on ``conn`` (the opened state).
    """
    if not note.strip():
        raise ValueError("an acknowledgement needs a note (who, why)")
    now = clock()
    try:
        head = read_head(state_dir)
    except ValueError:
        head = None
    have = ledger.charged_by_period(conn)
    wanted = dict(head.periods) if head is not None else {}
    current = ledger.period_of(policy, int(now))
    if head is None:
        cap = ledger.cap_of(policy)
        zcdp = policy.budget.mechanism == "zcdp"
        wanted[current] = (cap if zcdp else 0.0, 0.0 if zcdp else cap, 0.0)
    done: list[str] = []
    with transaction(conn):
        seq = ledger.reset_seq(conn)
        for period, (rho, eps, delta) in sorted(wanted.items()):
            got = have.get(period, (0.0, 0.0, 0.0))
            missing = (max(rho - got[0], 0.0), max(eps - got[1], 0.0), max(delta - got[2], 0.0))
            if not any(m > 0 and not math.isclose(m, 0.0, abs_tol=1e-15) for m in missing):
                continue
            seq -= 1
            ledger.charge(
                conn,
                period=period,
                release=Release(0, 0, [], missing[0] or None, missing[1] or None, missing[2] or None),
                seq=seq,
                clock=lambda: now,
            )
            ledger.refuse(conn, period=period, window_start=0, reason="ledger_reset", clock=lambda: now)
            done.append(f"{period}: rho {missing[0]:.6g} epsilon {missing[1]:.6g} delta {missing[2]:.6g}")
        # The running total may have been lost (or kept) apart from the charges: a total above the
        # charges is spent budget whose period is unknown — charged to the current period — and the
        # total is then rebuilt from the charges, so that ``ledger.verify`` holds again.
        sums = ledger.charged_total(conn)
        kept = ledger.total(conn)
        extra = (
            max(kept.rho - sums.rho, 0.0),
            max(kept.epsilon - sums.epsilon, 0.0),
            max(kept.delta - sums.delta, 0.0),
        )
        if any(
            x > _SLACK * max(abs(k), 1e-300)
            for x, k in zip(extra, (kept.rho, kept.epsilon, kept.delta), strict=True)
        ):
            seq -= 1
            ledger.charge(
                conn,
                period=current,
                release=Release(0, 0, [], extra[0] or None, extra[1] or None, extra[2] or None),
                seq=seq,
                clock=lambda: now,
            )
            done.append(
                f"{current}: rho {extra[0]:.6g} epsilon {extra[1]:.6g} delta {extra[2]:.6g} (running total)"
            )
        ledger.rebuild_total(conn)
    with (state_dir / "integrity.log").open("a", encoding="utf-8") as out:
        out.write(
            json.dumps({"at": now, "action": "acknowledge_reset", "note": note, "charged": done}) + "\n"
        )
    (state_dir / MARKER).unlink(missing_ok=True)
    record_head(state_dir, conn, clock=clock)
    return done
