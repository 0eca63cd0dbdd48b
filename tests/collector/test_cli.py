"""``hush-collector`` through subprocesses, as an operator or a script would run it, error paths included."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nacl.signing
import pytest

from collector.store.schema import MIGRATIONS
from hushmetric import bundle, dsse
from tests.collector.collector_testkit import Agent, Hush, Served, one_line_error, serving
from tests.pg import temp_database


@pytest.fixture
def hush(tmp_path: Path) -> Hush:
    h = Hush(tmp_path)
    h.ok("init")
    return h


def b64(agent: Agent) -> str:
    return base64.b64encode(agent.public_key).decode()


def test_init_creates_db_and_private_key(hush: Hush) -> None:
    key_file = Path(f"{hush.db}.key")
    assert hush.db.exists()
    assert key_file.stat().st_mode & 0o777 == 0o600
    pub = hush.ok("pubkey").strip()
    assert len(base64.b64decode(pub)) == 32
    hush.ok("init")  # idempotent
    assert hush.ok("pubkey").strip() == pub


def test_missing_database_is_unavailable(tmp_path: Path) -> None:
    one_line_error(Hush(tmp_path)("tenant", "list"), 4, r"does not exist; run `hush-collector init`")


def test_migrate_reports_the_schema_version(tmp_path: Path) -> None:
    h = Hush(tmp_path)
    one_line_error(h("migrate"), 4, r"does not exist; run `hush-collector init`")
    h.ok("init")
    assert h.ok("migrate").strip().endswith(f"schema v{MIGRATIONS[-1][0]}, up to date")


def test_db_from_environment(tmp_path: Path) -> None:
    h = Hush(tmp_path)
    assert h("init", db=False, env={"HUSH_COLLECTOR_DB": str(tmp_path / "env.db")}).code == 0
    assert (tmp_path / "env.db").exists()


def test_tenant_flow_and_errors(hush: Hush) -> None:
    assert hush.ok("tenant", "create", "acme").strip() == "tenant acme: active"
    one_line_error(hush("tenant", "create", "acme"), 5, "already exists")
    hush.ok("tenant", "suspend", "acme")
    assert json.loads(hush.ok("tenant", "list", "--json")) == [
        {
            "name": "acme",
            "state": "suspended",
            "created": json.loads(hush.ok("tenant", "list", "--json"))[0]["created"],
        }
    ]
    hush.ok("tenant", "resume", "acme")
    one_line_error(hush("tenant", "suspend", "nope"), 3, "tenant 'nope' not found")
    one_line_error(hush("tenant", "create", "has space"), 2, "tenant name")
    one_line_error(hush("tenant", "create", "-"), 2, "tenant name")
    hush.ok("tenant", "delete", "acme")
    one_line_error(hush("tenant", "resume", "acme"), 5, "deleted")
    assert "acme  deleted" in hush.ok("tenant", "list")


def test_key_flow_and_errors(hush: Hush, tmp_path: Path) -> None:
    hush.ok("tenant", "create", "acme")
    agent = Agent("acme", "a1")
    out = hush.ok("key", "add", "acme", "--agent", "a1", "--public-key", b64(agent))
    assert out == agent.key_id + "\n"
    assert agent.key_id == hashlib.sha256(agent.public_key).hexdigest()
    other = Agent("acme", "a2")
    (tmp_path / "a2.pub").write_text(b64(other) + "\n")
    assert hush.ok("key", "add", "acme", "--agent", "a2", "--public-key", "@a2.pub").strip() == other.key_id
    one_line_error(
        hush("key", "add", "nope", "--agent", "a3", "--public-key", b64(Agent("x", "y"))), 3, "not found"
    )
    one_line_error(
        hush("key", "add", "acme", "--agent", "a 3", "--public-key", b64(Agent("x", "y"))), 2, "--agent"
    )
    one_line_error(hush("key", "add", "acme", "--agent", "a3", "--public-key", "garbage!"), 2, "base64")
    one_line_error(hush("key", "add", "acme", "--agent", "a3", "--public-key", "AAAA"), 2, "32 bytes")
    one_line_error(
        hush("key", "add", "acme", "--agent", "a3", "--public-key", "@missing.pub"), 2, "missing.pub"
    )
    one_line_error(
        hush("key", "add", "acme", "--agent", "a1", "--public-key", b64(agent)), 5, "already registered"
    )
    hush.ok("key", "retire", agent.key_id)
    hush.ok("key", "revoke", other.key_id)
    listed = {k["agent"]: k for k in json.loads(hush.ok("key", "list", "acme", "--json"))}
    assert (listed["a1"]["state"], listed["a2"]["state"]) == ("retired", "revoked")
    assert listed["a1"]["retired_at"] is not None
    one_line_error(hush("key", "revoke", "0" * 64), 3, "not found")
    one_line_error(hush("key", "list", "nope"), 3, "not found")


def test_enroll_token(hush: Hush) -> None:
    hush.ok("tenant", "create", "acme")
    out = hush.ok("enroll-token", "acme", "--ttl", "2h")
    assert re.fullmatch(r"hmt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\n", out)
    one_line_error(hush("enroll-token", "acme", "--ttl", "soon"), 2, "--ttl")
    one_line_error(hush("enroll-token", "nope"), 3, "not found")
    bound = hush.ok("enroll-token", "acme", "--agent", "edge-1", "--rotate")
    assert re.fullmatch(r"hmt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\n", bound)
    one_line_error(hush("enroll-token", "acme", "--rotate"), 2, "--rotate.*--agent")
    one_line_error(hush("enroll-token", "acme", "--agent", "bad agent"), 2, "--agent")


def test_quota_set_show(hush: Hush) -> None:
    hush.ok("tenant", "create", "acme")
    hush.ok(
        "quota",
        "set",
        "acme",
        "--rows-per-day",
        "50",
        "--batches-per-second",
        "2.5",
        "--burst",
        "5",
        "--max-age",
        "90d",
    )
    hush.ok("quota", "set", "acme", "--bytes-per-day", "1000")
    shown = json.loads(hush.ok("quota", "show", "acme", "--json"))
    assert shown["rows_per_day"] == 50
    assert shown["bytes_per_day"] == 1000
    assert shown["burst"] == 5
    assert shown["batches_per_second"] == 2.5
    assert shown["max_age_seconds"] == 90 * 86400
    assert shown["today"]["rows"] == 0
    hush.ok("quota", "set", "acme", "--rows-per-day", "none")
    assert json.loads(hush.ok("quota", "show", "acme", "--json"))["rows_per_day"] is None
    one_line_error(hush("quota", "set", "acme", "--rows-per-day", "many"), 2, "--rows-per-day")
    one_line_error(hush("quota", "set", "acme", "--rows-per-day", "-5"), 2, "positive")
    one_line_error(hush("quota", "set", "acme"), 2, "at least one")
    one_line_error(hush("quota", "show", "nope"), 3, "not found")


def test_bad_flags_are_one_line_usage_errors(hush: Hush) -> None:
    one_line_error(hush("tenant", "create"), 2, "required")
    one_line_error(hush("usage", "--format", "xml"), 2, "invalid choice")
    one_line_error(hush("frobnicate"), 2, "invalid choice")
    one_line_error(hush("usage", "--since", "yesterday"), 2, "--since")
    one_line_error(hush("usage", "--tenant", "nope"), 3, "not found")


def test_audit_export_verify_and_tamper(hush: Hush, tmp_path: Path) -> None:
    hush.ok("tenant", "create", "acme")
    hush.ok("tenant", "suspend", "acme")
    pub = hush.ok("pubkey").strip()
    hush.ok("audit", "export", "--out", "audit.jsonl")
    out = hush.ok("audit", "verify", "audit.jsonl", "--public-key", pub)
    assert re.fullmatch(r"verified 3 entries; head [0-9a-f]{64}\n", out)
    lines = (tmp_path / "audit.jsonl").read_bytes().splitlines(keepends=True)
    (tmp_path / "cut.jsonl").write_bytes(b"".join(lines[:1] + lines[2:]))
    one_line_error(hush("audit", "verify", "cut.jsonl", "--public-key", pub), 1, r"cut.jsonl: line 2")
    (tmp_path / "pub.txt").write_text(pub)
    assert hush("audit", "verify", "audit.jsonl", "--public-key", "@pub.txt").code == 0
    stdout_export = hush.ok("audit", "export", "--tenant", "acme")
    assert stdout_export.count("\n") == 4


@pytest.fixture
def served(hush: Hush) -> Iterator[Served]:
    with serving(hush) as s:
        yield s


def test_serve_prints_address_and_stops_on_sigterm(served: Served) -> None:
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=30) == 0
    assert served.proc.stderr is not None
    assert "stopped" in served.proc.stderr.read()


def test_serve_config_errors_name_file_and_key(hush: Hush, tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('listen = "127.0.0.1:0"\nmax_clock_skew = "soon"\n')
    one_line_error(hush("serve", "--config", "bad.toml"), 2, r"bad\.toml: max_clock_skew")
    (tmp_path / "typo.toml").write_text('lisen = "127.0.0.1:0"\n')
    one_line_error(hush("serve", "--config", "typo.toml"), 2, r"typo\.toml.*lisen")
    one_line_error(hush("serve"), 2, "--listen")
    (tmp_path / "rpcs.toml").write_text('listen = "127.0.0.1:0"\nmax_concurrent_rpcs = 0\n')
    one_line_error(hush("serve", "--config", "rpcs.toml"), 2, r"rpcs\.toml.*max_concurrent_rpcs")


def test_import_bundle_is_idempotent_and_checks_bytes(hush: Hush, tmp_path: Path) -> None:
    import time

    hush.ok("tenant", "create", "acme")
    agent = Agent("acme", "a1", created=float(int(time.time())))
    hush.ok("key", "add", "acme", "--agent", "a1", "--public-key", b64(agent))
    envelopes = [(i + 1, agent.next(rows=2)) for i in range(3)]
    data = bundle.write_bundle(
        envelopes, tenant="acme", agent="a1", created="2026-03-10T12:00:00Z", key=agent.key
    )
    (tmp_path / "b.tar").write_bytes(data)
    r = hush("import", "b.tar")
    assert (r.code, r.out) == (0, "b.tar: accepted 3, duplicate 0, refused 0\n"), r
    r = hush("import", "b.tar")
    assert (r.code, r.out) == (0, "b.tar: accepted 0, duplicate 3, refused 0\n"), r
    usage = json.loads(hush.ok("usage", "--format", "json"))
    assert [(u["batches"], u["rows"], u["duplicates"]) for u in usage] == [(3, 6, 3)]
    # one flipped byte inside a batch file: its hash no longer matches the signed manifest
    member = b'"payload":"'
    at = data.index(member, data.index(b"batches/2.dsse.json")) + len(member) + 3
    tampered = data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]
    (tmp_path / "t.tar").write_bytes(tampered)
    r = hush("import", "t.tar")
    assert r.code == 1, r
    assert "bundle_hash_mismatch=1" in r.out, r
    # a manifest signed by another key
    forged = bundle.write_bundle(
        envelopes, tenant="acme", agent="a1", created="x", key=nacl.signing.SigningKey.generate()
    )
    (tmp_path / "f.tar").write_bytes(forged)
    r = hush("import", "f.tar")
    assert r.code == 1, r
    assert "bundle_unknown_key=1" in r.out, r
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    r = hush("import", "junk.tar")
    assert r.code == 1
    assert "bundle_malformed" in r.out
    one_line_error(hush("import", "absent.tar"), 3, "absent.tar")


def test_import_refuses_manifest_with_bad_signature(hush: Hush, tmp_path: Path) -> None:
    hush.ok("tenant", "create", "acme")
    agent = Agent("acme", "a1")
    hush.ok("key", "add", "acme", "--agent", "a1", "--public-key", b64(agent))
    data = bundle.write_bundle(
        [(1, agent.next())], tenant="acme", agent="a1", created="2026-03-10T12:00:00Z", key=agent.key
    )
    parsed = bundle.read_bundle(data)
    env = parsed.manifest_envelope
    sig = env.signatures[0]
    bad_manifest = dsse.Envelope(env.payload, env.payload_type, (dsse.Signature(bytes(64), sig.keyid),))
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, body in [("manifest.json", dsse.to_json(bad_manifest)), *parsed.files.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    (tmp_path / "m.tar").write_bytes(out.getvalue())
    r = hush("import", "m.tar")
    assert r.code == 1, r
    assert "bundle_bad_signature=1" in r.out, r


def test_report_and_funnel_commands(hush: Hush, tmp_path: Path) -> None:
    import time

    hush.ok("tenant", "create", "acme")
    agent = Agent("acme", "a1", created=float(int(time.time())))
    hush.ok("key", "add", "acme", "--agent", "a1", "--public-key", b64(agent))
    data = bundle.write_bundle(
        [(1, agent.next(rows=3))], tenant="acme", agent="a1", created="x", key=agent.key
    )
    (tmp_path / "b.tar").write_bytes(data)
    hush.ok("import", "b.tar")
    report = json.loads(hush.ok("report", "--tenant", "acme", "--format", "json"))
    assert report["tenant"] == "acme"
    assert "metric0" in hush.ok("report", "--tenant", "acme")
    assert hush.ok("report", "--tenant", "acme", "--format", "csv").startswith("row,")
    funnel = json.loads(
        hush.ok("funnel", "--tenant", "acme", "--stages", "metric0,metric1", "--format", "json")
    )
    assert funnel["tenant"] == "acme"
    one_line_error(hush("report", "--tenant", "nope"), 3, "not found")
    one_line_error(hush("funnel", "--tenant", "acme", "--stages", "metric0"), 2, "--stages")
    one_line_error(hush("report", "--tenant", "acme", "--since", "last week"), 2, "--since")


def test_kill_switch_and_config_file_across_processes(hush: Hush, tmp_path: Path) -> None:
    """``serve`` reads its settings from TOML; ``tenant suspend`` from another process stops ingest at once."""
    import time

    import grpc

    from hushmetric.v1 import ingest_pb2_grpc
    from hushmetric.wire import envelope_to_proto

    hush.ok("tenant", "create", "acme")
    agent = Agent("acme", "a1", created=float(int(time.time())))
    hush.ok("key", "add", "acme", "--agent", "a1", "--public-key", b64(agent))
    (tmp_path / "collector.toml").write_text(
        f'db = "{hush.db}"\nmax_clock_skew = "1m"\nshutdown_grace = "2s"\n'
    )
    with (
        serving(hush, "--config", "collector.toml") as served,
        grpc.insecure_channel(served.address) as channel,
    ):
        stub = ingest_pb2_grpc.IngestStub(channel)
        assert stub.Submit(envelope_to_proto(agent.next()), timeout=10).seq == 1
        hush.ok("tenant", "suspend", "acme")
        with pytest.raises(grpc.RpcError) as info:
            stub.Submit(envelope_to_proto(agent.next()), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        hush.ok("tenant", "resume", "acme")
        agent.seq -= 1
        assert stub.Submit(envelope_to_proto(agent.next()), timeout=10).seq == 2
    usage = json.loads(hush.ok("usage", "--tenant", "acme", "--format", "json"))
    assert [(u["batches"], u["refused"]) for u in usage] == [(2, {"tenant_suspended": 1})]


@pytest.mark.postgres
async def test_init_migrate_and_serve_never_print_the_database_password(tmp_path: Path) -> None:
    """Issue 10: the URL is shown with its password masked (trust auth on loopback ignores it)."""
    secret = "s3cret-pw-42"
    async with temp_database() as url:
        scheme, rest = url.split("://", 1)
        user, host = rest.split("@", 1)
        with_password = f"{scheme}://{user}:{secret}@{host}"
        env = {"HUSH_COLLECTOR_DB": with_password, "HUSH_COLLECTOR_KEY": str(tmp_path / "c.key")}
        hush = Hush(tmp_path)
        seen = []
        for args in (("init",), ("migrate",)):
            r = hush(*args, db=False, env=env)
            assert r.code == 0, r
            seen.append(r.out + r.err)
        assert "***" in seen[0]
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector.cli", "serve", "--listen", "127.0.0.1:0"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        seen.append(address + out + err)
    assert re.fullmatch(r"127\.0\.0\.1:\d+", address), seen
    assert "serving postgresql://" in seen[-1], seen
    assert not [s for s in seen if secret in s], seen
