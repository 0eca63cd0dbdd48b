"""The audit log: entries chain and verify offline; any deleted, edited or reordered line fails."""

from __future__ import annotations

import nacl.signing
import pytest

from collector import audit
from collector.errors import AuditError
from collector.store import Store
from tests.collector.collector_testkit import Clock


def _chain(key: nacl.signing.SigningKey, n: int) -> list[audit.AuditEntry]:
    entries: list[audit.AuditEntry] = []
    prev = audit.GENESIS
    for i in range(1, n + 1):
        entry = audit.make_entry(
            index=i,
            prev=prev,
            ts="2026-03-10T12:00:00Z",
            action="tenant.create",
            tenant=f"t{i % 2}",
            details={"n": i, "ratio": 0.5, "flag": True, "none": None},
            key=key,
        )
        entries.append(entry)
        prev = entry.hash
    return entries


def _export(key: nacl.signing.SigningKey, n: int = 5, tenant: str | None = None) -> list[bytes]:
    return list(audit.export_lines(_chain(key, n), key, ts="2026-03-10T13:00:00Z", tenant=tenant))


def test_export_verifies(audit_key: nacl.signing.SigningKey) -> None:
    lines = _export(audit_key)
    result = audit.verify(lines, bytes(audit_key.verify_key))
    assert result.count == 5
    assert result.head == _chain(audit_key, 5)[-1].hash


def test_filtered_export_verifies_with_stubs(audit_key: nacl.signing.SigningKey) -> None:
    lines = _export(audit_key, tenant="t1")
    assert sum(b'"t":"stub"' in line for line in lines) == 2
    assert audit.verify(lines, bytes(audit_key.verify_key)).count == 5


def test_empty_log_verifies(audit_key: nacl.signing.SigningKey) -> None:
    lines = list(audit.export_lines([], audit_key, ts="2026-03-10T13:00:00Z"))
    assert audit.verify(lines, bytes(audit_key.verify_key)) == audit.Verified(0, audit.GENESIS)


@pytest.mark.parametrize("index", range(6))
def test_deleting_any_line_fails(audit_key: nacl.signing.SigningKey, index: int) -> None:
    lines = _export(audit_key)
    del lines[index]
    with pytest.raises(AuditError):
        audit.verify(lines, bytes(audit_key.verify_key))


@pytest.mark.parametrize("index", range(6))
def test_editing_any_line_fails(audit_key: nacl.signing.SigningKey, index: int) -> None:
    lines = _export(audit_key)
    edited = lines[index].replace(b'"ts":"2026-03-10T1', b'"ts":"2026-03-11T1')
    assert edited != lines[index]
    lines[index] = edited
    with pytest.raises(AuditError) as info:
        audit.verify(lines, bytes(audit_key.verify_key))
    assert info.value.line == index + 1


@pytest.mark.parametrize("index", range(5))
def test_reordering_any_adjacent_pair_fails(audit_key: nacl.signing.SigningKey, index: int) -> None:
    lines = _export(audit_key)
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    with pytest.raises(AuditError):
        audit.verify(lines, bytes(audit_key.verify_key))


def test_other_key_fails(audit_key: nacl.signing.SigningKey) -> None:
    other = nacl.signing.SigningKey.generate()
    with pytest.raises(AuditError, match="signature"):
        audit.verify(_export(audit_key), bytes(other.verify_key))


def test_garbage_line_fails(audit_key: nacl.signing.SigningKey) -> None:
    lines = _export(audit_key)
    lines.insert(2, b"{not json")
    with pytest.raises(AuditError) as info:
        audit.verify(lines, bytes(audit_key.verify_key))
    assert info.value.line == 3


async def test_store_chains_admin_actions(
    store: Store, clock: Clock, audit_key: nacl.signing.SigningKey
) -> None:
    await store.create_tenant("acme", now=clock())
    await store.set_tenant_state("acme", "suspended", now=clock())
    await store.set_tenant_state("acme", "deleted", now=clock())
    entries = await store.audit_entries()
    assert [e.action for e in entries] == ["tenant.create", "tenant.suspend", "tenant.delete"]
    lines = list(audit.export_lines(entries, audit_key, ts="2026-03-10T13:00:00Z"))
    assert audit.verify(lines, bytes(audit_key.verify_key)).count == 3
