"""Air-gap import at the store level: a bundle speaks for one agent, and nothing else gets in."""

from __future__ import annotations

import io
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from collector.importer import import_bundle
from collector.store import Store
from hushmetric import bundle, dsse
from hushmetric.errors import ContractError
from hushmetric.timefmt import format_rfc3339
from tests.collector.collector_testkit import (
    EXPANDED,
    Agent,
    Clock,
    checksummed,
    gnu_sparse_member,
    pax_sparse_member,
    strip_end,
)


async def test_a_batch_of_another_agent_smuggled_into_a_bundle_is_refused(
    store: Store, clock: Clock, acme: Agent
) -> None:
    other = Agent("acme", "a2")
    await store.add_key("acme", "a2", other.public_key, now=clock.now)
    own, smuggled = acme.next(), other.next()
    data = bundle.write_bundle(
        [(1, own), (2, smuggled)],
        tenant="acme",
        agent=acme.agent,
        created=format_rfc3339(clock.now),
        key=acme.key,
    )
    report = await import_bundle(store, data, now=clock.now)
    assert report.accepted == 1
    assert report.refused == {"bundle_mismatch": 1}
    usage = await store.usage("acme", None, None)
    assert sum(day.batches for day in usage) == 1  # the other agent's batch was not stored
    assert all(row.agent == acme.agent for row in await store.released_rows("acme", None, None))


async def test_a_second_import_is_all_duplicates(store: Store, clock: Clock, acme: Agent) -> None:
    batches = [(i + 1, acme.next()) for i in range(3)]
    data = bundle.write_bundle(
        batches, tenant="acme", agent=acme.agent, created=format_rfc3339(clock.now), key=acme.key
    )
    first = await import_bundle(store, data, now=clock.now)
    again = await import_bundle(store, data, now=clock.now)
    assert (first.accepted, first.duplicate, first.refused) == (3, 0, {})
    assert (again.accepted, again.duplicate, again.refused) == (0, 3, {})


# -- hostile tar forms (issue 10, defect 1): sparse members expand far beyond their bytes ----------

SPARSE_MEMBERS = 200


def sparse_bundle(acme: Agent, form: str, members: int = SPARSE_MEMBERS) -> bytes:
    good = bundle.write_bundle(
        [(1, acme.next())], tenant="acme", agent=acme.agent, created="2026-03-10T12:00:00Z", key=acme.key
    )
    make = gnu_sparse_member if form == "gnu" else pax_sparse_member
    body = b"".join(make(f"batches/{100 + i}.dsse.json") for i in range(members))
    return strip_end(good) + body + bytes(1024)


@pytest.mark.parametrize("form", ["gnu", "pax"])
def test_both_sparse_forms_are_what_they_claim(acme: Agent, form: str) -> None:
    """The crafted members really are sparse to tarfile (else the tests below prove nothing)."""
    data = sparse_bundle(acme, form, members=1)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember("batches/100.dsse.json")
        assert member.isreg()
        assert member.issparse()
        assert member.size == EXPANDED
        assert len(data) < EXPANDED


@pytest.mark.parametrize("form", ["gnu", "pax"])
async def test_a_sparse_bundle_is_refused_within_bounded_memory(
    store: Store, clock: Clock, acme: Agent, form: str, tmp_path: Path
) -> None:
    path = tmp_path / "sparse.tar"
    path.write_bytes(sparse_bundle(acme, form))
    with path.open("rb") as fh:
        tracemalloc.start()
        try:
            report = await import_bundle(store, fh, now=clock.now)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert report.refused == {"bundle_malformed": 1}
    assert report.error is not None
    assert "sparse" in report.error
    # 200 members of 1 MiB each once expanded; the fixed importer never expands one
    assert peak < 16 << 20, f"peak {peak >> 20} MiB"
    assert sum(day.batches for day in await store.usage("acme", None, None)) == 0


def test_member_sizes_must_fit_in_the_file(acme: Agent) -> None:
    good = bundle.write_bundle(
        [(1, acme.next())], tenant="acme", agent=acme.agent, created="2026-03-10T12:00:00Z", key=acme.key
    )
    at = good.index(b"batches/1.dsse.json")
    assert at % 512 == 0  # the member's header block
    header = bytearray(good[at : at + 512])
    header[124:136] = b"%011o\x00" % (8 << 20)  # claims 8 MiB; the file holds a few KiB
    forged = good[:at] + checksummed(header) + good[at + 512 :]
    with pytest.raises(ContractError, match=r"truncated or corrupt|more bytes than the file holds"):
        bundle.read_bundle(forged)


def test_a_bundle_file_is_capped_before_reading(acme: Agent) -> None:
    data = bundle.write_bundle(
        [(1, acme.next())], tenant="acme", agent=acme.agent, created="2026-03-10T12:00:00Z", key=acme.key
    )
    with pytest.raises(ContractError, match="larger than"):
        bundle.read_bundle(io.BytesIO(data), max_bytes=len(data) - 1)
    assert list(bundle.read_bundle(io.BytesIO(data), max_bytes=len(data)).files) == ["batches/1.dsse.json"]


async def test_a_decoy_manifest_signature_under_another_tenants_key_decides_nothing(
    store: Store, clock: Clock, acme: Agent
) -> None:
    other = Agent("globex", "g1")
    await store.create_tenant("globex", now=clock.now)
    await store.add_key("globex", "g1", other.public_key, now=clock.now)
    data = bundle.write_bundle(
        [(1, acme.next())], tenant="acme", agent=acme.agent, created="2026-03-10T12:00:00Z", key=acme.key
    )
    parsed = bundle.read_bundle(data)
    signed = parsed.manifest_envelope
    decoy = dsse.Envelope(
        signed.payload, signed.payload_type, (dsse.Signature(bytes(64), other.key_id), *signed.signatures)
    )
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, body in [("manifest.json", dsse.to_json(decoy)), *parsed.files.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    report = await import_bundle(store, out.getvalue(), now=clock.now)
    assert (report.accepted, report.refused, report.tenant) == (1, {}, "acme")
    assert not [u for u in await store.usage() if u.tenant == "globex"]
