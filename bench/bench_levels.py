"""Accuracy of release levels: empirical σ of a window value and of the consistent daily total, as
multiples of σ of a single daily release, over the budget split, for k = 4, 24 and 1,440 windows/day.

Data: the demo dataset's signups of one day (3,000 users, seed 7), counted per window under a
per-period bound of one signup per unit and day, at the demo's ρ = 2 per day shared by its 12
metrics (ρ = 1/6 for this one: σ of a daily release ≈ 1.7, large enough that the discrete
Gaussian's variance is σ² to within a fraction of a percent). Every noise sample is
drawn by the agent's release path (OpenDP); the collector's least squares combine windows and total.
The baseline (1.00) is σ of one release of the daily count with the same bound and ρ, measured in
the same run. For comparison, "window bounds" is today's default for the same metric: k windows of
ρ/k each, the daily total being their sum.

Goal (issue 15) at the default split (30 % on the total) for k = 4: windows within 1.2× and daily
totals within 1.6× of the single release (window bounds: 2× and 4×). Also checked on every run:
windows add up to their total. Run: ``python -m bench.bench_levels [REPEATS]``.
"""

from __future__ import annotations

import math
import statistics
import sys
import time

import msgspec

from agent.aggregate import MetricWindow, WindowAggregator, WindowState
from agent.bound import Bounds
from agent.model import Event
from agent.policy import Budget, Metric, Policy, WindowSpec
from agent.release import release_period_total, release_window
from agent.sources.demo import generate_lines
from collector.estimates import Observation, consistent, noise_variance

__all__ = ["main", "measure"]

DAY = 86400
START = 1_767_571_200  # 2026-01-05T00:00:00Z, the demo's start
RHO = 2.0 / 12
SPLITS = (0.1, 0.2, 0.3, 0.4, 0.5)  # share of the metric's daily budget on the daily total
WINDOWS = (4, 24, 1440)


def _signups() -> list[Event]:
    out = []
    for line in generate_lines(7, 3000, 1, START):
        event = msgspec.json.decode(line)
        if event["name"] == "signup":
            out.append(Event("signup", float(event["ts"]), event["unit"]))
    return out


def _policy(k: int, bound: str, total: float) -> Policy:
    return Policy(
        version=1,
        name="bench-levels",
        budget=Budget(rho=RHO),
        window=WindowSpec(size=f"{DAY // k // 60}m"),
        metrics=[
            Metric(name="signup", events=["signup"], stat="count", bound=bound, period_total=total)  # type: ignore[arg-type]
        ],
    )


def _states(policy: Policy, events: list[Event]) -> list[WindowState]:
    agg = WindowAggregator(policy, next_start=START)
    agg.add(events)
    return agg.take_until(START + DAY)


def _count(state: WindowState) -> int:
    return sum(acc[1] for acc in state.metrics[0].parts.values())


def _summed(policy: Policy, states: list[WindowState]) -> MetricWindow:
    total = MetricWindow(Bounds.of(policy.metrics[0]))
    total.parts[()] = [0, sum(_count(s) for s in states)]
    return total


class Point(msgspec.Struct):
    k: int
    setting: str
    window_sigma: float  # empirical, in multiples of the single release's empirical σ
    total_sigma: float
    repeats: int
    declared_window: float  # the same from the declared noise (estimator's variances)
    declared_total: float


def measure(k: int, repeats: int, events: list[Event]) -> tuple[float, list[Point]]:
    """σ of the single daily release, and the points of the frontier for ``k`` windows a day."""
    single_states = _states(_policy(1, "period", 0.0), events)
    truth = _count(single_states[0])
    single = [
        release_window(single_states[0], _policy(1, "period", 0.0)).rows[0].value - truth for _ in range(400)
    ]
    base = math.sqrt(statistics.fmean(x * x for x in single))
    declared_base = release_window(single_states[0], _policy(1, "period", 0.0)).rows[0].noise.scale
    points = []
    settings: list[tuple[str, str, float]] = [
        ("window bounds", "window", 0.0),
        ("period bounds", "period", 0.0),
    ]
    settings += [(f"levels {f:.0%} total", "period", f) for f in SPLITS]
    for name, bound, share in settings:
        policy = _policy(k, bound, share)
        states = _states(policy, events)
        counts = [_count(s) for s in states]
        summed = _summed(policy, states)
        window_errors, total_errors = [], []
        declared = (0.0, 0.0)
        for _ in range(repeats):
            rows = [release_window(s, policy).rows[0] for s in states]
            obs = [Observation(r.value, noise_variance(r.noise.mechanism, r.noise.scale)) for r in rows]
            if share:
                (t,) = release_period_total([summed], policy, start=START, end=START + DAY).rows
                estimates, whole = consistent(
                    obs, Observation(t.value, noise_variance(t.noise.mechanism, t.noise.scale))
                )
                gap = abs(math.fsum(e.value for e in estimates) - whole.value)
                assert gap <= 1e-6 * max(1.0, abs(whole.value)), f"windows do not add up: {gap}"
                values, total = [e.value for e in estimates], whole.value
                declared = (estimates[0].variance, whole.variance)
            else:
                values, total = [o.value for o in obs], math.fsum(o.value for o in obs)
                declared = (obs[0].variance, math.fsum(o.variance for o in obs))
            window_errors.extend(v - c for v, c in zip(values, counts, strict=True))
            total_errors.append(total - sum(counts))
        points.append(
            Point(
                k,
                name,
                math.sqrt(statistics.fmean(e * e for e in window_errors)) / base,
                math.sqrt(statistics.fmean(e * e for e in total_errors)) / base,
                repeats,
                math.sqrt(declared[0]) / declared_base,
                math.sqrt(declared[1]) / declared_base,
            )
        )
    return base, points


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    scale = float(args[0]) if args else 1.0
    events = _signups()
    print(f"{len(events)} signups in one day; rho {RHO:.3g}/day; σ in multiples of one daily release")
    print(f"{'k':>5} {'setting':<20} {'window σ':>9} {'total σ':>9} {'periods':>8}   declared: window, total")
    for k in WINDOWS:
        repeats = max(3, int(scale * {4: 1000, 24: 200, 1440: 20}[k]))
        started = time.perf_counter()
        base, points = measure(k, repeats, events)
        for p in points:
            print(
                f"{p.k:>5} {p.setting:<20} {p.window_sigma:>9.2f} {p.total_sigma:>9.2f} {p.repeats:>8}"
                f"   {p.declared_window:>8.2f} {p.declared_total:>6.2f}"
            )
        print(f"{k:>5} single daily release σ = {base:.3f} ({time.perf_counter() - started:.1f} s)")
    print("windows add up to their total in every levels run (checked)")


if __name__ == "__main__":
    main()
