"""``hush-collector policy …`` (collector/cli/governance.py): output, one-line errors, exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path

from collector.cli import main
from collector.cli.kit import MAX_NOTE
from hushmetric.exitcodes import ExitCode

DIGEST = "cd" * 32


def run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "--db", str(tmp_path / "c.db")], environ={}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def ok(tmp_path: Path, *args: str) -> str:
    code, out, err = run(tmp_path, *args)
    assert code == ExitCode.OK, err
    return out


def one_line(result: tuple[int, str, str], code: int, text: str) -> None:
    got, _, err = result
    assert got == code, err
    assert err.count("\n") == 1, err
    assert text in err
    assert "Traceback" not in err


def test_policy_commands_and_their_errors(tmp_path: Path) -> None:
    ok(tmp_path, "init")
    ok(tmp_path, "tenant", "create", "acme")
    assert ok(tmp_path, "policy", "approve", "acme", "--digest", DIGEST, "--note", "v2") == (
        f"policy {DIGEST[:16]} approved for tenant acme\n"
    )
    one_line(
        run(tmp_path, "policy", "approve", "acme", "--digest", DIGEST), ExitCode.CONFLICT, "already approved"
    )
    one_line(run(tmp_path, "policy", "approve", "acme", "--digest", "CD" * 32), ExitCode.USAGE, "--digest")
    one_line(run(tmp_path, "policy", "approve", "nope", "--digest", DIGEST), ExitCode.NOT_FOUND, "nope")
    one_line(run(tmp_path, "policy", "revoke", "acme", "--digest", "ee" * 32), ExitCode.NOT_FOUND, "ee")
    assert "revoked" in ok(tmp_path, "policy", "revoke", "acme", "--digest", DIGEST)
    [listed] = json.loads(ok(tmp_path, "policy", "list", "--json"))
    assert (listed["tenant"], listed["digest"], listed["state"], listed["note"]) == (
        "acme",
        DIGEST,
        "revoked",
        "v2",
    )
    assert DIGEST in ok(tmp_path, "policy", "list", "acme")
    report = ok(tmp_path, "report", "acme")  # the KPI report carries the governance section
    assert "Governance" in report
    assert f"{DIGEST[:16]}  revoked" in report
    one_line(run(tmp_path, "policy", "cap", "acme", "--rho-per-day", "-1"), ExitCode.USAGE, "--rho-per-day")
    one_line(run(tmp_path, "policy", "cap", "acme", "--rho-per-day", "nan"), ExitCode.USAGE, "--rho-per-day")
    assert ok(tmp_path, "policy", "cap", "acme", "--rho-per-day", "0.5", "--per", "tenant") == (
        "tenant acme: rho per day at most 0.5 per tenant\n"
    )
    shown = json.loads(ok(tmp_path, "policy", "spend", "acme", "--day", "2026-03-10", "--json"))
    assert shown == {
        "tenant": "acme",
        "day": "2026-03-10",
        "cap": {"tenant": "acme", "rho_per_day": 0.5, "per": "tenant"},
        "spend": [],
    }
    one_line(run(tmp_path, "policy", "spend", "nope"), ExitCode.NOT_FOUND, "nope")
    one_line(run(tmp_path, "policy", "spend", "acme", "--day", "10.3."), ExitCode.USAGE, "--day")
    assert ok(tmp_path, "policy", "cap", "acme", "--rho-per-day", "none") == "tenant acme: no privacy cap\n"
    audit = [json.loads(line)["action"] for line in ok(tmp_path, "audit", "export").splitlines()[:-1]]
    assert [a for a in audit if a.startswith("policy.")] == [
        "policy.approve",
        "policy.revoke",
        "policy.cap",
        "policy.cap",
    ]


def test_a_long_or_control_character_note_is_refused(tmp_path: Path) -> None:
    ok(tmp_path, "init")
    ok(tmp_path, "tenant", "create", "acme")
    for note in ("x" * (MAX_NOTE + 1), "line\nbreak", "\x1b[31mred", "rtl\u202eoverride"):
        args = ("policy", "approve", "acme", "--digest", DIGEST, "--note", note)
        one_line(run(tmp_path, *args), ExitCode.USAGE, "--note")
    assert json.loads(ok(tmp_path, "policy", "list", "--json")) == []  # nothing approved
    ok(tmp_path, "policy", "approve", "acme", "--digest", DIGEST, "--note", "é" * MAX_NOTE)
