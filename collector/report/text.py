"""Renderers for the KPI and funnel reports: terminal table, JSON, CSV and a self-contained HTML file.

Public API (pure)::

    render(report, fmt) -> str | bytes     # report: KpiReport | FunnelReport
                                           # fmt: "table" | "json" | "csv" | "html"

``json`` returns ``bytes`` (UTF-8, msgspec; decode with ``msgspec.json.decode(data, type=KpiReport)``
or ``type=Report`` for either kind — the ``kind`` tag tells them apart); the other formats return
``str``. Write ``str`` as UTF-8 (CSV with ``newline=""``).

* ``table``: aligned plain text for a terminal. Counts are clipped at 0 **for display only**; names
  coming from agents are stripped of control characters (no terminal escape sequences) and shortened.
* ``json``: the report Struct as is — raw, unclipped, unbiased values (a negative noisy count stays
  negative so that sums and ratios computed from the export stay unbiased).
* ``csv``: one row per metric/window (``row = window``) plus one per series total (``row = total``);
  for a funnel, one row per stage, step, overall conversion and time-to-value quantile. Raw values,
  full float precision. Text cells that a spreadsheet would read as a formula (leading ``= + - @``
  or a tab/CR) are prefixed with ``'`` (see :func:`csv_text`).
* ``html``: see :mod:`collector.report.html`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Literal

import msgspec

from collector.report.funnel import FunnelReport
from collector.report.intervals import Estimate, Ratio
from collector.report.kpi import COUNT_LIKE_STATS, KpiReport, Series, dims_label
from hushmetric.timefmt import parse_rfc3339

__all__ = [
    "CSV_FIELDS_FUNNEL",
    "CSV_FIELDS_KPI",
    "Format",
    "Report",
    "csv_text",
    "fmt_interval",
    "fmt_num",
    "fmt_pct",
    "fmt_ratio",
    "render",
    "shown",
    "term_text",
    "window_label",
]

Format = Literal["table", "json", "csv", "html"]
Report = KpiReport | FunnelReport

CSV_FIELDS_KPI = (
    "row",
    "tenant",
    "metric",
    "stat",
    "dims",
    "window_start",
    "window_end",
    "agents",
    "value",
    "std",
    "ci_low",
    "ci_high",
    "method",
    "upper_bound",
)
CSV_FIELDS_FUNNEL = ("row", "tenant", "name", "detail", "value", "std", "ci_low", "ci_high", "method", "flag")


def render(report: Report, fmt: Format, *, windows: bool = True) -> str | bytes:
    """Render a report; ``json`` gives bytes, the rest str. ValueError for an unknown format.

    ``windows=False`` leaves the per-window rows out of the KPI table (totals, quota and privacy
    only): the compact view for a terminal. Other formats always carry everything.
    """
    if fmt == "json":
        return msgspec.json.encode(report)
    if fmt == "csv":
        return _kpi_csv(report) if isinstance(report, KpiReport) else _funnel_csv(report)
    if fmt == "table":
        return _kpi_table(report, windows=windows) if isinstance(report, KpiReport) else _funnel_table(report)
    if fmt == "html":
        # Imported here: render_html uses this module's formatting helpers.
        from collector.report.html import render_html

        return render_html(report)
    raise ValueError(f"unknown report format {fmt!r}; use table, json, csv or html")


# --- shared formatting -------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def term_text(text: str, limit: int = 40) -> str:
    """Untrusted text made safe and short for a terminal: control, bidi-override and surrogate
    characters become ``?`` (no escape sequences reach the terminal), then cut to ``limit``."""
    text = _CONTROL.sub("?", unicodedata.normalize("NFC", text.encode("utf-8", "replace").decode()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


_OPEN_MARK = {"above": ">=", "below": "<="}  # a quantile in an open-ended histogram bucket
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


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int] | None = None) -> list[str]:
    """Aligned columns, two spaces apart; ``right`` lists right-aligned column indexes."""
    right = right or set()
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


# --- KPI ---------------------------------------------------------------------------------------


def _series_name(s: Series) -> tuple[str, str]:
    return term_text(s.metric), term_text(dims_label(s.dims))


def _kpi_table(r: KpiReport, *, windows: bool = True) -> str:
    out = [
        f"KPI report · tenant {term_text(r.tenant)} · {r.since or 'start'} .. {r.until or 'now'}",
        f"values with {r.confidence:.0%} intervals from the declared DP noise; counts shown clipped at 0",
        "",
    ]
    rows: list[list[str]] = []
    for s in r.series:
        metric, dims = _series_name(s)
        for p in s.points:
            v, lo, hi = shown(p.estimate, s.stat)
            agents = ",".join(term_text(a, 16) for a in p.agents)
            rows.append(
                [
                    metric,
                    term_text(s.stat, 16),
                    dims,
                    window_label(p.window_start, p.window_end),
                    fmt_num(v),
                    fmt_interval(lo, hi),
                    term_text(agents, 24),
                ]
            )
    if rows and not windows:
        out.append(f"{len(rows)} per-window values (leave out --totals to list them)")
    elif rows:
        out += _table(["metric", "stat", "dims", "window", "value", "95% interval", "agents"], rows, {4})
    else:
        out.append("no released metrics in the range")
    totals = [s for s in r.series if s.total is not None]
    if totals:
        out += ["", "Totals over the range"]
        trows = []
        for s in totals:
            assert s.total is not None  # narrowed by the filter above
            metric, dims = _series_name(s)
            v, lo, hi = shown(s.total, s.stat)
            note = "upper bound" if s.upper_bound else ""
            trows.append(
                [
                    metric,
                    term_text(s.stat, 16),
                    dims,
                    str(len(s.points)),
                    fmt_num(v),
                    fmt_interval(lo, hi),
                    note,
                ]
            )
        out += _table(["metric", "stat", "dims", "windows", "total", "95% interval", ""], trows, {3, 4})
    if r.quota:
        out += ["", "Quota use (peak period in range)"]
        qrows = [
            [
                term_text(q.name),
                q.period or "-",
                "-" if q.used is None else f"{q.used:,}",
                "unlimited" if q.limit is None else f"{q.limit:,}",
                fmt_pct(q.fraction),
            ]
            for q in r.quota
        ]
        out += _table(["quota", "period", "used", "limit", "use"], qrows, {2, 3, 4})
    u = r.usage
    refused = ", ".join(f"{term_text(k, 24)} {n}" for k, n in u.refused.items()) or "none"
    out += [
        "",
        f"Usage: {u.batches:,} batches, {u.rows:,} rows, {u.bytes:,} bytes over {len(u.days)} day(s); "
        f"{u.duplicates:,} duplicates, {u.gaps:,} gaps; refused: {refused}",
    ]
    out += ["", "Privacy spend declared by the batches (summed)"]
    prows = [
        [
            kind,
            term_text(line.key, 24),
            term_text(line.unit, 16),
            str(line.batches),
            fmt_num(line.rho),
            fmt_num(line.epsilon),
            fmt_num(line.delta),
        ]
        for kind, lines in (
            ("agent", r.privacy.by_agent),
            ("day", r.privacy.by_day),
            ("total", r.privacy.total),
        )
        for line in lines
    ]
    if prows:
        out += _table(["by", "key", "unit", "batches", "rho", "epsilon", "delta"], prows, {3, 4, 5, 6})
    else:
        out.append("no batches in the range")
    if r.notes:
        out += ["", "Notes", *(f"- {term_text(n, 400)}" for n in r.notes)]
    return "\n".join(out) + "\n"


def _cell(x: object) -> str:
    """Numbers in full precision (``repr``), None empty, every text cell formula-proof."""
    if x is None:
        return ""
    if isinstance(x, float | int):
        return repr(float(x))
    return csv_text(str(x))


def _csv(fields: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(fields)
    writer.writerows([_cell(c) for c in r] for r in rows)
    return buf.getvalue()


def _f(x: float | None) -> float | None:
    return None if x is None else float(x)


def _kpi_csv(r: KpiReport) -> str:
    rows: list[list[object]] = []
    tenant = r.tenant
    for s in r.series:
        dims = json.dumps(s.dims, sort_keys=True, ensure_ascii=False)
        metric = s.metric
        for p in s.points:
            e = p.estimate
            rows.append(
                [
                    "window",
                    tenant,
                    metric,
                    s.stat,
                    dims,
                    p.window_start,
                    p.window_end,
                    ";".join(p.agents),
                    _f(e.value),
                    _f(e.std),
                    _f(e.low),
                    _f(e.high),
                    e.method,
                    str(s.upper_bound).lower(),
                ]
            )
        if s.total is not None:
            e = s.total
            agents = sorted({a for p in s.points for a in p.agents})
            first = s.points[0].window_start if s.points else ""
            last = s.points[-1].window_end if s.points else ""
            rows.append(
                [
                    "total",
                    tenant,
                    metric,
                    s.stat,
                    dims,
                    first,
                    last,
                    ";".join(agents),
                    _f(e.value),
                    _f(e.std),
                    _f(e.low),
                    _f(e.high),
                    e.method,
                    str(s.upper_bound).lower(),
                ]
            )
    return _csv(CSV_FIELDS_KPI, rows)


# --- funnel ------------------------------------------------------------------------------------


def _funnel_table(r: FunnelReport) -> str:
    out = [
        f"Funnel · tenant {term_text(r.tenant)} · stage stat {term_text(r.stat)}",
        f"{r.confidence:.0%} intervals from the declared DP noise (Fieller for conversions); "
        "counts shown clipped at 0",
        "",
    ]
    first = r.stages[0].total if r.stages and r.stages[0].total is not None else None
    rows = []
    for i, s in enumerate(r.stages):
        step = r.steps[i - 1] if i > 0 else None
        if s.total is None:
            rows.append([str(i + 1), term_text(s.name), "missing", "", "", "", ""])
            continue
        v, lo, hi = shown(s.total, "count")
        conv = "-"
        if step is not None and step.conversion is not None:
            c = step.conversion
            conv = fmt_ratio(c) + (" !" if step.inverted else "")
        drop = "-"
        if step is not None and step.drop_off is not None:
            drop = fmt_num(step.drop_off.value)
        of_first = (
            fmt_pct(max(s.total.value / first.value, 0.0)) if first is not None and first.value > 0 else "-"
        )
        rows.append([str(i + 1), term_text(s.name), fmt_num(v), fmt_interval(lo, hi), conv, drop, of_first])
    if rows:
        out += _table(
            ["#", "stage", "total", "95% interval", "step conversion", "drop-off", "of first"],
            rows,
            {0, 2, 5, 6},
        )
    else:
        out.append("no stages")
    if r.overall is not None:
        o = r.overall
        out += ["", f"Overall conversion: {fmt_ratio(o)}"]
    if any(s.inverted for s in r.steps):
        out.append("! a later stage exceeds the earlier one (noise, or not a strict funnel)")
    if r.ttv is not None:
        t = r.ttv
        out += ["", f"Time to value ({term_text(t.metric)})"]
        if t.pooled:
            total_note = (
                f" from ~{fmt_num(max(t.histogram_total.value, 0))} observations" if t.histogram_total else ""
            )
            out.append(f"pooled over the range{total_note}:")
            out += _table(
                ["quantile", "value", "95% interval"],
                [
                    [
                        f"p{100 * h.q:g}",
                        _OPEN_MARK.get(h.open_side or "", "") + fmt_num(h.value),
                        fmt_interval(h.low, h.high),
                    ]
                    for h in t.pooled
                ],
                {1},
            )
        if t.per_window:
            out += _table(
                ["window", "agent", "quantile", "value", "95% interval"],
                [
                    [
                        window_label(w.window_start, w.window_end),
                        term_text(w.agent, 24),
                        term_text(w.stat, 16),
                        fmt_num(w.estimate.value),
                        fmt_interval(w.estimate.low, w.estimate.high),
                    ]
                    for w in t.per_window
                ],
                {3},
            )
        if not t.pooled and not t.per_window:
            out.append("no data")
    if r.notes:
        out += ["", "Notes", *(f"- {term_text(n, 400)}" for n in r.notes)]
    return "\n".join(out) + "\n"


def _funnel_csv(r: FunnelReport) -> str:
    tenant = r.tenant
    rows: list[list[object]] = []
    for s in r.stages:
        e = s.total
        rows.append(
            [
                "stage",
                tenant,
                s.name,
                r.stat,
                *((_f(e.value), _f(e.std), _f(e.low), _f(e.high), e.method) if e else ("", "", "", "", "")),
                "upper_bound" if s.upper_bound else ("missing" if not s.present else ""),
            ]
        )
    for st in r.steps:
        name = f"{st.from_stage}>{st.to_stage}"
        c = st.conversion
        rows.append(
            [
                "conversion",
                tenant,
                name,
                "step",
                *((_f(c.value), "", _f(c.low), _f(c.high), c.method) if c else ("", "", "", "", "")),
                "inverted" if st.inverted else "",
            ]
        )
        d = st.drop_off
        rows.append(
            [
                "drop_off",
                tenant,
                name,
                "step",
                *((_f(d.value), _f(d.std), _f(d.low), _f(d.high), d.method) if d else ("", "", "", "", "")),
                "",
            ]
        )
    if r.overall is not None and r.stages:
        o = r.overall
        name = f"{r.stages[0].name}>{r.stages[-1].name}"
        rows.append(
            ["conversion", tenant, name, "overall", _f(o.value), "", _f(o.low), _f(o.high), o.method, ""]
        )
    if r.ttv is not None:
        metric = r.ttv.metric
        for h in r.ttv.pooled:
            rows.append(
                [
                    "ttv",
                    tenant,
                    metric,
                    f"p{100 * h.q:g} pooled",
                    _f(h.value),
                    "",
                    _f(h.low),
                    _f(h.high),
                    "histogram",
                    f"open_{h.open_side}" if h.open_side else "",
                ]
            )
        for w in r.ttv.per_window:
            e = w.estimate
            rows.append(
                [
                    "ttv",
                    tenant,
                    metric,
                    f"{w.stat} {w.window_start} {w.agent}",
                    _f(e.value),
                    _f(e.std),
                    _f(e.low),
                    _f(e.high),
                    e.method,
                    "",
                ]
            )
    return _csv(CSV_FIELDS_FUNNEL, rows)
