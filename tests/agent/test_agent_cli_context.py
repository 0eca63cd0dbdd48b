"""agent.cli in-process: streams, environment and clock are injected (no subprocess, no capsys), the
state context managers close and unlock, and failures are one line with an ExitCode."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.scaffold import init_dir
from agent.state import lock_state
from hushmetric.exitcodes import ExitCode


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def cli(*argv: str, env: dict[str, str] | None = None, stdin: bytes = b"") -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), environ=env or {}, stdout=out, stderr=err, stdin=io.BytesIO(stdin))
    return Run(code, out.getvalue(), err.getvalue())


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return Path(init_dir(tmp_path / "site", tenant="acme", collector=None, agent="a1", force=False).config)


def test_init_writes_to_the_injected_streams(tmp_path: Path) -> None:
    run = cli("init", "--dir", str(tmp_path / "s"), "--tenant", "acme", "--agent", "a1")
    assert (run.code, run.out) == (ExitCode.OK, "a1\n")
    assert "next: hush-agent --config" in run.err


def test_the_config_comes_from_the_injected_environment(site: Path) -> None:
    run = cli("key", "show", "--json", env={"HUSH_AGENT_CONFIG": str(site)})
    assert run.code == ExitCode.OK
    assert json.loads(run.out)["agent"] == "a1"


def test_a_missing_config_is_one_line_and_a_usage_error(tmp_path: Path) -> None:
    run = cli("--config", str(tmp_path / "none.toml"), "status")
    assert run.code == ExitCode.USAGE
    assert run.out == ""
    assert run.err.count("\n") == 1
    assert run.err.startswith("hush-agent: ")
    assert "file not found" in run.err


def test_dead_letter_digest_reads_the_injected_stdin(site: Path) -> None:
    first = cli("--config", str(site), "dead-letter", "--digest-of", "-", stdin=b"raw input\n")
    again = cli("--config", str(site), "dead-letter", "--digest-of", "-", stdin=b"raw input\n")
    other = cli("--config", str(site), "dead-letter", "--digest-of", "-", stdin=b"other input\n")
    assert first.code == ExitCode.OK
    assert first.out == again.out
    assert first.out != other.out


def test_state_commands_close_and_leave_the_state_unlocked(site: Path) -> None:
    for argv in (("egress", "stop"), ("egress",), ("outbox", "quarantine"), ("ledger",), ("status",)):
        assert cli("--config", str(site), *argv).code == ExitCode.OK, argv
    # every connection and lock of those commands is gone: this process can take the lock itself
    with lock_state(site.parent / "state"):
        pass
    assert "STOPPED" in cli("--config", str(site), "egress").out


def test_a_held_state_lock_is_a_conflict_for_writers_only(site: Path, tmp_path: Path) -> None:
    with lock_state(site.parent / "state"):
        export = cli("--config", str(site), "export", "--out", str(tmp_path / "b.tar"))
        ack = cli("--config", str(site), "ledger", "--acknowledge-reset", "--note", "test")
        read = cli("--config", str(site), "ledger")
    assert export.code == ack.code == ExitCode.CONFLICT
    assert "in use by another hush-agent process" in export.err
    assert read.code == ExitCode.OK
    assert not (tmp_path / "b.tar").exists()


def test_usage_problems_found_by_a_command_exit_2(site: Path) -> None:
    run = cli("--config", str(site), "outbox", "retry")
    assert run.code == ExitCode.USAGE
    assert "needs a SEQ or --all" in run.err
    run = cli("--config", str(site), "ledger", "--acknowledge-reset")
    assert run.code == ExitCode.USAGE
    assert "--note" in run.err


@pytest.mark.parametrize(
    "argv",
    [
        ("outbox", "drop", "99999999999999999999999", "--note", "x"),  # SQLite: OverflowError
        ("outbox", "retry", "0"),
        ("egress", "--limit", "-3"),  # listed all but the first three
        ("dead-letter", "--limit", "-1"),
    ],
)
def test_out_of_range_numbers_are_usage_errors_not_tracebacks(
    site: Path, argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:  # argparse's own usage error
        cli("--config", str(site), *argv)
    assert stop.value.code == ExitCode.USAGE
    assert "Traceback" not in capsys.readouterr().err
