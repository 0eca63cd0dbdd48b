"""Proof family 10 — neighbouring inputs: nothing that leaves a site tells D from D plus one unit,
beyond the DP noise the ledger paid for.

10a (black box). For property-generated adversarial neighbours — a flood in one window, a unit spread
over a whole day, many distinct open values arriving first, PII and unused attributes, events in gaps
and after the last window, events straddling a period boundary — the real ``hush-agent`` runs
``run --once --from --to`` over D and over D' on copies of one site (same agent, key and secret),
then ``export`` and ``attest``. Every public field of every batch, bundle manifest and attestation
must be identical; noisy values may differ by at most ``L + t`` (``t = 7·√2·σ`` for the discrete
Gaussian; both mechanisms are drawn; derivation in
:mod:`tests.proof.neighbourkit`); post-processed bytes are checked for what they must be.

The policy has a metric with per-period bounds and a day total (issue 15): its windows, its
caps held over the whole day and its period-total batches go through every adversarial kind too.

10b (in process). The empirical privacy loss of the optimal test between a dataset and a worst-case
neighbour that fills every cap of every metric in every window of one period. For Gaussian noise the
likelihood-ratio test is linear in the released vector: T = Σ Δ_i·x_i / σ_i², with Δ the true
difference of the two releases. Projected on T, the two datasets give two normals N(μ_D, s²) and
N(μ_D', s²), a Gaussian mechanism with ρ̂ = (μ_D' − μ_D)² / (2 s²) — the whole privacy loss of the
pair, since the likelihood ratio depends on the output only through T. We estimate μ_D, μ_D' and s
from many releases (s from the samples, not from the declared σ) and check ρ̂ against the ρ the
ledger charged for the period: not above it (beyond sampling error) and close to it (the worst
case attains the bound, so a scale 2× too large is caught as well as one 2× too small). Declared
dimensions only: partition selection's δ cannot be estimated by sampling (it is the chance of an event
of probability ~10⁻⁷), and its ρ part is the same discrete Gaussian checked here. Noise is OpenDP's
and cannot be seeded; the populations are (``random.Random(5)``), and the tolerance is set from the
estimate's own standard error.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from agent.aggregate import MetricWindow, WindowAggregator, WindowState
from agent.bound import Bounds
from agent.epsilon import epsilon_at
from agent.model import Event
from agent.policy import AttrRule, Budget, Metric, Policy, WindowSpec
from agent.release import period_cost, release_period_total, release_window, window_cost
from hushmetric.batch import Noise
from tests.proof.neighbourkit import (
    KINDS,
    Site,
    base_events,
    compare,
    extra_events,
    neighbour,
    pii_needles,
    policy_text,
)
from tests.proof.proofkit import Figures, pick

pytestmark = pytest.mark.timeout(pick(240, 3600))

FAMILY = "10 neighbours"
EXAMPLES = pick(2, 10)  # hypothesis examples per adversarial kind (two agent runs each)
SIZES = {
    "flood": (200, pick(2000, 20000)),
    "spread": (8, pick(200, 2000)),
    "open_values": (50, pick(1500, 20000)),
    "pii": (50, pick(200, 1000)),
    "gaps": (5, pick(200, 2000)),
    "straddle": (5, pick(300, 3000)),
    "out_of_order": (1, pick(50, 500)),
}


def _declared_range_supported() -> bool:
    """Whether the agent under test takes ``run --once --from/--to`` (asked as a user would)."""
    return "--from" in Site.cli_help("run")


@pytest.mark.parametrize("kind", KINDS)
def test_neighbouring_inputs_release_the_same_public_bytes(kind: str, figures: Figures) -> None:
    started = time.monotonic()
    seen: list[tuple[int, int, int, float, int, str]] = []
    declared = _declared_range_supported()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
        phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: each step is two agent runs
    )
    @given(
        mechanism=st.sampled_from(["zcdp", "pure"]),
        base_seed=st.integers(0, 2**16),
        seed=st.integers(0, 2**32 - 1),
        size=st.integers(*SIZES[kind]),
    )
    def one(mechanism: str, base_seed: int, seed: int, size: int) -> None:
        with tempfile.TemporaryDirectory(prefix="hush-neighbours-") as tmp:
            site = Site(Path(tmp), policy_text(mechanism))
            base = base_events(base_seed)
            extra, first = extra_events(kind, seed, size)
            d = site.run(base, declared_range=declared)
            dp = site.run(neighbour(base, extra, first), declared_range=declared)
            cmp = compare(site.policy, d, dp)
            if kind == "pii":  # redaction's side of the promise, on the very bytes that left
                left = dp.bytes_out()
                for needle in pii_needles(seed):
                    assert needle not in left, needle
            seen.append((cmp.batches, cmp.rows, cmp.noisy_rows, cmp.worst, len(extra), mechanism))
            assert not cmp.differences, "\n".join(cmp.differences)
            assert cmp.batches >= 8  # the declared range: 2 days of 6 h windows
            assert cmp.noisy_rows > 0

    try:
        one()
    finally:
        if seen:
            figures.record(
                FAMILY,
                f"a {kind}",
                runs=2 * len(seen),
                seconds=time.monotonic() - started,
                pairs=len(seen),
                batches=sum(s[0] for s in seen),
                rows=sum(s[1] for s in seen),
                extra_events=sum(s[4] for s in seen),
                worst_diff_over_bound=f"{max(s[3] for s in seen):.3f}",
                mechanisms="+".join(sorted({s[5] for s in seen})),
                declared_range=declared,
            )


def test_the_comparison_catches_every_kind_of_leak(figures: Figures) -> None:
    """The comparator itself: one real run compared with itself is clean; each leak the issue names,
    planted in a copy, is reported (so a clean result of 10a means something)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hush-neighbours-") as tmp:
        site = Site(Path(tmp))
        d = site.run(base_events(3), declared_range=_declared_range_supported())
    assert not compare(site.policy, d, d).differences
    first, *rest = d.batches
    row = next(r for r in first.rows if r.noise.mechanism == "gaussian")
    far = msgspec.structs.replace(row, value=row.value + 1000.0)
    planted = {
        "an exact counter": [msgspec.structs.replace(first, redactions={"email": 1}), *rest],
        "one more window": [*d.batches, msgspec.structs.replace(rest[-1], seq=rest[-1].seq + 1)],
        "a missing row": [msgspec.structs.replace(first, rows=first.rows[1:]), *rest],
        "a value past the noise bound": [
            msgspec.structs.replace(first, rows=[far if r is row else r for r in first.rows]),
            *rest,
        ],
        "a data-dependent spend": [
            msgspec.structs.replace(first, privacy=msgspec.structs.replace(first.privacy, rho=1.0)),
            *rest,
        ],
        "a data-dependent noise scale": [
            msgspec.structs.replace(
                first,
                rows=[
                    msgspec.structs.replace(r, noise=Noise(r.noise.mechanism, r.noise.scale * 2))
                    for r in first.rows
                ],
            ),
            *rest,
        ],
    }
    caught = 0
    for leak, batches in planted.items():
        assert compare(site.policy, d, dataclasses.replace(d, batches=batches)).differences, leak
        caught += 1
    counted = dict(
        d.attestation, egress={**d.attestation["egress"], "rows": d.attestation["egress"]["rows"] + 1}
    )
    assert compare(site.policy, d, dataclasses.replace(d, attestation=counted)).differences
    spent = dict(d.certificate, spend=[{**p, "spent": p["spent"] * 1.5} for p in d.certificate["spend"]])
    assert compare(site.policy, d, dataclasses.replace(d, certificate=spent)).differences  # issue 14
    figures.record(
        FAMILY,
        "a comparator teeth",
        runs=1,
        seconds=time.monotonic() - started,
        leaks_caught=f"{caught + 2}/{len(planted) + 2}",
    )


# -- 10b: empirical privacy loss ----------------------------------------------------------------------

PERIOD_WINDOWS = 4  # 6 h windows in a day
RELEASES = pick(2000, 10000)
RHO = 2.0  # per day
PARTS = ["a", "b", "c"]


def _loss_policy() -> Policy:
    # Every statistic that is a pure vector release (declared dimensions): counts over several
    # partitions, a sum at the bounds, a histogram, distinct units. ρ = 2 per day, 6 h windows.
    return Policy(
        version=1,
        name="loss",
        budget=Budget(mechanism="zcdp", period="day", rho=RHO),
        window=WindowSpec(size="6h", lateness="0s"),
        attrs={"p": AttrRule()},
        metrics=[
            Metric(
                name="c", events=["e"], stat="count", dims={"p": PARTS}, max_partitions=2, max_contributions=3
            ),
            Metric(
                name="s", events=["e"], stat="sum", lower=0.0, upper=10.0, max_contributions=2, weight=0.5
            ),
            Metric(
                name="h",
                events=["e"],
                stat="histogram",
                lower=0.0,
                upper=10.0,
                buckets=[0, 2, 5, 10],
                max_contributions=2,
                weight=2.0,
            ),
            Metric(name="u", events=["e"], stat="distinct_units", dims={"p": PARTS}, max_partitions=3),
        ],
    )


def _states(policy: Policy, worst: bool) -> list[WindowState]:
    """The period's four windows of a background population, plus (``worst``) one unit that fills
    every cap: the most partitions, the most contributions, values at the upper bound, all in one
    histogram bucket."""
    rng = random.Random(5)
    events: list[Event] = []
    for w in range(PERIOD_WINDOWS):
        start = w * 21600.0
        for u in range(30):
            for _ in range(rng.randint(1, 4)):
                events.append(
                    Event(
                        "e",
                        start + rng.uniform(1, 21000),
                        f"bg{u}",
                        rng.uniform(0, 10),
                        {"p": rng.choice(PARTS)},
                    )
                )
        if worst:
            for p in PARTS:  # max_partitions caps the counts at two of these, distinct units at three
                events += [Event("e", start + 100 + i, "worst", 10.0, {"p": p}) for i in range(5)]
    events.sort(key=lambda e: e.ts)
    agg = WindowAggregator(policy)
    agg.add(events)
    states = agg.flush()
    assert len(states) == PERIOD_WINDOWS
    return states


def _vector(policy: Policy, states: list[WindowState]) -> tuple[list[float], list[float]]:
    """One release of the whole period as one vector, with each entry's declared σ."""
    values: list[float] = []
    sigmas: list[float] = []
    for state in states:
        rel = release_window(state, policy)
        for row in rel.rows:
            values.append(row.value)
            sigmas.append(row.noise.scale)
    return values, sigmas


def _truth(policy: Policy, states: list[WindowState]) -> list[float]:
    """The noiseless vector, from a release at a budget so large that the noise is below 10⁻⁶."""
    out: list[float] = []
    for state in states:
        out += [round(r.value, 6) for r in release_window(state, policy, budget=1e16).rows]
    return out


def _samples(
    policy: Policy,
) -> tuple[list[list[float]], list[list[float]], list[float], list[float], list[float]]:
    """Noise of RELEASES releases of the period under D and under the worst-case D', the true
    difference Δ of the two and the declared σ of every entry."""
    d_states, w_states = _states(policy, False), _states(policy, True)
    truth_d, truth_w = _truth(policy, d_states), _truth(policy, w_states)
    delta = [b - a for a, b in zip(truth_d, truth_w, strict=True)]
    _, sigmas = _vector(policy, d_states)

    def noise(states: list[WindowState], truth: list[float]) -> list[list[float]]:
        return [
            [v - t for v, t in zip(_vector(policy, states)[0], truth, strict=True)] for _ in range(RELEASES)
        ]

    return noise(d_states, truth_d), noise(w_states, truth_w), truth_d, delta, sigmas


def _estimate(
    noise_d: list[list[float]],
    noise_w: list[list[float]],
    delta: list[float],
    sigmas: list[float],
    factor: float,
) -> tuple[float, float]:
    """(ρ̂, its standard error) of the optimal test. ``factor`` ≠ 1 mimics a bug: noise that many
    times the size it has (samples rescaled around the truth), to show the check would see it."""
    weights = [dl / (s * s) for dl, s in zip(delta, sigmas, strict=True)]  # likelihood-ratio direction
    active = [i for i, w in enumerate(weights) if w != 0]
    assert active, "the worst-case unit changed nothing"
    # T = Σ w_i·x_i; the truth of D is a common offset, left out: T_D = Σ w·n, T_D' = Σ w·(Δ + n')
    t_d = [math.fsum(weights[i] * n[i] * factor for i in active) for n in noise_d]
    t_w = [math.fsum(weights[i] * (delta[i] + n[i] * factor) for i in active) for n in noise_w]
    gap = statistics.fmean(t_w) - statistics.fmean(t_d)
    var = (statistics.variance(t_d) + statistics.variance(t_w)) / 2
    rho_hat = gap * gap / (2 * var)
    # delta method: se(gap) = sqrt(2·var/n), and the pooled variance has 2n − 2 degrees of freedom
    n = len(t_d)
    rel_gap, rel_var = math.sqrt(2 * var / n) / abs(gap), math.sqrt(2 / (2 * n - 2))
    return rho_hat, rho_hat * math.sqrt((2 * rel_gap) ** 2 + rel_var**2)


def test_empirical_privacy_loss_of_a_worst_case_neighbour_matches_the_ledger(figures: Figures) -> None:
    started = time.monotonic()
    policy = _loss_policy()
    charged = window_cost(policy)[0] * PERIOD_WINDOWS  # what the ledger charges the period
    assert charged == pytest.approx(RHO, rel=1e-9)
    noise_d, noise_w, _, delta, sigmas = _samples(policy)
    # The neighbour is worst-case: at the declared scales its shift is worth exactly the charge.
    declared = math.fsum(dl * dl / (2 * s * s) for dl, s in zip(delta, sigmas, strict=True))
    assert declared == pytest.approx(charged, rel=1e-9)
    rho_hat, se = _estimate(noise_d, noise_w, delta, sigmas, 1.0)
    # The worst-case unit attains every metric's l2 sensitivity in every window, so the true loss of
    # the pair is the charge itself (OpenDP's maps round up by ulps only). Tolerance: 4 standard errors
    # of the estimate (≈ 16 % at the short size, 7 % at the long one): a false alarm once in ~30,000
    # runs, while a noise scale off by 2× moves ρ̂ by a factor of 4.
    assert rho_hat <= charged + 4 * se, (rho_hat, se, charged)
    assert rho_hat >= charged - 4 * se, (rho_hat, se, charged)
    # Teeth: the same samples with the noise at half its size (a 2× too small scale) or twice it fail.
    half, se_half = _estimate(noise_d, noise_w, delta, sigmas, 0.5)
    double, se_double = _estimate(noise_d, noise_w, delta, sigmas, 2.0)
    assert half > charged + 4 * se_half
    assert double < charged - 4 * se_double
    eps_hat, eps_ledger = epsilon_at(rho_hat, 1e-6), epsilon_at(charged, 1e-6)
    figures.record(
        FAMILY,
        "b empirical privacy loss",
        runs=2 * RELEASES,
        seconds=time.monotonic() - started,
        rho_charged=f"{charged:.4f}",
        rho_hat=f"{rho_hat:.4f}+-{se:.4f}",
        eps_at_1e6_hat_vs_ledger=f"{eps_hat:.3f}/{eps_ledger:.3f}",
        rho_hat_half_scale=f"{half:.3f}",
        rho_hat_double_scale=f"{double:.3f}",
    )


# -- 10b under per-period bounds (issue 15) -----------------------------------------------------------


def _period_policy() -> Policy:
    """The loss policy with its vector statistics bounded per day (counts and sums with a period
    total, the histogram without); distinct units keep window bounds (they cannot take period ones)."""
    base = _loss_policy()
    total = {"c": 0.3, "s": 0.3}
    metrics = [
        m
        if m.stat == "distinct_units"
        else msgspec.structs.replace(m, bound="period", period_total=total.get(m.name, 0.0))
        for m in base.metrics
    ]
    return msgspec.structs.replace(base, name="loss-period", metrics=metrics)


def _period_vector(
    policy: Policy, states: list[WindowState], budget: float | None = None
) -> tuple[list[float], list[float]]:
    """One release of the whole period — its windows and its totals — with each entry's declared σ."""
    totals: list[MetricWindow | None] = []
    for i, m in enumerate(policy.metrics):
        if not m.period_total:
            totals.append(None)
            continue
        summed = MetricWindow(Bounds.of(m))
        for state in states:
            for key, acc in state.metrics[i].parts.items():
                old = summed.parts.setdefault(key, [0] * len(acc))
                summed.parts[key] = [a + b for a, b in zip(old, acc, strict=True)]
        totals.append(summed)
    rows = [r for state in states for r in release_window(state, policy, budget=budget).rows]
    end = states[-1].end
    rows += release_period_total(totals, policy, start=states[0].start, end=end, budget=budget).rows
    return [r.value for r in rows], [r.noise.scale for r in rows]


def test_empirical_privacy_loss_under_period_bounds_matches_the_once_per_period_charge(
    figures: Figures,
) -> None:
    """The worst-case unit of 10b fills every cap in every window; under period bounds the agent
    admits only what the period's caps allow (all in the first window here), so the period vector —
    windows and totals — moves by at most the bound, and the loss of the pair is the period charge
    (window-bounded distinct units included), paid once, not once per window."""
    started = time.monotonic()
    policy = _period_policy()
    releases = RELEASES // 2
    charged = window_cost(policy)[0] * PERIOD_WINDOWS + period_cost(policy)
    assert charged == pytest.approx(RHO, rel=1e-9)
    d_states, w_states = _states(policy, False), _states(policy, True)
    truth_d = [round(v, 6) for v in _period_vector(policy, d_states, budget=1e16)[0]]
    truth_w = [round(v, 6) for v in _period_vector(policy, w_states, budget=1e16)[0]]
    delta = [b - a for a, b in zip(truth_d, truth_w, strict=True)]
    _, sigmas = _period_vector(policy, d_states)
    declared = math.fsum(dl * dl / (2 * s * s) for dl, s in zip(delta, sigmas, strict=True))
    assert declared == pytest.approx(charged, rel=1e-9)  # worst case: the bound is attained, not passed

    def noise(states: list[WindowState], truth: list[float]) -> list[list[float]]:
        return [
            [v - t for v, t in zip(_period_vector(policy, states)[0], truth, strict=True)]
            for _ in range(releases)
        ]

    noise_d, noise_w = noise(d_states, truth_d), noise(w_states, truth_w)
    rho_hat, se = _estimate(noise_d, noise_w, delta, sigmas, 1.0)
    assert charged - 4 * se <= rho_hat <= charged + 4 * se, (rho_hat, se, charged)
    # Teeth: noise calibrated for one window's share (√k times too small) would show k times the
    # loss; the same samples rescaled to half the noise are caught already.
    half, se_half = _estimate(noise_d, noise_w, delta, sigmas, 0.5)
    assert half > charged + 4 * se_half
    figures.record(
        FAMILY,
        "b empirical privacy loss, period bounds",
        runs=2 * releases,
        seconds=time.monotonic() - started,
        rho_charged=f"{charged:.4f}",
        rho_hat=f"{rho_hat:.4f}+-{se:.4f}",
        rho_hat_half_scale=f"{half:.3f}",
    )
