"""agent.sender against a real grpc.aio Ingest server on loopback that verifies every signature."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import nacl.signing
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from agent import egress, outbox
from agent.config import CollectorConfig
from agent.seal import Sealed, seal
from agent.sender import Sender
from agent.state import open_state, transaction
from agent.transport import channel_for
from hushmetric import dsse
from hushmetric.batch import Noise, Privacy, Row, decode_batch
from hushmetric.config import Duration
from hushmetric.errors import ConfigError, HushError, SignatureError
from hushmetric.keys import key_id
from hushmetric.v1 import ingest_pb2, ingest_pb2_grpc
from hushmetric.wire import envelope_from_proto

KEY = nacl.signing.SigningKey(b"\x03" * 32)
START = 1_767_225_600
SCHEMAS = (outbox.SCHEMA, egress.SCHEMA)


class FakeCollector(ingest_pb2_grpc.IngestServicer):
    """Verifies signatures like the real collector, dedupes on seq, and can be told how to answer."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self.keys = keys
        self.stored: dict[int, bytes] = {}  # seq -> payload, as accepted
        self.order: list[int] = []  # seqs in the order they were stored
        self.calls: list[int] = []  # seqs of every verified Submit
        self.answer: grpc.StatusCode | None = None  # refuse everything with this code
        self.exhausted = 0  # answer RESOURCE_EXHAUSTED this many more times
        self.retry_delay = 7.0
        self.poison: dict[int, grpc.StatusCode] = {}
        self.lose_reply = 0  # store the batch, then fail this many more times (reply lost)

    async def Submit(  # the gRPC method name
        self, request: ingest_pb2.Envelope, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.SubmitReply:
        envelope = envelope_from_proto(request)
        try:
            verified = dsse.verify(envelope, dsse.BATCH_PAYLOAD_TYPE, self.keys.get)
            batch = decode_batch(verified.payload)
        except HushError as exc:
            bad = isinstance(exc, SignatureError)
            code = grpc.StatusCode.UNAUTHENTICATED if bad else grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(code, str(exc))
        self.calls.append(batch.seq)
        if batch.seq in self.poison:
            await context.abort(self.poison[batch.seq], f"batch {batch.seq} refused")
        if self.answer is not None:
            await context.abort(self.answer, f"refused: {self.answer.name.lower()}")
        if self.exhausted > 0:
            self.exhausted -= 1
            info = error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(seconds=int(self.retry_delay))
            )
            detail = any_pb2.Any()
            detail.Pack(info)
            status = status_pb2.Status(
                code=code_pb2.RESOURCE_EXHAUSTED, message="rows per day quota reached", details=[detail]
            )
            await context.abort_with_status(rpc_status.to_status(status))
        held = self.stored.get(batch.seq)
        if held is not None:
            if held != verified.payload:
                await context.abort(grpc.StatusCode.ALREADY_EXISTS, "different batch under this seq")
            return ingest_pb2.SubmitReply(seq=batch.seq, duplicate=True)
        self.stored[batch.seq] = verified.payload
        self.order.append(batch.seq)
        if self.lose_reply > 0:
            self.lose_reply -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset after commit")
        return ingest_pb2.SubmitReply(seq=batch.seq, duplicate=False)


class Server:
    def __init__(
        self,
        collector: FakeCollector,
        port: int,
        *,
        options: list[tuple[str, int]] | None = None,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.collector, self.port = collector, port
        self.options, self.credentials = options or [], credentials
        self._server: grpc.aio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server(options=self.options)
        ingest_pb2_grpc.add_IngestServicer_to_server(self.collector, server)
        if self.credentials is not None:
            bound = server.add_secure_port(self.endpoint, self.credentials)
        else:
            bound = server.add_insecure_port(self.endpoint)
        assert bound == self.port
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sleeps:
    """Injected sleep: records what the sender asked for and yields briefly instead of waiting."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.asked.append(delay)
        await asyncio.sleep(0.005)


def make(seq: int, prev: str, key: nacl.signing.SigningKey = KEY) -> Sealed:
    return seal(
        tenant="acme",
        agent="edge-1",
        seq=seq,
        prev=prev,
        created=START + seq,
        window=(START, START + 60),
        policy_digest="ab" * 32,
        privacy=Privacy("user", rho=0.01),
        rows=[Row("visits", "count", {}, float(seq), Noise("gaussian", 1.0))],
        key=key,
    )


def release(conn: sqlite3.Connection, n: int, key: nacl.signing.SigningKey = KEY) -> list[Sealed]:
    out = []
    for _ in range(n):
        with transaction(conn):
            seq, prev = outbox.next_seq(conn)
            out.append(make(seq, prev, key))
            outbox.put(conn, out[-1])
    return out


async def eventually(check: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Poll ``check`` every 10 ms, at most ``timeout`` seconds."""
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_state(tmp_path, SCHEMAS)
    yield c
    c.close()


@pytest.fixture
def collector() -> FakeCollector:
    public = bytes(KEY.verify_key)
    return FakeCollector({key_id(public): public})


@pytest.fixture
async def server(collector: FakeCollector) -> AsyncIterator[Server]:
    srv = Server(collector, free_port())
    await srv.start()
    yield srv
    await srv.stop()


SenderFactory = Callable[..., Sender]


@pytest.fixture
async def make_sender(tmp_path: Path) -> AsyncIterator[SenderFactory]:
    made: list[Sender] = []

    def factory(
        endpoints: list[str], *, sleep: Callable[[float], Awaitable[None]] | None = None, **tls: Any
    ) -> Sender:
        cfg = CollectorConfig(
            endpoints=endpoints, timeout=Duration(5), retry_initial=Duration(1), retry_max=Duration(60), **tls
        )
        sender = Sender(lambda: open_state(tmp_path, SCHEMAS), cfg, sleep=sleep or Sleeps())
        made.append(sender)
        return sender

    yield factory
    for sender in made:
        await sender.aclose()


def destinations(conn: sqlite3.Connection) -> list[tuple[int | None, str]]:
    return [(e.seq, e.destination) for e in egress.entries(conn)]


async def test_delivers_in_seq_order_and_records_each_batch_once(
    conn: sqlite3.Connection, server: Server, make_sender: SenderFactory
) -> None:
    made = release(conn, 5)
    report = await make_sender([server.endpoint]).drain_once()
    assert (report.delivered, report.duplicates, report.pending, report.last_error) == (5, 0, 0, None)
    assert server.collector.order == [1, 2, 3, 4, 5]
    assert [server.collector.stored[s.seq] for s in made] == [s.payload for s in made]  # exact bytes
    assert destinations(conn) == [(seq, f"grpc:{server.endpoint}") for seq in range(1, 6)]
    assert [e.digest for e in egress.entries(conn)] == [s.digest for s in made]
    assert egress.verify(conn).ok
    assert outbox.depth(conn).count == 0


async def test_a_duplicate_is_acknowledged_and_recorded(
    conn: sqlite3.Connection, server: Server, make_sender: SenderFactory
) -> None:
    (first, _) = release(conn, 2)
    server.collector.stored[1] = first.payload  # delivered before, acknowledgement lost
    report = await make_sender([server.endpoint]).drain_once()
    assert (report.delivered, report.duplicates, report.pending) == (1, 1, 0)
    assert [e.seq for e in egress.entries(conn)] == [1, 2]


async def test_collector_down_for_a_while_then_everything_arrives_exactly_once(
    conn: sqlite3.Connection, collector: FakeCollector, make_sender: SenderFactory
) -> None:
    srv = Server(collector, free_port())  # not started: the collector is down
    release(conn, 3)
    sleeps = Sleeps()
    sender = make_sender([srv.endpoint], sleep=sleeps)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        await eventually(lambda: len(sleeps.asked) >= 4)
        assert sender.status.state == "unavailable"
        assert outbox.depth(conn).count == 3
        assert all(0.5 <= d <= 60 for d in sleeps.asked)
        release(conn, 2)  # the pipeline keeps releasing meanwhile
        collector.lose_reply = 1  # and the first acknowledgement after the restart is lost
        await srv.start()
        await eventually(lambda: outbox.depth(conn).count == 0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await srv.stop()
    assert collector.order == [1, 2, 3, 4, 5]  # stored once each, in order
    assert collector.calls == [1, 1, 2, 3, 4, 5]  # the lost reply made seq 1 go twice: a duplicate
    assert [e.seq for e in egress.entries(conn)] == [1, 2, 3, 4, 5]
    assert sender.status.delivered == 4
    assert sender.status.duplicates == 1


async def test_retry_info_on_resource_exhausted_is_honoured(
    conn: sqlite3.Connection, server: Server, make_sender: SenderFactory
) -> None:
    release(conn, 2)
    server.collector.exhausted = 2
    server.collector.retry_delay = 7
    sleeps = Sleeps()
    sender = make_sender([server.endpoint], sleep=sleeps)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        await eventually(lambda: outbox.depth(conn).count == 0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert sleeps.asked[:2] == [7.0, 7.0]
    assert server.collector.order == [1, 2]


async def test_permission_denied_keeps_the_outbox_and_is_logged_once(
    conn: sqlite3.Connection, server: Server, make_sender: SenderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    release(conn, 3)
    server.collector.answer = grpc.StatusCode.PERMISSION_DENIED
    sender = make_sender([server.endpoint])
    report = await sender.drain_once()
    assert (report.delivered, report.pending) == (0, 3)
    assert report.last_error is not None
    assert report.last_error.startswith("PERMISSION_DENIED")
    assert "permission_denied" in report.last_error

    sleeps = Sleeps()
    sender = make_sender([server.endpoint], sleep=sleeps)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="agent.sender")
    caplog.clear()
    task = asyncio.create_task(sender.run(stop))
    try:
        await eventually(lambda: len(sleeps.asked) >= 5)
        assert outbox.depth(conn).count == 3
        assert egress.entries(conn) == []
        assert sender.status.state == "refused"
        assert min(sleeps.asked) >= 15  # the long back-off, not the transport one
        refusals = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(refusals) == 1  # one line per state change, not per retry
        server.collector.answer = None  # an operator resumed the tenant
        await eventually(lambda: outbox.depth(conn).count == 0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert server.collector.order == [1, 2, 3]
    assert any("delivering" in r.getMessage() for r in caplog.records)


async def test_unknown_key_is_unauthenticated_and_keeps_the_outbox(
    conn: sqlite3.Connection, server: Server, make_sender: SenderFactory
) -> None:
    release(conn, 2, key=nacl.signing.SigningKey(b"\x09" * 32))
    report = await make_sender([server.endpoint]).drain_once()
    assert (report.delivered, report.pending) == (0, 2)
    assert report.last_error is not None
    assert report.last_error.startswith("UNAUTHENTICATED")
    assert server.collector.stored == {}


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS])
async def test_a_poison_batch_is_quarantined_and_the_rest_flows(
    conn: sqlite3.Connection, server: Server, make_sender: SenderFactory, code: grpc.StatusCode
) -> None:
    made = release(conn, 3)
    server.collector.poison[2] = code
    report = await make_sender([server.endpoint]).drain_once()
    assert (report.delivered, report.quarantined, report.pending) == (2, 1, 0)
    assert server.collector.order == [1, 3]
    (q,) = outbox.quarantined(conn)
    assert (q.seq, q.digest, q.code) == (2, made[1].digest, code.name)
    assert "batch 2 refused" in q.reason
    assert [e.seq for e in egress.entries(conn)] == [1, 3]


async def test_nothing_is_sent_while_egress_is_stopped(
    conn: sqlite3.Connection, server: Server, make_sender: SenderFactory
) -> None:
    release(conn, 2)
    with transaction(conn):
        egress.stop(conn, reason="incident", at=1.0)
    sender = make_sender([server.endpoint])
    report = await sender.drain_once()
    assert report.stopped
    assert report.delivered == 0
    assert report.pending == 2
    assert report.last_error is not None
    assert "incident" in report.last_error
    assert server.collector.calls == []
    with transaction(conn):
        egress.resume(conn, at=2.0)
    report = await sender.drain_once()
    assert (report.stopped, report.delivered) == (False, 2)
    assert [e.kind for e in egress.entries(conn)] == ["stop", "resume", "batch", "batch"]


async def test_stopping_egress_while_running_halts_delivery_before_the_next_send(
    conn: sqlite3.Connection, server: Server, make_sender: SenderFactory
) -> None:
    sleeps = Sleeps()
    sender = make_sender([server.endpoint], sleep=sleeps)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        release(conn, 1)
        sender.notify()
        await eventually(lambda: server.collector.order == [1])
        with transaction(conn):
            egress.stop(conn, reason="kill switch", at=3.0)
        release(conn, 2)
        sender.notify()
        await eventually(lambda: sender.status.state == "stopped")
        assert server.collector.calls == [1]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_fails_over_to_the_next_endpoint_in_order(
    conn: sqlite3.Connection, server: Server, make_sender: SenderFactory
) -> None:
    release(conn, 2)
    dead = f"127.0.0.1:{free_port()}"
    report = await make_sender([dead, server.endpoint]).drain_once()
    assert report.delivered == 2
    assert destinations(conn) == [(1, f"grpc:{server.endpoint}"), (2, f"grpc:{server.endpoint}")]


async def test_all_endpoints_down_reports_the_reason(
    conn: sqlite3.Connection, make_sender: SenderFactory
) -> None:
    release(conn, 1)
    report = await make_sender([f"127.0.0.1:{free_port()}"]).drain_once()
    assert (report.delivered, report.pending) == (0, 1)
    assert report.last_error is not None
    assert report.last_error.startswith("UNAVAILABLE")


async def test_notify_wakes_an_idle_sender(
    conn: sqlite3.Connection, server: Server, make_sender: SenderFactory
) -> None:
    sender = make_sender([server.endpoint], sleep=asyncio.sleep)  # idle poll is 30 s of real time
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        await eventually(lambda: sender.status.state == "idle")
        release(conn, 1)
        sender.notify()
        await eventually(lambda: server.collector.order == [1], timeout=5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_no_endpoints_means_nothing_is_dialled(
    conn: sqlite3.Connection, make_sender: SenderFactory
) -> None:
    release(conn, 1)
    report = await make_sender([]).drain_once()
    assert report.pending == 1
    assert report.last_error is not None
    assert "no collector endpoints" in report.last_error


async def test_a_batch_over_the_servers_size_limit_is_quarantined_not_retried_forever(
    conn: sqlite3.Connection, collector: FakeCollector, make_sender: SenderFactory
) -> None:
    srv = Server(collector, free_port(), options=[("grpc.max_receive_message_length", 64)])
    await srv.start()
    try:
        release(conn, 1)
        report = await make_sender([srv.endpoint]).drain_once()
    finally:
        await srv.stop()
    assert (report.quarantined, report.pending) == (1, 0)
    (q,) = outbox.quarantined(conn)
    assert q.code == "RESOURCE_EXHAUSTED"
    assert "larger than max" in q.reason


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A throwaway CA and a server certificate for the name ``collector.test``."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path / "pki"
    d.mkdir()
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        cwd=d,
    )
    _openssl("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=collector.test", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=DNS:collector.test\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        cwd=d,
    )
    return d


async def test_tls_with_a_private_ca_and_a_server_name_override(
    conn: sqlite3.Connection, collector: FakeCollector, make_sender: SenderFactory, pki: Path
) -> None:
    creds = grpc.ssl_server_credentials([((pki / "srv.key").read_bytes(), (pki / "srv.pem").read_bytes())])
    srv = Server(collector, free_port(), credentials=creds)
    await srv.start()
    try:
        release(conn, 2)
        wrong = await make_sender(
            [srv.endpoint], tls=True, ca_file=str(pki / "ca.pem"), server_name="other.test"
        ).drain_once()
        assert (wrong.delivered, wrong.pending) == (0, 2)  # the name does not match the certificate
        assert wrong.last_error is not None
        assert wrong.last_error.startswith("UNAVAILABLE")
        right = await make_sender(
            [srv.endpoint], tls=True, ca_file=str(pki / "ca.pem"), server_name="collector.test"
        ).drain_once()
        assert (right.delivered, right.pending) == (2, 0)
    finally:
        await srv.stop()
    assert collector.order == [1, 2]


def test_bad_settings_are_config_errors_naming_the_key(tmp_path: Path) -> None:
    # (durations are checked while the config is decoded: tests/agent/test_config.py)
    connect = lambda: open_state(tmp_path, SCHEMAS)  # noqa: E731 - a one-line factory
    with pytest.raises(ConfigError, match=r"collector\.ca_file"):
        Sender(connect, CollectorConfig(endpoints=["h:1"], tls=True, ca_file=str(tmp_path / "none.pem")))


async def test_a_shared_connection_and_executor_can_be_borrowed(
    conn: sqlite3.Connection, server: Server, tmp_path: Path
) -> None:
    """The pipeline's mode: one connection whose every use runs on one executor thread."""
    shared = open_state(tmp_path, SCHEMAS)
    executor = ThreadPoolExecutor(max_workers=1)
    try:
        release(conn, 2)
        cfg = CollectorConfig(endpoints=[server.endpoint])
        async with Sender(shared, cfg, executor=executor, sleep=Sleeps()) as sender:
            report = await sender.drain_once()
        assert (report.sent, report.error) == (2, None)
        assert shared.execute("SELECT COUNT(*) FROM outbox").fetchone() == (0,)  # not closed by the sender
    finally:
        executor.shutdown(wait=True)
        shared.close()


async def test_channel_for_dials_only_allow_listed_endpoints(server: Server) -> None:
    cfg = CollectorConfig(endpoints=[server.endpoint])
    async with channel_for(cfg, server.endpoint) as channel:
        await asyncio.wait_for(channel.channel_ready(), 5)
    with pytest.raises(ConfigError, match="allow-list"):
        async with channel_for(cfg, "127.0.0.1:1"):
            pass
