"""Policy attachment and central privacy caps (issue 14), through the real ingest decision on every
store kind: approvals, revocations and caps are checked inside the ingest transaction, refused
batches leave nothing but their counted, audited refusal, and the cap is met exactly."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.errors import Conflict, NotFound
from collector.importer import import_bundle
from collector.ingest import Rejected, Stored, ingest
from collector.store import PrivacyCap, Store
from collector.store.records import CommitRefused
from collector.store.rules import (
    MAX_BATCH_UNITS,
    MAX_SPEND_UNITS,
    RHO_UNITS_PER_RHO,
    cap_units,
    policy_refusal,
    rho_units,
    spend_charge,
)
from collector.store.sqlite.store import SqliteStore
from hushmetric import bundle
from hushmetric.batch import Privacy
from hushmetric.timefmt import format_rfc3339
from tests import batchkit
from tests.collector.collector_testkit import Agent, Clock

APPROVED = "cd" * 32
OTHER = batchkit.POLICY  # what the test agents declare unless told otherwise
DAY = "2026-03-10"  # the test clock's day (collector_testkit.T0)


def rho(value: float) -> Privacy:
    return Privacy("user", None, None, value)


async def test_any_policy_is_taken_until_one_is_approved_then_only_approved_ones(
    store: Store, clock: Clock, acme: Agent
) -> None:
    assert isinstance(await ingest(store, acme.next(), now=clock()), Stored)  # attachment is opt-in
    approved = await store.approve_policy("acme", APPROVED, note="v2 rollout", now=clock())
    assert (approved.state, approved.note, approved.revoked) == ("approved", "v2 rollout", None)
    refused = await ingest(store, acme.next(), now=clock())
    assert isinstance(refused, Rejected)
    assert (refused.reason, refused.kind) == ("policy_unapproved", "failed_precondition")
    acme.seq -= 1  # the refused batch left no trace: its seq is free again
    assert isinstance(await ingest(store, acme.next(policy=APPROVED), now=clock()), Stored)
    [day] = await store.usage("acme")
    assert (day.batches, day.refused) == (2, {"policy_unapproved": 1})
    entries = await store.audit_entries()
    assert [e.action for e in entries if e.action.startswith("policy.")] == ["policy.approve"]
    [refusal] = [e for e in entries if e.action == "batch.refused"]
    assert refusal.details["reason"] == "policy_unapproved"
    assert refusal.tenant == "acme"


async def test_revoking_stops_new_batches_and_keeps_the_stored_ones(
    store: Store, clock: Clock, acme: Agent
) -> None:
    await store.approve_policy("acme", APPROVED, note="", now=clock())
    first = acme.next(policy=APPROVED)
    assert isinstance(await ingest(store, first, now=clock()), Stored)
    clock.now += 5
    revoked = await store.revoke_policy("acme", APPROVED, now=clock())
    assert (revoked.state, revoked.revoked) == ("revoked", clock.now)
    refused = await ingest(store, acme.next(policy=APPROVED), now=clock())
    assert isinstance(refused, Rejected)
    assert refused.reason == "policy_unapproved"  # revoked and nothing else approved: still governed
    assert await ingest(store, first, now=clock()) == Stored("acme", "a1", 1, duplicate=True)
    assert {r.seq for r in await store.released_rows("acme", None, None)} == {1}
    [listed] = await store.list_policies("acme")
    assert (listed.digest, listed.state) == (APPROVED, "revoked")
    again = await store.approve_policy("acme", APPROVED, note="re-approved", now=clock())
    assert (again.state, again.revoked, again.note) == ("approved", None, "re-approved")
    acme.seq -= 1
    assert isinstance(await ingest(store, acme.next(policy=APPROVED), now=clock()), Stored)
    actions = [e.action for e in await store.audit_entries() if e.action.startswith("policy.")]
    assert actions == ["policy.approve", "policy.revoke", "policy.approve"]


async def test_policy_admin_errors(store: Store, clock: Clock, acme: Agent) -> None:
    with pytest.raises(NotFound):
        await store.approve_policy("nope", APPROVED, note="", now=clock())
    with pytest.raises(NotFound):
        await store.revoke_policy("acme", APPROVED, now=clock())
    await store.approve_policy("acme", APPROVED, note="", now=clock())
    with pytest.raises(Conflict):
        await store.approve_policy("acme", APPROVED, note="", now=clock())
    await store.revoke_policy("acme", APPROVED, now=clock())
    with pytest.raises(Conflict):
        await store.revoke_policy("acme", APPROVED, now=clock())
    with pytest.raises(NotFound):
        await store.set_privacy_cap("nope", PrivacyCap("nope", 1.0), now=clock())
    with pytest.raises(Conflict):
        await store.set_privacy_cap("acme", PrivacyCap("acme", float("inf")), now=clock())
    await store.set_tenant_state("acme", "deleted", now=clock())
    with pytest.raises(Conflict):
        await store.approve_policy("acme", OTHER, note="", now=clock())
    assert await store.list_policies("other") == []


async def test_the_cap_admits_exactly_its_rho_per_agent_and_window_day(
    store: Store, clock: Clock, acme: Agent
) -> None:
    """0.1 ρ ten times is exactly 1.0 here (as floats 0.1 * 10 sums to 0.9999999999999999 and an
    eleventh would slip in, or 0.3 would refuse the third 0.1): ρ is summed in integer units."""
    await store.set_privacy_cap("acme", PrivacyCap("acme", 1.0), now=clock())
    outcomes = [await ingest(store, acme.next(privacy=rho(0.1)), now=clock()) for _ in range(10)]
    assert all(isinstance(o, Stored) for o in outcomes)
    refused = await ingest(store, acme.next(privacy=rho(0.1)), now=clock())
    assert isinstance(refused, Rejected)
    assert (refused.reason, refused.kind, refused.retry_after) == ("privacy_cap", "failed_precondition", None)
    acme.seq -= 1
    other = Agent("acme", "a2")  # per agent: another agent has its own day
    await store.add_key("acme", "a2", other.public_key, now=clock())
    assert isinstance(await ingest(store, other.next(privacy=rho(0.5)), now=clock()), Stored)
    acme.created += 86400  # the next window day has room again, whenever it arrives
    clock.now += 86400
    assert isinstance(await ingest(store, acme.next(privacy=rho(0.1)), now=clock()), Stored)
    spend = {(s.day, s.agent): s for s in await store.privacy_spend("acme", DAY, DAY)}
    assert spend[(DAY, "a1")].units == cap_units(1.0) == RHO_UNITS_PER_RHO
    assert spend[(DAY, "a1")].rho == 1.0
    assert spend[(DAY, "a2")].rho == 0.5
    assert spend[(DAY, None)].rho == 1.5  # the tenant's agents together are always counted
    [day1, _day2] = await store.usage("acme")
    assert day1.refused == {"privacy_cap": 1}
    assert await store.get_privacy_cap("acme") == PrivacyCap("acme", 1.0, "agent")


async def test_a_tenant_cap_is_shared_and_epsilon_only_batches_convert(
    store: Store, clock: Clock, acme: Agent
) -> None:
    other = Agent("acme", "a2")
    await store.add_key("acme", "a2", other.public_key, now=clock())
    await store.set_privacy_cap("acme", PrivacyCap("acme", 0.5, "tenant"), now=clock())
    # pure ε-DP is ε²/2-zCDP: ε = 0.6 declares 0.18
    pure = Privacy("user", 0.6, None, None)
    assert isinstance(await ingest(store, acme.next(privacy=pure), now=clock()), Stored)
    assert isinstance(await ingest(store, other.next(privacy=pure), now=clock()), Stored)
    refused = await ingest(store, acme.next(privacy=pure), now=clock())  # 0.54 > 0.5 for the tenant
    assert isinstance(refused, Rejected)
    assert refused.reason == "privacy_cap"
    acme.seq -= 1
    approx = Privacy("user", 1.0, 1e-6, None)  # (ε, δ) without ρ has no ρ bound: refused under a cap
    refused = await ingest(store, acme.next(privacy=approx), now=clock())
    assert isinstance(refused, Rejected)
    assert refused.reason == "privacy_cap"
    acme.seq -= 1
    await store.set_privacy_cap("acme", None, now=clock())  # lifted: counted, not capped
    assert isinstance(await ingest(store, acme.next(privacy=pure), now=clock()), Stored)
    assert await store.get_privacy_cap("acme") is None
    spend = {s.agent: s.rho for s in await store.privacy_spend("acme", None, None)}
    assert spend == {"a1": pytest.approx(0.36), "a2": pytest.approx(0.18), None: pytest.approx(0.54)}
    caps = [e.details for e in await store.audit_entries() if e.action == "policy.cap"]
    assert caps == [{"rho_per_day": 0.5, "per": "tenant"}, {"rho_per_day": None, "per": None}]


async def test_concurrent_submissions_meet_the_cap_exactly(store: Store, clock: Clock) -> None:
    await store.create_tenant("acme", now=clock())
    await store.set_privacy_cap("acme", PrivacyCap("acme", 0.3, "tenant"), now=clock())
    agents = [Agent("acme", f"a{i}") for i in range(60)]
    for a in agents:
        await store.add_key("acme", a.agent, a.public_key, now=clock())
    envelopes = [a.next(privacy=rho(0.01)) for a in agents]
    outcomes = await asyncio.gather(*(ingest(store, e, now=clock()) for e in envelopes))
    assert sum(isinstance(o, Stored) for o in outcomes) == 30
    assert {o.reason for o in outcomes if isinstance(o, Rejected)} == {"privacy_cap"}
    [tenant] = [s for s in await store.privacy_spend("acme", DAY, DAY) if s.agent is None]
    assert tenant.units == cap_units(0.3)


async def test_two_sqlite_store_instances_share_the_cap(
    tmp_path: Path, clock: Clock, audit_key: nacl.signing.SigningKey
) -> None:
    """Two connections on one file (two collector processes) still admit exactly the cap."""
    path = tmp_path / "shared.db"
    one = await SqliteStore.open(path, signing_key=audit_key, create=True)
    two = await SqliteStore.open(path, signing_key=audit_key)
    try:
        await one.create_tenant("acme", now=clock())
        await one.set_privacy_cap("acme", PrivacyCap("acme", 0.2, "tenant"), now=clock())
        agents = [Agent("acme", f"a{i}") for i in range(40)]
        for a in agents:
            await one.add_key("acme", a.agent, a.public_key, now=clock())
        envelopes = [a.next(privacy=rho(0.01)) for a in agents]
        outcomes = await asyncio.gather(
            *(ingest(one if i % 2 else two, e, now=clock()) for i, e in enumerate(envelopes))
        )
        assert sum(isinstance(o, Stored) for o in outcomes) == 20
    finally:
        await one.close()
        await two.close()


@given(st.floats(min_value=0.0, max_value=1e6, allow_nan=False), st.floats(min_value=1e-9, max_value=1e6))
def test_declared_rho_is_never_under_counted_and_a_cap_never_rounded_up(value: float, cap: float) -> None:
    units = rho_units(value, None, None)
    assert units is not None
    assert Decimal(units) / RHO_UNITS_PER_RHO >= Decimal(repr(value))
    assert Decimal(cap_units(cap)) / RHO_UNITS_PER_RHO <= Decimal(repr(cap))
    assert rho_units(None, value, None) == rho_units(None, value, 0.0)  # pure ε: ε²/2
    assert rho_units(None, 1.0, 1e-6) is None


def test_spend_charge_refuses_what_has_no_usable_bound_only_under_a_cap() -> None:
    assert spend_charge(0.5, None, None, capped=True) == RHO_UNITS_PER_RHO // 2
    assert spend_charge(None, 1.0, 1e-6, capped=False) is None
    assert spend_charge(None, 1.0, 1e-6, capped=True) == CommitRefused("privacy_cap")
    assert spend_charge(1e300, None, None, capped=False) == MAX_BATCH_UNITS
    assert spend_charge(1e300, None, None, capped=True) == CommitRefused("privacy_cap")
    assert cap_units(1e300) == MAX_SPEND_UNITS


def test_policy_refusal_is_opt_in_and_fails_closed_after_revocations() -> None:
    assert policy_refusal({}, APPROVED) is None
    assert policy_refusal({APPROVED: "approved"}, APPROVED) is None
    assert policy_refusal({APPROVED: "approved"}, OTHER) is not None
    assert policy_refusal({APPROVED: "revoked"}, APPROVED) is not None
    assert policy_refusal({APPROVED: "revoked"}, OTHER) is not None


async def test_an_air_gap_import_is_governed_like_online_ingest(
    store: Store, clock: Clock, acme: Agent
) -> None:
    """A bundle cannot carry batches past the approvals or the cap: import runs the same transaction."""
    await store.approve_policy("acme", APPROVED, note="", now=clock())
    await store.set_privacy_cap("acme", PrivacyCap("acme", 0.02), now=clock())
    batches = [
        (1, acme.next(policy=APPROVED, privacy=rho(0.01))),
        (2, acme.next(policy=OTHER, privacy=rho(0.01))),  # unapproved
        (3, acme.next(policy=APPROVED, privacy=rho(0.01))),
        (4, acme.next(policy=APPROVED, privacy=rho(0.01))),  # over the cap
    ]
    data = bundle.write_bundle(
        batches, tenant="acme", agent=acme.agent, created=format_rfc3339(clock.now), key=acme.key
    )
    report = await import_bundle(store, data, now=clock.now)
    assert (report.accepted, report.refused) == (2, {"policy_unapproved": 1, "privacy_cap": 1})
    assert {r.seq for r in await store.released_rows("acme", None, None)} == {1, 3}


async def test_an_absurd_declared_rho_neither_overflows_the_sums_nor_slips_under_a_cap(
    store: Store, clock: Clock, acme: Agent
) -> None:
    """ρ up to the largest float is valid on the wire; 1e300 in integer units does not fit a
    database integer, and sums of large charges must not overflow either."""
    for _ in range(3):  # no cap: counted (saturating), stored
        assert isinstance(await ingest(store, acme.next(privacy=rho(1e300)), now=clock()), Stored)
    assert isinstance(await ingest(store, acme.next(privacy=rho(9000.0)), now=clock()), Stored)
    [tenant] = [s for s in await store.privacy_spend("acme", DAY, DAY) if s.agent is None]
    assert tenant.units == 3 * MAX_BATCH_UNITS + 9000 * RHO_UNITS_PER_RHO  # each absurd one at most
    await store.set_privacy_cap("acme", PrivacyCap("acme", 1e300), now=clock())
    refused = await ingest(store, acme.next(privacy=rho(1e300)), now=clock())  # no usable bound
    assert isinstance(refused, Rejected)
    assert refused.reason == "privacy_cap"
