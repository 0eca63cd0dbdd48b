"""Proof family 6 — quota exactness: many concurrent senders against small quotas.

Two ``hush-collector serve`` replicas share one SQLite database; 20 sender tasks (each its own agent
and channel) submit concurrently to both. For every kind of limit — rows per day, rows per month,
bytes per day, batches per second with a burst — the admitted amount is exactly the quota (uniform
batch sizes) or provably as close as possible (mixed sizes: every refused batch would have gone
over, even against the final total). Refused batches consume nothing: ``usage`` shows exactly the
rows, bytes and batches of the admitted ones, and the database holds exactly those batches.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hushmetric.batch import payload_digest
from hushmetric.v1 import ingest_pb2_grpc
from tests.proof.proofkit import Collector, Figures, Signer, pick, submit

pytestmark = pytest.mark.timeout(pick(300, 1500))

FAMILY = "6 quota"
SENDERS = 20


@dataclass
class Scenario:
    tenant: str
    flags: tuple[str, ...]
    sizes: str  # "uniform" or "mixed" rows per batch
    rows: int  # rows per batch (uniform) or the upper bound (mixed, 1..rows)
    per_sender: int
    limit_of: str  # what is limited: "rows", "bytes" or "batches"
    limit: int
    reason: str
    admitted: list[tuple[str, int, int, str]] = field(default_factory=list)  # (agent, rows, bytes, digest)
    refused: list[tuple[int, int]] = field(default_factory=list)  # (rows, bytes)
    other: list[str] = field(default_factory=list)


def scenarios() -> list[Scenario]:
    q = pick(60, 600)
    return [
        Scenario(
            "rows-day", ("--rows-per-day", str(q)), "uniform", 2, pick(6, 40), "rows", q, "quota_rows_day"
        ),
        Scenario(
            "rows-day-mixed", ("--rows-per-day", str(q)), "mixed", 5, pick(6, 40), "rows", q, "quota_rows_day"
        ),
        Scenario(
            "rows-month",
            ("--rows-per-month", str(q)),
            "uniform",
            3,
            pick(4, 30),
            "rows",
            q,
            "quota_rows_month",
        ),
        Scenario(
            "bytes-day",
            ("--bytes-per-day", str(q * 400)),
            "mixed",
            4,
            pick(6, 40),
            "bytes",
            q * 400,
            "quota_bytes_day",
        ),
        Scenario(
            "rate",
            ("--batches-per-second", "0.0001", "--burst", str(q // 3)),
            "uniform",
            1,
            pick(3, 20),
            "batches",
            q // 3,
            "rate_limited",
        ),
    ]


async def _sender(sc: Scenario, signer: Signer, stub: ingest_pb2_grpc.IngestStub, rng: random.Random) -> None:
    for _ in range(sc.per_sender):
        n = sc.rows if sc.sizes == "uniform" else rng.randint(1, sc.rows)
        seq, payload, env = signer.next(rows=n)
        reply = await submit(stub, env)
        if reply.code == "OK" and not reply.duplicate:
            sc.admitted.append((signer.agent, n, len(payload), payload_digest(payload)))
        elif reply.code == "RESOURCE_EXHAUSTED" and reply.reason == sc.reason:
            sc.refused.append((n, len(payload)))
        else:
            sc.other.append(f"{signer.agent}/{seq}: {reply}")
        await asyncio.sleep(0)


async def test_concurrent_senders_never_exceed_quota(tmp_path: Path, figures: Figures) -> None:
    started = time.monotonic()
    work = tmp_path / "collector"
    primary = Collector(work, tag="replica-a")
    primary.init()
    replica = Collector(work, tag="replica-b")
    scs = scenarios()
    signers: dict[str, list[Signer]] = {}
    for sc in scs:
        primary.ok("tenant", "create", sc.tenant)
        primary.ok("quota", "set", sc.tenant, *sc.flags)
        signers[sc.tenant] = [Signer(sc.tenant, f"s{i:02d}") for i in range(SENDERS)]
        for s in signers[sc.tenant]:
            primary.add_agent(s)
    rng = random.Random(6)
    async with primary.serving() as stub_a, replica.serving() as stub_b:
        for sc in scs:
            async with asyncio.TaskGroup() as tg:
                for i, s in enumerate(signers[sc.tenant]):
                    stub = stub_a if i % 2 == 0 else stub_b
                    tg.create_task(
                        _sender(sc, s, stub, random.Random(rng.random())), name=f"sender-{s.agent}"
                    )
        assert primary.alive()
        assert replica.alive()

    usage: dict[str, dict[str, Any]] = {}
    for d in primary.usage():  # summed over days, should the run cross a UTC midnight
        u = usage.setdefault(d["tenant"], {"batches": 0, "rows": 0, "bytes": 0, "refused": Counter()})
        for k in ("batches", "rows", "bytes"):
            u[k] += d[k]
        u["refused"].update(d["refused"])
    stored = primary.query("SELECT tenant, agent, digest, nrows, nbytes FROM batches")
    for sc in scs:
        assert not sc.other, sc.other
        assert sc.refused, f"{sc.tenant}: the quota was never reached; offer more"
        rows = sum(a[1] for a in sc.admitted)
        nbytes = sum(a[2] for a in sc.admitted)
        used = {"rows": rows, "bytes": nbytes, "batches": len(sc.admitted)}[sc.limit_of]
        assert used <= sc.limit, (sc.tenant, used, sc.limit)
        if sc.sizes == "uniform":
            assert used == sc.limit, (sc.tenant, used, sc.limit)
        else:  # every refused batch would have gone over even against the final total
            smallest = min(r[0] if sc.limit_of == "rows" else r[1] for r in sc.refused)
            assert used + smallest > sc.limit, (sc.tenant, used, smallest, sc.limit)
        day = usage[sc.tenant]
        assert (day["batches"], day["rows"], day["bytes"]) == (len(sc.admitted), rows, nbytes), (
            sc.tenant,
            day,
        )
        assert day["refused"] == {sc.reason: len(sc.refused)}, (sc.tenant, day["refused"])
        mine = sorted((a[0], a[3], a[1], a[2]) for a in sc.admitted)
        assert sorted((r[1], r[2], r[3], r[4]) for r in stored if r[0] == sc.tenant) == mine
        figures.record(
            FAMILY,
            f"{sc.tenant} ({sc.sizes})",
            runs=len(sc.admitted) + len(sc.refused),
            refused=len(sc.refused),
            limit=f"{sc.limit} {sc.limit_of}",
            admitted=used,
            consumed_by_refused=(day["rows"] - rows) + (day["bytes"] - nbytes),
        )
    assert not primary.tracebacks()
    assert not replica.tracebacks()
    figures.record(
        FAMILY,
        "TOTAL (2 replicas, 20 senders)",
        runs=sum(len(sc.admitted) + len(sc.refused) for sc in scs),
        refused=sum(len(sc.refused) for sc in scs),
        seconds=time.monotonic() - started,
        over_quota=0,
    )
