"""Certified agents end to end (issue 14): the real ``hush-agent certify`` refuses a config that does not
conform, signs one that does, and delivers it online (``--send`` to a served collector) or in an
air-gap bundle; ``hush-collector certify verify|list`` and the HTML report show it."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from hushmetric.timefmt import format_rfc3339
from tests.collector.collector_testkit import Hush, one_line_error, serving
from tests.integration.agentkit import AgentDir, events_jsonl, exact_policy, init_agent

T = 1767571200  # 2026-01-05T00:00:00Z


def _collector(tmp_path: Path) -> Hush:
    hush = Hush(tmp_path / "collector")
    hush.cwd.mkdir()
    hush.ok("init")
    hush.ok("tenant", "create", "acme")
    return hush


def _register(hush: Hush, agent: AgentDir) -> dict[str, str]:
    key: dict[str, str] = agent.json("key", "show", "--json")
    hush.ok("key", "add", "acme", "--agent", key["agent"], "--public-key", key["public_key"])
    return key


def test_certify_online_verify_offline_and_badge(tmp_path: Path) -> None:
    hush = _collector(tmp_path)
    with serving(hush) as served:
        agent = init_agent(tmp_path / "site", collector=served.address)
        key = _register(hush, agent)
        refused = agent("certify", "--profile", "saas", "--send")  # a loopback collector is not saas
        assert refused.code == 1, refused
        assert refused.out == "", refused
        assert refused.err.count("\n") == 1
        assert "not certified" in refused.err
        assert "collector-endpoints (collector.endpoints[0])" in refused.err
        bad_validity = agent("certify", "--profile", "on-prem", "--valid", "2y")
        assert bad_validity.code == 2, bad_validity
        assert "--valid" in bad_validity.err
        agent.ok("egress", "stop", "--reason", "audit")
        stopped = agent("certify", "--profile", "on-prem", "--send")  # the kill switch holds
        assert stopped.code == 1, stopped
        assert "egress is stopped (audit)" in stopped.err
        assert json.loads(hush.ok("certify", "list", "--json")) == []
        agent.ok("egress", "resume")
        cert = tmp_path / "cert.json"
        sent = agent.ok("certify", "--profile", "on-prem", "--valid", "7d", "--out", str(cert), "--send")
        assert f"recorded as the current certificate of acme/{key['agent']}" in sent
        # what left is in the egress ledger, and the kill switch is not confused by it
        entries = json.loads(agent.ok("egress", "--json"))
        assert [e["kind"] for e in entries][-3:] == ["stop", "resume", "certificate"]
        assert entries[-1]["destination"] == f"grpc:{served.address}"
        assert entries[-1]["nbytes"] == len(cert.read_bytes()) - 1  # the file ends with a newline
        assert agent.ok("egress", "--verify").startswith("ok:")
        assert not agent.json("status")["egress_stopped"]
    listed = json.loads(hush.ok("certify", "list", "acme", "--json"))
    assert [(c["agent"], c["profile"], c["status"]) for c in listed] == [(key["agent"], "on-prem", "valid")]
    # offline: against the registered key, and against a key given on the command line
    assert hush.ok("certify", "verify", str(cert)).startswith(f"ok: certificate of agent {key['agent']}")
    assert "profile on-prem" in hush.ok("certify", "verify", str(cert), "--public-key", key["public_key"])
    other = base64.b64encode(b"\x01" * 32).decode()
    one_line_error(hush("certify", "verify", str(cert), "--public-key", other), 1, "invalid certificate")
    envelope = json.loads(cert.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["valid_until"] = "2099-01-01T00:00:00Z"  # stretch it: the signature no longer verifies
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    cert.write_text(json.dumps(envelope))
    one_line_error(hush("certify", "verify", str(cert)), 1, r"invalid certificate .*: bad_signature")
    cert.write_text("not json")
    one_line_error(hush("certify", "verify", str(cert)), 1, "invalid certificate")
    html = tmp_path / "report.html"
    hush.ok("report", "acme", "--format", "html", "--out", str(html))
    assert 'data-status="valid"' in html.read_text()


def test_certificate_travels_in_a_bundle(tmp_path: Path) -> None:
    hush = _collector(tmp_path)
    agent = init_agent(tmp_path / "site")
    agent.set_policy(exact_policy())
    key = _register(hush, agent)
    events = tmp_path / "events.jsonl"
    events.write_text(
        events_jsonl([{"name": "click", "ts": T + h * 3600, "unit": f"u{h}"} for h in range(3)])
    )
    agent.ok("run", "--once", "--input", str(events), "--from", str(T), "--to", str(T + 3 * 3600))
    cert = tmp_path / "cert.json"
    agent.ok("certify", "--profile", "air-gap", "--out", str(cert))
    statement = json.loads(base64.b64decode(json.loads(cert.read_text())["payload"]))
    assert statement["spend"]
    assert statement["egress"]["entries"] == 0
    assert all(c["passed"] for c in statement["conformance"]["checks"])
    bundle = tmp_path / "b.tar"
    exported = agent.ok("export", "--out", str(bundle), "--certificate", str(cert))
    assert "with the agent certificate" in exported
    last = json.loads(agent.ok("egress", "--json"))[-1]
    assert (last["kind"], last["destination"]) == ("certificate", "bundle:b.tar")
    imported = hush.ok("import", str(bundle))
    assert "refused 0; certificate recorded" in imported
    assert "certificate duplicate" in hush.ok("import", str(bundle))
    [listed] = json.loads(hush.ok("certify", "list", "--json"))
    assert (listed["agent"], listed["profile"], listed["status"]) == (key["agent"], "air-gap", "valid")
    # with an empty outbox, a bundle can carry the certificate alone
    alone = tmp_path / "alone.tar"
    assert "certificate only" in agent.ok("export", "--out", str(alone), "--certificate", str(cert))
    assert "accepted 0, duplicate 0, refused 0; certificate duplicate" in hush.ok("import", str(alone))
    # another agent's certificate is not exported under this agent's key
    stranger = init_agent(tmp_path / "other")
    theirs = tmp_path / "theirs.json"
    stranger.ok("certify", "--profile", "air-gap", "--out", str(theirs))
    wrong = agent("export", "--out", str(tmp_path / "c.tar"), "--certificate", str(theirs))
    assert wrong.code != 0
    assert "not this agent's certificate" in wrong.err
    assert "Traceback" not in wrong.err


def test_unwritable_out_and_oversized_certificate_are_one_line_errors(tmp_path: Path) -> None:
    """``--out`` naming a directory or a missing one, and ``--certificate`` naming something far
    larger than a certificate (a device, a huge file), are usage errors: exit 2, one line."""
    agent = init_agent(tmp_path / "site", collector="127.0.0.1:1")  # conforms to on-prem; never dialled
    missing = str(tmp_path / "no" / "such" / "dir" / "out.json")
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * (1 << 20))
    for args in (
        ("certify", "--profile", "on-prem", "--out", str(tmp_path)),
        ("certify", "--profile", "on-prem", "--out", missing),
        ("attest", "--out", missing),
        ("demo-data", "--out", missing, "--users", "2", "--days", "1"),
        ("export", "--out", str(tmp_path / "b.tar"), "--certificate", str(huge)),
    ):
        ran = agent(*args)
        assert ran.code == 2, (args, ran)
        assert "Traceback" not in ran.err, ran.err
        assert ran.err.count("\n") == 1, ran.err
    assert not (tmp_path / "b.tar").exists()


def test_verify_prints_no_bidi_override_from_the_file(tmp_path: Path) -> None:
    """A certificate's own words (agent, profile) reach the operator's terminal made safe: a right-to-
    left override (allowed in names, unlike control characters) becomes ``?``."""
    import nacl.signing

    from hushmetric.certificate import Certificate, Conformance, EgressHead, ProfileCheck, sign_statement
    from hushmetric.keys import key_id

    key = nacl.signing.SigningKey.generate()
    public = bytes(key.verify_key)
    profile = "on\u202eprem"
    cert = Certificate(
        1, "a\u202e1", "acme", key_id(public), public, profile, "demo", "ab" * 32, "zcdp", "rho", "day", 1.0,
        Conformance(profile, True, [ProfileCheck("collector-tls", True)]), EgressHead(0, ""), [],
        format_rfc3339(time.time() - 60), format_rfc3339(time.time() + 30 * 86400),
    )  # fmt: skip
    path = tmp_path / "cert.json"
    path.write_bytes(sign_statement(cert, key))
    hush = _collector(tmp_path)
    out = hush("certify", "verify", str(path), "--public-key", base64.b64encode(public).decode())
    assert "\u202e" not in out.out + out.err, out
    assert "profile on?prem" in out.out + out.err, out
