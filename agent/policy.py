"""The privacy policy: what may leave the site, how it is redacted, bounded and noised.

A policy is a versioned TOML file decoded into these Structs. Its digest (hex SHA-256 of the
canonical msgpack encoding of the decoded policy) goes into every batch, so a collector and an
auditor can tell which policy produced which numbers. See ``configs/policy.toml`` for a commented
example.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from hushmetric.config import load_toml
from hushmetric.errors import ConfigError
from hushmetric.timefmt import parse_duration

__all__ = [
    "AttrRule",
    "Budget",
    "Metric",
    "Policy",
    "Redaction",
    "WindowSpec",
    "load_policy",
    "minimised",
    "per_window_budget",
    "period_seconds",
    "policy_digest",
    "used_attrs",
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
    # number of windows in a period, so a full period of windows fits exactly.
    per_window: Positive | None = None
    # δ per window for DP partition selection of open dimensions (thresholding).
    delta: Annotated[float, msgspec.Meta(gt=0, lt=1e-3)] = 1e-7


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


class Redaction(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How each detector's findings are treated; detectors not named use ``default``.

    Detector names: url_credentials, jwt, api_key, email, iban, card, ssn, mac, ipv6, ipv4, phone,
    secret. ``drop`` removes the finding's text, ``mask`` writes ``[name]``, ``hash`` writes a keyed
    pseudonym ``name:<16 hex>``, ``generalize`` writes the /24 (IPv4) or /48 (IPv6) network and
    masks detectors without a coarse form.
    """

    default: Action = "mask"
    detectors: dict[str, Action] = {}
    # Drop the whole event when its name or an attribute key contains a finding.
    drop_event_on_name_finding: bool = True

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
    max_partitions: PositiveInt = 1  # partitions one unit may touch per window
    max_contributions: PositiveInt = 1  # contributions one unit may make per partition per window
    weight: Positive = 1.0  # share of the window's budget


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


_PERIOD_SECONDS = {"day": 86400, "week": 7 * 86400, "month": 30 * 86400}
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
        if key == "window.size" and not 60 <= seconds <= _PERIOD_SECONDS[b.period]:
            raise ConfigError(f"must be between 1m and one {b.period}", path=path, key=key)
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
    return policy


def load_policy(path: Path) -> Policy:
    return _check(load_toml(path, Policy), str(path))


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


def policy_digest(policy: Policy) -> str:
    """Hex SHA-256 of the canonical encoding of the decoded policy (comments and layout do not count)."""
    return hashlib.sha256(msgspec.msgpack.encode(msgspec.to_builtins(policy, order="sorted"))).hexdigest()


def period_seconds(policy: Policy) -> int:
    return _PERIOD_SECONDS[policy.budget.period]


def per_window_budget(policy: Policy) -> float:
    """ρ (zcdp) or ε (pure) that one window's release spends, across all its metrics."""
    b = policy.budget
    cap = b.rho if b.mechanism == "zcdp" else b.epsilon
    assert cap is not None  # enforced by _check
    if b.per_window is not None:
        return b.per_window
    return cap / max(1, period_seconds(policy) // policy.window_seconds)
