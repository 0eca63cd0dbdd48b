"""Optional single-pass prefilter: one Hyperscan scan tells which detectors can match a text at all.

Each detector's pattern is compiled in Hyperscan's *prefilter* mode, where constructs Hyperscan
cannot run exactly (lookbehinds, backreferences, lazy quantifiers) are widened so that the compiled
pattern matches *at least* wherever the original does. One scan of a text over all of them, each
reported once (``SINGLEMATCH``), gives a bit per detector: bit clear means the Python pattern has no
match in the text, so the detector cannot find anything and is skipped; bit set means it runs as it
always does (Python ``re`` plus its validator). The findings are therefore exactly those of the
pure-Python path — ``tests/agent/test_detectors_hyperscan.py`` checks it differentially — and only
the futile searches are saved.

Exactness needs the byte-level scan to agree with Python's ``str`` patterns, which holds for ASCII
text once ``\\s`` also covers ``\\x1c``–``\\x1f`` (Python's ``str`` whitespace, not PCRE's). A text
that is not ASCII is not prefiltered (the caller runs every detector its features allow), nor is a
detector whose pattern has flags or characters this translation does not cover, or that Hyperscan
refuses: its bit is always set.

Hyperscan is optional (``pip install 'hushmetric[fast]'``; wheels exist for x86-64 Linux and macOS)
and opt-in (``Scanner(backend="hyperscan")`` or ``"auto"``): measured on the demo mixes it saves
little (0–7 % of the pipeline: most detectors that pass the feature gate do find something, and the
per-value Python work dominates) and its library adds about 13 MiB of RSS, so the default scanner
stays pure Python. Without it :func:`build` returns None and the scanner runs the pure-Python path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["Gate", "available", "build"]

_hs: Any = None  # the hyperscan module, imported on first use: it adds about 13 MiB to the process


def _load() -> Any:
    global _hs
    if _hs is None:
        try:
            import hyperscan  # optional dependency: absent, the scanner runs its pure-Python path
        except ImportError:  # pragma: no cover - exercised where the wheel is not installed
            return None
        _hs = hyperscan
    return _hs

_SUPPORTED_FLAGS = re.DOTALL | re.UNICODE  # str patterns carry UNICODE; anything else is not translated


def available() -> bool:
    return _load() is not None


def _widen_spaces(pattern: str) -> str:
    r"""``\s`` as Python's ``str`` patterns mean it on ASCII text: ``[\t\n\v\f\r \x1c-\x1f]``."""
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            pair = pattern[i : i + 2]
            if pair == r"\s":
                out.append(r"\s\x1c-\x1f" if in_class else r"[\s\x1c-\x1f]")
            else:
                out.append(pair)
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            out.append(ch)
            i += 1
            # a ']' right after '[' or '[^' is a literal member of the class
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":
                out.append("]")
                i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


class Gate:
    """A compiled Hyperscan database over some detectors' patterns; :meth:`candidates` scans once."""

    def __init__(self, db: Any, always: int) -> None:
        self._db = db
        self._scratch = _hs.Scratch(db) if _hs is not None else None
        self.always = always  # bits of detectors that are never prefiltered

    def candidates(self, text: str) -> int:
        """Bit ``i`` set: detector ``i`` may match ``text`` (``text`` must be ASCII)."""
        found = [self.always]

        def on_match(ident: int, start: int, end: int, flags: int, context: object) -> None:
            found[0] |= 1 << ident

        self._db.scan(text.encode("ascii"), match_event_handler=on_match, scratch=self._scratch)
        return found[0]


def build(patterns: Sequence[re.Pattern[str] | None]) -> Gate | None:
    """A gate over ``patterns`` (None: a detector with no single pattern, never prefiltered), or None
    when Hyperscan is not installed or no pattern could be compiled."""
    if _load() is None:
        return None
    always = 0
    exprs: list[bytes] = []
    ids: list[int] = []
    flags: list[int] = []
    for i, pattern in enumerate(patterns):
        flag = _flags(pattern)
        if pattern is None or flag is None:
            always |= 1 << i
            continue
        expr = _widen_spaces(pattern.pattern).encode("ascii")
        try:  # compiled alone first: one refused pattern must not disable the others
            alone = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            alone.compile(expressions=[expr], ids=[i], elements=1, flags=[flag])
        except _hs.error:
            always |= 1 << i
            continue
        exprs.append(expr)
        ids.append(i)
        flags.append(flag)
    if not exprs:
        return None
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    db.compile(expressions=exprs, ids=ids, elements=len(exprs), flags=flags)
    return Gate(db, always)


def _flags(pattern: re.Pattern[str] | None) -> int | None:
    if _hs is None or pattern is None or not isinstance(pattern.pattern, str):
        return None
    if not pattern.pattern.isascii():
        return None
    if pattern.flags & ~_SUPPORTED_FLAGS:
        return None  # IGNORECASE, MULTILINE, VERBOSE…: kept exact by not prefiltering
    flag = _hs.HS_FLAG_PREFILTER | _hs.HS_FLAG_SINGLEMATCH | _hs.HS_FLAG_ALLOWEMPTY
    if pattern.flags & re.DOTALL:
        flag |= _hs.HS_FLAG_DOTALL
    return int(flag)
