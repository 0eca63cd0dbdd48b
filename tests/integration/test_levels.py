"""Release levels end to end, with OpenDP's own noise: the agent releases a period's windows and its
total (per-period bounds), the collector's estimator combines them.

Checked (issue 15, "Measuring"): estimates are unbiased away from clipping, the empirical variances
of raw and consistent values match the declared ones, and windows add up to their total. N = 600
periods: the relative standard error of an empirical variance is √(2/N) ≈ 5.8 %, so ±20 % is 3.5 of
them — stable, yet a scale off by √2 (a charge split wrongly) falls outside.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from agent.aggregate import MetricWindow, WindowAggregator
from agent.bound import Bounds
from agent.model import Event
from agent.policy import AttrRule, Budget, Metric, Policy, WindowSpec
from agent.release import release_period_total, release_window
from collector.estimates import Observation, consistent, noise_variance

H = 3600
T = 1_767_571_200  # 2026-01-05T00:00:00Z
N = 600
K = 4
TRUTH = [30, 10, 50, 20]  # signups per 6 h window: far from zero, nothing clipped


def policy() -> Policy:
    return Policy(
        version=1,
        name="levels",
        budget=Budget(rho=0.05),  # small, so the noise is large against float rounding
        window=WindowSpec(size="6h"),
        attrs={"plan": AttrRule()},
        metrics=[
            Metric(
                name="signup",
                events=["signup"],
                stat="count",
                dims={"plan": ["free"]},
                bound="period",
                period_total=0.3,
            )
        ],
    )


def test_consistent_estimates_from_real_releases() -> None:
    p = policy()
    agg = WindowAggregator(p, next_start=T)
    agg.add(
        [
            Event("signup", T + w * 6 * H + i, f"u{w}-{i}", attrs={"plan": "free"})
            for w, n in enumerate(TRUTH)
            for i in range(n)
        ]
    )
    states = agg.take_until(T + 24 * H)
    summed = MetricWindow(Bounds.of(p.metrics[0]))
    for s in states:
        for key, acc in s.metrics[0].parts.items():
            old = summed.parts.setdefault(key, [0] * len(acc))
            summed.parts[key] = [a + b for a, b in zip(old, acc, strict=True)]
    raw, first, whole = [], [], []
    declared: tuple[float, float, float] | None = None
    for _ in range(N):
        windows = [release_window(s, p).rows[0] for s in states]
        (total,) = release_period_total([summed], p, start=T, end=T + 24 * H).rows
        assert total.level == "period"
        assert all(w.level == "window" for w in windows)
        obs = [Observation(w.value, noise_variance(w.noise.mechanism, w.noise.scale)) for w in windows]
        estimates, estimate = consistent(
            obs, Observation(total.value, noise_variance("gaussian", total.noise.scale))
        )
        assert math.isclose(
            math.fsum(e.value for e in estimates), estimate.value, rel_tol=1e-12, abs_tol=1e-9
        )
        raw.append(windows[0].value)
        first.append(estimates[0].value)
        whole.append(estimate.value)
        declared = (obs[0].variance, estimates[0].variance, estimate.variance)
    assert declared is not None
    for samples, truth, variance in (
        (raw, TRUTH[0], declared[0]),
        (first, TRUTH[0], declared[1]),
        (whole, sum(TRUTH), declared[2]),
    ):
        assert abs(statistics.fmean(samples) - truth) <= 4.0 * math.sqrt(variance / N)
        assert statistics.variance(samples) == pytest.approx(variance, rel=0.20)


def test_validate_and_tune_through_the_cli(tmp_path: Path) -> None:
    """A new user's view: validate names the period-bounded metrics of the shipped policy; tune
    compares the three settings and, given a sample, shows what the caps drop."""
    from agent.sources.demo import write_dataset
    from tests.integration.agentkit import init_agent

    agent = init_agent(tmp_path / "site")
    assert "per-day bounds (charged once per day): signup, eval_requested" in agent.ok("validate")
    sample = tmp_path / "sample.jsonl"
    write_dataset(sample, users=200, days=1)
    doc = agent.json("tune", "--input", str(sample))
    levels = {r["metric"]: r for r in doc["levels"]}
    assert levels["signup"]["bound"] == "period"
    assert levels["signup"]["window_bound_window"] == pytest.approx(
        2 * levels["signup"]["period_bound_window"]
    )
    clipped = {(r["metric"], r["bound"]): r for r in doc["clipping"]}
    assert clipped[("signup", "period")]["contributions"] == 200
    assert clipped[("signup", "period")]["dropped"] == 0
    text = agent.ok("tune", "--input", str(sample))
    assert "window bounds" in text
    assert "units clipped" in text


LEVELS_POLICY = """
version = 1
name = "levels-e2e"
[budget]
rho = 0.5
[window]
size = "6h"
lateness = "0s"
[[metrics]]
name = "signup"
events = ["signup"]
stat = "count"
bound = "period"
period_total = 0.3
[[metrics]]
name = "activated"
events = ["activated"]
stat = "count"
bound = "period"
period_total = 0.3
"""


def test_the_collector_stores_levels_and_reports_consistent_estimates(tmp_path: Path) -> None:
    """Agent (air gap) → bundle → collector: the period totals are stored with their level, the KPI
    report's windows add up to the consistent day total and the funnel's stage totals are those
    consistent totals, with the total's (narrower) interval."""
    import json

    from tests.collector.collector_testkit import Hush
    from tests.integration.agentkit import events_jsonl, init_agent

    hush = Hush(tmp_path / "collector")
    hush.cwd.mkdir()
    hush.ok("init")
    hush.ok("tenant", "create", "acme")
    agent = init_agent(tmp_path / "agent")
    agent.set_policy(LEVELS_POLICY)
    public = agent.ok("key", "show").split()[0]
    agent_name = next(
        line.split("=")[1].strip().strip('"')
        for line in agent.config.read_text().splitlines()
        if line.startswith("agent")
    )
    hush.ok("key", "add", "acme", "--agent", agent_name, "--public-key", public)
    events = [{"name": "signup", "ts": T + 600 * i, "unit": f"u{i}"} for i in range(100)]
    events += [{"name": "activated", "ts": T + 600 * i + 300, "unit": f"u{i}"} for i in range(0, 100, 2)]
    src = tmp_path / "events.jsonl"
    src.write_text(events_jsonl(events))
    agent.ok("run", "--once", "--input", str(src), "--from", str(T), "--to", str(T + 24 * H))
    bundle = tmp_path / "bundle.tar"
    agent.ok("export", "--out", str(bundle))
    assert "accepted 5, duplicate 0, refused 0" in hush.ok("import", str(bundle))  # 4 windows + the total
    args = ("--since", "2026-01-05", "--until", "2026-01-06", "--format", "json")
    kpi = json.loads(hush.ok("report", "acme", *args))
    signup = next(s for s in kpi["series"] if s["metric"] == "signup")
    assert len(signup["points"]) == 4  # the windows; the total is not a fifth point
    assert math.fsum(p["estimate"]["value"] for p in signup["points"]) == pytest.approx(
        signup["total"]["value"], abs=1e-6
    )
    window_std = [p["estimate"]["std"] for p in signup["points"]]
    funnel = json.loads(hush.ok("funnel", "acme", "--stages", "signup,activated", *args))
    first = funnel["stages"][0]["total"]
    assert first["value"] == pytest.approx(signup["total"]["value"], abs=1e-6)
    # The day total of consistent estimates is more precise than the raw sum of four windows.
    assert first["std"] < math.sqrt(sum(s * s for s in window_std)) * 0.999
