"""Drive ``hush-agent`` as a user would: subprocesses against a config directory made by ``init``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AGENT = [sys.executable, "-m", "agent.cli"]


@dataclass
class Ran:
    code: int
    out: str
    err: str


@dataclass
class AgentDir:
    """A config directory for ``hush-agent``; calls pass ``--config`` automatically."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "agent.toml"

    @property
    def state_db(self) -> Path:
        return self.root / "state" / "agent.db"

    def __call__(
        self, *args: str, stdin: str | None = None, config: bool = True, timeout: float = 120
    ) -> Ran:
        argv = [*AGENT, *args, *(["--config", str(self.config)] if config else [])]
        proc = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            check=False,
        )
        return Ran(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, stdin: str | None = None) -> str:
        ran = self(*args, stdin=stdin)
        assert ran.code == 0, ran
        assert "Traceback" not in ran.err, ran.err
        return ran.out

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def set_policy(self, text: str) -> None:
        (self.root / "policy.toml").write_text(text)

    def edit_config(self, old: str, new: str) -> None:
        text = self.config.read_text()
        assert old in text, old
        self.config.write_text(text.replace(old, new))


def init_agent(root: Path, *, tenant: str = "acme", collector: str | None = None) -> AgentDir:
    agent = AgentDir(root)
    args = ["init", "--dir", str(root), "--tenant", tenant]
    if collector:
        args += ["--collector", collector]
    ran = agent(*args, config=False)
    assert ran.code == 0, ran
    return agent


def events_jsonl(events: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


# A policy with a budget so large that noise is negligible: tests can compare released counts with
# what went in. Never a production setting.
EXACT_POLICY = """
version = 1
name = "exact-for-tests"
[budget]
rho = 100000.0
per_window = 50.0
[window]
size = "{window}"
lateness = "{lateness}"
[attrs.plan]
kind = "label"
[attrs.message]
kind = "text"
[[metrics]]
name = "signup"
events = ["signup"]
stat = "count"
dims = {{ plan = ["free", "team"] }}
[[metrics]]
name = "clicks"
events = ["click"]
stat = "count"
max_contributions = 5
"""


def exact_policy(window: str = "1h", lateness: str = "0s") -> str:
    return EXACT_POLICY.format(window=window, lateness=lateness)


# Canary PII: each must never appear in anything that leaves the agent, nor in its own state.
CANARIES = {
    "email": "canary.leak.4711@example.org",
    "card": "4111 1111 1111 1111",
    "card_digits": "4111111111111111",
    "iban": "DE89370400440532013000",
    "phone": "+1 415 555 0142",
    "ssn": "219-09-9999",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnktNDcxMSJ9.c2lnbmF0dXJlLWNhbmFyeS00NzEx",
    "api_key": "sk_live_CanaryKey4711abcdefghijklmnop",
}


def canary_text() -> str:
    c = CANARIES
    return (
        f"user {c['email']} paid with {c['card']} from {c['iban']}, call {c['phone']}, "
        f"ssn {c['ssn']}, token {c['jwt']} key {c['api_key']}"
    )


def leaked(paths: list[Path]) -> list[str]:
    """Canary values found in the raw bytes of ``paths`` (and their -wal/-shm siblings)."""
    found = []
    for path in paths:
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if not p.exists():
                continue
            data = p.read_bytes()
            for name, value in CANARIES.items():
                if value.encode() in data:
                    found.append(f"{name} in {p.name}")
    return found
