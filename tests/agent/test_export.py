"""agent.export: the outbox moves into a bundle that parses and verifies, and the egress ledger says so."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import nacl.signing
import pytest

from agent import egress, outbox
from agent.export import ExportError, export_bundle
from agent.seal import Sealed, seal
from agent.state import open_state, transaction
from hushmetric import dsse
from hushmetric.batch import Noise, Privacy, Row, decode_batch
from hushmetric.bundle import decode_manifest, read_bundle
from hushmetric.keys import key_id

KEY = nacl.signing.SigningKey(b"\x04" * 32)
START = 1_767_225_600
AT = START + 7200.0


def lookup(keyid: str) -> bytes | None:
    public = bytes(KEY.verify_key)
    return public if keyid == key_id(public) else None


def release(conn: sqlite3.Connection, n: int) -> list[Sealed]:
    out = []
    for _ in range(n):
        with transaction(conn):
            seq, prev = outbox.next_seq(conn)
            out.append(
                seal(
                    tenant="acme",
                    agent="edge-1",
                    seq=seq,
                    prev=prev,
                    created=START + seq,
                    window=(START, START + 60),
                    policy_digest="ab" * 32,
                    privacy=Privacy("user", epsilon=0.5),
                    rows=[Row("visits", "count", {}, 3.0, Noise("laplace", 2.0))] * 2,
                    key=KEY,
                )
            )
            outbox.put(conn, out[-1])
    return out


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_state(tmp_path / "state", [outbox.SCHEMA, egress.SCHEMA])
    yield c
    c.close()


def test_export_writes_a_verifiable_bundle_and_empties_the_outbox(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    made = release(conn, 3)
    out = tmp_path / "out" / "site-a.tar"
    out.parent.mkdir()
    report = export_bundle(conn, KEY, out, tenant="acme", agent="edge-1", at=AT)
    assert (report.path, report.batches, report.rows, report.first_seq, report.last_seq) == (
        str(out),
        3,
        6,
        1,
        3,
    )
    assert report.remaining == 0
    assert "exported 3 batches" in report.message
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert report.bytes == out.stat().st_size
    assert [p.name for p in out.parent.iterdir()] == ["site-a.tar"]  # no temporary left behind

    bundle = read_bundle(out.read_bytes())
    manifest = decode_manifest(
        dsse.verify(bundle.manifest_envelope, dsse.MANIFEST_PAYLOAD_TYPE, lookup).payload
    )
    assert (manifest.tenant, manifest.agent, manifest.created) == ("acme", "edge-1", "2026-01-01T02:00:00Z")
    assert [e.seq for e in manifest.batches] == [1, 2, 3]
    for entry, sealed in zip(manifest.batches, made, strict=True):
        body = bundle.files[entry.file]
        assert hashlib.sha256(body).hexdigest() == entry.sha256
        verified = dsse.verify(dsse.from_json(body), dsse.BATCH_PAYLOAD_TYPE, lookup)
        assert verified.payload == sealed.payload  # the exact bytes that were signed
        assert decode_batch(verified.payload).seq == sealed.seq

    assert outbox.depth(conn).count == 0
    items = egress.entries(conn)
    assert [(e.seq, e.destination, e.digest, e.rows, e.at) for e in items] == [
        (s.seq, "bundle:site-a.tar", s.digest, 2, AT) for s in made
    ]
    assert egress.verify(conn).ok
    assert outbox.next_seq(conn) == (4, made[-1].digest)  # exported seqs are never reused


def test_empty_outbox_writes_no_bundle(conn: sqlite3.Connection, tmp_path: Path) -> None:
    report = export_bundle(conn, KEY, tmp_path / "b.tar", tenant="acme", agent="edge-1", at=AT)
    assert (report.path, report.batches) == (None, 0)
    assert "nothing to export" in report.message
    assert not (tmp_path / "b.tar").exists()
    assert egress.entries(conn) == []


def test_export_is_refused_while_egress_is_stopped(conn: sqlite3.Connection, tmp_path: Path) -> None:
    release(conn, 2)
    with transaction(conn):
        egress.stop(conn, reason="audit in progress", at=1.0)
    with pytest.raises(ExportError, match="egress is stopped") as err:
        export_bundle(conn, KEY, tmp_path / "b.tar", tenant="acme", agent="edge-1", at=AT)
    assert err.value.code == "egress_stopped"
    assert not (tmp_path / "b.tar").exists()
    assert outbox.depth(conn).count == 2
    assert [e.kind for e in egress.entries(conn)] == ["stop"]


def test_an_existing_file_is_never_overwritten(conn: sqlite3.Connection, tmp_path: Path) -> None:
    release(conn, 1)
    out = tmp_path / "b.tar"
    out.write_bytes(b"an earlier bundle")
    with pytest.raises(ExportError) as err:
        export_bundle(conn, KEY, out, tenant="acme", agent="edge-1", at=AT)
    assert err.value.code == "exists"
    assert out.read_bytes() == b"an earlier bundle"
    assert outbox.depth(conn).count == 1
    assert egress.entries(conn) == []


def test_an_unwritable_destination_leaves_everything_in_place(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    release(conn, 1)
    with pytest.raises(ExportError) as err:
        export_bundle(conn, KEY, tmp_path / "missing-dir" / "b.tar", tenant="acme", agent="edge-1", at=AT)
    assert err.value.code == "io"
    assert outbox.depth(conn).count == 1
    assert egress.entries(conn) == []


def test_a_large_outbox_exports_in_several_bundles(conn: sqlite3.Connection, tmp_path: Path) -> None:
    release(conn, 5)
    first = export_bundle(conn, KEY, tmp_path / "1.tar", tenant="acme", agent="edge-1", at=AT, limit=3)
    assert (first.batches, first.first_seq, first.last_seq, first.remaining) == (3, 1, 3, 2)
    assert "2 batches remain" in first.message
    second = export_bundle(conn, KEY, tmp_path / "2.tar", tenant="acme", agent="edge-1", at=AT, limit=3)
    assert (second.batches, second.first_seq, second.last_seq, second.remaining) == (2, 4, 5, 0)
    assert [e.destination for e in egress.entries(conn)] == ["bundle:1.tar"] * 3 + ["bundle:2.tar"] * 2
