"""Scale on paper: collector CPU per batch and database commits/s, on a production-sized pool.

The signed envelopes of :mod:`bench.bench_ingest` (4 tenants) are sent with 32 calls in flight to
(a) one collector on SQLite and (b) two collector replicas on one PostgreSQL database, each with
an asyncpg pool of :data:`POOL` connections (``?pool_max=``, as a production ``--db`` URL carries it).
Measured per configuration: batches/s; CPU seconds of the collector processes per batch (utime +
stime from ``/proc``); for PostgreSQL, the CPU of the pool's backends per batch, the ingest
commits per second and batches per commit (the ingest transactions each server counted). It prints
how many replicas and what database a tenant of 100k agents (about 330 batches/s) and a fleet of
1M agents (about 3,300 batches/s) need at 50 % CPU; docs/operations.md quotes a run. Linux only
(``/proc``); PostgreSQL rows are skipped when no server answers at 127.0.0.1:5432. No assertions.
Run: ``python -m bench.bench_scale [N]`` (N batches per configuration, default 2000).
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from bench.bench_ingest import _drive, _pg_admin, _servers, _setup, envelopes
from collector.store.pg.store import open_pg_store
from collector.store.sqlite.store import SqliteStore
from hushmetric.keys import generate_signing_key, load_signing_key

__all__ = ["main"]

POOL = 20  # connections per replica: 4 replicas x 20 stay under PostgreSQL's default max_connections 100
REPLICAS = 2
TENANT_RATE = 330.0  # batches/s of 100k agents releasing every 5 minutes
FLEET_RATE = 3300.0  # batches/s of 1M agents
BUSY = 0.5  # plan every process at half its CPU: headroom for bursts and a lost replica


class _Report(Protocol):  # bench.report.Report, when ``make bench`` passes one
    def add(self, section: str, name: str, value: float, unit: str, **kw: Any) -> Any: ...


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Figures:
    def __init__(self, label: str, batches: int, seconds: float, collector_cpu: float) -> None:
        self.label, self.batches, self.seconds = label, batches, seconds
        self.rate = batches / seconds
        self.cpu_ms = collector_cpu / batches * 1000
        self.db_cpu_ms: float | None = None
        self.commits_per_s: float | None = None
        self.per_commit: float | None = None

    def line(self) -> str:
        out = f"{self.label:<34} {self.rate:6.0f} batches/s  collector CPU {self.cpu_ms:5.2f} ms/batch"
        if self.commits_per_s is not None and self.per_commit is not None:
            out += f", {self.commits_per_s:4.0f} commits/s, {self.per_commit:4.1f} batches/commit"
        if self.db_cpu_ms is not None:
            out += f", PostgreSQL backends CPU {self.db_cpu_ms:5.2f} ms/batch"
        return out


async def _sqlite(tmp: Path, key_file: Path, batch: list[Any], agents: Any, now: float) -> Figures:
    db = tmp / "scale.db"
    store = await SqliteStore.open(db, signing_key=load_signing_key(key_file), create=True)
    try:
        await _setup(store, agents, now)
    finally:
        await store.close()
    pids: list[int] = []
    groups: list[int] = []
    with _servers("sqlite", str(db), key_file, 1, pids, groups) as addrs:
        before = sum(_cpu(p) for p in pids)
        seconds, _ = await _drive(addrs, batch)
        used = sum(_cpu(p) for p in pids) - before
    fig = Figures("collector, SQLite x1", len(batch), seconds, used)
    fig.commits_per_s = sum(groups) / seconds
    fig.per_commit = len(batch) / max(1, sum(groups))
    return fig


async def _postgres(
    admin: tuple[str, Any], key_file: Path, batch: list[Any], agents: Any, now: float
) -> Figures:
    base, conn = admin
    name = f"hush_scale_{os.getpid()}_{secrets.token_hex(3)}"
    await conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}"
    try:
        store = await open_pg_store(url, signing_key=load_signing_key(key_file), create=True)
        try:
            await _setup(store, agents, now)
        finally:
            await store.close()
        pids: list[int] = []
        groups: list[int] = []
        with _servers("postgres", f"{url}?pool_max={POOL}", key_file, REPLICAS, pids, groups) as addrs:
            before = sum(_cpu(p) for p in pids)
            seconds, _ = await _drive(addrs, batch)
            used = sum(_cpu(p) for p in pids) - before
            active = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
            backends = [int(r[0]) for r in active]
            db_cpu = sum(_cpu(p) for p in backends)  # since they connected: the run, and its setup
        commits = sum(groups)
        fig = Figures(f"collector, PostgreSQL x{REPLICAS}, pool {POOL}", len(batch), seconds, used)
        fig.db_cpu_ms = db_cpu / len(batch) * 1000
        fig.commits_per_s = commits / seconds
        fig.per_commit = len(batch) / max(1, commits)
        return fig
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _plan(fig: Figures) -> list[str]:
    out = []
    for what, rate in (("a 100k-agent tenant", TENANT_RATE), ("a 1M-agent fleet", FLEET_RATE)):
        cores = rate * fig.cpu_ms / 1000 / BUSY
        line = f"  {what} ({rate:,.0f} batches/s): {cores:4.1f} collector cores"
        line += f" = {max(1, math.ceil(cores))} single-core replicas at {BUSY:.0%} CPU"
        if fig.db_cpu_ms is not None:
            db_cores = rate * fig.db_cpu_ms / 1000 / BUSY
            line += f"; PostgreSQL {db_cores:4.1f} cores for the ingest backends"
        out.append(line)
    return out


async def _bench(n: int, report: _Report | None) -> None:
    now = time.time()
    batch, agents = envelopes(n, now, tenants=4)
    print(
        f"{n} batches of 10 rows, 20 agents of 4 tenants, 32 calls in flight; collector CPU from /proc "
        f"of the server processes; {os.cpu_count()} CPUs shared by client, servers and PostgreSQL.",
        flush=True,
    )
    figures: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="hush-scale-") as tmp:
        key_file = Path(tmp) / "collector.key"
        generate_signing_key(key_file)
        figures.append(await _sqlite(Path(tmp), key_file, batch, agents, now))
        admin = await _pg_admin()
        if admin is None:
            print("collector, PostgreSQL: skipped (no server answers at 127.0.0.1:5432)")
        else:
            try:
                figures.append(await _postgres(admin, key_file, batch, agents, now))
            finally:
                await admin[1].close()
    for fig in figures:
        print(fig.line())
        print("\n".join(_plan(fig)))
        if report is not None:
            report.add("collector", f"{fig.label}: CPU per batch", fig.cpu_ms, "ms")
            if fig.commits_per_s is not None:
                report.add("collector", f"{fig.label}: commits/s", fig.commits_per_s, "commits/s")


def main(argv: Sequence[str] | None = None, report: _Report | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    n = int(args[0]) if args and args[0].isdigit() else int(os.environ.get("HUSH_BENCH_SCALE_N", "2000"))
    asyncio.run(_bench(n, report))


if __name__ == "__main__":
    main()
