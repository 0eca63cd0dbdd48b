"""hush-agent through its CLI, as a new user runs it: happy paths, error paths, exit codes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.integration.agentkit import AgentDir, canary_text, events_jsonl, exact_policy, init_agent, leaked

T = 1767571200  # 2026-01-05T00:00:00Z


def test_init_writes_a_config_that_runs_as_is(tmp_path: Path) -> None:
    agent = init_agent(tmp_path / "site")
    for name in ("agent.key", "site.secret"):
        assert stat.S_IMODE((agent.root / name).stat().st_mode) == 0o600
    assert agent.ok("validate").startswith("ok: ")
    report = agent.json("run", "--once")
    assert report["events"] > 1000
    assert report["windows_released"] > 0
    assert report["rows_released"] > 0
    assert report["outbox_depth"] == report["windows_released"]  # no collector: everything waits
    # data minimisation: attributes no metric uses (emails, free text, client IPs) never get further
    assert report["redactions"].get("dropped_key", 0) > 1000
    # the ledger charged every release, and never more than the cap
    periods = agent.json("ledger")
    assert sum(p["releases"] for p in periods) == report["windows_released"]
    assert all(p["spent"] <= p["cap"] * (1 + 1e-9) for p in periods)
    # an auditor-ready statement of the same, signed with the agent key
    statement = tmp_path / "attestation.json"
    agent.ok("attest", "--out", str(statement))
    verified = agent.json("attest", "--verify", str(statement))
    assert "redactions" not in verified  # exact counts stay local (run report, status, metrics)
    assert sum(p["releases"] for p in verified["periods"]) == report["windows_released"]
    data = bytearray(statement.read_bytes())
    data[len(data) // 2] ^= 0x01
    statement.write_bytes(bytes(data))
    tampered = agent("attest", "--verify", str(statement))
    assert tampered.code in (1, 2)
    assert "Traceback" not in tampered.err
    status = agent.json("status")
    assert status["outbox_batches"] == report["windows_released"]
    assert not status["egress_stopped"]


def test_init_refuses_to_overwrite_and_bad_ids(tmp_path: Path) -> None:
    agent = init_agent(tmp_path / "site")
    again = agent("init", "--dir", str(agent.root), "--tenant", "acme", config=False)
    assert again.code == 2
    assert "already initialised" in again.err
    assert "Traceback" not in again.err
    bad = agent("init", "--dir", str(tmp_path / "x"), "--tenant", "a b", config=False)
    assert bad.code == 2
    assert "tenant" in bad.err


def test_missing_or_broken_config_is_one_clear_line(tmp_path: Path) -> None:
    missing = AgentDir(tmp_path / "nowhere")("validate")
    assert missing.code == 2
    assert missing.err.count("\n") == 1
    assert "file not found" in missing.err
    agent = init_agent(tmp_path / "site")
    agent.set_policy(exact_policy().replace('stat = "count"', 'stat = "median"', 1))
    broken = agent("validate")
    assert broken.code == 2
    assert "Traceback" not in broken.err
    assert "policy.toml: metrics[0].stat: Invalid enum value 'median'" in broken.err
    usage = agent("run", "--bogus")
    assert usage.code == 2
    assert "unrecognized arguments" in usage.err


def test_run_once_on_input_file_releases_exact_counts_and_resumes(tmp_path: Path) -> None:
    agent = init_agent(tmp_path / "site")
    agent.set_policy(exact_policy())
    events = [{"name": "signup", "ts": T + i, "unit": f"u{i}", "attrs": {"plan": "free"}} for i in range(30)]
    events += [{"name": "click", "ts": T + 10, "unit": "u1"} for _ in range(12)]
    events += [{"name": "signup", "ts": T + 4000, "unit": "late-window", "attrs": {"plan": "team"}}]
    path = tmp_path / "events.jsonl"
    path.write_text(events_jsonl(events) + "not json\n" + '{"name": 5}\n')
    report = agent.json("run", "--once", "--input", str(path), "--from", str(T), "--to", str(T + 7200))
    assert report["events"] == 43
    assert report["dead_letters"] == 2
    assert report["windows_released"] == 2
    dead = agent.json("dead-letter")
    assert sum(dead["counts"].values()) == 2
    assert {d["reason"] for d in dead["recent"]} <= {
        "json",
        "type",
        "missing",
    }
    # raw input never reaches the dead-letter store: only a digest and a reason
    assert "not json" not in agent.state_db.read_bytes().decode("latin-1")
    # a second run over the same file resumes at the committed offset: nothing twice
    again = agent.json("run", "--once", "--input", str(path), "--to", str(T + 7200))
    assert again["events"] == 0
    assert again["windows_released"] == 0


def test_egress_kill_switch_blocks_export_and_is_recorded(tmp_path: Path) -> None:
    agent = init_agent(tmp_path / "site")
    agent.set_policy(exact_policy())
    path = tmp_path / "e.jsonl"
    path.write_text(events_jsonl([{"name": "click", "ts": T, "unit": "u"}]))
    agent.ok("run", "--once", "--input", str(path), "--from", str(T), "--to", str(T + 3600))
    agent.ok("egress", "stop", "--reason", "incident-42")
    refused = agent("export", "--out", str(tmp_path / "b.tar"))
    assert refused.code != 0
    assert "stopped" in refused.err
    assert not (tmp_path / "b.tar").exists()
    assert agent.json("status")["egress_stopped"] is True
    agent.ok("egress", "resume")
    out = agent.ok("export", "--out", str(tmp_path / "b.tar"))
    assert "1 batch" in out
    assert (tmp_path / "b.tar").exists()
    entries = agent.json("egress")
    kinds = [e.get("kind") for e in entries]
    assert "stop" in kinds
    assert "resume" in kinds
    assert "batch" in kinds
    assert agent.ok("egress", "--verify").startswith("ok: ")


def test_redact_dry_run_shows_events_and_text_without_pii(tmp_path: Path) -> None:
    agent = init_agent(tmp_path / "site")
    agent.set_policy(exact_policy())
    text = canary_text()
    ran = agent("redact", "--text", stdin=text + "\nplain words only\n")
    assert ran.code == 0
    assert "plain words only" in ran.out
    assert "findings:" in ran.err
    event = {"name": "click", "ts": T, "unit": "u", "attrs": {"message": text, "secret_attr": "x"}}
    ran = agent("redact", stdin=json.dumps(event) + "\n")
    assert ran.code == 0
    shown = json.loads(ran.out.strip().splitlines()[0])
    assert "secret_attr" not in shown["attrs"]
    leaks = [v for v in ("4711@example.org", "4111", "DE89370400440532013000", "sk_live_") if v in ran.out]
    assert leaks == []


def test_pii_in_input_never_reaches_agent_state_or_bundle(tmp_path: Path) -> None:
    agent = init_agent(tmp_path / "site")
    agent.set_policy(exact_policy())
    events = [
        {"name": "click", "ts": T + i, "unit": "u", "attrs": {"message": canary_text(), "plan": "free"}}
        for i in range(5)
    ]
    path = tmp_path / "pii.jsonl"
    path.write_text(events_jsonl(events))
    agent.ok("run", "--once", "--input", str(path), "--from", str(T), "--to", str(T + 3600))
    bundle = tmp_path / "out.tar"
    agent.ok("export", "--out", str(bundle))
    assert leaked([agent.state_db, bundle]) == []


def test_tune_and_key_show(tmp_path: Path) -> None:
    agent = init_agent(tmp_path / "site")
    doc = agent.json("tune", "--target", "5", "--metric", "signup")
    assert doc["expected"]
    assert all(r["half_width_95"] > 0 for r in doc["expected"])
    assert doc["suggestion"]["needed_per_period"] > 0
    assert doc["suggestion"]["metrics"] == ["signup"]
    text = agent.ok("tune", "--target", "5")
    assert "[budget] rho = " in text
    assert "per day" in text
    public, key_id = agent.ok("key", "show").split()
    assert len(key_id) == 64
    assert len(public) == 44


def test_outbox_quarantine_is_listed_in_status_and_retried_or_dropped_with_a_note(tmp_path: Path) -> None:
    from agent import outbox
    from agent.config import load_config
    from agent.runtime import open_agent_state
    from agent.state import transaction

    agent = init_agent(tmp_path / "site")
    agent.set_policy(exact_policy())
    path = tmp_path / "e.jsonl"
    path.write_text(events_jsonl([{"name": "click", "ts": T + h * 3600, "unit": "u"} for h in range(2)]))
    agent.ok("run", "--once", "--input", str(path), "--from", str(T), "--to", str(T + 7200))
    conn = open_agent_state(load_config(agent.config))
    try:
        seqs = [b.seq for b in outbox.pending(conn, 10)]
        assert len(seqs) >= 2
        with transaction(conn):  # what the sender does on a permanent refusal
            for seq in seqs[:2]:
                outbox.quarantine(conn, seq, code="FAILED_PRECONDITION", reason="too_old: batch is old", at=T)
    finally:
        conn.close()
    first, second = seqs[:2]
    assert agent.json("status")["quarantined"] == 2
    assert "quarantined  2 (refused by the collector for good" in agent.ok("status")
    listed = agent.ok("outbox", "quarantine")
    assert listed.startswith("2 quarantined batches")
    assert "FAILED_PRECONDITION: too_old" in listed
    assert [q["seq"] for q in agent.json("outbox", "quarantine")] == [first, second]

    no_note = agent("outbox", "drop", str(first))
    assert no_note.code == 2
    assert "--note" in no_note.err
    assert len(no_note.err.strip().splitlines()) == 1
    missing = agent("outbox", "retry", "999")
    assert missing.code == 1
    assert "not in the quarantine" in missing.err
    assert "Traceback" not in missing.err
    assert "needs a SEQ" in agent("outbox", "retry").err
    assert "needs one SEQ" in agent("outbox", "drop", "--all", "--note", "x").err

    assert "dropped batch" in agent.ok("outbox", "drop", str(first), "--note", "ops-7: too old to matter")
    drops = [e for e in agent.json("egress") if e["kind"] == "drop"]
    assert [(d["seq"], d["reason"]) for d in drops] == [(first, "ops-7: too old to matter")]
    assert "DROPPED from quarantine" in agent.ok("egress")
    assert agent.ok("egress", "--verify").startswith("ok: ")
    assert agent.json("status")["egress_stopped"] is False  # a drop is not a kill-switch change

    assert f"put back into the outbox: {second}" in agent.ok("outbox", "retry", "--all")
    status = agent.json("status")
    assert status["quarantined"] == 0
    assert status["outbox_batches"] == len(seqs) - 1


def test_one_writer_per_state_directory(tmp_path: Path) -> None:
    """Issue 9, point 5: a daemon holds the state lock; a second writer gets one line and exit 5."""
    import os
    import subprocess
    import sys
    import time

    agent = init_agent(tmp_path / "site")
    agent.set_policy(exact_policy())
    feed = tmp_path / "feed.jsonl"
    feed.write_text("")
    agent.edit_config(
        '[[sources]]\ntype = "demo"\nseed = 7\n', f'[[sources]]\ntype = "file"\npath = "{feed}"\n'
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(agent.config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lock_file = agent.root / "state" / "agent.lock"
        for _ in range(600):  # the daemon writes its pid once it holds the lock
            if lock_file.exists() and lock_file.read_text().strip() == str(daemon.pid):
                break
            assert daemon.poll() is None, "the daemon exited"
            time.sleep(0.05)
        line = f"hush-agent: state directory {agent.root / 'state'} is in use by another hush-agent process (pid {daemon.pid})\n"
        for argv in (("run", "--once"), ("export", "--out", str(tmp_path / "b.tar"))):
            second = agent(*argv)
            assert (second.code, second.err) == (5, line), second
        assert not (tmp_path / "b.tar").exists()
        # the kill switch still works while the daemon runs; read-only commands too
        agent.ok("egress", "stop", "--reason", "drill")
        assert agent.json("status")["egress_stopped"] is True
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    assert agent("run", "--once").code == 0  # the lock died with the daemon
    assert os.path.exists(agent.root / "state" / "agent.lock")
