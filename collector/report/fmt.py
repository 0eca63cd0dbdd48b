"""Formatting shared by the text and HTML renderers: numbers, intervals, windows and untrusted text.

Pure functions; both :mod:`collector.report.text` and :mod:`collector.report.html` import them, so
neither imports the other.
"""

from __future__ import annotations

import math
import re
import unicodedata

from collector.report.intervals import Estimate, Ratio
from collector.report.kpi import COUNT_LIKE_STATS
from hushmetric.timefmt import parse_rfc3339

__all__ = [
    "csv_text",
    "fmt_interval",
    "fmt_num",
    "fmt_pct",
    "fmt_ratio",
    "shown",
    "term_text",
    "window_label",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def term_text(text: str, limit: int = 40) -> str:
    """Untrusted text made safe and short for a terminal: control, bidi-override and surrogate
    characters become ``?`` (no escape sequences reach the terminal), then cut to ``limit``."""
    text = _CONTROL.sub("?", unicodedata.normalize("NFC", text.encode("utf-8", "replace").decode()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(text: str) -> str:
    """A text cell a spreadsheet will not evaluate: a leading ``= + - @ TAB CR`` gets a ``'`` prefix."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def fmt_num(x: float | None) -> str:
    """Compact human number: ``1,234`` / ``12.3`` / ``2.5`` / ``0.0012``; ``-`` for None."""
    if x is None:
        return "-"
    if not math.isfinite(x):
        return str(x)
    a = abs(x)
    if a >= 1e9:
        return f"{x:.3g}"
    if a >= 100 or x == int(x):
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 0.01:
        return f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if a == 0 else f"{x:.2g}"


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def fmt_ratio(q: Ratio) -> str:
    """A conversion for display: ``46.0% [44.8%, 47.3%]``, clipped at 0 like the counts it comes from
    (a ratio above 100 % is kept: the renderers flag it); ``undefined`` without a positive base."""
    if q.value is None:
        return "undefined"
    low = None if q.low is None else max(q.low, 0.0)
    high = None if q.high is None else max(q.high, 0.0)
    return f"{fmt_pct(max(q.value, 0.0))} {fmt_interval(low, high, pct=True)}"


def shown(e: Estimate, stat: str) -> tuple[float, float, float]:
    """(value, low, high) for display: count-like stats clipped at 0 (JSON/CSV keep raw values)."""
    if stat in COUNT_LIKE_STATS:
        return max(e.value, 0.0), max(e.low, 0.0), max(e.high, 0.0)
    return e.value, e.low, e.high


def window_label(start: str, end: str) -> str:
    """``2026-01-02 03:00 +1h`` (the start, then the length); the raw stamps if they do not parse."""
    try:
        seconds = int(parse_rfc3339(end) - parse_rfc3339(start))
    except ValueError:
        return term_text(f"{start}..{end}", 60)
    length = next(
        (
            f"+{seconds // n}{u}"
            for n, u in ((86400, "d"), (3600, "h"), (60, "m"))
            if seconds >= n and seconds % n == 0
        ),
        f"+{seconds}s",
    )
    return f"{start[:10]} {start[11:16]} {length}"


def fmt_interval(low: float | None, high: float | None, pct: bool = False) -> str:
    """``[low, high]``; a None bound is unbounded on that side (``-∞``/``∞``)."""
    f = fmt_pct if pct else fmt_num
    return f"[{'-∞' if low is None else f(low)}, {'∞' if high is None else f(high)}]"
