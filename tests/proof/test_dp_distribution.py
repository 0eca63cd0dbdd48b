"""Proof family 8c — the released values follow the declared mechanism and scale, the empirical
privacy loss between neighbouring inputs stays within the declared ρ/ε, and all noise is OpenDP's.

Neighbouring inputs. Dataset ``D`` has a known count in each of ``K`` declared partitions; ``D'``
adds one privacy unit to *each* partition. With ``max_partitions = 1`` a unit reaches one partition,
so each coordinate ``j`` of the release is the measurement of one neighbouring pair (``c_j`` vs
``c_j + 1``), with noise independent across coordinates (checked: the per-dataset KS test pools them).
One release thus yields ``K`` samples of the pair — the samples a per-pair experiment would need
``K`` times as many releases for.

Checks, per mechanism (zCDP → discrete Gaussian, pure → discrete Laplace):

1. **Distribution**: the noise ``value - truth`` of both datasets against the exact CDF of the
   declared mechanism at the declared scale (the row's ``noise.scale``): the Kolmogorov–Smirnov
   statistic stays under the critical value at α = 10⁻⁴ (conservative for discrete laws). Power: the
   same samples against the law at 1.5× the scale must be rejected — the test has teeth.
2. **Privacy loss**: for every value ``x`` seen ≥ ``MIN_BIN`` times under both datasets, the
   empirical log-likelihood ratio ``log p̂_D(x) / p̂_D'(x)``. Pure: |LLR| ≤ ε + 4 standard errors at
   every such ``x``, and the mean |LLR| is ε within tolerance (the bound is attained, so the scale
   is not larger than declared either). zCDP: the Gaussian LLR is linear in ``x`` with slope
   ``Δ/σ² = 2ρ/Δ``; a weighted fit estimates ρ̂, which must match the declared per-coordinate ρ
   within tolerance, and no single bin may exceed the declared law's LLR by more than 4 SE.
3. **OpenDP only**: the release path (``agent.release`` and every ``agent`` module it imports,
   transitively) imports no ``random``, ``secrets``, ``numpy`` nor ``os.urandom``; every noise call
   in ``agent/release.py`` is an OpenDP constructor; and the measurements the release plan holds are
   OpenDP ``Measurement`` objects. Static inspection only — nothing is monkeypatched.
"""

from __future__ import annotations

import ast
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import opendp.prelude as dp
import pytest

from agent import release as release_mod
from agent.aggregate import WindowAggregator, WindowState
from agent.model import Event
from agent.policy import AttrRule, Budget, Metric, Policy, WindowSpec, per_window_budget
from agent.release import release_window
from tests.proof.proofkit import Figures, pick

pytestmark = pytest.mark.timeout(pick(120, 900))

FAMILY = "8c DP distribution"
ROOT = Path(__file__).resolve().parents[2]
K = 64  # partitions per release: samples per release
RELEASES = pick(1000, 8000)
MIN_BIN = pick(200, 1000)
KS_C = math.sqrt(-math.log(1e-4 / 2) / 2)  # KS critical constant at α = 1e-4
PARTS = [f"p{j:02d}" for j in range(K)]


def _policy(mechanism: str) -> Policy:
    # One window per day: the per-window budget is the cap. σ = 3 (zcdp), b = 2.5 (pure).
    budget = (
        Budget(mechanism="zcdp", rho=1 / 18) if mechanism == "zcdp" else Budget(mechanism="pure", epsilon=0.4)
    )
    return Policy(
        version=1,
        name=f"dp-{mechanism}",
        budget=budget,
        window=WindowSpec(size="1d", lateness="0s"),
        attrs={"part": AttrRule()},
        metrics=[Metric(name="c", events=["hit"], stat="count", dims={"part": PARTS})],
    )


def _state(policy: Policy, extra: bool) -> tuple[WindowState, dict[str, int]]:
    events: list[Event] = []
    truth: dict[str, int] = {}
    for j, part in enumerate(PARTS):
        n = 5 + 3 * j + (1 if extra else 0)
        truth[part] = n
        events.extend(Event("hit", 10.0, f"{part}-u{u}", attrs={"part": part}) for u in range(n))
    agg = WindowAggregator(policy)
    agg.add(events)
    (state,) = agg.flush()
    return state, truth


def _noise(policy: Policy, state: WindowState, truth: dict[str, int]) -> tuple[list[int], float, float]:
    """Noise samples (released - truth) over RELEASES releases, the declared scale, ρ or ε spent."""
    out: list[int] = []
    scales: set[float] = set()
    spent = 0.0
    for _ in range(RELEASES):
        rel = release_window(state, policy)
        spent = float(rel.rho if rel.rho is not None else rel.epsilon or 0.0)
        for row in rel.rows:
            out.append(round(row.value) - truth[row.dims["part"]])
            scales.add(row.noise.scale)
    assert len(scales) == 1
    return out, scales.pop(), spent


def _pmf(mechanism: str, scale: float) -> Callable[[int], float]:
    if mechanism == "gaussian":
        return lambda k: math.exp(-(k * k) / (2 * scale * scale))
    return lambda k: math.exp(-abs(k) / scale)


def _cdf(mechanism: str, scale: float, lo: int, hi: int) -> dict[int, float]:
    """Exact CDF of the discrete law on [lo, hi] (normalised over a range far wider than the mass)."""
    f = _pmf(mechanism, scale)
    span = int(40 * scale) + 10
    support = range(-span, span + 1)
    z = math.fsum(f(k) for k in support)
    out: dict[int, float] = {}
    acc = 0.0
    for k in support:
        acc += f(k) / z
        if lo <= k <= hi:
            out[k] = acc
    return out


def ks_statistic(samples: Sequence[int], mechanism: str, scale: float) -> float:
    """max_k |F_n(k) - F(k)| over the integers (the CDFs only jump there)."""
    n = len(samples)
    counts = Counter(samples)
    lo, hi = min(samples), max(samples)
    cdf = _cdf(mechanism, scale, lo - 1, hi)
    d = max(cdf[lo - 1], 1 - cdf[hi])
    acc = 0
    for k in range(lo, hi + 1):
        acc += counts.get(k, 0)
        d = max(d, abs(acc / n - cdf[k]))
    return d


def _llr_bins(a: Sequence[int], b: Sequence[int], shift: int) -> list[tuple[int, float, float]]:
    """(x, log p̂_a(x)/p̂_b(x), standard error) where both saw x at least MIN_BIN times.

    ``a`` and ``b`` are noise samples; the released value is truth + noise, and D' has truth + 1,
    so the released x corresponds to noise x under D and x - shift under D'."""
    ca, cb = Counter(a), Counter(b)
    na, nb = len(a), len(b)
    out = []
    for x in sorted(ca):
        ka, kb = ca[x], cb.get(x - shift, 0)
        if ka >= MIN_BIN and kb >= MIN_BIN:
            llr = math.log((ka / na) / (kb / nb))
            out.append((x, llr, math.sqrt(1 / ka + 1 / kb)))
    return out


@pytest.mark.parametrize("mechanism", ["zcdp", "pure"])
def test_released_noise_matches_mechanism_and_privacy_loss_is_within_budget(
    mechanism: str, figures: Figures
) -> None:
    started = time.monotonic()
    policy = _policy(mechanism)
    law = "gaussian" if mechanism == "zcdp" else "laplace"
    d, truth_d = _state(policy, extra=False)
    d2, truth_d2 = _state(policy, extra=True)
    noise_d, scale, spent = _noise(policy, d, truth_d)
    noise_d2, scale2, _ = _noise(policy, d2, truth_d2)
    assert scale == scale2
    declared = per_window_budget(policy)
    assert spent <= declared * (1 + 1e-9)  # what the ledger is charged fits the window's share

    # 1. distribution, both datasets, against the declared law (and, for power, a wrong scale)
    n = len(noise_d)
    critical = KS_C / math.sqrt(n)
    ks = max(ks_statistic(noise_d, law, scale), ks_statistic(noise_d2, law, scale))
    ks_wrong = ks_statistic(noise_d, law, scale * 1.5)
    mean = math.fsum(noise_d) / n
    std = math.sqrt(math.fsum(x * x for x in noise_d) / n - mean * mean)
    want_std = (
        scale if law == "gaussian" else math.sqrt(2 * math.exp(-1 / scale)) / (1 - math.exp(-1 / scale))
    )

    # 2. empirical privacy loss: released x = truth + noise; D' = D + 1 per coordinate
    bins = _llr_bins(noise_d, noise_d2, shift=1)
    assert len(bins) >= 5, "too few populated bins for a privacy-loss estimate"
    if law == "laplace":
        eps = 1 / scale  # discrete Laplace(b), sensitivity 1: ε = 1/b
        over = [(x, llr, se) for x, llr, se in bins if abs(llr) > eps + 4 * se]
        # LLR(x) = +ε for noise x ≤ 0 and -ε for x ≥ 1: a weighted mean of the signed values
        w = [1 / (se * se) for _, _, se in bins]
        signed = [llr if x <= 0 else -llr for x, llr, _ in bins]
        estimate = math.fsum(wi * v for wi, v in zip(w, signed, strict=True)) / math.fsum(w)
        declared_loss = eps
        tolerance = 0.15 if n < 100_000 else 0.08
    else:
        rho = 1 / (2 * scale * scale)  # discrete Gaussian(σ), sensitivity 1: ρ = 1/(2σ²)
        # LLR(x) = (1 - 2x) / (2σ²) = ρ (1 - 2x): weighted fit of the slope -2ρ
        w = [1 / (se * se) for _, _, se in bins]
        xs = [x for x, _, _ in bins]
        ys = [llr for _, llr, _ in bins]
        sw = math.fsum(w)
        mx = math.fsum(wi * xi for wi, xi in zip(w, xs, strict=True)) / sw
        my = math.fsum(wi * yi for wi, yi in zip(w, ys, strict=True)) / sw
        slope = math.fsum(
            wi * (xi - mx) * (yi - my) for wi, xi, yi in zip(w, xs, ys, strict=True)
        ) / math.fsum(wi * (xi - mx) ** 2 for wi, xi in zip(w, xs, strict=True))
        estimate = -slope / 2
        declared_loss = rho
        over = [(x, llr, se) for x, llr, se in bins if abs(llr - rho * (1 - 2 * x)) > 4 * se]
        tolerance = 0.15 if n < 100_000 else 0.08
    figures.record(
        FAMILY,
        f"{law} count, neighbours ±1 unit",
        runs=2 * RELEASES,
        faults=0,
        lost=0,
        refused=len(over),
        seconds=time.monotonic() - started,
        samples=2 * n,
        scale=f"{scale:.4g}",
        std=f"{std:.4g}/{want_std:.4g}",
        ks=f"{ks:.4f}<{critical:.4f}",
        ks_at_1_5x=f"{ks_wrong:.4f}",
        loss=f"{estimate:.4g}/{declared_loss:.4g}",
        bins=len(bins),
    )
    assert ks < critical, (ks, critical)
    assert ks_wrong > critical, "the KS check cannot tell a 1.5x scale apart: no power"
    assert abs(std / want_std - 1) < 0.1, (std, want_std)
    assert abs(mean) < 6 * want_std / math.sqrt(n), mean
    assert not over, over[:5]
    assert estimate <= declared_loss * (1 + tolerance), (estimate, declared_loss)
    assert estimate >= declared_loss * (1 - tolerance), (estimate, declared_loss)
    # the declared spend matches the scale (OpenDP's map rounds up, never down)
    assert declared_loss <= spent * (1 + 1e-6)
    assert spent <= declared_loss * 1.01


# -- all noise comes from OpenDP --------------------------------------------------------------------

FORBIDDEN = {"random", "secrets", "numpy", "numpy.random", "scipy", "torch"}


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """Modules imported by ``path``, and forbidden attribute uses (``os.urandom``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mods: set[str] = set()
    uses: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
            mods.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Attribute) and node.attr in ("urandom", "getrandom", "randbits"):
            uses.append(f"{path.name}:{node.lineno} .{node.attr}")
    return mods, uses


def _release_path() -> dict[str, tuple[set[str], list[str]]]:
    """``agent.release`` and every ``agent`` module it imports, transitively."""
    seen: dict[str, tuple[set[str], list[str]]] = {}
    todo = ["agent.release"]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        path = ROOT / (mod.replace(".", "/") + ".py")
        if not path.exists():
            path = ROOT / mod.replace(".", "/") / "__init__.py"
            if not path.exists():
                continue  # ``from agent.x import name`` names a symbol, not a module
        seen[mod] = _imports(path)
        todo.extend(m for m in seen[mod][0] if m.startswith("agent."))
    return seen


def test_all_noise_comes_from_opendp(figures: Figures) -> None:
    path = _release_path()
    assert {"agent.release", "agent.aggregate", "agent.bound", "agent.policy"} <= set(path)
    bad = sorted(
        f"{mod} imports {m}"
        for mod, (mods, _) in path.items()
        for m in mods
        if m in FORBIDDEN or m.split(".")[0] in FORBIDDEN
    )
    bad += [u for _, (_, uses) in path.items() for u in uses]

    # every call in release.py that could draw noise is an OpenDP constructor
    tree = ast.parse((ROOT / "agent/release.py").read_text(encoding="utf-8"))
    makers = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("make_"):
            makers.add(ast.unparse(node))
    assert makers, "release.py builds no OpenDP measurement"
    bad += [m for m in sorted(makers) if not m.startswith("dp.m.make_")]

    # the plan's measurements are OpenDP Measurements (inspection, no substitution)
    kinds = set()
    for mech in ("zcdp", "pure"):
        policy = _policy(mech)
        for plan in release_mod._plan(policy, None).metrics:
            for noiser in (plan.vector, plan.threshold):
                if noiser is not None:
                    kinds.add(type(noiser.measurement).__name__)
                    if not isinstance(noiser.measurement, dp.Measurement):
                        bad.append(
                            f"{plan.metric.name}: {type(noiser.measurement)!r} is not an OpenDP Measurement"
                        )
    figures.record(
        FAMILY,
        "noise source: OpenDP only (static)",
        runs=1,
        refused=len(bad),
        modules=len(path),
        makers=",".join(sorted(m.removeprefix("dp.m.") for m in makers)),
        measurement_types=",".join(sorted(kinds)),
    )
    assert not bad, bad
