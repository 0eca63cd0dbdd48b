"""Certified agents (issue 14): build and sign the certificate statement of :mod:`hushmetric.certificate`.

:func:`conformance` names every check of a deployment profile and says which the config fails
(pure, over the violations :mod:`agent.profiles` reports); :func:`build` assembles the statement
from the config, policy, ledger and egress ledger (reads only). The command line lives in
:mod:`agent.cli.certify`.

What the statement carries, and why none of it depends on one privacy unit's data: the profile
checks look at the config only; the spend per period is what the ledger charged, which follows
the policy and the fixed window schedule; the egress head is the hash chain over batches that
already left (their bytes are DP releases, charged when they were sealed) and over operator
actions (stop, resume, drop). No count of events, units or redactions is in it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence

import nacl.signing

from agent import egress, ledger
from agent.policy import Policy, policy_digest
from agent.profiles import Violation
from hushmetric.certificate import (
    STATEMENT_VERSION,
    Certificate,
    Conformance,
    EgressHead,
    PeriodSpend,
    ProfileCheck,
    sign_statement,
)
from hushmetric.keys import key_id
from hushmetric.timefmt import format_rfc3339

__all__ = ["build", "check_names", "conformance", "sign"]

# Every rule of agent.profiles, by the config key its violations name. Order: first match wins.
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("secret-file-modes", re.compile(r"^mode:")),  # check_files' findings, prefixed below
    ("secret-files", re.compile(r"^(key_file|secret_file)$")),
    ("collector-endpoints", re.compile(r"^collector\.endpoints")),
    ("collector-tls", re.compile(r"^collector\.tls$")),
    ("tls-options", re.compile(r"^collector\.")),
    ("metrics-listen", re.compile(r"^metrics_listen$")),
    ("mqtt-broker", re.compile(r"^sources\[\d+\]\.host$")),
    ("mqtt-credentials", re.compile(r"^sources\[")),
)


def check_names(profile: str) -> list[str]:
    """The checks a profile runs, in a stable order (air-gap has no TLS to a collector to check)."""
    names = [name for name, _ in _RULES]
    if profile == "air-gap":
        names.remove("collector-tls")
    else:
        names.remove("mqtt-broker")
    return names


def _check_of(key: str) -> str:
    for name, pattern in _RULES:
        if pattern.match(key):
            return name
    return "other"


def conformance(
    profile: str, violations: Sequence[Violation], file_findings: Sequence[Violation]
) -> Conformance:
    """The named checks of ``profile``, each passed or failed with the config keys at fault.

    ``violations`` come from :func:`agent.profiles.check_profile`, ``file_findings`` from
    :func:`agent.profiles.check_files` (file modes). A violation no named check covers is reported
    under ``other``, so a rule added to the profiles later can never pass unnoticed."""
    failed: dict[str, list[str]] = {}
    for v in violations:
        failed.setdefault(_check_of(v.key), []).append(v.key)
    for v in file_findings:
        failed.setdefault("secret-file-modes", []).append(v.key)
    names = check_names(profile) + (["other"] if "other" in failed else [])
    checks = [ProfileCheck(n, n not in failed, sorted(set(failed.get(n, [])))[:32]) for n in names]
    return Conformance(profile, all(c.passed for c in checks), checks)


def build(
    conn: sqlite3.Connection,
    policy: Policy,
    result: Conformance,
    *,
    tenant: str | None,
    agent: str,
    public_key: bytes,
    now: float,
    valid_seconds: int,
) -> Certificate:
    """The statement for this agent now (reads the ledger and the egress ledger, writes nothing)."""
    count, head = egress.head(conn)
    summary = ledger.summary(conn, policy)
    return Certificate(
        v=STATEMENT_VERSION,
        agent=agent,
        tenant=tenant or None,
        key_id=key_id(public_key),
        public_key=public_key,
        profile=result.profile,
        policy_name=policy.name,
        policy_digest=policy_digest(policy),
        mechanism=policy.budget.mechanism,
        measure="rho" if policy.budget.mechanism == "zcdp" else "epsilon",
        budget_period=policy.budget.period,
        cap=ledger.cap_of(policy),
        conformance=result,
        egress=EgressHead(count, head),
        spend=[PeriodSpend(p.period, p.spent, p.cap) for p in summary][-400:],
        issued=format_rfc3339(now),
        valid_until=format_rfc3339(now + valid_seconds),
    )


def sign(cert: Certificate, key: nacl.signing.SigningKey) -> bytes:
    return sign_statement(cert, key)
