"""OTLP metrics export (collector/outputs/otlp.py) into a receiver built from the opentelemetry-proto
service definitions, on loopback gRPC: the same rows and companions as remote-write, the same cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import nacl.signing
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

from collector.ingest import ingest
from collector.outputs.otlp import export, otlp_name
from collector.outputs.push import Pusher
from collector.outputs.remote_write import RetryableError
from collector.outputs.series import Sample
from collector.store import Store
from collector.store.sqlite.store import SqliteStore
from tests.collector.collector_testkit import Agent, Clock


@pytest.fixture
async def store(tmp_path: Path, audit_key: nacl.signing.SigningKey) -> AsyncIterator[Store]:
    s = await SqliteStore.open(tmp_path / "collector.db", signing_key=audit_key, create=True)
    try:
        yield s
    finally:
        await s.close()


@dataclass
class Receiver(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
    fail: list[grpc.StatusCode] = field(default_factory=list)
    requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = field(default_factory=list)

    async def Export(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # OTLP's method name
        if self.fail:
            await context.abort(self.fail.pop(0), "receiver down")
        self.requests.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def points(self) -> dict[str, list[tuple[dict[str, str], float, int, int]]]:
        out: dict[str, list[tuple[dict[str, str], float, int, int]]] = {}
        for req in self.requests:
            for rm in req.resource_metrics:
                assert rm.resource.attributes[0].value.string_value == "hush-collector"
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        for p in m.gauge.data_points:
                            attrs = {a.key: a.value.string_value for a in p.attributes}
                            out.setdefault(m.name, []).append(
                                (attrs, p.as_double, p.start_time_unix_nano, p.time_unix_nano)
                            )
        return out


@pytest.fixture
async def otlp() -> AsyncIterator[tuple[Receiver, grpc.aio.Channel]]:
    receiver = Receiver()
    server = grpc.aio.server()
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield receiver, channel
    finally:
        await channel.close()
        await server.stop(None)


async def test_rows_arrive_as_gauges_with_their_noise_and_window(
    store: Store, clock: Clock, acme: Agent, otlp: tuple[Receiver, grpc.aio.Channel]
) -> None:
    receiver, channel = otlp
    await ingest(store, acme.next(rows=2), now=clock())

    async def deliver(samples: list[Sample]) -> None:
        await export(channel, samples)

    receiver.fail = [grpc.StatusCode.UNAVAILABLE]
    pusher = Pusher(store, "otlp", deliver, clock=clock)
    with pytest.raises(RetryableError):
        await pusher.push_once()
    assert await store.output_cursor("otlp") == 0
    assert await pusher.push_once()
    assert not await pusher.push_once()
    points = receiver.points()
    assert set(points) >= {
        "hush.released", "hush.released.noise_std", "hush.released.ci95_lower", "hush.released.ci95_upper",
        "hush.batch.rows",
    }  # fmt: skip
    [(attrs, n, _, _)] = points["hush.batch.rows"]
    assert (attrs["tenant"], attrs["agent"], n) == ("acme", "a1", 2.0)
    values = sorted((attrs["dim_region"], v) for attrs, v, _, _ in points["hush.released"])
    assert values == [("r0", 10.0), ("r1", 11.0)]
    attrs, std, start, end = points["hush.released.noise_std"][0]
    assert {k: attrs[k] for k in ("tenant", "agent", "metric", "stat")} == {
        "tenant": "acme", "agent": "a1", "metric": "metric0", "stat": "count",
    }  # fmt: skip
    assert std == 1.5
    assert end - start == 60 * 10**9  # the window, in OTLP's start and end times
    assert len(receiver.requests) == 1


async def test_a_refusing_receiver_is_not_retried(
    store: Store, clock: Clock, acme: Agent, otlp: tuple[Receiver, grpc.aio.Channel]
) -> None:
    receiver, channel = otlp
    await ingest(store, acme.next(rows=1), now=clock())

    async def deliver(samples: list[Sample]) -> None:
        await export(channel, samples)

    receiver.fail = [grpc.StatusCode.INVALID_ARGUMENT] * 2  # the page, then the batch alone
    pusher = Pusher(store, "otlp", deliver, clock=clock)
    assert await pusher.push_once()
    assert pusher.refused == 1


def test_names() -> None:
    assert otlp_name("hush_released") == "hush.released"
    assert otlp_name("hush_released_ci95_lower") == "hush.released.ci95_lower"
    assert otlp_name("hush_batch_rho") == "hush.batch.rho"
