"""Proof family 9 — audit integrity: every single-entry edit, deletion, insertion, reorder and
truncation of the collector's audit export and of the agent's egress ledger is detected offline.

Collector: a real audit log (admin actions and coalesced refusals written by the CLI and the ingest
path), exported by ``audit export`` (full and tenant-filtered with signed stubs), then mutated line
by line and checked with :func:`collector.audit.verify` — only the public key — and, for a sample,
with ``hush-collector audit verify`` as a subprocess (exit 1, one line, no traceback).

Agent: an egress ledger (batches to gRPC and bundles, stop/resume) exported with ``to_jsonl``; each
mutation is parsed with ``from_jsonl`` and checked with ``verify_entries`` against the head noted
before (count and hash), including the strongest forger who re-hashes every entry after the edit.
The ledger table in the state database is also edited in place and checked with ``verify``.

A mutation is *detected* when verification fails with the module's typed error or a not-ok result;
any other exception counts as a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import nacl.signing
import pytest

from agent import egress
from agent.state import open_state, transaction
from collector import audit
from collector.errors import AuditError
from hushmetric.keys import parse_public_key
from tests.proof.proofkit import LONG, Collector, Figures, Signer, pick, submit

pytestmark = pytest.mark.timeout(pick(300, 1500))

FAMILY = "9 audit"
Mutation = tuple[str, list[bytes]]  # (kind, mutated lines)
GARBAGE = [
    b"{}",
    b"null",
    b"\xff\xfe{",
    b'{"t":"entry","i":"\xff"}',
    b'{"t":"entry","zz":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b"[" * 100_000,
]


def _changed(value: Any) -> Any:
    """A different value of a JSON-compatible field (never equal to the original)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, str):
        if len(value) == 64 and all(ch in "0123456789abcdef" for ch in value):
            return ("1" if value[0] != "1" else "2") + value[1:]  # a hash that is still well formed
        if len(value) == 128:
            return ("1" if value[0] != "1" else "2") + value[1:]  # a signature still hex
        return value + "x"
    if value is None:
        return "x"
    if isinstance(value, dict):
        if value:
            k = sorted(value)[0]
            return {**value, k: _changed(value[k])}
        return {"injected": 1}
    raise AssertionError(type(value))


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _sample(n: int, k: int, rng: random.Random) -> list[int]:
    return list(range(n)) if LONG or n <= k else sorted({0, n - 1, *rng.sample(range(n), k)})


def mutations(
    lines: list[bytes], rng: random.Random, *, rehash: Callable[[dict[str, Any]], None]
) -> Iterator[Mutation]:
    """Single-entry edits (every field, with and without a recomputed hash), deletions, insertions,
    reorders and truncations of a list of JSON lines."""
    n = len(lines)
    for i in _sample(n, pick(12, n), rng):
        obj = json.loads(lines[i])
        for key in obj:
            if key == "t":
                continue
            edited = {**obj, key: _changed(obj[key])}
            yield f"edit {key}", [*lines[:i], _dump(edited), *lines[i + 1 :]]
            if key not in ("hash", "sig"):
                rehashed = dict(edited)
                rehash(rehashed)
                yield f"edit {key} + rehash", [*lines[:i], _dump(rehashed), *lines[i + 1 :]]
        yield "delete", [*lines[:i], *lines[i + 1 :]]
        j = rng.randrange(n)
        yield "insert duplicate", [*lines[:j], lines[i], *lines[j:]]
        if i + 1 < n:
            yield "reorder (swap next)", [*lines[:i], lines[i + 1], lines[i], *lines[i + 2 :]]
        if i + 2 < n:
            moved = [*lines[:i], *lines[i + 1 :]]
            k = rng.randrange(i + 1, n)
            yield "reorder (move)", [*moved[:k], lines[i], *moved[k:]]
    for i in _sample(n, pick(4, n), rng):  # a line replaced by garbage a parser might choke on
        for junk in GARBAGE:
            yield "garbage line", [*lines[:i], junk, *lines[i + 1 :]]
    for cut in _sample(n, pick(8, n), rng):
        if cut < n:
            yield "truncate", lines[:cut]
            if cut < n - 1:
                yield "truncate (keep last)", [*lines[:cut], lines[-1]]


# -- the collector's audit log -----------------------------------------------------------------------


async def _collector_log(tmp_path: Path) -> Collector:
    c = Collector(tmp_path / "collector")
    c.init()
    for t in ("acme", "globex"):
        c.ok("tenant", "create", t)
        c.ok("quota", "set", t, "--rows-per-day", "1000", "--max-age", "7d")
    signers = [Signer("acme" if i % 2 else "globex", f"a{i}") for i in range(pick(6, 40))]
    for s in signers:
        c.add_agent(s)
    async with c.serving() as stub:
        for s in signers[:3]:
            await submit(stub, s.sign(s.payload(tenant="nobody")))  # refused and audited
            await submit(stub, s.next()[2])
    c.ok("key", "retire", signers[0].key_id)
    c.ok("key", "revoke", signers[1].key_id)
    c.ok("tenant", "suspend", "globex")
    c.ok("enroll-token", "acme")
    return c


async def test_collector_audit_export_detects_every_single_entry_mutation(
    tmp_path: Path, figures: Figures
) -> None:
    started = time.monotonic()
    c = await _collector_log(tmp_path)
    public = parse_public_key(c.ok("pubkey"))
    key = nacl.signing.SigningKey.generate()  # a forger's key: signs well-formed but foreign entries
    rng = random.Random(9)
    tried = detected = crashes = 0
    by_kind: dict[str, list[int]] = {}
    cli_samples: list[list[bytes]] = []
    for scope in ("full", "tenant"):
        out = c.workdir / f"export-{scope}.jsonl"
        c.ok("audit", "export", "--out", str(out), *(["--tenant", "acme"] if scope == "tenant" else []))
        lines = out.read_bytes().splitlines()
        assert audit.verify(lines, public).count == len(lines) - 1

        def rehash(obj: dict[str, Any]) -> None:
            if obj.get("t") == "entry":
                body = audit._body(
                    obj["i"], obj["ts"], obj["action"], obj["tenant"], obj["details"], obj["prev"]
                )
                obj["hash"] = hashlib.sha256(body).hexdigest()
                obj["sig"] = key.sign(
                    audit._entry_message(obj["i"], obj["prev"], obj["hash"])
                ).signature.hex()
            elif obj.get("t") == "stub":
                obj["sig"] = key.sign(
                    audit._entry_message(obj["i"], obj["prev"], obj["hash"])
                ).signature.hex()
            else:
                obj["sig"] = key.sign(
                    audit._end_message(obj["count"], obj["head"], obj["ts"])
                ).signature.hex()

        # a forged entry, well formed and signed by another key, inserted anywhere
        forged = audit.make_entry(
            index=len(lines),
            prev="0" * 64,
            ts="2026-01-01T00:00:00Z",
            action="tenant.delete",
            tenant="acme",
            details={},
            key=key,
        )
        extra: list[Mutation] = [
            (f"insert forged at {j}", [*lines[:j], msgspec.json.encode(forged), *lines[j:]])
            for j in _sample(len(lines), 6, rng)
        ]
        for kind, mutated in [*mutations(lines, rng, rehash=rehash), *extra]:
            kind = f"{scope}: {kind.split(' at ')[0]}"
            tried += 1
            try:
                audit.verify(mutated, public)
            except AuditError:
                detected += 1
                by_kind.setdefault(kind, [0, 0])[1] += 1
            except Exception:  # anything but the typed error is a crash of the verifier
                crashes += 1
            else:
                by_kind.setdefault(kind, [0, 0])
            by_kind[kind][0] += 1
            if len(cli_samples) < pick(4, 16) and rng.random() < 0.05:
                cli_samples.append(mutated)

    # the operator's path: `hush-collector audit verify` on a sample of mutated exports
    pub_b64 = c.ok("pubkey").strip()
    cli_detected = 0
    for n, mutated in enumerate(cli_samples):
        path = c.workdir / f"mutated-{n}.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in mutated))
        r = await asyncio.to_thread(c.cli, "audit", "verify", str(path), "--public-key", pub_b64)
        assert "Traceback" not in r.err, r
        assert len(r.err.strip().splitlines()) == 1, r
        cli_detected += r.code == 1
    missed = {k: v for k, v in by_kind.items() if v[0] != v[1]}
    assert not missed, (missed, crashes)
    assert crashes == 0, (missed, crashes)
    assert cli_detected == len(cli_samples)
    figures.record(
        FAMILY,
        "collector audit export",
        runs=tried,
        faults=tried,
        crashes=crashes,
        seconds=time.monotonic() - started,
        detected=f"{detected}/{tried}",
        cli_verify_detected=f"{cli_detected}/{len(cli_samples)}",
        kinds=len(by_kind),
    )


# -- the agent's egress ledger -------------------------------------------------------------------------


def _fill(conn: sqlite3.Connection, n: int, rng: random.Random) -> None:
    with transaction(conn):
        for seq in range(1, n + 1):
            if seq % 7 == 3:
                egress.stop(conn, reason=f"incident {seq}", at=1000.0 + seq)
                egress.resume(conn, at=1000.5 + seq)
            dest = "grpc:127.0.0.1:7443" if seq % 5 else f"bundle:b{seq}.tar"
            egress.record(
                conn,
                destination=dest,
                seq=seq,
                digest=hashlib.sha256(b"%d" % seq).hexdigest(),
                nbytes=rng.randrange(100, 5000),
                rows=rng.randrange(1, 50),
                at=1000.0 + seq + rng.random(),
            )


def _egress_detects(data: list[bytes], count: int, head: str) -> tuple[bool, bool]:
    """(detected with the noted head, detected by the chain alone)."""
    try:
        items = egress.from_jsonl(b"\n".join(data) + b"\n")
    except msgspec.DecodeError:
        return True, True
    chained = not egress.verify_entries(items).ok
    return not egress.verify_entries(items, expected_count=count, expected_head=head).ok, chained


def _egress_rehash_from(lines: list[bytes], i: int, obj: dict[str, Any]) -> list[bytes]:
    """The strongest forger: after editing entry ``i``, recompute it and every later entry's links and hashes."""
    out = list(lines[:i])
    prev = json.loads(lines[i - 1])["hash"] if i > 0 else ""
    for j, raw in enumerate(lines[i:], start=i):
        e = obj if j == i else json.loads(raw)
        e = {**e, "prev": prev, "index": j + 1}  # renumbered too: only the noted head can tell
        entry = msgspec.convert(e, egress.EgressEntry)
        e["hash"] = egress.entry_hash(entry)
        prev = e["hash"]
        out.append(_dump(e))
    return out


def test_egress_ledger_detects_every_single_entry_mutation(tmp_path: Path, figures: Figures) -> None:
    started = time.monotonic()
    rng = random.Random(99)
    conn = open_state(tmp_path / "state", [egress.SCHEMA])
    try:
        _fill(conn, pick(30, 300), rng)
        count, head = egress.head(conn)
        items = egress.entries(conn)
        assert egress.verify(conn).ok
        assert count == len(items)
        lines = egress.to_jsonl(items).splitlines()
        assert egress.from_jsonl(b"\n".join(lines)) == items

        def rehash(obj: dict[str, Any]) -> None:
            with contextlib.suppress(msgspec.ValidationError):  # an ill-typed edit keeps its old hash
                obj["hash"] = egress.entry_hash(msgspec.convert({**obj, "hash": ""}, egress.EgressEntry))

        tried = detected = chain_only = crashes = 0
        by_kind: dict[str, list[int]] = {}
        cases: list[Mutation] = list(mutations(lines, rng, rehash=rehash))
        for i in _sample(len(lines), pick(10, len(lines)), rng):
            obj = json.loads(lines[i])
            for key in ("at", "destination", "seq", "digest", "nbytes", "rows", "reason"):
                if obj[key] is not None:  # keep the entry well typed: the forger wants it to parse
                    edited = {**obj, key: _changed(obj[key])}
                    cases.append((f"edit {key} + rehash suffix", _egress_rehash_from(lines, i, edited)))
            if i + 1 < len(lines):
                rest = [*lines[:i], *lines[i + 1 :]]
                cases.append(("delete + rehash suffix", _egress_rehash_from(rest, i, json.loads(rest[i]))))
        for kind, mutated in cases:
            tried += 1
            try:
                found, by_chain = _egress_detects(mutated, count, head)
            except Exception:  # anything but a typed failure is a crash of the verifier
                crashes += 1
                continue
            slot = by_kind.setdefault(kind, [0, 0])
            slot[0] += 1
            slot[1] += found
            detected += found
            chain_only += by_chain

        # in place, in the state database: edit, delete, insert a row; egress.verify(conn) must fail
        db_tried = db_detected = 0
        for idx in (pos + 1 for pos in _sample(count, pick(6, count), rng)):  # idx is 1-based
            for column, value in (("nbytes", 1), ("destination", "'grpc:evil:1'"), ("rows", "rows + 1")):
                conn.execute("SAVEPOINT m")
                conn.execute(f"UPDATE egress_ledger SET {column} = {value} WHERE idx = ?", (idx,))
                db_tried += 1
                db_detected += not egress.verify(conn).ok
                conn.execute("ROLLBACK TO m")
                conn.execute("RELEASE m")
            conn.execute("SAVEPOINT m")
            conn.execute("DELETE FROM egress_ledger WHERE idx = ?", (idx,))
            db_tried += 1
            db_detected += not egress.verify(conn).ok
            conn.execute("ROLLBACK TO m")
            conn.execute("RELEASE m")
        assert egress.verify(conn).ok  # the savepoints undid every edit
    finally:
        conn.close()
    missed = {k: v for k, v in by_kind.items() if v[0] != v[1]}
    assert not missed, (missed, crashes)
    assert crashes == 0, (missed, crashes)
    assert db_detected == db_tried
    figures.record(
        FAMILY,
        "egress ledger export (with head)",
        runs=tried,
        faults=tried,
        crashes=crashes,
        seconds=time.monotonic() - started,
        detected=f"{detected}/{tried}",
        by_chain_alone=f"{chain_only}/{tried}",
        kinds=len(by_kind),
    )
    figures.record(
        FAMILY,
        "egress ledger in the state db",
        runs=db_tried,
        faults=db_tried,
        detected=f"{db_detected}/{db_tried}",
    )
