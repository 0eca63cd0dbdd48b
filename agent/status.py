"""``hush-agent status``: the agent's state read from its database — works while the daemon runs."""

from __future__ import annotations

import msgspec

from agent import deadletter, egress, ledger, outbox
from agent.config import LoadedConfig
from agent.policy import load_policy
from agent.runtime import open_agent_state

__all__ = ["Status", "collect_status", "format_status"]


class Status(msgspec.Struct, frozen=True):
    agent: str
    tenant: str
    outbox_batches: int
    outbox_bytes: int
    oldest_batch_age_s: float | None
    last_delivery: float | None
    last_destination: str | None
    egress_stopped: bool
    budget_period: str | None
    budget_spent: float | None
    budget_left: float | None
    dead_letters: int
    quarantined: (
        int  # batches the collector refused for good: kept, not sent (`hush-agent outbox quarantine`)
    )


def collect_status(loaded: LoadedConfig, *, now: float) -> Status:
    policy = load_policy(loaded.policy_path)
    conn = open_agent_state(loaded)
    try:
        depth = outbox.depth(conn)
        entries = egress.entries(conn)
        stopped = egress.is_stopped(conn)
        periods = ledger.summary(conn, policy)
        dead = sum(deadletter.counts(conn).values())
        quarantined = len(outbox.quarantined(conn))
    finally:
        conn.close()
    sent = [e for e in entries if getattr(e, "kind", "batch") == "batch"]
    last = sent[-1] if sent else None
    current = periods[-1] if periods else None
    return Status(
        agent=loaded.config.agent,
        tenant=loaded.config.tenant,
        outbox_batches=depth.count,
        outbox_bytes=depth.bytes,
        oldest_batch_age_s=None if depth.oldest_created is None else max(0.0, now - depth.oldest_created),
        last_delivery=None if last is None else last.at,
        last_destination=None if last is None else last.destination,
        egress_stopped=stopped,
        budget_period=None if current is None else current.period,
        budget_spent=None if current is None else current.spent,
        budget_left=None if current is None else current.left,
        dead_letters=dead,
        quarantined=quarantined,
    )


def format_status(s: Status) -> list[str]:
    def ago(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds:.0f}s ago"

    hint = " (refused by the collector for good: `hush-agent outbox quarantine`)" if s.quarantined else ""
    budget = "-" if s.budget_period is None else f"{s.budget_left:.4f} left of period {s.budget_period}"
    return [
        f"agent        {s.agent} (tenant {s.tenant})",
        f"egress       {'STOPPED (kill switch)' if s.egress_stopped else 'open'}",
        f"outbox       {s.outbox_batches} batches, {s.outbox_bytes} bytes, "
        f"oldest {ago(s.oldest_batch_age_s)}",
        f"last sent    {'-' if s.last_delivery is None else s.last_destination}",
        f"budget       {budget}",
        f"dead letters {s.dead_letters}",
        f"quarantined  {s.quarantined}{hint}",
    ]
