"""OTLP receiver throughput against decoding the same export requests with the protobuf library alone.

The requests are OTLP log exports of 200 records each (3 resource attributes; per record a privacy
unit, an event name, 4 more attributes and a free-text body), serialized once up front. Measured:
- receiver over gRPC: the real :class:`OtlpSource` on loopback, fed by a raw gRPC client in the same
  process (8 exports in flight), with a stand-in pipeline that acknowledges each chunk at once — so
  parse, map to event lines, validate with the agent's decoder, queue, ack and answer;
- in-process receive path: the same parse + map + validate, without gRPC;
- baseline: ``ExportLogsServiceRequest.FromString`` on each request, nothing else.
Ratios are records/s of the receiver divided by records/s of the baseline (below 1: slower than bare
protobuf decoding; the gap is the mapping, validation and transport the receiver adds).
Run: ``python -m bench.bench_otlp [REQUESTS]``.
"""

from __future__ import annotations

import asyncio
import sys
import time

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from agent.config import Limits
from agent.decode import Decoder
from agent.sources.otlp import OtlpSource
from agent.sources.otlp_map import Mapping, map_logs

__all__ = ["bench_otlp", "main"]

RECORDS = 200
IN_FLIGHT = 8
METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def _kv(key: str, value: str | int) -> common_pb2.KeyValue:
    any_value = (
        common_pb2.AnyValue(string_value=value)
        if isinstance(value, str)
        else common_pb2.AnyValue(int_value=value)
    )
    return common_pb2.KeyValue(key=key, value=any_value)


def _request(seed: int) -> bytes:
    start = 1_767_571_200 * 10**9
    records = [
        logs_pb2.LogRecord(
            time_unix_nano=start + (seed * RECORDS + i) * 10**6,
            severity_text="INFO",
            body=common_pb2.AnyValue(string_value=f"user {i} checked out cart {seed}-{i} with 3 items"),
            attributes=[
                _kv("enduser.id", f"user-{(seed * 7919 + i) % 5000}"),
                _kv("event.name", ("checkout", "login", "search")[i % 3]),
                _kv("plan", ("free", "team", "pro")[i % 3]),
                _kv("region", "eu-west-1"),
                _kv("items", i % 9),
                _kv("http.route", "/api/cart/{id}"),
            ],
        )
        for i in range(RECORDS)
    ]
    resource = resource_pb2.Resource(
        attributes=[_kv("service.name", "shop"), _kv("service.version", "1.4.2"), _kv("host.name", "web-3")]
    )
    request = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(resource=resource, scope_logs=[logs_pb2.ScopeLogs(log_records=records)])
        ]
    )
    return request.SerializeToString()


def _protobuf_only(bodies: list[bytes]) -> float:
    started = time.perf_counter()
    for body in bodies:
        logs_service_pb2.ExportLogsServiceRequest.FromString(body)
    return time.perf_counter() - started


def _in_process(bodies: list[bytes]) -> float:
    decoder, mapping = Decoder(Limits()), Mapping()
    started = time.perf_counter()
    for body in bodies:
        request = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
        mapped = map_logs(request, mapping, source="bench", now=0.0)
        events, letters = decoder.decode(mapped.data, "bench", now=0.0)
        assert len(events) == RECORDS and not letters
    return time.perf_counter() - started


async def _over_grpc(bodies: list[bytes]) -> float:
    src = OtlpSource(
        decoder=Decoder(Limits()), mapping=Mapping(), clock=time.time, grpc_port=0, http_port=None
    )
    received = 0

    async def pipeline() -> None:
        nonlocal received
        async for chunk in src.chunks():
            received += chunk.data.count(b"\n")
            if chunk.ack is not None:
                chunk.ack()

    task = asyncio.create_task(pipeline())
    await asyncio.wait_for(src.ready.wait(), 10)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{src.grpc_bound}") as channel:
            call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
            await call(bodies[0], timeout=30)  # connect and warm up
            received = 0
            queue = list(bodies)

            async def worker() -> None:
                while queue:
                    await call(queue.pop(), timeout=60)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
            elapsed = time.perf_counter() - started
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert received == len(bodies) * RECORDS, received
    return elapsed


def bench_otlp(requests: int = 400, repeat: int = 3) -> dict[str, float]:
    bodies = [_request(i) for i in range(requests)]
    records = requests * RECORDS
    t_proto = t_local = t_grpc = float("inf")
    for _ in range(repeat):  # interleaved, best of each: load from other processes hits all alike
        t_proto = min(t_proto, _protobuf_only(bodies))
        t_local = min(t_local, _in_process(bodies))
        t_grpc = min(t_grpc, asyncio.run(_over_grpc(bodies)))
    return {
        "requests": requests,
        "records": records,
        "mb": sum(map(len, bodies)) / 1e6,
        "protobuf_rps": records / t_proto,
        "in_process_rps": records / t_local,
        "grpc_rps": records / t_grpc,
        "ratio_grpc": t_proto / t_grpc,
        "ratio_in_process": t_proto / t_local,
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    r = bench_otlp(int(args[0]) if args and args[0].isdigit() else 400)
    size = f"{r['records']:,.0f} records, {r['mb']:.1f} MB"
    print(f"{r['requests']:,.0f} OTLP log exports x {RECORDS} records = {size}")
    print(f"protobuf FromString only            {r['protobuf_rps'] / 1e3:8.1f} k records/s")
    print(f"receive path in process (no gRPC)   {r['in_process_rps'] / 1e3:8.1f} k records/s")
    print(f"OTLP receiver over gRPC, acked      {r['grpc_rps'] / 1e3:8.1f} k records/s")
    print(f"ratio receiver (gRPC) / protobuf decode:   {r['ratio_grpc']:.2f}")
    print(f"ratio receive path (in process) / protobuf: {r['ratio_in_process']:.2f}")


if __name__ == "__main__":
    main()
