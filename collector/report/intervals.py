"""Noise arithmetic for reports: 95 % intervals of released values, of their sums and of their ratios.

Every released value carries its mechanism and scale (``StoredRow.mechanism``/``scale``). The noise
is independent across rows, so for a sum of rows the variances add, and so do the fourth cumulants.
That is all a :class:`NoisySum` keeps; :func:`estimate` turns it into an interval:

* one Gaussian row, or a sum of Gaussian rows: exact, ``value ± 1.96·σ``;
* one Laplace row (scale ``b``, std ``b·√2``): exact Laplace quantile, ``value ± b·ln 20``;
* a ``derived`` row (scale ≈ std, e.g. mean = sum / count): normal approximation ``± 1.96·scale``;
* any other sum that involves Laplace noise: Cornish–Fisher expansion with the fourth cumulant
  (``z' = z + (z³ − 3z)·γ₂/24``, γ₂ the excess kurtosis of the sum). It tends to the normal
  interval as terms are added and is within ~2 % (on the safe side) of the exact single-Laplace one.

Intervals describe the DP noise only — the uncertainty a release adds on top of the true value
computed at the edge; they are not sampling intervals. Values are never clipped here: a noisy
count can be negative and must stay so, or totals and ratios built from it become biased.

Ratios (funnel conversion) use Fieller's method on the two noisy totals: the set of ``r`` with
``|b − r·a| ≤ z·sd(b − r·a)``. Unlike the delta method it stays honest when the denominator is
small (asymmetric interval) and says "unbounded" when the denominator is not clearly above zero.
"""

from __future__ import annotations

import math

import msgspec

from collector.store import vocab

__all__ = [
    "CONFIDENCE",
    "KNOWN_MECHANISMS",
    "LN20",
    "Z95",
    "Estimate",
    "NoisySum",
    "Ratio",
    "estimate",
    "ratio",
    "row_noise",
    "total",
]

CONFIDENCE = 0.95
Z95 = 1.959963984540054  # two-sided 95 % standard normal quantile
LN20 = math.log(20.0)  # P(|Laplace(b)| > b·ln 20) = 0.05

# Mechanisms whose scale is understood exactly (collector.store.vocab.Mechanism). Anything else is
# treated like ``derived``.
KNOWN_MECHANISMS = vocab.KNOWN_MECHANISMS


class Estimate(msgspec.Struct, frozen=True):
    """A noisy value with the standard deviation of its noise and a 95 % interval.

    ``method`` says how the interval was obtained: ``exact`` (no noise), ``gaussian``, ``laplace``,
    ``normal`` (approximation) or ``cornish-fisher``.
    """

    value: float
    std: float
    low: float
    high: float
    method: str

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


class NoisySum(msgspec.Struct, frozen=True):
    """A sum of independently noised values: value, noise variance and fourth cumulant.

    ``laplace_b`` is set while the sum is a single Laplace term (so its exact quantile applies);
    ``gaussian`` stays true while every term with noise is Gaussian.
    """

    value: float = 0.0
    var: float = 0.0
    k4: float = 0.0
    terms: int = 0
    laplace_b: float | None = None
    gaussian: bool = True

    def plus(self, other: NoisySum, *, sign: float = 1.0) -> NoisySum:
        """``self + sign·other``; noise variance and fourth cumulant add either way."""
        terms = self.terms + other.terms
        single = None
        if self.var == 0.0 and other.terms:
            single = other.laplace_b
        elif other.var == 0.0 and self.terms:
            single = self.laplace_b
        return NoisySum(
            value=self.value + sign * other.value,
            var=self.var + other.var,
            k4=self.k4 + other.k4,
            terms=terms,
            laplace_b=single,
            gaussian=self.gaussian and other.gaussian,
        )


def row_noise(value: float, mechanism: str, scale: float) -> NoisySum:
    """The :class:`NoisySum` of one released value."""
    if mechanism == "laplace":
        return NoisySum(value, 2.0 * scale * scale, 12.0 * scale**4, 1, scale if scale > 0 else None, False)
    if mechanism == "gaussian":
        return NoisySum(value, scale * scale, 0.0, 1, None, True)
    return NoisySum(value, scale * scale, 0.0, 1, None, scale == 0.0)


def total(parts: list[NoisySum]) -> NoisySum:
    acc = NoisySum()
    for part in parts:
        acc = acc.plus(part)
    return acc


def _z(noisy: NoisySum) -> float:
    if noisy.k4 <= 0.0 or noisy.var <= 0.0:
        return Z95
    excess = noisy.k4 / (noisy.var * noisy.var)
    return Z95 + (Z95**3 - 3.0 * Z95) * excess / 24.0


def estimate(noisy: NoisySum) -> Estimate:
    """The 95 % interval of a noisy value or sum (see the module docstring for the methods)."""
    v = noisy.value
    if noisy.var <= 0.0:
        return Estimate(v, 0.0, v, v, "exact")
    std = math.sqrt(noisy.var)
    if noisy.laplace_b is not None:
        half, method = noisy.laplace_b * LN20, "laplace"
    elif noisy.gaussian:
        half, method = Z95 * std, "gaussian"
    elif noisy.k4 <= 0.0:
        half, method = Z95 * std, "normal"
    else:
        half, method = _z(noisy) * std, "cornish-fisher"
    return Estimate(v, std, v - half, v + half, method)


class Ratio(msgspec.Struct, frozen=True):
    """``numerator / denominator`` with a 95 % Fieller interval.

    ``value`` is None when the denominator estimate is not positive. ``low``/``high`` are None when
    the interval is unbounded on that side (denominator not clearly above zero).
    """

    value: float | None
    low: float | None
    high: float | None
    method: str = "fieller"


def _effective_sd(noisy: NoisySum) -> float:
    """Standard deviation that reproduces the sum's own 95 % half-width under a normal model."""
    e = estimate(noisy)
    return e.half_width / Z95


def ratio(numerator: NoisySum, denominator: NoisySum) -> Ratio:
    """Fieller interval of ``numerator / denominator`` (independent noise, each as in :func:`estimate`)."""
    a, b = denominator.value, numerator.value
    value = b / a if a > 0 else None
    sa, sb = _effective_sd(denominator), _effective_sd(numerator)
    z2 = Z95 * Z95
    quad = a * a - z2 * sa * sa
    if quad <= 0.0 or a <= 0.0:
        if sa == 0.0 and sb == 0.0 and a > 0:
            return Ratio(value, value, value)
        return Ratio(value, None, None)
    root = Z95 * math.sqrt(a * a * sb * sb + b * b * sa * sa - z2 * sa * sa * sb * sb)
    return Ratio(value, (a * b - root) / quad, (a * b + root) / quad)
