"""Policy attachment and privacy caps end to end (issue 14): the real agent prints the digest to
approve, the collector CLI approves it or a cap, and the agent's own sender reacts to the refusals as
its refusal table says (held for an unapproved policy, quarantined over the cap)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.collector.collector_testkit import Hush, serving
from tests.integration.agentkit import AgentDir, events_jsonl, exact_policy, init_agent

T = 1767571200  # 2026-01-05T00:00:00Z
HOURS = 3


def _agent(tmp_path: Path, hush: Hush, address: str) -> AgentDir:
    agent = init_agent(tmp_path / "site", collector=address)
    agent.set_policy(exact_policy())
    key = agent.json("key", "show", "--json")
    hush.ok("key", "add", "acme", "--agent", key["agent"], "--public-key", key["public_key"])
    return agent


def _run(agent: AgentDir, tmp_path: Path, first: int = 0, hours: int = HOURS) -> dict[str, object]:
    """``run --once`` over hours [first, first + hours) of the test day, one event an hour."""
    path = tmp_path / "events.jsonl"
    path.write_text(
        events_jsonl(
            [{"name": "click", "ts": T + h * 3600, "unit": f"u{h}"} for h in range(first, first + hours)]
        )
    )
    start, end = T + first * 3600, T + (first + hours) * 3600
    report: dict[str, object] = agent.json(
        "run", "--once", "--input", str(path), "--from", str(start), "--to", str(end)
    )
    return report


def test_an_unapproved_policy_is_held_until_approved(tmp_path: Path) -> None:
    hush = Hush(tmp_path / "collector")
    hush.cwd.mkdir()
    hush.ok("init")
    hush.ok("tenant", "create", "acme")
    with serving(hush) as served:
        agent = _agent(tmp_path, hush, served.address)
        match = re.search(
            r"approve with: hush-collector policy approve acme --digest ([0-9a-f]{64})\n",
            agent.ok("validate"),
        )
        assert match is not None
        digest = match.group(1)
        hush.ok("policy", "approve", "acme", "--digest", "ee" * 32, "--note", "the old policy")
        report = _run(agent, tmp_path)
        released = report["windows_released"]
        assert isinstance(released, int)
        assert released >= HOURS
        assert report["batches_sent"] == 0
        assert report["outbox_depth"] == released  # held at the head, not quarantined
        assert agent.json("outbox", "quarantine", "--json") == []
        assert "approved" in hush.ok("policy", "approve", "acme", "--digest", digest, "--note", "v2")
        again = _run(agent, tmp_path, first=HOURS, hours=1)  # the held batches go now, then this one
        assert again["outbox_depth"] == 0
        released += again["windows_released"]  # type: ignore[operator]  # JSON int
    usage = json.loads(hush.ok("usage", "--tenant", "acme", "--format", "json"))
    assert sum(u["batches"] for u in usage) == released
    assert sum(u["refused"].get("policy_unapproved", 0) for u in usage) >= 1
    listed = json.loads(hush.ok("policy", "list", "acme", "--json"))
    assert [(p["digest"], p["state"], p["note"]) for p in listed] == [
        ("ee" * 32, "approved", "the old policy"),
        (digest, "approved", "v2"),
    ]


def test_batches_over_the_cap_are_quarantined_and_the_rest_delivered(tmp_path: Path) -> None:
    hush = Hush(tmp_path / "collector")
    hush.cwd.mkdir()
    hush.ok("init")
    hush.ok("tenant", "create", "acme")
    with serving(hush) as served:
        agent = _agent(tmp_path, hush, served.address)
        per_window = 50.0  # exact_policy's ρ per window
        hush.ok("policy", "cap", "acme", "--rho-per-day", str(2 * per_window))
        report = _run(agent, tmp_path)
        released = report["windows_released"]
        assert isinstance(released, int)
        assert released > 2
        assert report["batches_sent"] == 2
        assert report["outbox_depth"] == 0
        held = agent.json("outbox", "quarantine", "--json")
        assert len(held) == released - 2
        spend = json.loads(hush.ok("policy", "spend", "acme", "--day", "2026-01-05", "--json"))
    assert spend["cap"] == {"tenant": "acme", "rho_per_day": 2 * per_window, "per": "agent"}
    [mine] = [s for s in spend["spend"] if s["agent"] is not None]
    assert mine["cap"] == 2 * per_window
    assert mine["rho"] == pytest.approx(2 * per_window)  # as the agent declared it, at most the cap
    assert mine["rho"] <= mine["cap"]
