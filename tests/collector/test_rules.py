"""collector.store.rules: the admin and ingest decisions both store dialects share, without a database.

The both-store contract tests (test_store.py) prove each dialect applies them; these pin the rules
themselves, including the corners a dialect would have to get right twice."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.errors import Conflict, NotFound
from collector.ingest import REASONS
from collector.store import rules
from collector.store.records import KeyRecord, Quota, Refusal, Tenant
from collector.store.vocab import BATCH_REASONS, ENROLL_REASONS, IMPORT_REASONS, KeyState
from hushmetric.keys import key_id

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
PUB = bytes(range(32))
SECRET = hashlib.sha256(b"secret").digest()


def key(state: KeyState = "active", **kw: float) -> KeyRecord:
    return KeyRecord("k1", "acme", "edge-1", PUB, state, 1.0, **kw)


# -- tenants -------------------------------------------------------------------------------------


def test_tenant_names_are_never_reused_and_only_active_tenants_take_keys() -> None:
    rules.must_be_new_tenant(None, "acme")
    with pytest.raises(Conflict, match="already exists"):
        rules.must_be_new_tenant(Tenant("acme", "deleted", 1.0, 2.0), "acme")
    active = Tenant("acme", "active", 1.0, 1.0)
    assert rules.must_be_active(active, "acme") is active
    with pytest.raises(NotFound):
        rules.must_be_active(None, "acme")
    with pytest.raises(Conflict, match="is suspended"):
        rules.must_be_active(Tenant("acme", "suspended", 1.0, 1.0), "acme")


@pytest.mark.parametrize(
    ("state", "action"),
    [("suspended", "tenant.suspend"), ("active", "tenant.resume"), ("deleted", "tenant.delete")],
)
def test_tenant_changes_name_their_action_and_previous_state(state: str, action: str) -> None:
    change = rules.tenant_change(Tenant("acme", "suspended", 1.0, 2.0), "acme", state, NOW)  # type: ignore[arg-type]
    assert change.tenant == Tenant("acme", state, 1.0, NOW)  # type: ignore[arg-type]
    assert (change.action, change.details) == (action, {"from": "suspended"})


def test_a_deleted_tenant_stays_deleted() -> None:
    with pytest.raises(Conflict, match="is deleted"):
        rules.tenant_change(Tenant("acme", "deleted", 1.0, 2.0), "acme", "active", NOW)
    with pytest.raises(NotFound):
        rules.tenant_change(None, "acme", "suspended", NOW)


# -- keys ----------------------------------------------------------------------------------------


def test_key_state_machine() -> None:
    retire = rules.key_change(key(), "k1", "retired", NOW)
    assert retire is not None
    assert (retire.key.state, retire.key.retired_at, retire.action) == ("retired", NOW, "key.retire")
    assert retire.details == {"key_id": "k1", "agent": "edge-1"}
    assert rules.key_change(key("retired", retired_at=5.0), "k1", "retired", NOW) is None  # nothing to do
    revoke = rules.key_change(key("retired", retired_at=5.0), "k1", "revoked", NOW)
    assert revoke is not None
    assert (revoke.key.state, revoke.key.retired_at, revoke.key.revoked_at) == ("revoked", 5.0, NOW)
    assert revoke.action == "key.revoke"


@pytest.mark.parametrize("target", ["active", "retired", "revoked"])
def test_revoked_is_final(target: KeyState) -> None:
    with pytest.raises(Conflict, match="is revoked"):
        rules.key_change(key("revoked", revoked_at=5.0), "k1", target, NOW)


@pytest.mark.parametrize("current", ["active", "retired"])
def test_nothing_is_reactivated_and_unknown_keys_are_not_found(current: KeyState) -> None:
    with pytest.raises(Conflict, match="re-activated"):
        rules.key_change(key(current), "k1", "active", NOW)
    with pytest.raises(NotFound):
        rules.key_change(None, "k1", "revoked", NOW)


def test_an_added_key_is_active_under_its_id_and_says_how_it_came() -> None:
    record, details = rules.added_key("acme", "edge-1", PUB, NOW, "enroll:t1")
    assert record == KeyRecord(key_id(PUB), "acme", "edge-1", PUB, "active", NOW)
    assert details == {"key_id": key_id(PUB), "agent": "edge-1", "via": "enroll:t1"}
    rules.must_be_new_key(False, "k1")
    with pytest.raises(Conflict, match="already registered"):
        rules.must_be_new_key(True, "k1")


# -- enrollment tokens ---------------------------------------------------------------------------


def token(**kw: object) -> rules.TokenRow:
    fields: dict[str, object] = {
        "tenant": "acme",
        "secret_hash": SECRET,
        "expires": NOW + 60,
        "used_at": None,
        "agent": None,
        "rotate": False,
    }
    return rules.TokenRow(**(fields | kw))  # type: ignore[arg-type]


def test_a_fresh_token_is_redeemable_by_any_agent_unless_bound() -> None:
    assert rules.redeemable(token(), "t1", SECRET, "edge-9", NOW) == token()
    bound = token(agent="edge-1")
    assert rules.redeemable(bound, "t1", SECRET, "edge-1", NOW) == bound


@pytest.mark.parametrize(
    ("row", "secret", "agent", "now"),
    [
        (None, SECRET, "edge-1", NOW),  # unknown
        (token(), hashlib.sha256(b"guess").digest(), "edge-1", NOW),  # wrong secret
        (token(used_at=NOW - 1), SECRET, "edge-1", NOW),  # used
        (token(), SECRET, "edge-1", NOW + 60),  # expired (at the second it expires)
        (token(agent="edge-2"), SECRET, "edge-1", NOW),  # bound to another agent
    ],
)
def test_every_unusable_token_is_the_same_not_found(
    row: rules.TokenRow | None, secret: bytes, agent: str, now: float
) -> None:
    with pytest.raises(NotFound) as caught:
        rules.redeemable(row, "t1", secret, agent, now)
    assert caught.value.message == NotFound("enroll token", "t1").message


def test_an_agent_with_a_key_needs_a_rotation_token() -> None:
    rules.rotation_allowed(token(), "edge-1", has_key=False)
    rules.rotation_allowed(token(agent="edge-1", rotate=True), "edge-1", has_key=True)
    with pytest.raises(Conflict, match="--rotate"):
        rules.rotation_allowed(token(agent="edge-1"), "edge-1", has_key=True)


def test_token_rows_from_either_driver_read_the_same() -> None:
    sqlite_row = ("acme", memoryview(SECRET), NOW + 60, None, "edge-1", 1)  # BLOB, 0/1
    pg_row = ("acme", SECRET, NOW + 60, None, "edge-1", True)
    assert rules.token_row(sqlite_row) == rules.token_row(pg_row) == token(agent="edge-1", rotate=True)
    assert rules.token_row(None) is None


def test_token_audit_details_name_the_binding_only_when_there_is_one() -> None:
    assert rules.token_details("t1", NOW, None, False) == {
        "token_id": "t1",
        "expires": "2026-01-01T00:00:00Z",
    }
    assert rules.token_details("t1", NOW, "edge-1", True) == {
        "token_id": "t1",
        "expires": "2026-01-01T00:00:00Z",
        "agent": "edge-1",
        "rotate": True,
    }


# -- quotas and rate limits ----------------------------------------------------------------------


def test_quota_values_and_details_follow_the_schema_columns() -> None:
    from collector.store.schema import QUOTA_FIELDS

    q = Quota("acme", rows_per_day=10, max_age_seconds=60)
    assert rules.quota_details(q) == dict(zip(QUOTA_FIELDS, rules.quota_values(q), strict=True))
    assert rules.quota_details(q)["rows_per_day"] == 10
    assert rules.quota_details(q)["bytes_per_day"] is None


@given(rate=st.floats(0.01, 1000), burst=st.one_of(st.none(), st.integers(1, 1000)))
def test_a_bucket_holds_at_least_one_token(rate: float, burst: int | None) -> None:
    assert rules.bucket_burst(Quota("acme", batches_per_second=rate, burst=burst)) >= 1


@given(
    rate=st.floats(0.01, 1000),
    tokens=st.floats(-10, 0.999),
    elapsed=st.floats(0, 100),
)
def test_retry_after_is_when_the_refill_reaches_one_token(rate: float, tokens: float, elapsed: float) -> None:
    q = Quota("acme", batches_per_second=rate, burst=5)
    updated = NOW - elapsed
    wait = rules.rate_retry_after(q, tokens, updated, NOW)
    have = min(5.0, tokens + (NOW - updated) * rate)
    assert wait >= 0.001  # never "retry now": the caller would spin
    if have < 1.0 and wait > 0.001:
        assert have + wait * rate == pytest.approx(1.0)


def test_day_quota_reason_names_rows_first_and_bytes_otherwise() -> None:
    q = Quota("acme", rows_per_day=10, bytes_per_day=100)
    assert rules.day_quota_reason(q, used_rows=8, rows=3) == "quota_rows_day"
    assert rules.day_quota_reason(q, used_rows=8, rows=2) == "quota_bytes_day"
    assert rules.fits_day(q, rows=10, nbytes=100)
    assert not rules.fits_day(q, rows=11, nbytes=1)
    assert not rules.fits_day(q, rows=1, nbytes=101)
    assert rules.fits_day(Quota("acme"), rows=10**9, nbytes=10**12)


def test_calendar_periods_are_utc() -> None:
    dec31 = datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC).timestamp()
    assert (rules.day_of(dec31), rules.month_of(dec31)) == ("2026-12-31", "2026-12")
    assert rules.seconds_to_next_day(dec31) == pytest.approx(30)
    assert rules.seconds_to_next_month(dec31) == pytest.approx(30)
    assert rules.minute_of(dec31) == int(dec31) // 60


# -- ingest re-check and chain -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "reason"),
    [
        (None, "unknown_key"),
        (("revoked", "active"), "revoked_key"),
        (("revoked", "suspended"), "revoked_key"),
        (("active", "suspended"), "tenant_suspended"),
        (("retired", "deleted"), "tenant_deleted"),
        (("active", "active"), None),
        (("retired", "active"), None),  # a retired key still speaks for older batches
    ],
)
def test_state_recheck_inside_the_commit(states: tuple[str, str] | None, reason: str | None) -> None:
    refused = rules.state_refusal(states)
    assert (refused.reason if refused else None) == reason


@pytest.mark.parametrize(
    ("seq", "prev", "before", "after", "expected"),
    [
        (1, "", None, None, (False, False, False, False)),  # first batch
        (1, "x", None, None, (False, True, False, False)),  # a first batch that claims a predecessor
        (2, "d1", "d1", None, (False, False, False, False)),  # chained
        (2, "d1", None, None, (True, False, False, False)),  # previous not here yet
        (2, "d1", "other", None, (False, True, False, False)),  # fork at this batch
        (2, "d1", "d1", "me", (False, False, True, False)),  # closes the next batch's gap
        (2, "d1", "d1", "else", (False, False, True, True)),  # the next batch forks from this one
    ],
)
def test_chain_findings(
    seq: int, prev: str, before: str | None, after: str | None, expected: tuple[bool, ...]
) -> None:
    f = rules.chain_findings(seq, prev, "me", before, after)
    assert (f.gap, f.fork, f.resolves_next_gap, f.next_forks) == expected


# -- refusals and the vocabulary -----------------------------------------------------------------


def test_refusals_are_audited_as_batch_or_enrollment() -> None:
    assert {rules.refusal_action(r) for r in ENROLL_REASONS} == {"enroll.refused"}
    assert {rules.refusal_action(r) for r in (*BATCH_REASONS, *IMPORT_REASONS)} == {"batch.refused"}
    details = rules.refusal_details(Refusal("acme", "too_old", "edge-1", 7, "k1"))
    assert details["reason"] == "too_old"
    assert (details["agent"], details["seq"], details["key_id"]) == ("edge-1", 7, "k1")


def test_every_batch_reason_maps_to_one_status_and_the_lists_do_not_overlap() -> None:
    assert set(REASONS) == set(BATCH_REASONS)
    everything = [*BATCH_REASONS, *IMPORT_REASONS, *ENROLL_REASONS]
    assert len(everything) == len(set(everything))
