"""Proof family 4 — storage corruption between runs: detect, quarantine, say so, start; never a
silently under-counted privacy ledger.

State is built by real ``hush-agent run --once`` runs delivering to a real collector (canaries in
the input). Then one fault per case, on the agent's ``state/agent.db`` and its ``-wal``, or on the
collector's database:

- ``truncate-db``: the database cut to half its size;
- ``garbage-db``: random bytes over the middle half of the file;
- ``zero-header``: the first 100 bytes zeroed ("file is not a database");
- ``delete-db``: ``agent.db`` removed, ``ledger.head`` kept;
- ``truncate-wal`` / ``corrupt-wal``: the WAL (holding the last run's commits: a reader held a
  snapshot so nothing was checkpointed) emptied, or a byte flipped in its first half — SQLite then
  *silently* drops the committed frames from there on, the most dangerous case: a ledger that
  forgot charges of batches the collector already holds;
- ``wal-garbage-tail`` (control): random bytes appended to the WAL — SQLite ignores them, nothing is
  lost, and the check must not raise a false alarm.

Checks, with :mod:`agent.integrity` (the head written as the wired runtime would after each release):
the damage is detected, unreadable files are quarantined, readable rows salvaged, the state opens
again (the daemon can start), releases are blocked until an operator acknowledges, and — after the
acknowledgement — the ledger's ρ is at least the ρ of every batch that exists (collector, outbox).
Figures: faults, detected, quarantined, blocked, silent under-counts (must be 0), salvaged rows.

The end-to-end test through the CLI (the daemon itself runs the check and refuses releases) is
``xfail(strict=True)`` until ``agent.integrity`` is wired into ``agent/runtime.py`` and
``agent/cli/`` (and ``collector.store.integrity`` into ``serve``): it turns green — and must — once the
wiring lands. Until then a separate figure records what the current runtime does with each fault.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import integrity, ledger
from agent.policy import load_policy
from agent.runtime import SCHEMAS
from agent.state import open_state
from collector.store import integrity as collector_integrity
from tests.proof.agentkit import AgentDir, Canaries, event_lines, scan_files, window_counts
from tests.proof.proofkit import Collector, Figures, pick

pytestmark = pytest.mark.timeout(pick(240, 900))

FAMILY = "4 storage corruption"
ROOT = Path(__file__).resolve().parents[2]
AGENT_WIRED = (
    "integrity" in (ROOT / "agent/runtime.py").read_text()
    and any("acknowledge" in p.read_text() for p in (ROOT / "agent/cli").glob("*.py"))
)
COLLECTOR_WIRED = "integrity" in (ROOT / "collector/cli/ops.py").read_text()
ROUNDS = pick(1, 4)  # independent repetitions of each case (new state, new random damage)


def _events(path: Path, start: float, n: int, canaries: Canaries, tag: str) -> Path:
    stamps = [start + i * 0.25 for i in range(n)]
    path.write_bytes(event_lines(0, stamps, canaries, tag))
    return path


def _hold_snapshot(db: Path) -> subprocess.Popen[bytes]:
    """A reader holding a read transaction: no checkpoint can pass it, so the WAL keeps every later
    commit; killed with SIGKILL so that it does not checkpoint on close either."""
    code = (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "c.execute('BEGIN'); c.execute('SELECT COUNT(*) FROM privacy_total').fetchall()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"held"
    return proc


def _record_head(agent: AgentDir) -> None:
    conn = sqlite3.connect(agent.db, isolation_level=None)
    try:
        integrity.record_head(agent.state, conn)
    finally:
        conn.close()


def _existing_rho(collector: Collector, agent: AgentDir) -> float:
    return sum(rho for _, rho, _ in window_counts(collector, agent).by_seq.values())


def _truncate(path: Path, keep: float) -> None:
    with path.open("r+b") as f:
        f.truncate(int(path.stat().st_size * keep))


def _garbage(path: Path, rng: random.Random) -> None:
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 4)
        f.write(rng.randbytes(size // 2))


def _zero_header(path: Path, rng: random.Random) -> None:
    with path.open("r+b") as f:
        f.write(b"\0" * 100)


def _flip_wal(path: Path, rng: random.Random) -> None:
    size = path.stat().st_size
    pos = rng.randrange(32, size // 2)  # past the WAL header: drops that frame and every later one
    with path.open("r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ 0xFF]))


def _append(path: Path, rng: random.Random) -> None:
    with path.open("ab") as f:
        f.write(rng.randbytes(10_000))


Damage = Callable[[AgentDir, random.Random], None]
CASES: dict[str, tuple[bool, Damage]] = {
    # name: (the WAL must hold the last run, damage)
    "truncate-db": (False, lambda a, r: _truncate(a.db, 0.5)),
    "garbage-db": (False, lambda a, r: _garbage(a.db, r)),
    "zero-header": (False, lambda a, r: _zero_header(a.db, r)),
    "delete-db": (False, lambda a, r: a.db.unlink()),
    "truncate-wal": (True, lambda a, r: _truncate(a.db.with_name("agent.db-wal"), 0.0)),
    "corrupt-wal": (True, lambda a, r: _flip_wal(a.db.with_name("agent.db-wal"), r)),
    "wal-garbage-tail": (True, lambda a, r: _append(a.db.with_name("agent.db-wal"), r)),
}
HARMLESS = {"wal-garbage-tail"}  # nothing is lost: no alarm allowed
EITHER = {"corrupt-wal"}  # what is lost depends on the frame hit: detect a ledger loss, or lose none


async def _prepared(tmp: Path, wal: bool, rng: random.Random) -> tuple[Collector, AgentDir, Canaries]:
    """Two delivered runs; with ``wal``, the second one's commits left in the WAL only."""
    canaries = Canaries.make(rng)
    collector = Collector(tmp / "collector")
    collector.init()
    collector.ok("tenant", "create", "proof")
    address = await collector.start()
    agent = AgentDir(tmp / "agent")
    agent.init(sources="", endpoint=address)
    agent.register(collector)
    base = time.time() - 3 * 3600
    # declared ranges (the window schedule never comes from the data): 600 events span 150 s
    first = agent.run_once(_events(tmp / "in1.jsonl", base, 600, canaries, "a"), start=base, stop=base + 900)
    assert first.code == 0, first.err
    _record_head(agent)
    holder = _hold_snapshot(agent.db) if wal else None
    try:
        second = agent.run_once(_events(tmp / "in2.jsonl", base + 900, 600, canaries, "b"), stop=base + 1200)
        assert second.code == 0, second.err
        _record_head(agent)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
            if holder.stdout is not None:
                holder.stdout.close()
    if wal:
        assert agent.db.with_name("agent.db-wal").stat().st_size > 4096
    return collector, agent, canaries


@pytest.mark.parametrize("case", sorted(CASES))
async def test_agent_state_corruption_is_detected_quarantined_and_blocks_releases(
    case: str, tmp_path: Path, figures: Figures
) -> None:
    started = time.monotonic()
    rng = random.Random(f"corruption-{case}")
    detected = quarantined = blocked = silent = salvaged = leaks = 0
    acknowledged: list[str] = []
    for round_ in range(ROUNDS):
        wal, damage = CASES[case]
        collector, agent, canaries = await _prepared(tmp_path / f"r{round_}", wal, rng)
        try:
            existing = _existing_rho(collector, agent)
            assert existing > 0
            damage(agent, rng)
            report = integrity.check_state(agent.state)
            detected += not report.ok
            quarantined += len(report.quarantined)
            salvaged += sum(report.salvaged.values())
            blocked += report.blocked
            for name in report.quarantined:
                assert (agent.state / name).exists()
            # the daemon can start: the state opens (fresh or salvaged) and the ledger is readable
            conn = open_state(agent.state, SCHEMAS)
            try:
                total = ledger.total(conn).rho
                if total < existing * (1 - 1e-9) and not report.blocked:
                    silent += 1
                if case in HARMLESS or (case in EITHER and report.ok):
                    assert report.ok, report.message()
                    assert not report.blocked, report.message()
                    assert total >= existing * (1 - 1e-9)
                else:
                    assert not report.ok, report.message()
                    assert report.blocked, report.message()
                    policy = load_policy(agent.root / "policy.toml")
                    acknowledged = integrity.acknowledge_reset(
                        agent.state, conn, policy, note=f"proof {case}"
                    )
                    assert not integrity.is_blocked(agent.state)
                    assert ledger.total(conn).rho >= existing * (1 - 1e-9), (ledger.total(conn), existing)
                    assert ledger.verify(conn).ok
            finally:
                conn.close()
            again = integrity.check_state(agent.state)
            assert again.ok, again.message()
            assert not again.blocked, again.message()
            hits, _, _ = scan_files([agent.state, collector.workdir], canaries)
            leaks += len(hits)
        finally:
            await collector.stop()
    figures.record(
        FAMILY,
        f"agent {case}",
        runs=ROUNDS,
        faults=ROUNDS,
        lost=silent,
        refused=blocked,
        seconds=time.monotonic() - started,
        detected=detected,
        quarantined=quarantined,
        salvaged_rows=salvaged,
        silent_undercount=silent,
        canary_hits=leaks,
        reset_charges=len(acknowledged),
    )
    figures.record("8b egress scan", f"after corruption {case}", runs=ROUNDS, faults=ROUNDS, lost=leaks)
    assert silent == 0
    assert leaks == 0


async def test_current_runtime_on_damaged_state(tmp_path: Path, figures: Figures) -> None:
    """What ``hush-agent`` does today with each fault (no wiring assumed): a figure, plus the hard
    rule that it never prints a traceback *and* silently under-counts at once."""
    rng = random.Random(4)
    outcomes: dict[str, str] = {}
    silent = 0
    for case in ("truncate-db", "truncate-wal"):
        wal, damage = CASES[case]
        collector, agent, _canaries = await _prepared(tmp_path / case, wal, rng)
        try:
            existing = _existing_rho(collector, agent)
            damage(agent, rng)
            empty = tmp_path / f"{case}-empty.jsonl"
            empty.write_bytes(b"")
            run = agent.run_once(empty)  # the daemon's start-up path, on no input
            if run.code != 0:
                outcomes[case] = "traceback" if "Traceback" in run.err else f"refuses (exit {run.code})"
                continue
            out = agent.cli("ledger", "--json")
            if out.code != 0:
                outcomes[case] = "traceback" if "Traceback" in out.err else f"refuses (exit {out.code})"
                continue
            spent = sum(p["spent"] for p in json.loads(out.out))
            blocked = integrity.is_blocked(agent.state)
            if spent < existing * (1 - 1e-9) and not blocked:
                silent += 1
                outcomes[case] = f"starts, ledger {spent:.4g} < batches {existing:.4g}"
            else:
                outcomes[case] = "blocked" if blocked else "ok"
        finally:
            await collector.stop()
    figures.record(
        FAMILY,
        "current runtime (wired)" if AGENT_WIRED else "current runtime (integrity not wired)",
        runs=len(outcomes),
        faults=len(outcomes),
        lost=silent,
        **{k.replace("-", "_"): v.replace(" ", "_") for k, v in outcomes.items()},
    )
    if AGENT_WIRED:
        assert silent == 0, outcomes


@pytest.mark.xfail(not AGENT_WIRED, reason="agent.integrity not wired into runtime/cli yet", strict=True)
async def test_daemon_detects_blocks_and_resumes_after_acknowledgement(
    tmp_path: Path, figures: Figures
) -> None:
    rng = random.Random(41)
    collector, agent, canaries = await _prepared(tmp_path, True, rng)
    try:
        existing = _existing_rho(collector, agent)
        CASES["truncate-wal"][1](agent, rng)
        later = time.time() - 3600
        more = _events(tmp_path / "in3.jsonl", later, 300, canaries, "c")
        run = agent.run_once(more, stop=later + 180)
        assert "Traceback" not in run.err, run.err
        assert "BLOCKED" in run.err or "blocked" in run.err.lower(), run.err
        report = json.loads(run.out)
        assert report["windows_released"] == 0, report
        ack = agent.cli("ledger", "--acknowledge-reset", "--note", "proof family 4")
        assert ack.code == 0, ack.err
        spent = sum(p["spent"] for p in json.loads(agent.cli("ledger", "--json").out))
        assert spent >= existing * (1 - 1e-9)
        again = agent.run_once(more, stop=later + 180)
        assert again.code == 0, again
        assert json.loads(again.out)["windows_released"] > 0, again
    finally:
        await collector.stop()


# -- the collector's database -----------------------------------------------------------------------

COLLECTOR_CASES: dict[str, Callable[[Path, random.Random], None]] = {
    "truncate": lambda p, r: _truncate(p, 0.6),
    "garbage": _garbage,
    "zero-header": _zero_header,
}


@pytest.mark.parametrize("case", sorted(COLLECTOR_CASES))
async def test_collector_db_corruption_is_quarantined_and_serve_starts(
    case: str, tmp_path: Path, figures: Figures
) -> None:
    started = time.monotonic()
    rng = random.Random(f"collector-{case}")
    collector, _agent, canaries = await _prepared(tmp_path, False, rng)
    await collector.stop()
    COLLECTOR_CASES[case](collector.db, rng)
    check = collector_integrity.check_db(collector.db)
    assert not check.ok, check
    assert check.quarantined
    assert all((collector.workdir / q).exists() for q in check.quarantined)
    with sqlite3.connect(collector.db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    started_ok = True
    try:
        await collector.start()
    except AssertionError:
        started_ok = False
    finally:
        await collector.stop()
    hits, _, _ = scan_files([collector.workdir], canaries)
    figures.record(
        FAMILY,
        f"collector {case}",
        runs=1,
        faults=1,
        crashes=0 if started_ok else 1,
        seconds=time.monotonic() - started,
        detected=1,
        quarantined=len(check.quarantined),
        salvaged_rows=sum(check.salvaged.values()),
        lost_rows=sum(n for n in check.unreadable.values() if n > 0),
        serve_starts=started_ok,
    )
    assert not hits
    assert started_ok, collector.logs[-1].read_text() if collector.logs else ""


@pytest.mark.xfail(
    not COLLECTOR_WIRED, reason="collector.store.integrity not wired into serve yet", strict=True
)
async def test_collector_serve_quarantines_by_itself(tmp_path: Path) -> None:
    rng = random.Random(5)
    collector, _agent, _ = await _prepared(tmp_path, False, rng)
    await collector.stop()
    _truncate(collector.db, 0.6)
    try:
        await collector.start()
        assert collector.alive()
    finally:
        await collector.stop()
    err = collector.logs[-1].read_text()
    assert "quarantined" in err, err
    assert any(".corrupt-" in p.name for p in collector.workdir.iterdir())
