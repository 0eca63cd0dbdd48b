"""PII detectors: find personal data and secrets in free text.

``Scanner.scan(text)`` returns non-overlapping findings (detector name and span) in text order.
Detectors are plain objects with a ``name`` and ``find(text) -> spans`` (see ``Detector``); the
built-in set covers email, phone, IPv4, IPv6, MAC, payment card (Luhn), IBAN (mod-97), US SSN, JWT,
API keys with known prefixes, URL credentials and secrets (assigned values and high-entropy tokens).

Single pass: with the optional Hyperscan backend (``backend="hyperscan"``, or ``"auto"``), one
scan of a text over every detector's pattern (prefilter mode) tells which detectors can match at
all; only those run their Python pattern and validator, so the findings are exactly the pure-Python
path's (see ``_hyperscan``). Without it, cheap features of the text (``features``) gate each detector.

Findings that overlap merge into one, named after the detector that comes first in priority order
(the order of ``BUILTIN``), so no part of a finding is ever left in clear.

``normalize`` gives the canonical form a pseudonym is computed from (an email in any case, a card
with or without spaces: one pseudonym), ``generalize`` the coarse form (IPv4 → /24, IPv6 → /48).
Nothing here logs or stores the text it is given.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple, Protocol

from agent.detectors import _hyperscan
from agent.detectors._checks import ipv4_ok, ipv6_ok
from agent.detectors._rules import BUILTIN, RegexDetector, features

__all__ = [
    "BACKENDS",
    "BUILTIN",
    "DETECTOR_NAMES",
    "Backend",
    "Detector",
    "Finding",
    "RegexDetector",
    "Scanner",
    "features",
    "generalize",
    "normalize",
]


class Finding(NamedTuple):
    detector: str
    start: int
    end: int


class Detector(Protocol):
    """Anything that finds spans of one kind of personal data in a text."""

    @property
    def name(self) -> str: ...

    @property
    def trigger(self) -> int: ...  # feature mask (see ``features``) that gates it; 0: always run

    @property
    def min_len(self) -> int: ...

    def find(self, text: str) -> Iterable[tuple[int, int]]: ...


DETECTOR_NAMES: tuple[str, ...] = tuple(dict.fromkeys(d.name for d in BUILTIN))

# Letters (at most 12, with '_', '-', ' ') then at most 6 digits: shorter than any built-in secret or
# key (20+), too few digits for a card, phone, SSN or IBAN (7+), and no '@', ':' or '.'.
_TRIVIAL = re.compile(r"[A-Za-z_ -]{0,12}[0-9]{0,6}")


# Shorter texts run only the few detectors their features allow, faster than a Hyperscan call costs
# (about 1.5 µs: encoding and the match callback); measured on the demo's label values.
_GATE_MIN = 48

Backend = Literal["auto", "python", "hyperscan"]
BACKENDS: tuple[Backend, ...] = ("auto", "python", "hyperscan")


class Scanner:
    """Runs detectors in priority order over a text, gated by cheap features of the text and, with
    the Hyperscan backend, by one prefilter scan over all of them.

    ``backend``: ``"python"`` (default) never uses Hyperscan, ``"auto"`` uses it when it is installed,
    ``"hyperscan"`` requires it (ValueError otherwise). Findings are the same whichever runs; the
    default saves the ~13 MiB Hyperscan's library costs for a small speed gain (see ``_hyperscan``).
    """

    def __init__(self, detectors: Sequence[Detector] = BUILTIN, *, backend: Backend = "python") -> None:
        self._detectors = tuple(detectors)
        self._rank = {name: i for i, name in enumerate(dict.fromkeys(d.name for d in self._detectors))}
        self._names = tuple(self._rank)
        self._always = any(d.trigger == 0 for d in self._detectors)
        self._plan = tuple((d.trigger, d.min_len, self._rank[d.name], d) for d in self._detectors)
        self._builtin = all(d in BUILTIN for d in self._detectors)
        self._gate: _hyperscan.Gate | None = None
        if backend == "hyperscan" and not _hyperscan.available():
            raise ValueError("the hyperscan backend needs the hyperscan package (hushmetric[fast])")
        if backend != "python":
            self._gate = _hyperscan.build(
                [d.pattern if isinstance(d, RegexDetector) else None for d in self._detectors]
            )

    @property
    def backend(self) -> str:
        """The backend in use: ``"hyperscan"`` or ``"python"``."""
        return "python" if self._gate is None else "hyperscan"

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def detectors(self) -> tuple[Detector, ...]:
        return self._detectors

    def scan(self, text: str) -> list[Finding]:
        n = len(text)
        if self._builtin and _TRIVIAL.fullmatch(text) is not None:
            return []  # "user-48213", "GET", "eu-west": too short and too plain for any finding
        feats = features(text) if n >= 6 else 0
        if not feats and not self._always:
            return []
        spans: list[tuple[int, int, int]] = []
        covered: list[tuple[int, int]] = []
        # One prefilter scan for all detectors (ASCII text only: see _hyperscan); -1: all may match.
        gate = self._gate
        maybe = gate.candidates(text) if gate is not None and n >= _GATE_MIN and text.isascii() else -1
        for i, (trigger, min_len, rank, det) in enumerate(self._plan):
            if n < min_len or (trigger and not trigger & feats) or not (maybe >> i) & 1:
                continue
            found = det.find(text, covered) if isinstance(det, RegexDetector) else det.find(text)
            for start, end in found:
                spans.append((start, end, rank))
                covered.append((start, end))
        if not spans:
            return []
        return _merge(spans, self._names)


def _merge(spans: list[tuple[int, int, int]], names: tuple[str, ...]) -> list[Finding]:
    """Overlapping spans become one finding named after the highest-priority (lowest rank) one."""
    spans.sort()
    out: list[Finding] = []
    cur_s, cur_e, cur_r = spans[0]
    for s, e, r in spans[1:]:
        if s < cur_e:
            cur_e = max(cur_e, e)
            cur_r = min(cur_r, r)
        else:
            out.append(Finding(names[cur_r], cur_s, cur_e))
            cur_s, cur_e, cur_r = s, e, r
    out.append(Finding(names[cur_r], cur_s, cur_e))
    return out


_NON_DIGITS = re.compile(r"[^0-9]")
_NON_ALNUM = re.compile(r"[^0-9A-Za-z]")


def normalize(detector: str, raw: str) -> str:
    """Canonical form of a finding, so one value written several ways gets one pseudonym."""
    if detector == "email":
        return raw.lower()
    if detector in ("card", "ssn"):
        return _NON_DIGITS.sub("", raw)
    if detector == "phone":
        return ("+" if raw.startswith("+") else "") + _NON_DIGITS.sub("", raw)
    if detector == "iban":
        return _NON_ALNUM.sub("", raw).upper()
    if detector == "mac":
        return _NON_ALNUM.sub("", raw).lower()
    if detector == "ipv4" and ipv4_ok(raw):
        return raw  # no leading zeros, so already canonical
    if detector in ("ipv4", "ipv6"):
        try:
            return str(ipaddress.ip_address(raw.split("%", 1)[0]))
        except ValueError:
            return raw
    return raw


def generalize(detector: str, raw: str) -> str | None:
    """The coarse form of a finding (IPv4 → /24, IPv6 → /48), or None when it has none."""
    if detector == "ipv4":
        parts = raw.split(".")
        if len(parts) == 4 and all(p.isdigit() and p.isascii() for p in parts) and ipv4_ok(raw):
            return f"{parts[0]}.{parts[1]}.{parts[2]}.0/24"
        return None
    if detector == "ipv6":
        return _ipv6_prefix48(raw.split("%", 1)[0])
    return None


def _ipv6_prefix48(text: str) -> str | None:
    """``a:b:c::/48`` in RFC 5952 form, as ``ipaddress`` writes it; None when ``text`` is not IPv6."""
    if not ipv6_ok(text):
        return None
    head, sep, tail = text.partition("::")
    left = head.split(":") if head else []
    right = tail.split(":") if tail else []
    if right and "." in right[-1]:
        right[-1:] = ["0", "0"]  # an embedded IPv4 takes the last two groups, never the first three
    groups = left + ["0"] * (8 - len(left) - len(right)) + right if sep else left
    first = [format(int(g, 16), "x") for g in groups[:3]]
    while first and first[-1] == "0":
        first.pop()
    return (":".join(first) + "::/48") if first else "::/48"
