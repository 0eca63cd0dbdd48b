"""OTLP metrics export: the samples of :mod:`collector.outputs.series` as an ``ExportMetricsServiceRequest``
(pure), sent over gRPC to any OTLP endpoint.

Each series name becomes one OTLP gauge (``hush_released`` → ``hush.released``, the companions
``hush.released.noise_std``, ``hush.released.ci95_lower``, ``hush.released.ci95_upper``, and per
batch ``hush.batch.rows``, ``hush.batch.rho``, ``hush.batch.epsilon``); labels
become data-point attributes, the window becomes ``[start_time, time]``. Same rows, same cursor
semantics as remote-write: UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED and ABORTED are
retried (the OTLP specification's retryable codes), anything else is a refusal.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from collector.outputs.remote_write import RefusedError, RetryableError
from collector.outputs.series import Sample

__all__ = ["SCOPE", "export", "export_request", "otlp_name"]

SCOPE = "hushmetric.collector"
_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
}


def otlp_name(series: str) -> str:
    """``hush_released_noise_std`` → ``hush.released.noise_std``, ``hush_batch_rho`` → ``hush.batch.rho``
    (OTLP names use dots between namespaces)."""
    return ".".join(series.split("_", 2))


def export_request(samples: list[Sample]) -> metrics_service_pb2.ExportMetricsServiceRequest:
    metrics = []
    for name, group in groupby(sorted(samples, key=lambda s: (s.name, s.labels)), key=lambda s: s.name):
        points = [
            metrics_pb2.NumberDataPoint(
                attributes=[
                    common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
                    for k, v in s.labels[1:]
                ],
                start_time_unix_nano=s.start_ms * 1_000_000,
                time_unix_nano=s.timestamp_ms * 1_000_000,
                as_double=s.value,
            )
            for s in group
        ]
        metrics.append(metrics_pb2.Metric(name=otlp_name(name), gauge=metrics_pb2.Gauge(data_points=points)))
    service = common_pb2.AnyValue(string_value="hush-collector")
    resource = resource_pb2.Resource(attributes=[common_pb2.KeyValue(key="service.name", value=service)])
    scope = metrics_pb2.ScopeMetrics(scope=common_pb2.InstrumentationScope(name=SCOPE), metrics=metrics)
    return metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[metrics_pb2.ResourceMetrics(resource=resource, scope_metrics=[scope])]
    )


async def export(channel: grpc.aio.Channel, samples: list[Sample], *, deadline: float = 30.0) -> None:
    """One Export call; raises RetryableError or RefusedError as remote-write does."""
    if not samples:
        return
    stub: Any = metrics_service_pb2_grpc.MetricsServiceStub(channel)  # type: ignore[no-untyped-call]
    try:
        reply = await stub.Export(export_request(samples), timeout=deadline)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in _RETRYABLE:
            raise RetryableError(f"OTLP {exc.code().name}: {exc.details()}") from exc
        raise RefusedError(400, f"OTLP {exc.code().name}: {exc.details()}") from exc
    rejected = reply.partial_success.rejected_data_points
    if rejected:
        detail = reply.partial_success.error_message
        raise RefusedError(400, f"OTLP receiver rejected {rejected} data points: {detail}")
