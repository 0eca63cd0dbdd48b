"""Prometheus metrics of the collector (optional: ``serve --metrics-listen``).

The ingest path only calls an :data:`~collector.ingest.Observer`; this module turns those calls into
counters on a registry of its own (no process-wide state) and serves them over HTTP.
"""

from __future__ import annotations

from typing import Any

import prometheus_client

__all__ = ["IngestMetrics"]


class IngestMetrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry | None = None) -> None:
        self.registry = registry or prometheus_client.CollectorRegistry()
        # Label sets stay bounded: outcomes are a fixed vocabulary, tenants come from the key
        # registry (admin-created), never from an unverified payload.
        self.batches = prometheus_client.Counter(
            "hush_collector_batches",
            "Submitted batches by tenant and outcome: accepted, duplicate, or the refusal reason",
            ["tenant", "outcome"],
            registry=self.registry,
        )
        self.quota_denials = prometheus_client.Counter(
            "hush_collector_quota_denials",
            "Batches refused by a rate limit or quota, by tenant and reason",
            ["tenant", "reason"],
            registry=self.registry,
        )
        self.latency = prometheus_client.Histogram(
            "hush_collector_ingest_seconds",
            "Time to decide on and store one submission",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self._http: Any = None

    def observe(self, outcome: str, tenant: str, seconds: float) -> None:
        self.batches.labels(tenant, outcome).inc()
        if outcome == "rate_limited" or outcome.startswith("quota_"):
            self.quota_denials.labels(tenant, outcome).inc()
        self.latency.observe(seconds)

    def start(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._http = prometheus_client.start_http_server(
            int(port), host or "127.0.0.1", registry=self.registry
        )

    def stop(self) -> None:
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._http = None
