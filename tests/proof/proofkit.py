"""Shared kit of the proof families: the size knob, the figures recorder, a real collector process
driven through its CLI, agents that sign real batches, and a gRPC client that reports status + reason.

Nothing here mocks gRPC, SQLite or MQTT: the collector is ``hush-collector serve`` in a subprocess on
127.0.0.1:0 over a real SQLite file, and the client is a real ``grpc.aio`` channel.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import nacl.signing

from collector import cli as collector_cli
from hushmetric import dsse
from hushmetric.batch import payload_digest
from hushmetric.keys import key_id, public_key_b64
from hushmetric.v1 import ingest_pb2_grpc
from hushmetric.wire import envelope_to_proto
from tests import batchkit

__all__ = [
    "LONG",
    "Collector",
    "Figures",
    "Reply",
    "Signer",
    "pick",
    "submit",
    "submit_raw",
]

LONG = os.environ.get("HUSH_PROOF") == "long"


def pick(short: Any, long: Any) -> Any:
    """The short value by default, the long one under ``HUSH_PROOF=long`` (same code either way)."""
    return long if LONG else short


# -- figures ---------------------------------------------------------------------------------------


@dataclass
class FigureRow:
    family: str
    check: str
    runs: int
    faults: int = 0
    lost: int = 0
    duplicated: int = 0
    refused: int = 0
    crashes: int = 0
    seconds: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Figures:
    """Rows of figures, one per (family, check); printed as one table at the end of the session."""

    path: Path
    mode: str
    rows: list[FigureRow] = field(default_factory=list)

    def record(
        self,
        family: str,
        check: str,
        *,
        runs: int,
        faults: int = 0,
        lost: int = 0,
        duplicated: int = 0,
        refused: int = 0,
        crashes: int = 0,
        seconds: float | None = None,
        **extras: Any,
    ) -> FigureRow:
        row = FigureRow(family, check, runs, faults, lost, duplicated, refused, crashes, seconds, extras)
        self.rows.append(row)
        return row

    def table(self) -> str:
        head = ("family", "check", "runs", "faults", "lost", "dup", "refused", "crashes", "secs", "extras")
        body = [
            (
                r.family,
                r.check,
                str(r.runs),
                str(r.faults),
                str(r.lost),
                str(r.duplicated),
                str(r.refused),
                str(r.crashes),
                "" if r.seconds is None else f"{r.seconds:.1f}",
                " ".join(f"{k}={v}" for k, v in r.extras.items()),
            )
            for r in sorted(self.rows, key=lambda r: (r.family, r.check))
        ]
        widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
        numeric = {2, 3, 4, 5, 6, 7, 8}

        def fmt(cells: Sequence[str]) -> str:
            return "  ".join(
                c.rjust(w) if i in numeric else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()

        return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(r) for r in body)])

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "rows": [
                {
                    "family": r.family,
                    "check": r.check,
                    "runs": r.runs,
                    "faults": r.faults,
                    "lost": r.lost,
                    "duplicated": r.duplicated,
                    "refused": r.refused,
                    "crashes": r.crashes,
                    "seconds": r.seconds,
                    **r.extras,
                }
                for r in self.rows
            ],
        }


# -- agents that sign real batches -----------------------------------------------------------------


def now_s() -> float:
    return float(int(time.time()))


@dataclass
class Signer:
    """An agent identity: its key, a seq counter and a prev chain, producing real signed batches."""

    tenant: str
    agent: str
    key: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    seq: int = 0
    prev: str = ""

    @property
    def public_b64(self) -> str:
        return public_key_b64(bytes(self.key.verify_key))

    @property
    def key_id(self) -> str:
        return key_id(bytes(self.key.verify_key))

    def payload(
        self,
        *,
        rows: int = 1,
        seq: int | None = None,
        prev: str | None = None,
        created: float | None = None,
        label: str = "r",
        **over: Any,
    ) -> bytes:
        return batchkit.payload(
            tenant=self.tenant,
            agent=self.agent,
            seq=seq if seq is not None else self.seq + 1,
            prev=prev if prev is not None else self.prev,
            created=now_s() - 1 if created is None else created,
            released=batchkit.rows(rows, label=label),
            redactions={"email": 1},
            over=over,
        )

    def sign(self, payload: bytes, payload_type: str = dsse.BATCH_PAYLOAD_TYPE) -> dsse.Envelope:
        return dsse.sign(payload, payload_type, self.key)

    def next(self, **kw: Any) -> tuple[int, bytes, dsse.Envelope]:
        """The next batch of the chain (advances seq and prev): (seq, payload, envelope)."""
        payload = self.payload(**kw)
        self.seq += 1
        self.prev = payload_digest(payload)
        return self.seq, payload, self.sign(payload)


# -- the gRPC client side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    code: str  # "OK" or a grpc.StatusCode name
    reason: str = ""  # the hush-reason trailer of a refusal ("" when the server gave none)
    duplicate: bool = False
    detail: str = ""


def _reply_from_error(exc: grpc.aio.AioRpcError) -> Reply:
    reason = ""
    for k, v in exc.trailing_metadata() or ():
        if k == "hush-reason":
            reason = v if isinstance(v, str) else v.decode()
    return Reply(exc.code().name, reason, detail=exc.details() or "")


async def submit(stub: ingest_pb2_grpc.IngestStub, envelope: dsse.Envelope, *, timeout: float = 20) -> Reply:
    try:
        reply = await stub.Submit(envelope_to_proto(envelope), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return _reply_from_error(exc)
    return Reply("OK", duplicate=reply.duplicate)


async def submit_raw(channel: grpc.aio.Channel, body: bytes, *, timeout: float = 20) -> Reply:
    """Send ``body`` as the Submit request bytes, unparsed: truncated or hostile frames."""
    call = channel.unary_unary("/hushmetric.v1.Ingest/Submit")
    try:
        await call(body, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return _reply_from_error(exc)
    return Reply("OK")


# -- the collector process -------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str


def _collector_argv() -> list[str]:
    script = Path(sys.executable).with_name("hush-collector")
    return [str(script)] if script.exists() else [sys.executable, "-m", "collector.cli"]


@dataclass
class Collector:
    """One collector deployment in ``workdir``: the admin CLI (in-process ``main``) and ``serve``
    as a real subprocess that can be started, killed with SIGKILL and restarted on the same database."""

    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    address: str = ""
    starts: int = 0
    tag: str = "serve"  # names the log files; replicas on one database use different tags
    logs: list[Path] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.workdir / "c.db"

    def admin(self, *args: str) -> Result:
        """The CLI's ``main`` in-process (on a worker thread: it runs its own event loop)."""

        def run() -> Result:
            out, err = io.StringIO(), io.StringIO()
            try:
                code = collector_cli.main([*args, "--db", str(self.db)], environ={}, stdout=out, stderr=err)
            except SystemExit as exc:  # argparse usage errors
                code = int(exc.code or 0)
            return Result(code, out.getvalue(), err.getvalue())

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(run).result()

    def ok(self, *args: str) -> str:
        r = self.admin(*args)
        assert r.code == 0, (args, r)
        return r.out

    async def aok(self, *args: str) -> str:
        return await asyncio.to_thread(self.ok, *args)

    def cli(self, *args: str, timeout: float = 120) -> Result:
        """``hush-collector`` as a subprocess (exit status and stderr exactly as an operator sees them)."""
        proc = subprocess.run(
            [*_collector_argv(), *args, "--db", str(self.db)],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={k: v for k, v in os.environ.items() if not k.startswith("HUSH_COLLECTOR")},
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def init(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ok("init")

    def add_agent(self, signer: Signer) -> str:
        return self.ok(
            "key", "add", signer.tenant, "--agent", signer.agent, "--public-key", signer.public_b64
        ).strip()

    async def start(self, *extra: str) -> str:
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        out = self.workdir / f"{self.tag}-{self.starts}.out"
        err = self.workdir / f"{self.tag}-{self.starts}.err"
        self.logs.append(err)
        with out.open("wb") as fo, err.open("wb") as fe:
            self.proc = subprocess.Popen(
                [*_collector_argv(), "serve", "--listen", "127.0.0.1:0", "--db", str(self.db), *extra],
                cwd=self.workdir,
                stdout=fo,
                stderr=fe,
                env={k: v for k, v in os.environ.items() if not k.startswith("HUSH_COLLECTOR")},
            )
        deadline = time.monotonic() + 60
        while True:
            first = out.read_bytes().split(b"\n", 1)
            if len(first) == 2:
                self.address = first[0].decode().strip()
                return self.address
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited with {self.proc.returncode}: {err.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError("collector did not print its address within 60 s")
            await asyncio.sleep(0.02)

    def kill9(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    async def stop(self) -> int:
        """SIGTERM and wait for the graceful exit; returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.proc.poll() is None:
            self.kill9()
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tracebacks(self) -> list[str]:
        return [p.name for p in self.logs if p.exists() and "Traceback" in p.read_text(errors="replace")]

    def usage(self) -> list[dict[str, Any]]:
        doc: list[dict[str, Any]] = json.loads(self.ok("usage", "--format", "json"))
        return doc

    def audit_lines(self) -> list[dict[str, Any]]:
        """The audit export as parsed JSON lines, after checking it with ``audit verify``."""
        path = self.workdir / f"audit-{random.getrandbits(32):08x}.jsonl"
        self.ok("audit", "export", "--out", str(path))
        pub = self.ok("pubkey").strip()
        self.ok("audit", "verify", str(path), "--public-key", pub)
        return [json.loads(line) for line in path.read_bytes().splitlines()]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read the database directly (read-only), the way an auditor would check a claim."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return [tuple(r) for r in conn.execute(sql, tuple(params)).fetchall()]
        finally:
            conn.close()

    @contextlib.asynccontextmanager
    async def channel(self) -> AsyncIterator[grpc.aio.Channel]:
        ch = grpc.aio.insecure_channel(self.address, options=[("grpc.max_send_message_length", 64 << 20)])
        try:
            yield ch
        finally:
            await ch.close()

    @contextlib.asynccontextmanager
    async def serving(self, *extra: str) -> AsyncIterator[ingest_pb2_grpc.IngestStub]:
        await self.start(*extra)
        try:
            async with self.channel() as ch:
                yield ingest_pb2_grpc.IngestStub(ch)
        finally:
            await self.stop()
