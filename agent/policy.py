"""The privacy policy: what may leave the site, how it is redacted, bounded and noised.

A policy is a versioned TOML file decoded into these Structs. Its digest (hex SHA-256 of the
canonical msgpack encoding of the decoded policy) goes into every batch, so a collector and an
auditor can tell which policy produced which numbers. See ``configs/policy.toml`` for a commented
example.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from hushmetric.config import load_toml
from hushmetric.errors import ConfigError
from hushmetric.timefmt import parse_duration

__all__ = [
    "AttrRule",
    "Budget",
    "CustomRule",
    "Metric",
    "Policy",
    "Redaction",
    "WindowSpec",
    "load_policy",
    "minimised",
    "per_window_budget",
    "period_budget",
    "period_delta",
    "period_key",
    "period_seconds",
    "policy_digest",
    "used_attrs",
    "valid_window_sizes",
    "window_origin",
    "window_start",
    "windows_per_period",
]

Action = Literal["drop", "mask", "hash", "generalize"]
Stat = Literal["count", "sum", "mean", "histogram", "quantiles", "distinct_units"]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$")]
Positive = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class Budget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Privacy budget per period. zCDP (Gaussian noise) by default; ``pure`` uses Laplace noise and ε."""

    mechanism: Literal["zcdp", "pure"] = "zcdp"
    period: Literal["day", "week", "month"] = "day"
    rho: Positive | None = None  # zCDP cap per period (mechanism = "zcdp")
    epsilon: Positive | None = None  # pure-DP cap per period (mechanism = "pure")
    # Spent by one window's release, split across metrics by weight. Default: the cap divided by the
    # number of windows in the longest period (a 31-day month), so a full period of windows fits.
    per_window: Positive | None = None
    # δ per window for DP partition selection of open dimensions (thresholding).
    delta: Annotated[float, msgspec.Meta(gt=0, lt=1e-3)] = 1e-7
    # Cap on the δ one period's windows add up to (like ``rho``/``epsilon`` for the main measure):
    # refused at load time when the windows of a period could exceed it, and by the ledger per charge.
    max_delta: Annotated[float, msgspec.Meta(gt=0, lt=1e-2)] = 1e-5


class WindowSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    size: str = "1h"  # tumbling event-time windows
    lateness: str = "5m"  # events this late past a window's end are still accepted


class AttrRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An allowed attribute key. Every string value is scanned by the detectors before it is kept.

    ``label`` and ``text`` take strings (labels are short and repeat, text is free-form), ``number``
    takes int/float, ``bool`` takes bool; a value of another type is dropped. Strings longer than
    ``max_length`` are cut before scanning. ``generalize`` replaces the whole value (string or
    number) and a value it cannot parse is dropped. See ``agent/redact.py``.
    """

    kind: Literal["label", "text", "number", "bool"] = "label"
    max_length: PositiveInt = 256
    # Optional generalisation applied to the whole value: "hour" (timestamps), "ip_prefix" (IP).
    generalize: Literal["hour", "ip_prefix"] | None = None


class CustomRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A site's own detector (``[[redaction.custom]]``): a bounded regular expression, an optional
    checksum over the match (or its first group), optional context words that must appear within 40
    characters before or after it, and the action for its findings (``redaction.default`` if unset).
    Checked when the policy loads (see ``agent/detectors/custom.py``)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]
    regex: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    checksum: Literal["luhn", "mod-97", "mod-11"] | None = None
    context: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=40)]], msgspec.Meta(max_length=32)
    ] = []
    action: Action | None = None


class Redaction(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How each detector's findings are treated; detectors not named use ``default``.

    Detector names: url_credentials, jwt, api_key, email, iban, card, ssn, mac, ipv6, ipv4, phone,
    secret. ``drop`` removes the finding's text, ``mask`` writes ``[name]``, ``hash`` writes a keyed
    pseudonym ``name:<16 hex>``, ``generalize`` writes the /24 (IPv4) or /48 (IPv6) network and
    masks detectors without a coarse form. ``custom`` adds the site's own detectors (``CustomRule``),
    which carry their own action.
    """

    default: Action = "mask"
    detectors: dict[str, Action] = {}
    # Drop the whole event when its name or an attribute key contains a finding.
    drop_event_on_name_finding: bool = True
    # The site's own detectors, run before the built-in ones (at most 16).
    custom: Annotated[list[CustomRule], msgspec.Meta(max_length=16)] = []

    def __post_init__(self) -> None:
        # A misspelt detector name would silently fall back to ``default``; refuse it instead.
        from agent.detectors import DETECTOR_NAMES  # local import: policy loading stays light

        unknown = sorted(set(self.detectors) - set(DETECTOR_NAMES))
        if unknown:
            raise ValueError(f"unknown detector {unknown[0]!r}; known: {', '.join(DETECTOR_NAMES)}")


class Metric(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name
    events: Annotated[list[str], msgspec.Meta(min_length=1)]
    stat: Stat
    lower: float = 0.0  # values are clamped to [lower, upper] (sum, mean, histogram, quantiles)
    upper: float = 1.0
    buckets: list[float] = []  # histogram edges, ascending; also the candidate grid for quantiles
    quantiles: list[Annotated[float, msgspec.Meta(gt=0, lt=1)]] = []
    # Dimension key -> declared values (released in full, zeros included) or "open" (DP partition
    # selection decides which values appear). Values come from the event's attrs.
    dims: dict[str, list[str] | Literal["open"]] = {}
    max_partitions: PositiveInt = 1  # partitions one unit may touch per window (per period: bound)
    max_contributions: PositiveInt = 1  # contributions one unit may make per partition per window (...)
    weight: Positive = 1.0  # share of the window's budget
    # What the two caps above count over: each window (default), or the whole budget period. A
    # period bound caps what a unit adds to all of a period's windows together, so the period's
    # vector of window values has the sensitivity of one window and the metric is charged once per
    # period: each window gets the noise of a single release over the period (docs/privacy.md).
    bound: Literal["window", "period"] = "window"
    # Period bounds only: the share of the metric's period budget spent on a second release of the
    # period total at the period's close (0: none). The collector combines it with the windows.
    period_total: Annotated[float, msgspec.Meta(ge=0, lt=1)] = 0.0


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: Literal[1]
    name: str
    unit: Name = "user"  # what the privacy unit is called in batches ("user", "device", ...)
    budget: Budget = Budget(rho=1.0)
    window: WindowSpec = WindowSpec()
    redaction: Redaction = Redaction()
    attrs: dict[str, AttrRule] = {}
    metrics: Annotated[list[Metric], msgspec.Meta(min_length=1)] = []

    @property
    def window_seconds(self) -> int:
        return parse_duration(self.window.size)

    @property
    def lateness_seconds(self) -> int:
        return parse_duration(self.window.lateness)


_DAY = 86400
# The longest instance of each period: a month's windows are counted over 31 days, so the default
# per-window budget never lets a long month pass its cap.
_PERIOD_SECONDS = {"day": _DAY, "week": 7 * _DAY, "month": 31 * _DAY}
# What window sizes must divide so that every window lies inside one budget period: days (a day,
# and a month, which is whole days) or ISO weeks.
_ALIGN_SECONDS = {"day": _DAY, "week": 7 * _DAY, "month": _DAY}
# Window starts are counted from this origin: the epoch (a Thursday) for days and months, Monday
# 1970-01-05 00:00 UTC for weeks, so a weekly window is an ISO week.
_ORIGIN = {"day": 0, "week": 4 * _DAY, "month": 0}
# Wire limits of a released row (hushmetric.batch.Row): checked here so a policy cannot ask for
# releases the contract would refuse.
_MAX_DIM_VALUE = 256
_MAX_DIMS = 15  # 16 on the wire, one kept for the histogram's "bucket"


def _check(policy: Policy, path: str) -> Policy:  # noqa: C901  # one flat list of cross-field rules
    """Cross-field rules the schema alone cannot state."""
    b = policy.budget
    if b.mechanism == "zcdp" and b.rho is None:
        raise ConfigError("zcdp budget needs `rho` (per period)", path=path, key="budget.rho")
    if b.mechanism == "pure" and b.epsilon is None:
        raise ConfigError("pure budget needs `epsilon` (per period)", path=path, key="budget.epsilon")
    for key, value in (("window.size", policy.window.size), ("window.lateness", policy.window.lateness)):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(str(exc), path=path, key=key) from exc
        if key == "window.size":
            _check_window(seconds, b.period, path)
    names = set()
    for i, m in enumerate(policy.metrics):
        key = f"metrics[{i}]"
        if m.name in names:
            raise ConfigError(f"duplicate metric name {m.name!r}", path=path, key=f"{key}.name")
        names.add(m.name)
        if m.upper <= m.lower:
            raise ConfigError("`upper` must be greater than `lower`", path=path, key=f"{key}.upper")
        if m.stat in ("histogram", "quantiles") and len(m.buckets) < 2:
            raise ConfigError("needs at least two `buckets` edges", path=path, key=f"{key}.buckets")
        if m.buckets != sorted(set(m.buckets)):
            raise ConfigError("`buckets` must be strictly ascending", path=path, key=f"{key}.buckets")
        if m.stat == "quantiles" and not m.quantiles:
            raise ConfigError("needs `quantiles`, e.g. [0.5, 0.9]", path=path, key=f"{key}.quantiles")
        for dim, spec in m.dims.items():
            if dim not in policy.attrs:
                raise ConfigError(
                    f"dimension {dim!r} is not an allowed attribute (add it under [attrs])",
                    path=path,
                    key=f"{key}.dims.{dim}",
                )
            if isinstance(spec, list) and not spec:
                raise ConfigError("declared values must not be empty", path=path, key=f"{key}.dims.{dim}")
            if isinstance(spec, list) and max(len(v) for v in spec) > _MAX_DIM_VALUE:
                raise ConfigError(
                    f"declared values are at most {_MAX_DIM_VALUE} characters (the wire limit)",
                    path=path,
                    key=f"{key}.dims.{dim}",
                )
            if policy.attrs[dim].max_length > _MAX_DIM_VALUE:
                raise ConfigError(
                    f"an attribute used as a dimension keeps at most {_MAX_DIM_VALUE} characters",
                    path=path,
                    key=f"attrs.{dim}.max_length",
                )
        if len(m.dims) > _MAX_DIMS:
            raise ConfigError(f"at most {_MAX_DIMS} dimensions per metric", path=path, key=f"{key}.dims")
        _check_period_bound(m, key, path)
    _check_delta(policy, path)
    return policy


# Statistics a period bound supports: integer releases of declared partitions, whose period vector's
# sensitivity is that of one window under the same caps. Distinct-unit counts (a unit counts once per
# window it appears in) and open dimensions (partition selection per window) are not.
_PERIOD_STATS = ("count", "sum", "mean", "histogram", "quantiles")
# A period total is a sum of window values: only for statistics released as sums (not derived ones).
_TOTAL_STATS = ("count", "sum", "histogram")


def _check_period_bound(m: Metric, key: str, path: str) -> None:
    if m.bound == "window":
        if m.period_total:
            raise ConfigError(
                'a period total needs per-period bounds: set `bound = "period"` or remove `period_total`',
                path=path,
                key=f"{key}.period_total",
            )
        return
    if m.stat not in _PERIOD_STATS:
        raise ConfigError(
            f"per-period bounds support {', '.join(_PERIOD_STATS)}, not {m.stat}",
            path=path,
            key=f"{key}.bound",
        )
    if "open" in m.dims.values():
        raise ConfigError(
            "per-period bounds need declared dimension values (an open dimension is selected per window)",
            path=path,
            key=f"{key}.bound",
        )
    if m.period_total and m.stat not in _TOTAL_STATS:
        raise ConfigError(
            f"a period total is released for {', '.join(_TOTAL_STATS)} only, not {m.stat}",
            path=path,
            key=f"{key}.period_total",
        )


def _fmt_duration(seconds: int) -> str:
    parts = []
    for unit, size in (("d", _DAY), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def valid_window_sizes(period: str) -> list[str]:
    """Window sizes (whole minutes, at least 1m) that divide the period's alignment unit."""
    align = _ALIGN_SECONDS[period]
    return [_fmt_duration(s) for s in range(60, align + 1, 60) if align % s == 0]


_COMMON = {
    period: [
        size
        for size in ("1m", "5m", "10m", "15m", "30m", "1h", "2h", "3h", "4h", "6h", "8h", "12h", "1d", "7d")
        if _ALIGN_SECONDS[period] % parse_duration(size) == 0
    ]
    for period in _ALIGN_SECONDS
}


def _check_window(seconds: int, period: str, path: str) -> None:
    """A window must lie inside one budget period, or one period's data could cost more than its cap."""
    align = _ALIGN_SECONDS[period]
    if seconds < 60 or align % seconds:
        unit = "week" if period == "week" else "day"
        raise ConfigError(
            f"{_fmt_duration(seconds) or '0s'} does not divide one {unit} (budget period {period}): "
            f"windows must not straddle budget periods; valid sizes divide one {unit}, at least 1m, "
            f"e.g. {', '.join(_COMMON[period])}",
            path=path,
            key="window.size",
        )


def _check_delta(policy: Policy, path: str) -> None:
    b = policy.budget
    total = period_delta(policy)
    if total > b.max_delta * (1 + 1e-9):
        windows = windows_per_period(policy, chargeable=True)
        raise ConfigError(
            f"the windows of one {b.period} would add up to delta {total:.3g} "
            f"({windows} windows x delta {b.delta:.3g}), over budget.max_delta {b.max_delta:.3g}: "
            f"lower budget.delta to at most {b.max_delta / windows:.3g}, use longer windows, "
            "or raise budget.max_delta",
            path=path,
            key="budget.delta",
        )


def load_policy(path: Path) -> Policy:
    policy = _check(load_toml(path, Policy), str(path))
    _check_custom(policy.redaction, str(path))
    return policy


def _check_custom(red: Redaction, path: str) -> None:
    """Each custom detector compiles, is cheap enough to run on hostile text and has its own name."""
    from agent.detectors.custom import CustomDetectorError, compile_detector

    seen: set[str] = set()
    for i, rule in enumerate(red.custom):
        key = f"redaction.custom[{i}]"
        if rule.name in seen:
            raise ConfigError(f"duplicate custom detector name {rule.name!r}", path=path, key=f"{key}.name")
        seen.add(rule.name)
        try:
            compile_detector(rule.name, rule.regex, checksum=rule.checksum, context=rule.context)
        except CustomDetectorError as exc:
            raise ConfigError(str(exc), path=path, key=f"{key}.{exc.field}") from None


def used_attrs(policy: Policy) -> set[str]:
    """Attribute keys some metric reads (as a dimension): the only ones that can influence a release."""
    return {dim for metric in policy.metrics for dim in metric.dims}


def minimised(policy: Policy) -> Policy:
    """The policy the pipeline redacts with: ``attrs`` cut down to what some metric uses.

    Data minimisation at the edge: an attribute that is allowed but feeds no metric could never
    influence anything that leaves, so it is dropped before it is scanned, journaled or kept in
    memory — less personal data at rest, and no time spent scanning text that would be thrown away.
    The digest in batches stays the digest of the policy as written.
    """
    used = used_attrs(policy)
    return msgspec.structs.replace(policy, attrs={k: v for k, v in policy.attrs.items() if k in used})


# Metric keys added after policies were deployed: left out of the digest while at their default, so
# a policy that does not use them keeps the digest it had (collectors attach approved digests).
_LATER_DEFAULTS = {"bound": "window", "period_total": 0.0}


def policy_digest(policy: Policy) -> str:
    """Hex SHA-256 of the canonical encoding of the decoded policy (comments and layout do not count)."""
    tree = msgspec.to_builtins(policy, order="sorted")
    if not policy.redaction.custom:
        del tree["redaction"]["custom"]  # a policy without custom detectors keeps its earlier digest
    for metric in tree.get("metrics", []):
        for name, default in _LATER_DEFAULTS.items():
            if metric.get(name) == default:
                del metric[name]
    return hashlib.sha256(msgspec.msgpack.encode(tree)).hexdigest()


def period_seconds(policy: Policy) -> int:
    """Length of the policy's longest budget period (a month counts 31 days)."""
    return _PERIOD_SECONDS[policy.budget.period]


def window_origin(policy: Policy) -> int:
    """Epoch second that window starts are counted from (a Monday for weekly budgets)."""
    return _ORIGIN[policy.budget.period]


def window_start(policy: Policy, ts: float) -> int:
    """Start of the window containing ``ts``: the one formula aggregator, schedule and ledger share."""
    size, origin = policy.window_seconds, window_origin(policy)
    return origin + int((ts - origin) // size) * size


def windows_per_period(policy: Policy, *, chargeable: bool = False) -> int:
    """Windows in the policy's longest period; with ``chargeable``, at most as many as the cap pays for
    at ``per_window`` (the ledger refuses the rest)."""
    windows = max(1, period_seconds(policy) // policy.window_seconds)
    b = policy.budget
    if chargeable and b.per_window is not None:
        cap = b.rho if b.mechanism == "zcdp" else b.epsilon
        if cap is not None:
            windows = min(windows, max(1, math.floor(cap / b.per_window * (1 + 1e-9))))
    return windows


_PERIOD_FORMAT = {"day": "%Y-%m-%d", "week": "%G-W%V", "month": "%Y-%m"}


def period_key(policy: Policy, ts: float) -> str:
    """The UTC budget period containing ``ts``: ``2026-11-26``, ``2026-W48`` or ``2026-11``. The
    strings sort in time order."""
    return time.strftime(_PERIOD_FORMAT[policy.budget.period], time.gmtime(int(ts)))


def period_delta(policy: Policy) -> float:
    """The δ one period's windows can add up to: per-window δ (only metrics with open dimensions
    spend it) times the windows the period can be charged for."""
    if not any("open" in m.dims.values() for m in policy.metrics):
        return 0.0
    return policy.budget.delta * windows_per_period(policy, chargeable=True)


def per_window_budget(policy: Policy) -> float:
    """ρ (zcdp) or ε (pure) that one window's release spends, across all its metrics."""
    b = policy.budget
    cap = b.rho if b.mechanism == "zcdp" else b.epsilon
    assert cap is not None  # enforced by _check
    if b.per_window is not None:
        return b.per_window
    return cap / windows_per_period(policy)


def period_budget(policy: Policy, *, per_window: float | None = None) -> float:
    """ρ (ε) a full period of windows spends: what period-bounded metrics share, by weight, once per
    period. Never more than the cap: the windows the cap pays for at ``per_window`` (default: the
    policy's)."""
    window = per_window_budget(policy) if per_window is None else per_window
    return window * windows_per_period(policy, chargeable=per_window is None)
