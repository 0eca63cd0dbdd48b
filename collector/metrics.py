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
        self.batches = prometheus_client.Counter(
            "hush_collector_batches",
            "Submitted batches by outcome: accepted, duplicate, or the refusal reason",
            ["outcome"],
            registry=self.registry,
        )
        self._http: Any = None

    def observe(self, outcome: str) -> None:
        self.batches.labels(outcome).inc()

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
