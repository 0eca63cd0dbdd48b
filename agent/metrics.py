"""Prometheus metrics of the agent, on a registry passed in (no process-wide state).

Label sets are bounded: detector names and dead-letter reasons come from fixed vocabularies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from agent.model import DeadLetter

__all__ = ["AgentMetrics", "serve_metrics"]


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("hush_agent_events", "Events accepted into the journal", registry=r)
        self.dead = Counter("hush_agent_dead_letters", "Inputs refused, by reason", ["reason"], registry=r)
        self.redactions = Counter(
            "hush_agent_redactions", "Redaction findings by detector", ["detector"], registry=r
        )
        self.windows = Counter("hush_agent_windows_released", "Windows released", registry=r)
        self.refused = Counter(
            "hush_agent_windows_refused", "Windows discarded: budget exhausted", registry=r
        )
        self.rows = Counter("hush_agent_rows_released", "Rows released", registry=r)
        self.outbox_depth = Gauge("hush_agent_outbox_batches", "Batches waiting in the outbox", registry=r)
        self.outbox_bytes = Gauge("hush_agent_outbox_bytes", "Bytes waiting in the outbox", registry=r)
        self.outbox_age = Gauge(
            "hush_agent_outbox_oldest_age_seconds", "Age of the oldest waiting batch", registry=r
        )
        self.sent = Counter("hush_agent_batches_sent", "Batches acknowledged by the collector", registry=r)
        self.failed = Counter(
            "hush_agent_batches_failed", "Send attempts that failed, by code", ["code"], registry=r
        )
        self.quarantined = Counter(
            "hush_agent_batches_quarantined",
            "Batches the collector refused for good, moved to the outbox quarantine",
            registry=r,
        )
        self.budget_left = Gauge(
            "hush_agent_budget_left", "Privacy budget left in the current period", registry=r
        )
        self.budget_spent = Gauge(
            "hush_agent_budget_spent", "Privacy budget spent in the current period", registry=r
        )

    def ingested(self, events: int, letters: Sequence[DeadLetter]) -> None:
        self.events.inc(events)
        for letter in letters:
            self.dead.labels(letter.reason).inc()

    def redacted(self, counts: Mapping[str, int]) -> None:
        for detector, n in counts.items():
            self.redactions.labels(detector).inc(n)

    def window_released(self, rows: int) -> None:
        self.windows.inc()
        self.rows.inc(rows)

    def window_refused(self) -> None:
        self.refused.inc()

    def outbox(self, depth: Any, now: float | None = None) -> None:
        self.outbox_depth.set(depth.count)
        self.outbox_bytes.set(depth.bytes)
        if now is not None and depth.oldest_created is not None:
            self.outbox_age.set(max(0.0, now - depth.oldest_created))

    def sent_or_failed(self, code: str) -> None:
        """From the sender: "OK" per acknowledged batch, "QUARANTINED" per batch it moved to the
        quarantine, else the gRPC code of a failed attempt."""
        if code == "OK":
            self.sent.inc()
        elif code == "QUARANTINED":
            self.quarantined.inc()
        else:
            self.failed.labels(code).inc()

    def budget(self, spent: float, left: float) -> None:
        self.budget_spent.set(spent)
        self.budget_left.set(left)


def serve_metrics(listen: str, registry: CollectorRegistry) -> None:
    """Expose ``/metrics`` on ``HOST:PORT`` (a daemon thread of prometheus_client)."""
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=registry)
