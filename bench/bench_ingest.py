"""Ingest throughput of the collector (SQLite; PostgreSQL with one and two replicas) against a bare gRPC echo.

The same signed envelopes (20 agents of 1 tenant, then of 4 tenants; 10 rows per batch, chained
seqs) are submitted by one client process with 32 calls in flight to: a bare ``Ingest`` echo
server (decodes the request, replies; no checks, no storage) — the baseline —, a collector on
SQLite, a collector on PostgreSQL, and two collector replicas sharing one PostgreSQL database
(calls alternate between them, as behind a load balancer). Every server is its own process
running :func:`collector.server.serve`, the code ``hush-collector serve`` runs. Printed: batches/s
of each and its ratio to the echo measured in the same run. PostgreSQL rows are skipped with a
note when no server answers at 127.0.0.1:5432. No assertions.
Run: ``python -m bench.bench_ingest [N]`` (N batches per configuration, default 1500;
``HUSH_BENCH_ROUNDS`` rounds, default 2, the best kept). With ``HUSH_BENCH_PROFILE=DIR`` every
server process writes its cProfile to DIR (``python -m pstats``), which is how the time per batch
in docs/operations.md was split up.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import grpc
import nacl.signing

from collector.server import serve
from collector.store import Store
from collector.store.pg.store import open_pg_store
from collector.store.sqlite.store import SqliteStore
from hushmetric import dsse
from hushmetric.batch import Batch, Noise, Privacy, Row, Window, encode_batch, payload_digest
from hushmetric.keys import generate_signing_key, load_signing_key
from hushmetric.timefmt import format_rfc3339
from hushmetric.v1 import ingest_pb2, ingest_pb2_grpc
from hushmetric.wire import envelope_to_proto

__all__ = ["main"]

AGENTS = 20
ROWS = 10
IN_FLIGHT = 32
PG_SERVER = "postgresql://{user}@127.0.0.1:5432"


Agents = list[tuple[str, str, bytes]]  # (tenant, agent, public key)


def envelopes(n: int, now: float, tenants: int = 1) -> tuple[list[ingest_pb2.Envelope], Agents]:
    keys = [nacl.signing.SigningKey(bytes([i + 1]) * 32) for i in range(AGENTS)]
    prev = [""] * AGENTS
    out = []
    for i in range(n):
        a = i % AGENTS
        payload = encode_batch(
            Batch(
                v=1,
                tenant=f"t{a % tenants}",
                agent=f"edge-{a:02d}",
                seq=i // AGENTS + 1,
                prev=prev[a],
                created=format_rfc3339(now),
                window=Window(format_rfc3339(now - 60), format_rfc3339(now)),
                policy="ab" * 32,
                privacy=Privacy("user", None, None, 0.01),
                redactions={},
                rows=[
                    Row(f"m{r}", "count", {"region": f"r{r}"}, float(r), Noise("gaussian", 1.5))
                    for r in range(ROWS)
                ],
            )
        )
        prev[a] = payload_digest(payload)
        out.append(envelope_to_proto(dsse.sign(payload, dsse.BATCH_PAYLOAD_TYPE, keys[a])))
    return out, [(f"t{a % tenants}", f"edge-{a:02d}", bytes(k.verify_key)) for a, k in enumerate(keys)]


# -- servers (each in its own process: ``python -m bench.bench_ingest --serve KIND DB KEY``) ---------


class _Echo(ingest_pb2_grpc.IngestServicer):
    async def Submit(  # gRPC method names are CamelCase
        self, request: ingest_pb2.Envelope, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.SubmitReply:
        return ingest_pb2.SubmitReply(seq=len(request.payload))


async def _serve(kind: str, db: str, key_file: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if kind == "echo":
        server = grpc.aio.server()
        ingest_pb2_grpc.add_IngestServicer_to_server(_Echo(), server)  # type: ignore[no-untyped-call]  # generated
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(f"127.0.0.1:{port}", flush=True)
        await stop.wait()
        await server.stop(1)
        return
    key = load_signing_key(Path(key_file))
    store: Store
    if kind == "sqlite":
        store = await SqliteStore.open(Path(db), signing_key=key)
    else:
        # the pool as the URL sizes it (``pool_max``), else 10
        store = await open_pg_store(db, signing_key=key, max_size=None if "pool_max=" in db else 10)
    try:
        await serve(store, "127.0.0.1:0", stop=stop, on_bound=lambda a: print(a, flush=True), grace_seconds=1)
    finally:
        await store.close()
        print(f"commit_groups={getattr(store, 'commit_groups', 0)}", flush=True)


@contextmanager
def _servers(
    kind: str,
    db: str,
    key_file: Path,
    count: int = 1,
    pids: list[int] | None = None,
    groups: list[int] | None = None,
) -> Iterator[list[str]]:
    """``count`` server processes; their addresses (into ``pids`` their process ids, and into
    ``groups``, once they stopped, the ingest transactions each committed)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.bench_ingest", "--serve", kind, db, str(key_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    if pids is not None:
        pids.extend(p.pid for p in procs)
    try:
        addresses = []
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            if not re.fullmatch(r"127\.0\.0\.1:\d+", line):
                raise RuntimeError(f"{kind} server did not start (exit {p.poll()})")
            addresses.append(line)
        yield addresses
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout is not None:
                said = re.search(r"commit_groups=(\d+)", p.stdout.read())
                if groups is not None and said:
                    groups.append(int(said[1]))
                p.stdout.close()


# -- client ------------------------------------------------------------------------------------------


async def _drive(addresses: Sequence[str], batch: Sequence[ingest_pb2.Envelope]) -> tuple[float, int]:
    """Submit every envelope once (round robin over the addresses); (seconds, failures)."""
    channels = [grpc.aio.insecure_channel(a) for a in addresses]
    stubs = [ingest_pb2_grpc.IngestStub(c) for c in channels]  # type: ignore[no-untyped-call]  # generated
    failures = 0
    queue = iter(enumerate(batch))

    async def worker() -> None:
        nonlocal failures
        for i, env in queue:
            try:
                await stubs[i % len(stubs)].Submit(env, timeout=60)
            except grpc.aio.AioRpcError:
                failures += 1

    for channel in channels:  # connect first; not part of the measurement
        await asyncio.wait_for(channel.channel_ready(), 30)
    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        return time.perf_counter() - started, failures
    finally:
        for c in channels:
            await c.close()


# -- databases -------------------------------------------------------------------------------------


async def _setup(store: Store, agents: Agents, now: float) -> None:
    for tenant in sorted({t for t, _, _ in agents}):
        await store.create_tenant(tenant, now=now)
    for tenant, agent, public_key in agents:
        await store.add_key(tenant, agent, public_key, now=now)


async def _pg_admin() -> tuple[str, asyncpg.Connection] | None:
    for user in ("postgres", "root"):
        base = PG_SERVER.format(user=user)
        try:
            return base, await asyncpg.connect(f"{base}/postgres", timeout=5)
        except (OSError, TimeoutError, asyncpg.PostgresError):
            continue
    return None


def _line(label: str, rates: list[float], failures: int, echo: float | None) -> None:
    rate = max(rates)
    ratio = f"{rate / echo:6.3f}" if echo else "     -"
    runs = " / ".join(f"{r:.0f}" for r in rates)
    note = f"  ({failures} calls failed)" if failures else ""
    print(
        f"{label:<28} {rate:7.0f} batches/s {rate * ROWS:8.0f} rows/s  ratio {ratio}   runs {runs}{note}",
        flush=True,
    )


class _Bench:
    """One configuration per method; each returns (batches/s, failed calls) for a fresh database."""

    def __init__(self, tmp: Path, batch: list[ingest_pb2.Envelope], agents: Agents) -> None:
        self.tmp, self.batch, self.agents, self.now = tmp, batch, agents, time.time()
        self.key_file = tmp / "collector.key"
        generate_signing_key(self.key_file)
        self.key = load_signing_key(self.key_file)
        self.runs = 0

    async def _measure(self, kind: str, db: str, replicas: int = 1) -> tuple[float, int]:
        with _servers(kind, db, self.key_file, replicas) as addrs:
            seconds, failures = await _drive(addrs, self.batch)
        return len(self.batch) / seconds, failures

    async def echo(self) -> tuple[float, int]:
        return await self._measure("echo", "-")

    async def sqlite(self) -> tuple[float, int]:
        self.runs += 1
        db = self.tmp / f"collector{self.runs}.db"
        store = await SqliteStore.open(db, signing_key=self.key, create=True)
        try:
            await _setup(store, self.agents, self.now)
        finally:
            await store.close()
        return await self._measure("sqlite", str(db))

    async def postgres(self, admin: tuple[str, asyncpg.Connection], replicas: int) -> tuple[float, int]:
        base, conn = admin
        name = f"hush_bench_{os.getpid()}_{secrets.token_hex(3)}"
        await conn.execute(f'CREATE DATABASE "{name}"')
        url = f"{base}/{name}"
        try:
            store = await open_pg_store(url, signing_key=self.key, create=True)
            try:
                await _setup(store, self.agents, self.now)
            finally:
                await store.close()
            return await self._measure("postgres", url, replicas)
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _scenario(
    n: int, rounds: int, tenants: int, admin: tuple[str, asyncpg.Connection] | None
) -> dict[str, float]:
    """The best batches/s of each configuration (the echo under ``echo``)."""
    batch, agents = envelopes(n, time.time(), tenants)
    print(f"\n{n} batches of {ROWS} rows from {AGENTS} agents of {tenants} tenant(s):", flush=True)
    results: dict[str, list[float]] = {}
    failed: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="hush-bench-") as tmp:
        bench = _Bench(Path(tmp), batch, agents)
        configs: list[tuple[str, Callable[[], Awaitable[tuple[float, int]]]]] = [
            ("bare gRPC echo (baseline)", bench.echo),
            ("collector, SQLite", bench.sqlite),
        ]
        if admin is not None:
            pg = admin
            configs += [
                ("collector, PostgreSQL x1", lambda: bench.postgres(pg, 1)),
                ("collector, PostgreSQL x2", lambda: bench.postgres(pg, 2)),
            ]
        for _ in range(rounds):  # interleaved, so a noisy moment hits every configuration alike
            for label, run in configs:
                rate, failures = await run()
                results.setdefault(label, []).append(rate)
                failed[label] = failed.get(label, 0) + failures
    echo = max(results["bare gRPC echo (baseline)"])
    for label, rates in results.items():
        _line(label, rates, failed[label], None if label.startswith("bare") else echo)
    if admin is None:
        print("collector, PostgreSQL: skipped (no server answers at 127.0.0.1:5432)")
    best = {label: max(rates) for label, rates in results.items()}
    best["echo"] = echo
    return best


class _Report(Protocol):  # bench.report.Report, when ``make bench`` passes one
    def add(self, section: str, name: str, value: float, unit: str, **kw: Any) -> Any: ...


# (figure, configuration, goal on the ratio to the echo) for the summary table of ``make bench``
_GOALS = (("collector, SQLite", 0.5), ("collector, PostgreSQL x1", 0.4))


def _rows(report: _Report, by_tenants: dict[int, dict[str, float]]) -> None:
    """The collector rows of the summary table: ingest ÷ echo per store and tenant count, and one
    tenant ÷ four tenants on PostgreSQL (its meter rows are the shared ones)."""
    for tenants, best in by_tenants.items():
        for label, goal in _GOALS:
            if label in best:
                ratio = best[label] / best["echo"]
                report.add(
                    "collector",
                    f"ingest, {label.removeprefix('collector, ')}, {tenants} tenant(s)",
                    best[label],
                    "batches/s",
                    baseline=best["echo"],
                    baseline_name="bare gRPC echo",
                    goal=f">= {goal}",
                    met=ratio >= goal,
                )
    one, four = by_tenants.get(1, {}), by_tenants.get(4, {})
    label = "collector, PostgreSQL x1"
    if label in one and label in four:
        # each against its own echo: the two scenarios ran at different moments of a noisy machine
        ratio = (one[label] / one["echo"]) / (four[label] / four["echo"])
        report.add(
            "collector",
            "ingest, PostgreSQL x1, 1 tenant ÷ 4 tenants (each ÷ its echo)",
            ratio,
            "",
            goal=">= 0.9",
            met=ratio >= 0.9,
        )


async def _bench(n: int, rounds: int, report: _Report | None = None) -> None:
    print(
        f"{IN_FLIGHT} calls in flight from one client process; best of {rounds} rounds, interleaved "
        f"(machines here are shared and noisy); {os.cpu_count()} CPUs shared by the client, the "
        "servers and PostgreSQL, so a second replica adds throughput only where CPU is left over. "
        "Concurrent ingests share a commit (group commit): one transaction and one WAL flush per group.",
        flush=True,
    )
    admin = await _pg_admin()
    by_tenants: dict[int, dict[str, float]] = {}
    try:
        for tenants in (1, 4):
            by_tenants[tenants] = await _scenario(n, rounds, tenants, admin)
    finally:
        if admin is not None:
            await admin[1].close()
    if report is not None:
        _rows(report, by_tenants)


def main(argv: Sequence[str] | None = None, report: _Report | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--serve"]:
        profile = os.environ.get("HUSH_BENCH_PROFILE")  # a directory: each server writes its cProfile there
        if profile:
            import cProfile  # only when profiling

            with cProfile.Profile() as prof:
                asyncio.run(_serve(*args[1:4]))
            prof.dump_stats(Path(profile) / f"{args[1]}-{os.getpid()}.prof")
            return
        asyncio.run(_serve(*args[1:4]))
        return
    n = int(args[0]) if args and args[0].isdigit() else int(os.environ.get("HUSH_BENCH_N", "1500"))
    asyncio.run(_bench(n, int(os.environ.get("HUSH_BENCH_ROUNDS", "2")), report))


if __name__ == "__main__":
    main()
