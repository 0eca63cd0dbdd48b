"""OTLP receiver fed by the real OpenTelemetry SDK (OTLP gRPC and HTTP exporters) over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from agent.config import Limits, load_config
from agent.decode import Decoder
from agent.model import Event
from agent.runtime import Agent
from agent.sources import Chunk, OtlpSource
from agent.sources.otlp_map import Mapping
from tests.integration.agentkit import CANARIES, canary_text, exact_policy, init_agent, leaked

NOW = time.time()


def make(limits: Limits | None = None, **kw: Any) -> OtlpSource:
    kw.setdefault("grpc_port", 0)
    kw.setdefault("http_port", 0)
    kw.setdefault("mapping", Mapping())
    return OtlpSource(decoder=Decoder(limits or Limits()), clock=time.time, **kw)


@contextlib.asynccontextmanager
async def running(src: OtlpSource, *, ack: bool = True) -> AsyncIterator[list[Chunk]]:
    """Run the source with a stand-in pipeline that acknowledges each chunk (or only collects it)."""
    got: list[Chunk] = []

    async def pipeline() -> None:
        async for chunk in src.chunks():
            got.append(chunk)
            if ack and chunk.ack is not None:
                chunk.ack()

    task = asyncio.create_task(pipeline())
    await asyncio.wait_for(src.ready.wait(), 10)
    try:
        yield got
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def events_of(chunks: list[Chunk]) -> list[Event]:
    decoder = Decoder(Limits())
    out: list[Event] = []
    for chunk in chunks:
        events, letters = decoder.decode(chunk.data, chunk.source, now=NOW)
        assert not letters
        out.extend(events)
    return out


def recording(base: type) -> Any:
    class Recording(base):  # type: ignore[misc, valid-type]
        results: list[Any]

        def export(self, batch: Any, *args: Any, **kw: Any) -> Any:
            result = super().export(batch, *args, **kw)
            self.results.append(result)
            return result

    return Recording


def sdk_logs(exporter: Any, records: list[dict[str, Any]], resource: dict[str, Any]) -> list[Any]:
    """Emit ``records`` through the SDK's LoggerProvider and a batch processor; the export results."""
    exporter.results = []
    provider = LoggerProvider(resource=Resource.create(resource))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=60_000))
    logger = provider.get_logger("hush-test")
    for record in records:
        logger.emit(**record)
    assert provider.force_flush(20_000)
    provider.shutdown()
    return list(exporter.results)


def grpc_log_exporter(port: int) -> Any:
    return recording(GrpcLogExporter)(endpoint=f"http://127.0.0.1:{port}", insecure=True, timeout=15)


def http_log_exporter(port: int) -> Any:
    return recording(HttpLogExporter)(endpoint=f"http://127.0.0.1:{port}/v1/logs", timeout=15)


RECORDS = [
    {
        "body": "user canary@example.org clicked",
        "attributes": {"event.name": "click", "enduser.id": f"u{i}", "plan": "team", "n": i},
        "severity_text": "INFO",
        "timestamp": int((NOW + i) * 1e9),
    }
    for i in range(5)
]


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_sdk_logs_become_events(transport: str) -> None:
    src = make()
    async with running(src) as got:
        assert src.grpc_bound
        assert src.http_bound
        exporter = (
            grpc_log_exporter(src.grpc_bound) if transport == "grpc" else http_log_exporter(src.http_bound)
        )
        results = await asyncio.to_thread(
            sdk_logs, exporter, RECORDS, {"service.name": "shop", "region": "eu"}
        )
    assert [r.name for r in results] == ["SUCCESS"]
    events = sorted(events_of(got), key=lambda e: e.ts)
    assert [(e.name, e.unit) for e in events] == [("click", f"u{i}") for i in range(5)]
    first = events[0]
    assert first.ts == pytest.approx(NOW, abs=1e-3)
    assert first.value is None
    # resource + record attributes, the body as free text; never the unit or name attribute
    assert first.attrs["service.name"] == "shop"
    assert first.attrs["region"] == "eu"
    assert first.attrs["plan"] == "team"
    assert first.attrs["n"] == 0
    assert first.attrs["body"] == "user canary@example.org clicked"
    assert first.attrs["severity"] == "INFO"
    assert "enduser.id" not in first.attrs
    assert "event.name" not in first.attrs


async def test_name_from_event_name_body_or_default_and_value_attribute() -> None:
    mapping = Mapping(name_from_body=True, value_attribute="amount", unit_attribute="user")
    src = make(mapping=mapping)
    records = [
        {"event_name": "checkout", "attributes": {"user": "a", "amount": 12.5}},
        {"body": "login", "attributes": {"user": "b"}},
    ]
    async with running(src) as got:
        assert src.grpc_bound
        await asyncio.to_thread(
            sdk_logs, grpc_log_exporter(src.grpc_bound), records, {"user": "from-resource"}
        )
    events = {e.name: e for e in events_of(got)}
    assert events["checkout"].value == 12.5
    assert events["checkout"].unit == "a"
    assert "amount" not in events["checkout"].attrs
    assert events["login"].unit == "b"
    assert "body" not in events["login"].attrs


def sdk_metrics(exporter: Any, resource: dict[str, Any]) -> list[Any]:
    exporter.results = []
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create(resource), metric_readers=[reader])
    meter = provider.get_meter("hush-test")
    orders = meter.create_counter("orders")
    orders.add(2, {"enduser.id": "u1", "plan": "team"})
    orders.add(3, {"enduser.id": "u2", "plan": "free"})
    orders.add(7, {"plan": "free"})  # aggregated over everyone: no unit, cannot be bounded
    meter.create_histogram("latency").record(12.0, {"enduser.id": "u1"})
    assert provider.force_flush(20_000)
    provider.shutdown()
    return list(exporter.results)


DELTA = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_sdk_metrics_points_with_a_unit_become_events_the_rest_dead_letters(transport: str) -> None:
    src = make()
    async with running(src) as got:
        assert src.grpc_bound
        assert src.http_bound
        if transport == "grpc":
            exporter = recording(GrpcMetricExporter)(
                endpoint=f"http://127.0.0.1:{src.grpc_bound}",
                insecure=True,
                timeout=15,
                preferred_temporality=DELTA,
            )
        else:
            exporter = recording(HttpMetricExporter)(
                endpoint=f"http://127.0.0.1:{src.http_bound}/v1/metrics",
                timeout=15,
                preferred_temporality=DELTA,
            )
        await asyncio.to_thread(sdk_metrics, exporter, {"service.name": "shop"})
    events = sorted(events_of(got), key=lambda e: e.unit)
    assert [(e.name, e.unit, e.value, e.attrs["plan"]) for e in events] == [
        ("orders", "u1", 2, "team"),
        ("orders", "u2", 3, "free"),
    ]
    letters = [letter for chunk in got for letter in chunk.letters]
    assert sorted(letter.reason for letter in letters) == ["missing", "unsupported"]
    assert all(len(letter.digest) == 64 for letter in letters)


def _kv(key: str, value: str) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def log_request(*records: logs_pb2.LogRecord) -> logs_service_pb2.ExportLogsServiceRequest:
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[logs_pb2.ResourceLogs(scope_logs=[logs_pb2.ScopeLogs(log_records=list(records))])]
    )


def record(unit: str | None, name: str = "click", **attrs: str) -> logs_pb2.LogRecord:
    kvs = [_kv("event.name", name), *(_kv(k, v) for k, v in attrs.items())]
    if unit is not None:
        kvs.append(_kv("enduser.id", unit))
    return logs_pb2.LogRecord(time_unix_nano=int(NOW * 1e9), attributes=kvs)


async def test_export_is_answered_only_after_the_commit() -> None:
    src = make()
    async with (
        running(src, ack=False) as got,
        grpc.aio.insecure_channel(f"127.0.0.1:{src.grpc_bound}") as channel,
    ):
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        call = asyncio.ensure_future(stub.Export(log_request(record("u1")), timeout=30))
        while not got:
            await asyncio.sleep(0.01)
        # The chunk is with the pipeline but not committed: the exporter still waits.
        await asyncio.sleep(0)
        assert not call.done()
        ack = got[0].ack
        assert ack is not None
        ack()
        response = await asyncio.wait_for(call, 10)
    assert not response.HasField("partial_success")


async def test_partial_success_counts_refused_records_with_reasons() -> None:
    src = make(Limits(max_value_length=16))
    request = log_request(record("u1"), record(None), record("u2", plan="x" * 17), record("u3"))
    async with running(src) as got, grpc.aio.insecure_channel(f"127.0.0.1:{src.grpc_bound}") as channel:
        response = await logs_service_pb2_grpc.LogsServiceStub(channel).Export(request, timeout=10)
    assert response.partial_success.rejected_log_records == 2
    message = response.partial_success.error_message
    assert "without a enduser.id attribute" in message
    assert "value_too_long" in message
    assert "xxxxx" not in message
    [chunk] = got
    assert [letter.reason for letter in chunk.letters] == ["missing"]  # the decoder refuses the other
    events, letters = Decoder(Limits(max_value_length=16)).decode(chunk.data, chunk.source, now=NOW)
    assert [e.unit for e in events] == ["u1", "u3"]
    assert [x.reason for x in letters] == ["value_too_long"]

    metrics = metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(
                        metrics=[
                            metrics_pb2.Metric(
                                name="temp",
                                gauge=metrics_pb2.Gauge(
                                    data_points=[
                                        metrics_pb2.NumberDataPoint(
                                            as_double=1.5, attributes=[_kv("enduser.id", "d")]
                                        ),
                                        metrics_pb2.NumberDataPoint(as_double=2.5),
                                    ]
                                ),
                            )
                        ]
                    )
                ]
            )
        ]
    )
    async with running(src), grpc.aio.insecure_channel(f"127.0.0.1:{src.grpc_bound}") as channel:
        answer = await metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(metrics, timeout=10)
    assert answer.partial_success.rejected_data_points == 1


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


def _retry_delay(metadata: Any) -> int:
    trailers = dict(metadata)
    retry = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.details[0].Is(error_details_pb2.RetryInfo.DESCRIPTOR)
    return int(retry.retry_delay.seconds)


async def test_grpc_backpressure_is_retryable_with_retry_info() -> None:
    src = make(max_pending=1, ack_timeout=0.5, retry_after=3)
    # Nobody consumes the source: the first export waits in the queue, the second finds it full.
    it = src.chunks()
    starting = asyncio.ensure_future(anext(it))
    await asyncio.wait_for(src.ready.wait(), 10)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{src.grpc_bound}") as channel:
            stub = logs_service_pb2_grpc.LogsServiceStub(channel)
            # The first export is taken by the (stalled) pipeline, the second fills the queue ...
            first = asyncio.ensure_future(stub.Export(log_request(record("u1")), timeout=30))
            await until(starting.done)
            second = asyncio.ensure_future(stub.Export(log_request(record("u2")), timeout=30))
            await until(src._queue.full)
            # ... and the third is refused at once.
            with pytest.raises(grpc.aio.AioRpcError) as busy:
                await stub.Export(log_request(record("u3")), timeout=30)
            assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert _retry_delay(busy.value.trailing_metadata()) == 3
            with pytest.raises(grpc.aio.AioRpcError) as late:
                await first
            assert late.value.code() == grpc.StatusCode.UNAVAILABLE
            assert _retry_delay(late.value.trailing_metadata()) == 3
            with pytest.raises(grpc.aio.AioRpcError):
                await second
    finally:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await it.aclose()


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310 - a fixed http URL
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


PROTO = {"Content-Type": "application/x-protobuf"}


async def test_http_backpressure_429_then_503_with_retry_after() -> None:
    src = make(max_pending=1, ack_timeout=0.5, retry_after=4)
    it = src.chunks()
    starting = asyncio.ensure_future(anext(it))
    await asyncio.wait_for(src.ready.wait(), 10)
    port = src.http_bound
    assert port
    body = log_request(record("u1")).SerializeToString()
    try:
        first = asyncio.ensure_future(asyncio.to_thread(post, port, "/v1/logs", body, PROTO))
        await until(starting.done)
        second = asyncio.ensure_future(asyncio.to_thread(post, port, "/v1/logs", body, PROTO))
        await until(src._queue.full)
        code, headers, data = await asyncio.to_thread(post, port, "/v1/logs", body, PROTO)
        assert (code, headers["Retry-After"]) == (429, "4")
        assert status_pb2.Status.FromString(data).details[0].Is(error_details_pb2.RetryInfo.DESCRIPTOR)
        code, headers, _ = await first
        assert (code, headers["Retry-After"]) == (503, "4")
        assert (await second)[0] == 503
    finally:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await it.aclose()


async def test_http_json_and_gzip() -> None:
    src = make()
    request = log_request(record("u1"), record(None))
    as_json = json.loads(json_format.MessageToJson(request))
    # OTLP/JSON writes trace ids as hex, not base64; the receiver does not need them but must not choke
    as_json["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["traceId"] = (
        "5b8efff798038103d269b633813fc60c"
    )
    async with running(src) as got:
        assert src.http_bound
        code, headers, data = await asyncio.to_thread(
            post,
            src.http_bound,
            "/v1/logs",
            json.dumps(as_json).encode(),
            {"Content-Type": "application/json"},
        )
        assert code == 200
        assert headers["Content-Type"] == "application/json"
        assert json.loads(data)["partialSuccess"]["rejectedLogRecords"] == "1"
        zipped = gzip.compress(log_request(record("u2")).SerializeToString())
        code, _, data = await asyncio.to_thread(
            post, src.http_bound, "/v1/logs", zipped, {**PROTO, "Content-Encoding": "gzip"}
        )
        assert code == 200
        assert logs_service_pb2.ExportLogsServiceResponse.FromString(data) is not None
    assert [e.unit for e in events_of(got)] == ["u1", "u2"]


def raw_http(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


async def test_http_hostile_requests_get_clear_status_and_the_server_keeps_serving() -> None:
    src = make(max_request_bytes=4096)
    async with running(src) as got:
        port = src.http_bound
        assert port
        cases: list[tuple[bytes, bytes]] = [
            (b"POST /v1/logs HTTP/1.1\r\nContent-Length: 99999\r\n\r\n", b" 413 "),
            (
                b"POST /v1/logs HTTP/1.1\r\nContent-Type: application/x-protobuf\r\nContent-Length: 3\r\n\r\n\xff\xff\xff",
                b" 400 ",
            ),
            (b"POST /v1/logs HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n", b" 415 "),
            (b"POST /v1/traces HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b" 404 "),
            (b"GET /v1/logs HTTP/1.1\r\n\r\n", b" 405 "),
            (b"POST /v1/logs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b" 411 "),
            (b"POST /v1/logs HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b" 400 "),
            (b"POST /v1/logs HTTP/1.1\r\n" + b"X: y\r\n" * 500 + b"\r\n", b" 431 "),
            (b"POST /v1/logs HTTP/1.1\r\nX: " + b"y" * 40000 + b"\r\n\r\n", b" 431 "),
            (b"garbage\r\n\r\n", b" 400 "),
            (
                b"POST /v1/logs HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
                + b"[" * 4000,
                b" 400 ",
            ),
        ]
        bomb = gzip.compress(b"\x00" * (1 << 20))
        cases.append(
            (
                b"POST /v1/logs HTTP/1.1\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: gzip\r\n"
                + f"Content-Length: {len(bomb)}\r\n\r\n".encode()
                + bomb,
                b" 400 ",
            )
        )
        for payload, expected in cases:
            answer = await asyncio.to_thread(raw_http, port, payload)
            assert answer.startswith(b"HTTP/1.1"), (payload[:60], answer[:80])
            assert expected in answer.split(b"\r\n", 1)[0], (payload[:60], answer[:80])
        code, _, _ = await asyncio.to_thread(
            post, port, "/v1/logs", log_request(record("ok")).SerializeToString(), PROTO
        )
        assert code == 200
    assert [e.unit for e in events_of(got)] == ["ok"]


async def test_oversized_grpc_request_is_refused_and_the_server_keeps_serving() -> None:
    src = make(max_request_bytes=4096)
    async with running(src) as got, grpc.aio.insecure_channel(f"127.0.0.1:{src.grpc_bound}") as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as big:
            await stub.Export(log_request(record("u1", note="x" * 8000)), timeout=10)
        assert big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await stub.Export(log_request(record("u2")), timeout=10)
    assert [e.unit for e in events_of(got)] == ["u2"]


# -- end to end: the real agent, canaries in bodies and attributes -------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def test_agent_end_to_end_canaries_never_reach_the_outbox(tmp_path: Path) -> None:
    agent_dir = init_agent(tmp_path / "agent")
    agent_dir.set_policy(exact_policy())
    grpc_port, http_port = _free_port(), _free_port()
    agent_dir.edit_config(
        '[[sources]]\ntype = "demo"\nseed = 7',
        f'[[sources]]\ntype = "otlp"\ngrpc_port = {grpc_port}\nhttp_port = {http_port}\nbody_attribute = "message"',
    )
    agent = Agent(load_config(agent_dir.config))
    stop = asyncio.Event()
    serving = asyncio.create_task(agent.serve(stop))
    text = canary_text()
    records: Callable[[str], list[dict[str, Any]]] = lambda tag: [  # noqa: E731
        {
            "body": text,
            "attributes": {
                "event.name": "signup",
                "enduser.id": f"{tag}-{i}",
                "plan": "team",
                "message": text,
                "email": CANARIES["email"],
            },
            "timestamp": int(now * 1e9),
        }
        for i in range(20)
    ]
    try:
        await _listening(grpc_port)
        await _listening(http_port)
        # Stamped once the daemon listens: its schedule begins with the window holding its start
        # time, so an event stamped earlier (when this module was imported, say) could be late.
        now = time.time()
        grpc_results = await asyncio.to_thread(
            sdk_logs,
            grpc_log_exporter(grpc_port),
            [*records("g"), {"body": text, "attributes": {"event.name": "signup"}}],  # no unit: dead letter
            {"service.name": CANARIES["api_key"]},
        )
        http_results = await asyncio.to_thread(
            sdk_logs, http_log_exporter(http_port), records("h"), {"host.name": CANARIES["phone"]}
        )
        assert [r.name for r in grpc_results + http_results] == ["SUCCESS", "SUCCESS"]
        # Answered after the commit: the events are in the journal already.
        assert agent.report.events == 40
        assert agent.report.dead_letters == 1
    finally:
        stop.set()
        await serving
    await agent.release(agent.aggregator.flush())
    await agent.aclose()
    # One window, or two when the clock crossed a window boundary during the test (the first empty).
    assert agent.report.rows_released >= 1
    assert agent.report.windows_released in (1, 2)
    assert leaked([agent_dir.state_db]) == []


# -- config -------------------------------------------------------------------------------------------


def _build(tmp_path: Path, source: str) -> Any:
    from agent.sources import build_sources

    (tmp_path / "agent.toml").write_text(f'tenant = "acme"\nagent = "edge-1"\n\n[[sources]]\n{source}\n')
    return build_sources(load_config(tmp_path / "agent.toml"), once=False)


def test_config_builds_with_loopback_defaults(tmp_path: Path) -> None:
    from agent import config as cfg

    defaults = cfg.OtlpSource()
    assert (defaults.host, defaults.grpc_port, defaults.http_port) == ("127.0.0.1", 4317, 4318)
    port = _free_port()  # not 4317 itself: another process on this machine may hold it
    [src] = _build(tmp_path, f'type = "otlp"\nunit_attribute = "user.id"\ngrpc_port = {port}\nhttp_port = 0')
    assert isinstance(src, OtlpSource)
    assert src.name == "otlp:127.0.0.1"
    assert (src._grpc_port, src._http_port) == (port, None)
    assert src._mapping.unit_attribute == "user.id"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('type = "otlp"\ngrpc_port = 70000', "sources[0].grpc_port"),
        (
            'type = "otlp"\ngrpc_port = 0\nhttp_port = 0',
            "sources[0].grpc_port: expected grpc_port or http_port",
        ),
        ('type = "otlp"\nunit_atribute = "x"', "unit_atribute"),
        ('type = "otlp"\ntls_cert = "cert.pem"', "sources[0].tls_key: expected both tls_cert and tls_key"),
        (
            'type = "otlp"\ntls_cert = "c.pem"\ntls_key = "k.pem"',
            "sources[0].tls_cert: cannot load TLS certificate",
        ),
        ('type = "otlp"\ngrpc_port = 4317\nmax_request_bytes = 10', "max_request_bytes"),
    ],
)
def test_config_errors_name_the_file_and_key(tmp_path: Path, source: str, expected: str) -> None:
    from hushmetric.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        _build(tmp_path, source)
    assert str(tmp_path / "agent.toml") in str(err.value)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


async def test_tls_on_both_listeners_with_the_sdk_exporters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector.pki import write_selfsigned

    # requests lets these override the exporter's certificate_file; a CI image may set them
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    write_selfsigned(tmp_path)
    src = make(tls=(tmp_path / "server.pem", tmp_path / "server.key"))
    ca = str(tmp_path / "ca.pem")
    async with running(src) as got:
        assert src.grpc_bound
        assert src.http_bound
        grpc_exporter = recording(GrpcLogExporter)(
            endpoint=f"https://localhost:{src.grpc_bound}",
            insecure=False,
            credentials=grpc.ssl_channel_credentials((tmp_path / "ca.pem").read_bytes()),
            timeout=15,
        )
        http_exporter = recording(HttpLogExporter)(
            endpoint=f"https://localhost:{src.http_bound}/v1/logs", certificate_file=ca, timeout=15
        )
        results = await asyncio.to_thread(sdk_logs, grpc_exporter, RECORDS[:1], {})
        results += await asyncio.to_thread(sdk_logs, http_exporter, RECORDS[1:2], {})
        # plain text to a TLS listener gets nothing, and the listener keeps serving
        answer = await asyncio.to_thread(raw_http, src.http_bound, b"POST /v1/logs HTTP/1.1\r\n\r\n")
        assert not answer.startswith(b"HTTP/1.1 200")
    assert [r.name for r in results] == ["SUCCESS", "SUCCESS"]
    assert sorted(e.unit for e in events_of(got)) == ["u0", "u1"]


def test_a_port_in_use_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    from hushmetric.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            ConfigError, match=rf"sources\[0\]\.http_port: cannot listen on 127\.0\.0\.1:{port}"
        ):
            _build(tmp_path, f'type = "otlp"\ngrpc_port = 0\nhttp_port = {port}')
        with pytest.raises(ConfigError, match=r"sources\[0\]\.tcp_port: cannot listen"):
            _build(tmp_path, f'type = "syslog"\ntcp_port = {port}')
