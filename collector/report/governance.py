"""The governance section of the KPI report (issue 14): which policy digests the stored batches
declared and what the tenant approved, the ρ admitted per agent and day against the central cap, and
each agent's current certificate.

Pure: store records in, a frozen Struct out. A batch stored under a digest that was revoked since
stays in the report and is marked (``state = "revoked"`` with its count, and a note); one stored
before the tenant approved anything shows as ``unlisted``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec

from collector.store.records import AgentCertificate, PolicyRecord, PrivacyCap, SpendDay
from collector.store.rules import day_of
from hushmetric.timefmt import parse_rfc3339

__all__ = ["CapUse", "GovernanceSection", "PolicyUse", "governance_section", "spend_days"]


class PolicyUse(msgspec.Struct, frozen=True):
    digest: str
    state: Literal["approved", "revoked", "unlisted"]
    note: str
    batches: int  # stored in the report's range under this digest


class CapUse(msgspec.Struct, frozen=True):
    day: str  # UTC day of the batches' windows
    agent: str | None  # None: the tenant's agents together
    rho: float  # admitted
    cap: float | None  # the cap on this line, when the tenant's cap applies to its scope
    fraction: float | None


class GovernanceSection(msgspec.Struct, frozen=True):
    cap_rho_per_day: float | None
    cap_per: str | None
    policies: list[PolicyUse]
    spend: list[CapUse]
    notes: list[str]
    # issue 14 part 3: each agent's current certificate (superseded ones left out), as of ``as_of``
    certificates: list[AgentCertificate] = []
    as_of: float | None = None


def spend_days(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    """The inclusive UTC days of a report range [since, until) (RFC 3339), for the spend read."""
    first = day_of(parse_rfc3339(since)) if since is not None else None
    last = day_of(parse_rfc3339(until) - 1e-3) if until is not None else None
    return first, last


def governance_section(
    policies: Sequence[PolicyRecord],
    batches_by_policy: Mapping[str, int],
    cap: PrivacyCap | None,
    spend: Sequence[SpendDay],
    certificates: Sequence[AgentCertificate] = (),
    now: float | None = None,
) -> GovernanceSection:
    known = {p.digest: p for p in policies}
    uses = [PolicyUse(p.digest, p.state, p.note, batches_by_policy.get(p.digest, 0)) for p in policies]
    uses += [PolicyUse(d, "unlisted", "", n) for d, n in sorted(batches_by_policy.items()) if d not in known]
    notes = [
        f"{u.batches} stored batch(es) declare policy {u.digest[:16]}, revoked since; they stay stored"
        for u in uses
        if u.state == "revoked" and u.batches
    ]
    if policies and any(u.state == "unlisted" for u in uses):
        notes.append("batches under unlisted digests were stored before the tenant approved policies")
    lines = []
    for s in spend:
        scope = "tenant" if s.agent is None else "agent"
        limit = cap.rho_per_day if cap is not None and cap.per == scope else None
        lines.append(CapUse(s.day, s.agent, s.rho, limit, s.rho / limit if limit else None))
    current = [c for c in certificates if c.status != "superseded"]
    notes += [
        f"certificate of agent {c.agent} is contradicted: {c.reason}"
        for c in current
        if c.status == "contradicted"
    ]
    return GovernanceSection(
        cap.rho_per_day if cap else None, cap.per if cap else None, uses, lines, notes, current, now
    )
