"""The policy's own detectors through the CLI: listed by validate, at work in redact, counted in the
run report, and a bad one refused in one line."""

from __future__ import annotations

from pathlib import Path

from tests.integration.agentkit import events_jsonl, exact_policy, init_agent

T = 1767571200  # 2026-01-05T00:00:00Z

CUSTOM = """
[[redaction.custom]]
name = "employee_id"
regex = 'EMP-([0-9]{6}[0-9X])'
checksum = "mod-11"
action = "hash"

[[redaction.custom]]
name = "record_number"
regex = '(?<![0-9])[0-9]{8}(?![0-9])'
context = ["mrn"]
"""


def test_validate_lists_and_redact_applies_custom_detectors(tmp_path: Path) -> None:
    agent = init_agent(tmp_path / "site")
    agent.set_policy(exact_policy() + CUSTOM)
    out = agent.ok("validate")
    assert "custom detector employee_id: regex EMP-([0-9]{6}[0-9X]); checksum mod-11; action hash" in out
    assert "custom detector record_number: " in out
    assert "context mrn (within 40 characters); action mask" in out
    ran = agent("redact", "--text", stdin="EMP-1234560 on MRN 12345678\nEMP-1234561 and 87654321\n")
    assert ran.code == 0
    first, second = ran.out.splitlines()
    assert first.startswith("employee_id:")
    assert first.endswith(" on MRN [record_number]")
    assert "1234560" not in first
    assert "12345678" not in first
    assert second == "EMP-1234561 and 87654321"  # wrong check digit; no context word
    assert "employee_id 1" in ran.err
    assert "record_number 1" in ran.err


def test_run_report_counts_custom_findings_as_pii(tmp_path: Path) -> None:
    agent = init_agent(tmp_path / "site")
    agent.set_policy(exact_policy() + CUSTOM)
    events = [{"name": "signup", "ts": T, "unit": "u1", "attrs": {"plan": "free"}}]
    events += [{"name": "signup by EMP-1234560", "ts": T + 1, "unit": "u2", "attrs": {"plan": "free"}}]
    path = tmp_path / "events.jsonl"
    path.write_text(events_jsonl(events))
    out = agent.ok("run", "--once", "--input", str(path), "--from", str(T), "--to", str(T + 3600))
    pii = next(line for line in out.splitlines() if line.startswith("pii in kept attrs"))
    assert "employee_id 1" in pii  # a detector's count, not an attribute dropped
    dropped = [line for line in out.splitlines() if line.startswith("attrs dropped")]
    assert all("employee_id" not in line for line in dropped)
    assert "1234560" not in agent.state_db.read_bytes().decode("latin-1")


def test_a_pattern_that_could_hang_the_agent_is_one_clear_error(tmp_path: Path) -> None:
    agent = init_agent(tmp_path / "site")
    agent.set_policy(
        exact_policy() + "[[redaction.custom]]\nname = 'x'\nregex = '(?:[0-9]|[0-9]{2}){1,30}'\n"
    )
    for command in (("validate",), ("redact", "--text"), ("run", "--once")):
        ran = agent(*command, stdin="")
        assert ran.code == 2, ran.err
        assert "Traceback" not in ran.err
        assert ran.err.count("\n") == 1, ran.err
        assert "policy.toml: redaction.custom[0].regex: may backtrack too much" in ran.err
