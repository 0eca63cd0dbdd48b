"""Inline SVG charts for the HTML reports: bars with interval whiskers, time series with interval bands.

Pure string builders. Every piece of text that reaches the output goes through :func:`esc`, which
makes it safe as XML/HTML text *and* attribute value (labels, metric names and dims come from agents
and are untrusted). Each chart is ``role="img"`` with a ``<title>`` and ``<desc>`` it is labelled by,
and every bar or point carries its own ``<title>`` (a tooltip, read by screen readers).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence

import msgspec

__all__ = ["PALETTE", "Line", "bar_chart", "esc", "nice_ticks", "series_chart"]

# Okabe–Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_WIDTH = 680


def esc(text: object) -> str:
    """Text safe inside XML/HTML content and quoted attributes: control characters and lone
    surrogates become U+FFFD (XML 1.0 cannot carry them at all), ``& < > " '`` become references."""
    return html.escape(_XML_ILLEGAL.sub("\ufffd", str(text)), quote=True)


def _n(x: float) -> str:
    """A coordinate: short, finite, no exponent."""
    if not math.isfinite(x):
        x = 0.0
    return f"{x:.1f}"


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """About ``count`` round tick values covering [lo, hi]."""
    raw = (hi - lo) / count
    if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(raw)) or raw <= 1e-12 * max(
        abs(lo), abs(hi)
    ):
        return [lo] if math.isfinite(lo) else [0.0]
    if raw < 1e-300:
        return [lo, hi]
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    last = math.ceil(hi / step - 1e-9) * step
    # Each tick from its index, not by adding step after step: the accumulated rounding error could
    # push the last tick past `last` and leave the top of the range without one.
    n = min(round((last - first) / step), 19)
    return [round(first + i * step, 10) for i in range(n + 1)]


def _fmt(x: float) -> str:
    if abs(x) >= 1e6:
        return f"{x:.3g}"
    if abs(x) >= 100 or x == int(x):
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _open(chart_id: str, title: str, desc: str, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{_WIDTH}" '
        f'height="{height}" viewBox="0 0 {_WIDTH} {height}" aria-labelledby="{chart_id}-t {chart_id}-d">',
        f'<title id="{chart_id}-t">{esc(title)}</title>',
        f'<desc id="{chart_id}-d">{esc(desc)}</desc>',
    ]


def _clip_label(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bar_chart(
    *,
    chart_id: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    values: Sequence[float],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
    value_labels: Sequence[str],
) -> str:
    """Horizontal bars (values clipped at 0 for drawing) with 95 % interval whiskers.

    A None bound is drawn as reaching the edge of the plot (unbounded on that side).
    """
    left, right, row_h, top = 180, 170, 26, 10
    height = top * 2 + row_h * max(len(labels), 1) + 18
    plot_w = _WIDTH - left - right
    finite_highs = [h for h in highs if h is not None and math.isfinite(h)]
    vmax = max([*(v for v in values if math.isfinite(v)), *finite_highs, 0.0])
    vmax = vmax if vmax > 0 else 1.0

    def x(v: float | None, default: float) -> float:
        if v is None or not math.isfinite(v):
            v = default
        return left + plot_w * min(max(v, 0.0), vmax) / vmax

    out = _open(chart_id, title, desc, height)
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - 18}" class="axis"/>')
    for i, label in enumerate(labels):
        y = top + i * row_h
        v = values[i]
        lo, hi = lows[i], highs[i]
        bar_w = x(v, 0.0) - left
        tip = f"{label}: {value_labels[i]}"
        out.append(f'<g class="bar"><title>{esc(tip)}</title>')
        out.append(
            f'<text x="{left - 6}" y="{_n(y + row_h * 0.65)}" text-anchor="end" class="label">'
            f"{esc(_clip_label(label))}</text>"
        )
        out.append(
            f'<rect x="{left}" y="{_n(y + 4)}" width="{_n(bar_w)}" height="{row_h - 8}" '
            f'fill="{PALETTE[0]}" fill-opacity="0.75"/>'
        )
        x_lo, x_hi, y_mid = x(lo, 0.0), x(hi, vmax), y + row_h / 2
        out.append(
            f'<path d="M{_n(x_lo)} {_n(y_mid)}H{_n(x_hi)}M{_n(x_lo)} {_n(y_mid - 6)}V{_n(y_mid + 6)}'
            f'M{_n(x_hi)} {_n(y_mid - 6)}V{_n(y_mid + 6)}" class="whisker"/>'
        )
        out.append(
            f'<text x="{_n(_WIDTH - right + 6)}" y="{_n(y + row_h * 0.65)}" class="value">'
            f"{esc(value_labels[i])}</text></g>"
        )
    out.append(f'<text x="{left}" y="{height - 4}" class="tick">0</text>')
    out.append(
        f'<text x="{left + plot_w}" y="{height - 4}" text-anchor="end" class="tick">{esc(_fmt(vmax))}</text>'
    )
    out.append("</svg>")
    return "\n".join(out)


class Line(msgspec.Struct, frozen=True):
    """One line of a time series: x (epoch seconds of the window start), value and interval."""

    name: str
    xs: list[float]
    values: list[float]
    lows: list[float]
    highs: list[float]
    tips: list[str]


def series_chart(
    *,
    chart_id: str,
    title: str,
    desc: str,
    lines: Sequence[Line],
    x_labels: tuple[str, str],
    floor_zero: bool,
) -> str:
    """Lines with shaded 95 % interval bands; ``floor_zero`` clips the drawing at 0 (counts)."""
    left, right, top, bottom = 64, 16, 12, 40
    legend = len(lines) > 1
    height = 210 + (18 * len(lines) if legend else 0)
    plot_h = 210 - top - bottom
    plot_w = _WIDTH - left - right
    xs = [x for ln in lines for x in ln.xs]
    ys = [y for ln in lines for y in (*ln.lows, *ln.highs, *ln.values) if math.isfinite(y)]
    if floor_zero:
        ys = [max(y, 0.0) for y in ys] + [0.0]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if y1 - y0 <= 1e-9 * max(1.0, abs(y0), abs(y1)):  # flat: give the line some room
        y0, y1 = y0 - max(1.0, abs(y0)) / 2, y1 + max(1.0, abs(y1)) / 2
    ticks = nice_ticks(y0, y1)
    y0, y1 = min(y0, ticks[0]), max(y1, ticks[-1])
    if y1 <= y0:
        y1 = y0 + 1.0

    def px(x: float) -> float:
        return left + (plot_w / 2 if x1 == x0 else plot_w * (x - x0) / (x1 - x0))

    def py(y: float) -> float:
        if floor_zero:
            y = max(y, 0.0)
        return top + plot_h * (1 - (y - y0) / (y1 - y0))

    out = _open(chart_id, title, desc, height)
    for t in ticks:
        out.append(
            f'<line x1="{left}" x2="{_WIDTH - right}" y1="{_n(py(t))}" y2="{_n(py(t))}" class="grid"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{_n(py(t) + 4)}" text-anchor="end" class="tick">{esc(_fmt(t))}</text>'
        )
    base = top + plot_h
    out.append(f'<line x1="{left}" x2="{_WIDTH - right}" y1="{base}" y2="{base}" class="axis"/>')
    out.append(f'<text x="{left}" y="{base + 16}" class="tick">{esc(x_labels[0])}</text>')
    out.append(
        f'<text x="{_WIDTH - right}" y="{base + 16}" text-anchor="end" class="tick">{esc(x_labels[1])}</text>'
    )
    for i, ln in enumerate(lines):
        color = PALETTE[i % len(PALETTE)]
        upper = " ".join(f"{_n(px(x))},{_n(py(h))}" for x, h in zip(ln.xs, ln.highs, strict=True))
        lower = " ".join(
            f"{_n(px(x))},{_n(py(lo))}" for x, lo in reversed(list(zip(ln.xs, ln.lows, strict=True)))
        )
        out.append(f'<g class="series"><title>{esc(ln.name)}</title>')
        if len(ln.xs) > 1:
            out.append(
                f'<polygon points="{upper} {lower}" fill="{color}" fill-opacity="0.18" stroke="none"/>'
            )
            pts = " ".join(f"{_n(px(x))},{_n(py(v))}" for x, v in zip(ln.xs, ln.values, strict=True))
            out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, v, lo, hi, tip in zip(ln.xs, ln.values, ln.lows, ln.highs, ln.tips, strict=True):
            out.append(
                f'<g><title>{esc(tip)}</title><line x1="{_n(px(x))}" x2="{_n(px(x))}" y1="{_n(py(lo))}" '
                f'y2="{_n(py(hi))}" stroke="{color}" stroke-opacity="0.5"/>'
                f'<circle cx="{_n(px(x))}" cy="{_n(py(v))}" r="3" fill="{color}"/></g>'
            )
        out.append("</g>")
        if legend:
            y = 210 + 18 * i
            out.append(
                f'<rect x="{left}" y="{y - 10}" width="12" height="12" fill="{color}"/>'
                f'<text x="{left + 18}" y="{y}" class="label">{esc(_clip_label(ln.name, 60))}</text>'
            )
    out.append("</svg>")
    return "\n".join(out)
