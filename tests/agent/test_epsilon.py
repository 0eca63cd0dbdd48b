"""ε figures: OpenDP's conversion, the period's δ, and every published figure kept in step with it."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from agent import cli, ledger
from agent.config import load_config
from agent.epsilon import epsilon_at, guarantee
from agent.policy import load_policy
from agent.release import Release, window_cost
from agent.runtime import open_agent_state
from agent.scaffold import init_dir
from agent.state import transaction

ROOT = Path(__file__).resolve().parents[2]
POLICY = load_policy(ROOT / "configs" / "policy.toml")


def test_the_issue_figures_and_more_than_the_hand_formula_gives_away() -> None:
    assert epsilon_at(0.1, 1e-6) == pytest.approx(2.14, abs=0.01)
    assert epsilon_at(0.5, 1e-6) == pytest.approx(5.22, abs=0.01)
    for rho in (0.01, 0.1, 0.5, 2.0):
        for delta in (1e-5, 1e-6, 1e-7):
            textbook = rho + 2 * math.sqrt(rho * math.log(1 / delta))
            assert rho < epsilon_at(rho, delta) < textbook  # OpenDP's bound is tighter, never below ρ
    assert epsilon_at(0.5, 1e-7) > epsilon_at(0.5, 1e-6) > epsilon_at(0.25, 1e-6)
    assert epsilon_at(0.0, 1e-6) == 0.0
    assert epsilon_at(1e13, 1e-7) == math.inf  # OpenDP overflows: no meaningful ε, and no crash
    with pytest.raises(ValueError, match="0 < delta < 1"):
        epsilon_at(0.1, 0.0)


def test_a_period_adds_up_the_window_deltas() -> None:
    g = guarantee(POLICY)
    windows = 86400 // POLICY.window_seconds
    per_window = window_cost(POLICY)[1]
    assert g.windows == windows
    assert g.cap == POLICY.budget.rho
    assert 0 < per_window <= POLICY.budget.delta
    assert g.delta_selection_per_window == per_window
    assert g.delta_total == pytest.approx(POLICY.budget.delta + windows * per_window)
    assert g.epsilon == epsilon_at(2.0, POLICY.budget.delta)
    spent = guarantee(POLICY, spent=0.5, selection_delta=1e-7)  # what `ledger` shows for a period
    assert spent.epsilon == epsilon_at(0.5, POLICY.budget.delta)
    assert spent.delta_total == pytest.approx(POLICY.budget.delta + 1e-7)


def _published() -> list[tuple[str, float, float, float]]:
    """(where, ρ, δ, ε) of every ρ → ε figure in the docs, README, templates and example configs."""
    out: list[tuple[str, float, float, float]] = []
    docs = (ROOT / "docs" / "privacy.md").read_text()
    head = re.search(r"\| ρ per period \| ε at δ = 10⁻(\S) \| ε at δ = 10⁻(\S) \|", docs)
    assert head is not None, "docs/privacy.md lost its ρ → ε table"
    sup = {"⁵": 5, "⁶": 6, "⁷": 7, "⁸": 8, "⁹": 9}
    deltas = [10.0 ** -sup[d] for d in head.groups()]
    for m in re.finditer(r"^\| ρ = ([\d.]+) \| ε ≈ ([\d.]+) \| ε ≈ ([\d.]+) \|$", docs, re.M):
        rho = float(m[1])
        out += [
            ("docs/privacy.md", rho, deltas[0], float(m[2])),
            ("docs/privacy.md", rho, deltas[1], float(m[3])),
        ]
    texts = [
        ROOT / "README.md",
        ROOT / "agent" / "templates" / "policy.toml",
        *ROOT.glob("configs/**/*.toml"),
    ]
    texts += list(ROOT.glob("configs/**/*.md")) + list(ROOT.glob("docs/*.md"))
    pattern = re.compile(r"rho (?:= )?([\d.]+)\b[^\n]*?epsilon (?:= )?([\d.]+) at delta (?:= )?([\d.e-]+)")
    for path in texts:
        for m in pattern.finditer(path.read_text()):
            out.append((str(path.relative_to(ROOT)), float(m[1]), float(m[3]), float(m[2])))
    return out


def test_every_published_figure_is_opendps_conversion() -> None:
    figures = _published()
    assert len(figures) >= 14  # the docs' table and the template's comment were found
    for where, rho, delta, eps in figures:
        decimals = len(f"{eps}".split(".")[1]) if "." in f"{eps}" else 0
        assert eps == pytest.approx(epsilon_at(rho, delta), abs=0.5 * 10.0**-decimals + 1e-9), (
            where,
            rho,
            delta,
        )


def test_validate_tune_and_ledger_print_epsilon_at_delta(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = init_dir(tmp_path / "site", tenant="acme", collector=None, agent=None, force=False)
    cfg = str(site.config)
    policy = load_policy(Path(site.policy))
    g = guarantee(policy)
    want = f"(epsilon {g.epsilon:.3g}, delta {g.delta_total:.2g})"
    for command in ("validate", "tune", "ledger"):
        assert cli.main(["--config", cfg, command]) == 0
        out = capsys.readouterr().out
        assert want in out, (command, out)
        assert f"{g.delta_conversion:.2g} to read rho as epsilon (OpenDP's conversion)" in out


def test_ledger_reads_each_periods_spend_as_epsilon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = init_dir(tmp_path / "site", tenant="acme", collector=None, agent=None, force=False)
    cfg = str(site.config)
    policy = load_policy(Path(site.policy))
    loaded = load_config(Path(site.config))
    conn = open_agent_state(loaded)
    per_window, delta = window_cost(policy)
    with transaction(conn):
        for seq in (1, 2, 3):  # three windows of one day
            release = Release(
                start=seq * 3600,
                end=seq * 3600 + 60,
                rows=[],
                rho=per_window,
                epsilon=None,
                delta=delta or None,
            )
            ledger.charge(conn, period="1970-01-01", release=release, seq=seq, policy=policy)
    conn.close()
    assert cli.main(["--config", cfg, "ledger", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["epsilon"] == pytest.approx(epsilon_at(3 * per_window, policy.budget.delta))
    assert row["delta_total"] == pytest.approx(policy.budget.delta + 3 * delta)
    assert cli.main(["--config", cfg, "ledger"]) == 0
    assert f"{epsilon_at(3 * per_window, policy.budget.delta):>8.3g}" in capsys.readouterr().out
    assert cli.main(["--config", cfg, "tune", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["privacy"]["epsilon"] == pytest.approx(
        guarantee(policy).epsilon
    )
