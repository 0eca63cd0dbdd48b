"""End to end over mutual TLS: `hush-collector tls selfsigned`, `serve --tls-cert --tls-key --client-ca`,
and the real agent (enroll, probe, run --once) with its TLS files relative to its config directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.collector.collector_testkit import Hush, serving
from tests.integration.agentkit import events_jsonl, exact_policy, init_agent

T = 1767571200  # 2026-01-05T00:00:00Z


def test_agent_enrolls_and_delivers_over_mutual_tls(tmp_path: Path) -> None:
    hush = Hush(tmp_path / "collector")
    hush.cwd.mkdir()
    hush.ok("init")
    hush.ok("tenant", "create", "acme")
    token = hush.ok("enroll-token", "acme").strip()
    assert hush("tls", "selfsigned", "--out", "pki", db=False).code == 0
    pki = hush.cwd / "pki"

    with serving(
        hush,
        "--tls-cert", str(pki / "server.pem"),
        "--tls-key", str(pki / "server.key"),
        "--client-ca", str(pki / "ca.pem"),
    ) as served:  # fmt: skip
        agent = init_agent(tmp_path / "site", collector=served.address)
        agent.set_policy(exact_policy())
        tls_dir = agent.root / "tls"
        tls_dir.mkdir()
        for name in ("ca.pem", "client.pem", "client.key"):
            shutil.copy(pki / name, tls_dir / name)
        (tls_dir / "client.key").chmod(0o600)
        agent.edit_config(
            "tls = false\n",
            'tls = true\nca_file = "tls/ca.pem"\nserver_name = "localhost"\n'
            'client_cert = "tls/client.pem"\nclient_key = "tls/client.key"\n',
        )
        assert agent.ok("validate").startswith("ok: ")
        # The agent runs from another working directory: relative TLS files follow the config.
        kid = agent.ok("enroll", "--token", token).strip()
        assert len(kid) == 64
        assert agent.ok("probe") == f"ok: {served.address} (mutual TLS)\n"

        path = tmp_path / "events.jsonl"
        path.write_text(
            events_jsonl([{"name": "click", "ts": T + h * 3600, "unit": f"u{h}"} for h in range(3)])
        )
        report = agent.json(
            "run", "--once", "--input", str(path), "--from", str(T), "--to", str(T + 3 * 3600)
        )
        assert report["batches_sent"] == report["windows_released"] >= 3
        assert report["outbox_depth"] == 0
        assert report["delivery_error"] is None
        sent = [e for e in agent.json("egress") if e["kind"] == "batch"]
        assert {e["destination"] for e in sent} == {f"grpc:{served.address}"}

        # Without its client certificate the agent is turned away, and says why in one line.
        agent.edit_config('client_cert = "tls/client.pem"\nclient_key = "tls/client.key"\n', "")
        refused = agent("probe")
        assert refused.code == 4
        assert "Traceback" not in refused.err
        assert refused.err.strip().splitlines() == [
            f"hush-agent: {served.address}: the collector closed the TLS connection: it may require a "
            "client certificate (mutual TLS: set collector.client_cert and collector.client_key)"
        ]
        # Plaintext towards a TLS port: refused as well, and the hint says so.
        agent.edit_config("tls = true\n", "tls = false\n")
        agent.edit_config('ca_file = "tls/ca.pem"\nserver_name = "localhost"\n', "")
        plain = agent("probe")
        assert plain.code == 4
        assert "does it require TLS? (collector.tls = true)" in plain.err

    usage = json.loads(hush.ok("usage", "--tenant", "acme", "--format", "json"))
    assert sum(u["batches"] for u in usage) == report["batches_sent"]


def test_validate_reports_unreadable_tls_files_and_profiles_refuse_plaintext(tmp_path: Path) -> None:
    agent = init_agent(tmp_path / "site", collector="collector.hushmetric.lan:7443")
    plain = agent("validate", "--profile", "on-prem")
    assert plain.code == 2
    assert "collector.tls: on-prem: TLS is required" in plain.err
    agent.edit_config("tls = false\n", 'tls = true\nca_file = "tls/ca.pem"\n')
    missing = agent("validate", "--profile", "on-prem")
    assert missing.code == 2
    assert "Traceback" not in missing.err
    assert "collector.ca_file: cannot read CA file" in missing.err
    assert str(agent.root / "tls" / "ca.pem") in missing.err  # resolved against the config directory
