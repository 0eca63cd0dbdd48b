"""Test kit for the collector: a driven clock, agents that build and sign real batches, a server handle."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import nacl.signing
import pytest

from collector.ingest_refusals import RefusalBuffer
from collector.store import Store
from hushmetric import dsse
from hushmetric.batch import Row, payload_digest
from hushmetric.keys import key_id
from hushmetric.timefmt import parse_rfc3339
from hushmetric.v1 import ingest_pb2_grpc
from hushmetric.wire import envelope_to_proto
from tests import batchkit

T0 = parse_rfc3339("2026-03-10T12:00:00Z")
STORE_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Agent:
    """A test agent: its own key, a seq counter and a prev chain, producing real signed batches."""

    tenant: str
    agent: str
    key: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    seq: int = 0
    prev: str = ""
    created: float = T0

    @property
    def public_key(self) -> bytes:
        return bytes(self.key.verify_key)

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def rows(self, n: int) -> list[Row]:
        return batchkit.rows(n, base=10)

    def payload(
        self, *, rows: int = 1, seq: int | None = None, prev: str | None = None, **over: Any
    ) -> bytes:
        return batchkit.payload(
            tenant=self.tenant,
            agent=self.agent,
            seq=seq if seq is not None else self.seq + 1,
            prev=prev if prev is not None else self.prev,
            created=self.created,
            released=self.rows(rows),
            redactions={"email": 2},
            over=over,
        )

    def sign(self, payload: bytes, payload_type: str = dsse.BATCH_PAYLOAD_TYPE) -> dsse.Envelope:
        return dsse.sign(payload, payload_type, self.key)

    def next(self, *, rows: int = 1, **over: Any) -> dsse.Envelope:
        """The next batch of the chain (advances seq and prev)."""
        payload = self.payload(rows=rows, **over)
        self.seq += 1
        self.prev = payload_digest(payload)
        return self.sign(payload)


@dataclass
class Server:
    address: str
    channel: grpc.aio.Channel
    stub: ingest_pb2_grpc.IngestStub
    refusals: RefusalBuffer  # unattributed refusals held in memory by the server
    store: Store

    async def submit(self, envelope: dsse.Envelope) -> Any:
        return await self.stub.Submit(envelope_to_proto(envelope))

    async def flush(self) -> int:
        """Write the refusals the server holds in memory now (it does so every few seconds)."""
        return await self.refusals.flush(self.store)


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


CLI = [sys.executable, "-m", "collector.cli"]


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Hush:
    """Runs ``hush-collector`` against one database in a scratch directory."""

    cwd: Path

    @property
    def db(self) -> Path:
        return self.cwd / "c.db"

    def __call__(self, *args: str, db: bool = True, env: dict[str, str] | None = None) -> Result:
        argv = [*CLI, *args, *(["--db", str(self.db)] if db else [])]
        proc = subprocess.run(
            argv, cwd=self.cwd, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str) -> str:
        r = self(*args)
        assert r.code == 0, r
        return r.out


def one_line_error(r: Result, code: int, pattern: str) -> None:
    assert r.code == code, r
    assert "Traceback" not in r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert re.search(pattern, lines[0]), lines[0]


@dataclass
class Served:
    address: str
    proc: subprocess.Popen[str]


@contextlib.contextmanager
def serving(hush: Hush, *extra: str) -> Iterator[Served]:
    """``hush-collector serve`` on a free loopback port; SIGTERM and a clean exit afterwards."""
    proc = subprocess.Popen(
        [*CLI, "serve", "--listen", "127.0.0.1:0", "--db", str(hush.db), *extra],
        cwd=hush.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert re.fullmatch(r"127\.0\.0\.1:\d+", address), address
        yield Served(address, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


# -- hostile tar members (issue 10, defect 1): sparse files expand far beyond their bytes ---------

EXPANDED = 1 << 20  # what each sparse member claims once its hole is filled in


def checksummed(header: bytearray) -> bytes:
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % sum(header)
    return bytes(header)


def gnu_sparse_member(name: str) -> bytes:
    """A GNU old-style sparse member ('S'), built from raw header bytes (tarfile cannot write one):
    one 512-byte block stored, a hole of EXPANDED - 512 bytes before it."""
    info = tarfile.TarInfo(name)
    info.size = 512
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    assert len(header) == 512
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[386:398] = b"%011o\x00" % (EXPANDED - 512)  # sparse[0].offset
    header[398:410] = b"%011o\x00" % 512  # sparse[0].numbytes
    header[482] = 0  # no extension blocks
    header[483:495] = b"%011o\x00" % EXPANDED  # realsize
    return checksummed(header) + b"x" * 512


def pax_sparse_member(name: str) -> bytes:
    """A PAX 1.0 sparse member: GNU.sparse.* records, then a data block holding the map (one entry)
    before the one stored block."""
    data_map = f"1\n{EXPANDED - 512}\n512\n".encode().ljust(512, b"\x00")
    info = tarfile.TarInfo(f"GNUSparseFile.0/{name.rsplit('/', 1)[-1]}")
    info.size = len(data_map) + 512
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": name,
        "GNU.sparse.realsize": str(EXPANDED),
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data_map + b"x" * 512))
    return strip_end(out.getvalue())


def strip_end(tar: bytes) -> bytes:
    """The members of a tar without its end-of-archive zero blocks (so members can be concatenated)."""
    end = len(tar)
    while end >= 512 and tar[end - 512 : end] == bytes(512):
        end -= 512
    return tar[:end]
