"""User-defined detectors from the policy (``[[redaction.custom]]``): a site's own record numbers,
employee ids and the like, found by a regular expression, an optional checksum and optional context
words, and treated like the built-in findings (counted locally, dropped, masked or hashed).

**Bounded work.** Python's ``re`` backtracks, so a careless pattern (``(a+)+``, ``(a|aa){1,30}``)
could take exponential time on hostile text. Rather than run patterns under a clock (a result that
depends on the machine's load), a pattern is refused at load time unless its worst case is small:

- it must not match the empty string, and its longest match is at most ``MAX_WIDTH`` characters
  (write ``[0-9]{6,10}``, not ``[0-9]+``);
- ``worst_steps`` bounds, from the parsed pattern, how many character steps the engine can take from
  one start position while it tries every way to match (a sequence multiplies the ways of what comes
  before into the cost of what follows, a repeat adds up its iterations); it must be at most
  ``MAX_STEPS``. Nested or overlapping quantifiers blow that count up and are refused; ids written as
  fixed groups (``EMP-[0-9]{6}[0-9X]``, ``(?:[0-9]{3}-){2}[0-9]{4}``) cost a few dozen steps;
- back-references are refused (their cost depends on the text).

A scan tries each start position at most once (a candidate that fails its checksum or context check
resumes one character after its start, found ones after their end), so one detector costs at most
``(len(text) + 1) × MAX_STEPS`` steps plus, per position at most, one checksum (over at most
``MAX_WIDTH`` characters) and two context searches (windows of ``CONTEXT_WINDOW`` characters), and a
policy has at most ``MAX_DETECTORS`` of them: the work per value is linear in its
(already capped) length. See docs/privacy.md for the measured worst case.

Patterns are compiled with ``re.ASCII`` (``\\d`` is ``[0-9]``, ``\\w`` and ``\\b`` are ASCII), like the
built-in detectors.
"""

from __future__ import annotations

import importlib
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.detectors import DETECTOR_NAMES, Finding, Scanner
from agent.detectors import _merge as merge_spans  # one merge rule for built-in and custom findings

__all__ = [
    "CHECKSUMS",
    "CONTEXT_WINDOW",
    "MAX_DETECTORS",
    "MAX_STEPS",
    "MAX_WIDTH",
    "CustomDetector",
    "CustomDetectorError",
    "CustomScanner",
    "compile_detector",
    "describe",
    "luhn_valid",
    "mod11_valid",
    "mod97_valid",
    "reserved_names",
    "worst_steps",
]

MAX_DETECTORS = 16
MAX_WIDTH = 64  # longest match: ids are short, and the cost bound grows with it
MAX_STEPS = 1000  # engine steps from one start position, worst case (see ``worst_steps``)
CONTEXT_WINDOW = 40  # a context word must lie wholly within this many characters before or after
_SATURATE = 1 << 40  # counts past this are "too many" whatever they are: keeps the arithmetic small

# Python 3.11 keeps the regex parser private (``sre_parse`` is its deprecated alias); it is the
# parser ``re.compile`` itself uses, so what is analysed here is exactly what runs.
_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")


class CustomDetectorError(ValueError):
    """A custom detector the policy cannot use; ``field`` names the offending key of its table."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# --- checksums ----------------------------------------------------------------------------------------


_NOT_DIGIT = re.compile(r"[^0-9]")
_NOT_ALNUM = re.compile(r"[^0-9A-Z]")
_NOT_MOD11 = re.compile(r"[^0-9Xx]")
_LETTER_VALUES = str.maketrans({chr(c): str(c - 55) for c in range(65, 91)})  # A=10 … Z=35
_DOUBLED = {str(d): (2 * d - 9 if d > 4 else 2 * d) for d in range(10)}


# The checksums run on every candidate the regex finds (up to one per position of hostile text), so
# they filter with the C regex engine and loop in Python at most once over at most MAX_WIDTH digits.


def luhn_valid(text: str) -> bool:
    """Luhn (mod 10) over the ASCII digits of ``text`` (other characters are separators)."""
    digits = _NOT_DIGIT.sub("", text)
    if len(digits) < 2:
        return False
    doubled = _DOUBLED
    total = sum(map(int, digits[-1::-2])) + sum(doubled[d] for d in digits[-2::-2])
    return total % 10 == 0


def mod97_valid(text: str) -> bool:
    """ISO 7064 MOD 97-10 over the ASCII letters and digits of ``text`` (A=10 … Z=35), as IBANs and
    the LEI use it: the number they spell is 1 modulo 97. At least three characters."""
    chars = _NOT_ALNUM.sub("", text.upper())
    if len(chars) < 3:
        return False
    return int(chars.translate(_LETTER_VALUES)) % 97 == 1


def mod11_valid(text: str) -> bool:
    """Weighted mod 11 over the ASCII digits of ``text``: Σ wᵢ·dᵢ ≡ 0 (mod 11) with weights 1, 2, …,
    10 from the rightmost (check) digit, repeating after 10; a final ``X`` stands for 10. For ten
    digits or fewer this is ISBN-10 and the UK NHS number. At least two digits."""
    chars = _NOT_MOD11.sub("", text)
    if len(chars) < 2:
        return False
    check = chars[-1]
    body = chars[:-1]
    if "X" in body or "x" in body:
        return False  # an X anywhere but in the check position is a letter of the id, not a digit
    total = 10 if check in "Xx" else ord(check) - 48
    for i, ch in enumerate(reversed(body), start=1):
        total += (i % 10 + 1) * (ord(ch) - 48)
    return total % 11 == 0


CHECKSUMS: dict[str, Callable[[str], bool]] = {
    "luhn": luhn_valid,
    "mod-97": mod97_valid,
    "mod-11": mod11_valid,
}


# --- cost analysis ------------------------------------------------------------------------------------


def _sat(n: int) -> int:
    return n if n < _SATURATE else _SATURATE


def _seq(items: Iterable[tuple[Any, Any]]) -> tuple[int, int]:
    """(ways, steps) of a sequence: every way the items before can end is a start for the next."""
    ways, steps = 1, 0
    for op, av in items:
        w, s = _node(op, av)
        steps = _sat(steps + ways * s)
        ways = _sat(ways * w)
    return ways, steps


def _node(op: Any, av: Any) -> tuple[int, int]:
    if op in (_c.LITERAL, _c.NOT_LITERAL, _c.IN, _c.ANY, _c.AT):
        return 1, 1
    if op is _c.SUBPATTERN:
        return _seq(av[3])
    if op is _c.ATOMIC_GROUP:
        return 1, _seq(av)[1]
    if op in (_c.ASSERT, _c.ASSERT_NOT):
        return 1, _seq(av[1])[1]
    if op is _c.BRANCH:
        ways = steps = 0
        for alt in av[1]:
            w, s = _seq(alt)
            ways, steps = _sat(ways + w), _sat(steps + s)
        return max(ways, 1), steps
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
        lo, hi, body = av
        w, s = _seq(body)
        ways, steps = _repeat(lo, hi, w, s)
        return (1 if op is _c.POSSESSIVE_REPEAT else ways), steps
    if op in (_c.GROUPREF, _c.GROUPREF_EXISTS):
        raise CustomDetectorError(
            "regex", "back-references are not supported (their cost depends on the text)"
        )
    raise CustomDetectorError("regex", f"unsupported regular-expression construct {op}")


def _repeat(lo: int, hi: int, w: int, s: int) -> tuple[int, int]:
    """A repeat tries iteration k from each of the w^(k-1) ways iterations 1..k-1 can end."""
    if w == 1:  # one way per iteration: no blow-up, only the iterations' own steps
        return _sat(hi - lo + 1), _sat(hi * s)
    ways = steps = 0
    power = 1  # w^k
    for k in range(hi + 1):
        if k >= lo:
            ways = _sat(ways + power)
        if k < hi:
            steps = _sat(steps + power * s)
        power = _sat(power * w)
        if ways >= _SATURATE or steps >= _SATURATE:
            return _SATURATE, _SATURATE
    return ways, steps


def worst_steps(regex: str) -> int:
    """An upper bound on the character steps the engine takes from one start position (saturates)."""
    return _seq(_parser.parse(regex, re.ASCII))[1]


# --- detectors -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomDetector:
    """One compiled ``[[redaction.custom]]`` entry. ``find`` follows the ``Detector`` protocol."""

    name: str
    pattern: re.Pattern[str]
    checksum: Callable[[str], bool] | None = None
    context: re.Pattern[str] | None = None
    trigger: int = 0
    min_len: int = 1

    def find(self, text: str) -> list[tuple[int, int]]:
        if len(text) < self.min_len:
            return []
        search = self.pattern.search
        out: list[tuple[int, int]] = []
        n = len(text)
        pos = 0
        # Each start position is tried at most once: the bound in the module docstring.
        while pos < n:
            m = search(text, pos)
            if m is None:
                break
            start, end = m.span()
            if self._ok(text, m):
                out.append((start, end))
                pos = end
            else:
                pos = start + 1
        return out

    def _ok(self, text: str, m: re.Match[str]) -> bool:
        if self.checksum is not None:
            subject = m.group(1) if self.pattern.groups else m.group()
            if subject is None or not self.checksum(subject):
                return False
        if self.context is not None:
            start, end = m.span()
            before = self.context.search(text, max(0, start - CONTEXT_WINDOW), start)
            if before is None and self.context.search(text, end, end + CONTEXT_WINDOW) is None:
                return False
        return True


def _context_pattern(words: Sequence[str]) -> re.Pattern[str]:
    # Whole words, any case; longest first so "record no" wins over "record". The lookbehind sees
    # past a window's start, so the tail of a longer word cut by the window is not taken for a word.
    alts = "|".join(re.escape(w) for w in sorted({w.strip() for w in words}, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)


def reserved_names() -> frozenset[str]:
    """Names a custom detector may not take: the built-in detectors, the redaction counters (both are
    keys of the same counts) and ``unit`` (the prefix of a unit's pseudonym)."""
    from agent.redact import COUNTERS  # local import: agent.redact imports this module

    return frozenset((*DETECTOR_NAMES, *COUNTERS, "unit"))


def compile_detector(
    name: str,
    regex: str,
    *,
    checksum: str | None = None,
    context: Sequence[str] = (),
) -> CustomDetector:
    """A checked, compiled detector; CustomDetectorError (with the offending field) otherwise."""
    if name in reserved_names():
        raise CustomDetectorError("name", f"{name!r} is the name of a built-in detector or counter")
    try:
        with warnings.catch_warnings():
            # "Possible nested set" and the like: a pattern whose meaning a later Python changes.
            warnings.simplefilter("error")
            pattern = re.compile(regex, re.ASCII)
    except (re.error, OverflowError, RecursionError, Warning) as exc:
        raise CustomDetectorError("regex", f"not a valid regular expression: {exc}") from None
    lo, hi = _parser.parse(regex, re.ASCII).getwidth()
    if lo == 0 or pattern.fullmatch("") is not None:
        raise CustomDetectorError("regex", "can match the empty string: every text would be a finding")
    if hi > MAX_WIDTH:
        raise CustomDetectorError(
            "regex",
            f"can match more than {MAX_WIDTH} characters: bound every repeat "
            "(e.g. [0-9]{6,10} instead of [0-9]+ or *)",
        )
    steps = worst_steps(regex)
    if steps > MAX_STEPS:
        raise CustomDetectorError(
            "regex",
            f"may backtrack too much (worst case {'over 10^12' if steps >= _SATURATE else steps} steps "
            f"per position, limit {MAX_STEPS}): avoid nested or overlapping quantifiers such as "
            "(a|ab){1,20} or ([0-9]{1,5}){1,5}",
        )
    check = None
    if checksum is not None:
        check = CHECKSUMS.get(checksum)
        if check is None:
            raise CustomDetectorError(
                "checksum", f"unknown checksum {checksum!r}; known: {', '.join(CHECKSUMS)}"
            )
    words = [w for w in context if w.strip()]
    if len(words) != len(context):
        raise CustomDetectorError("context", "context words must not be blank")
    ctx = _context_pattern(words) if words else None
    return CustomDetector(name, pattern, check, ctx, min_len=lo)


def describe(name: str, regex: str, checksum: str | None, context: Sequence[str], action: str) -> str:
    """One line for ``validate``: what the detector looks for and what it does with a finding."""
    parts = [f"regex {regex}"]
    if checksum:
        parts.append(f"checksum {checksum}")
    if context:
        parts.append(f"context {', '.join(context)} (within {CONTEXT_WINDOW} characters)")
    return f"{name}: {'; '.join(parts)}; action {action}"


# --- the scanner hook ------------------------------------------------------------------------------------


class CustomScanner:
    """The built-in ``Scanner`` plus the policy's detectors, with the same ``names``/``scan`` interface.

    It wraps the built-in scanner rather than joining its plan, so the built-ins keep their own fast
    paths (and their own internals can change) while custom detectors run on every text. Custom
    detectors come first in priority: a custom finding that overlaps a built-in one merges with it
    under the custom name (the site said what that id is); either way no part of it stays in clear.
    """

    def __init__(self, detectors: Sequence[CustomDetector], base: Scanner | None = None) -> None:
        if len(detectors) > MAX_DETECTORS:
            raise ValueError(f"at most {MAX_DETECTORS} custom detectors")
        self._base = base or Scanner()
        self._custom = tuple(detectors)
        self._names = tuple(d.name for d in self._custom) + self._base.names
        self._rank = {name: i for i, name in enumerate(self._names)}

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def custom(self) -> tuple[CustomDetector, ...]:
        return self._custom

    def scan(self, text: str) -> list[Finding]:
        found = self._base.scan(text)
        spans: list[tuple[int, int, int]] = []
        for rank, det in enumerate(self._custom):
            spans.extend((s, e, rank) for s, e in det.find(text))
        if not spans:
            return found
        ranks = self._rank
        spans.extend((f.start, f.end, ranks[f.detector]) for f in found)
        return merge_spans(spans, self._names)

