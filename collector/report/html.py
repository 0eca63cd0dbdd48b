"""HTML rendering of the KPI and funnel reports: one self-contained, offline, accessible file.

``render_html(report) -> str``. No external assets, no scripts: inline CSS and inline SVG only, and a
Content-Security-Policy (``default-src 'none'``) that keeps even an escaping mistake from running
script or fetching anything. All text from agents (metric names, dims, agent ids, stage names, bucket
labels) goes through :func:`collector.report.svg.esc`. The markup is well-formed XML as well as HTML, so it
can be checked with any XML parser. Charts have titles and descriptions; every number in a chart is
also in a table next to it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from collector.report.badge import certificate_badge
from collector.report.fmt import fmt_interval, fmt_num, fmt_pct, fmt_ratio, shown, window_label
from collector.report.funnel import FunnelReport, Stage
from collector.report.governance import GovernanceSection
from collector.report.intervals import Estimate
from collector.report.kpi import COUNT_LIKE_STATS, KpiReport, Point, Series, dims_label, parse_bucket
from collector.report.svg import Line, bar_chart, esc, series_chart
from hushmetric.timefmt import parse_rfc3339

__all__ = ["MAX_CHARTS", "funnel_chart", "render_html"]

MAX_CHARTS = 60  # beyond this, series are in the tables only (the file stays small and fast)

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1a1a1a;background:#fff;margin:0}
main{max-width:980px;margin:0 auto;padding:1.5rem}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}
h3{font-size:1.05rem;margin:1.4rem 0 .3rem;overflow-wrap:anywhere}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{padding:.2rem .6rem;border-bottom:1px solid #e3e3e3;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
caption{text-align:left;font-weight:600;padding:.3rem 0}
figure{margin:.6rem 0}figcaption{font-size:.85rem;color:#444}
.chart{max-width:100%;height:auto}.chart text{font-size:12px;fill:#1a1a1a}
.chart .tick{fill:#555;font-size:11px}.chart .axis{stroke:#777}.chart .grid{stroke:#e6e6e6}
.chart .whisker{stroke:#1a1a1a;stroke-width:1.5;fill:none}
.meta{color:#444}.flag{color:#a04000;font-weight:600}.notes li{margin:.2rem 0}
details summary{cursor:pointer;color:#0057a0}
@media (prefers-color-scheme:dark){body{background:#111;color:#eee}.chart text{fill:#eee}
.chart .whisker{stroke:#eee}th,td{border-color:#333}.meta,figcaption{color:#bbb}}
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


class _Ids:
    """Unique ids for the charts' title/desc references."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"c{self.n}"


def _page(title: str, body: Iterable[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8"/>',
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}"/>',
            '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
            f"<title>{esc(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body><main>",
            *body,
            "</main></body>",
            "</html>",
            "",
        ]
    )


def _td(text: str, numeric: bool = False) -> str:
    return f'<td class="n">{esc(text)}</td>' if numeric else f"<td>{esc(text)}</td>"


def _table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    cls = ' class="n"'
    head = "".join(
        f'<th scope="col"{cls if i in numeric else ""}>{esc(h)}</th>' for i, h in enumerate(headers)
    )
    body = "".join("<tr>" + "".join(_td(c, i in numeric) for i, c in enumerate(r)) + "</tr>" for r in rows)
    return (
        f"<table><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _iv(low: float | None, high: float | None) -> str:
    return fmt_interval(low, high)


def funnel_chart(stages: Sequence[Stage], *, chart_id: str, desc: str) -> str | None:
    """One bar per stage that has a total, with its 95 % interval (None when no stage has one):
    the report's funnel figure and the dashboard's."""
    vals = [(s.name, shown(s.total, "count")) for s in stages if s.total is not None]
    if not vals:
        return None
    return bar_chart(
        chart_id=chart_id,
        title="Funnel stages",
        desc=desc,
        labels=[name for name, _ in vals],
        values=[v for _, (v, _, _) in vals],
        lows=[lo for _, (_, lo, _) in vals],
        highs=[hi for _, (_, _, hi) in vals],
        value_labels=[f"{fmt_num(v)} {fmt_interval(lo, hi)}" for _, (v, lo, hi) in vals],
    )


def _x(stamp: str, index: int) -> float:
    try:
        return parse_rfc3339(stamp)
    except ValueError:
        return float(index)


def _notes(notes: Sequence[str]) -> list[str]:
    if not notes:
        return []
    return [
        '<section><h2>Notes</h2><ul class="notes">',
        *(f"<li>{esc(n)}</li>" for n in notes),
        "</ul></section>",
    ]


# --- KPI ---------------------------------------------------------------------------------------


def _lines(s: Series) -> list[Line]:
    """One line for an additive series; one per agent otherwise."""
    groups: dict[str, list[tuple[int, Point]]] = defaultdict(list)
    for i, p in enumerate(s.points):
        groups["all" if s.additive else ",".join(p.agents)].append((i, p))
    lines = []
    for name, pts in sorted(groups.items()):
        xs, vs, los, his, tips = [], [], [], [], []
        for i, p in pts:
            v, lo, hi = shown(p.estimate, s.stat)
            xs.append(_x(p.window_start, i))
            vs.append(v)
            los.append(lo)
            his.append(hi)
            tips.append(f"{window_label(p.window_start, p.window_end)}: {fmt_num(v)} {_iv(lo, hi)}")
        label = f"{s.stat}" if s.additive else f"{s.stat} · agent {name}"
        lines.append(Line(name=label, xs=xs, values=vs, lows=los, highs=his, tips=tips))
    return lines


def _series_chart(s: Series, ids: _Ids) -> str:
    dims = dims_label(s.dims)
    title = f"{s.metric} · {s.stat}" + (f" · {dims}" if s.dims else "") + " per window"
    first, last = s.points[0], s.points[-1]
    desc = (
        f"{len(s.points)} point(s) from {first.window_start} to {last.window_end}; shaded band and "
        "vertical bars: 95 % interval from the DP noise"
        + ("; counts drawn clipped at 0" if s.stat in COUNT_LIKE_STATS else "")
    )
    svg = series_chart(
        chart_id=ids.next(),
        title=title,
        desc=desc,
        lines=_lines(s),
        x_labels=(
            window_label(first.window_start, first.window_end),
            window_label(last.window_start, last.window_end),
        ),
        floor_zero=s.stat in COUNT_LIKE_STATS,
    )
    return f"<figure>{svg}<figcaption>{esc(title)}</figcaption></figure>"


def _histogram_chart(metric: str, dims: str, series: list[Series], ids: _Ids) -> str:
    def edge(s: Series) -> tuple[float, str]:
        label = s.dims.get("bucket", "")
        edges = parse_bucket(label)
        return (edges[0] if edges else float("inf"), label)

    ordered = sorted((s for s in series if s.total is not None), key=edge)
    totals: list[Estimate] = [s.total for s in ordered if s.total is not None]
    labels = [s.dims.get("bucket", "?") for s in ordered]
    shown_vals = [shown(e, "histogram") for e in totals]
    title = f"{metric} histogram" + (f" · {dims}" if dims != "-" else "") + ", totals over the range"
    svg = bar_chart(
        chart_id=ids.next(),
        title=title,
        desc="one bar per bucket with its 95 % interval; counts drawn clipped at 0",
        labels=labels,
        values=[v for v, _, _ in shown_vals],
        lows=[lo for _, lo, _ in shown_vals],
        highs=[hi for _, _, hi in shown_vals],
        value_labels=[f"{fmt_num(v)} {_iv(lo, hi)}" for v, lo, hi in shown_vals],
    )
    return f"<figure>{svg}<figcaption>{esc(title)}</figcaption></figure>"


def _points_table(s: Series) -> str:
    rows = []
    for p in s.points:
        v, lo, hi = shown(p.estimate, s.stat)
        rows.append(
            [
                window_label(p.window_start, p.window_end),
                ", ".join(p.agents),
                fmt_num(v),
                _iv(lo, hi),
                p.estimate.method,
            ]
        )
    caption = f"{s.metric} · {s.stat} · {dims_label(s.dims)}"
    table = _table(caption, ["window", "agents", "value", "95% interval", "interval"], rows, {2, 3})
    label = f"{len(s.points)} window(s)"
    if s.dims:  # several series of one metric (buckets, dimension values) must be told apart
        label = f"{dims_label(s.dims)} · {label}"
    return f"<details><summary>{esc(label)}</summary>{table}</details>"


def _kpi_metrics(r: KpiReport, ids: _Ids) -> list[str]:
    out = ["<section><h2>Metrics per window</h2>"]
    if not r.series:
        out.append("<p>No released metrics in the range.</p>")
    by_metric: dict[str, list[Series]] = defaultdict(list)
    for s in r.series:
        by_metric[s.metric].append(s)
    skipped = 0
    for metric, series in by_metric.items():
        out.append(f"<h3>{esc(metric)}</h3>")
        hist: dict[str, list[Series]] = defaultdict(list)
        for s in series:
            if s.stat == "histogram":
                rest = {k: v for k, v in s.dims.items() if k != "bucket"}
                hist[dims_label(rest)].append(s)
                continue
            if ids.n < MAX_CHARTS and s.points:
                out.append(_series_chart(s, ids))
            elif s.points:
                skipped += 1
            out.append(_points_table(s))
        for dims, group in hist.items():
            if ids.n < MAX_CHARTS:
                out.append(_histogram_chart(metric, dims, group, ids))
            else:
                skipped += 1
            out.extend(_points_table(s) for s in group)
    if skipped:
        out.append(
            f'<p class="meta">{skipped} more chart(s) left out to keep the file small; see the tables.</p>'
        )
    out.append("</section>")
    return out


def _kpi_totals(r: KpiReport) -> list[str]:
    rows = []
    for s in r.series:
        if s.total is None:
            continue
        v, lo, hi = shown(s.total, s.stat)
        rows.append(
            [
                s.metric,
                s.stat,
                dims_label(s.dims),
                str(len(s.points)),
                fmt_num(v),
                _iv(lo, hi),
                "upper bound" if s.upper_bound else "",
            ]
        )
    if not rows:
        return []
    headers = ["metric", "stat", "dims", "windows", "total", "95% interval", ""]
    return [
        "<section><h2>Totals over the range</h2>",
        _table("Additive metrics summed", headers, rows, {3, 4, 5}),
        "</section>",
    ]


def _kpi_operations(r: KpiReport) -> list[str]:
    out = ["<section><h2>Quota and usage</h2>"]
    if r.quota:
        rows = [
            [
                q.name,
                q.period or "-",
                "-" if q.used is None else f"{q.used:,}",
                "unlimited" if q.limit is None else f"{q.limit:,}",
                fmt_pct(q.fraction),
            ]
            for q in r.quota
        ]
        out.append(
            _table(
                "Quota use (peak period in range)",
                ["quota", "period", "used", "limit", "use"],
                rows,
                {2, 3, 4},
            )
        )
    days = [
        [
            d.day,
            f"{d.batches:,}",
            f"{d.rows:,}",
            f"{d.bytes:,}",
            f"{d.duplicates:,}",
            f"{d.gaps:,}",
            ", ".join(f"{k} {n}" for k, n in sorted(d.refused.items())) or "-",
        ]
        for d in r.usage.days
    ]
    u = r.usage
    days.append(
        [
            "total",
            f"{u.batches:,}",
            f"{u.rows:,}",
            f"{u.bytes:,}",
            f"{u.duplicates:,}",
            f"{u.gaps:,}",
            ", ".join(f"{k} {n}" for k, n in u.refused.items()) or "-",
        ]
    )
    out.append(
        _table(
            "Usage per UTC day",
            ["day", "batches", "rows", "bytes", "duplicates", "gaps", "refused"],
            days,
            {1, 2, 3, 4, 5},
        )
    )
    out.append("</section><section><h2>Privacy spend declared by the batches</h2>")
    for caption, lines in (
        ("Per agent", r.privacy.by_agent),
        ("Per UTC day", r.privacy.by_day),
        ("Total", r.privacy.total),
    ):
        rows = [
            [ln.key, ln.unit, str(ln.batches), fmt_num(ln.rho), fmt_num(ln.epsilon), fmt_num(ln.delta)]
            for ln in lines
        ]
        if rows:
            out.append(_table(caption, ["key", "unit", "batches", "ρ", "ε", "δ"], rows, {2, 3, 4, 5}))
    if not r.privacy.total:
        out.append("<p>No batches in the range.</p>")
    out.append('<p class="meta">Sums of what each batch declared (basic composition).</p></section>')
    return out


def _certificates(g: GovernanceSection) -> list[str]:
    """Issue 14: one badge per agent with a certificate, and what it says."""
    if not g.certificates:
        return []
    now = g.as_of if g.as_of is not None else 0.0
    rows = [
        f'<li><span class="meta">{esc(c.agent)}</span> {certificate_badge(c, now)} '
        f'<span class="meta">{esc(c.reason)}</span></li>'
        for c in g.certificates
    ]
    return ['<h3>Agent certificates</h3><ul class="badges">', *rows, "</ul>"]


def _kpi_governance(r: KpiReport) -> list[str]:
    """Approved policies (stored batches under revoked ones marked) and ρ admitted against the cap."""
    g = r.governance
    if g is None or not (g.policies or g.spend or g.cap_rho_per_day is not None or g.certificates):
        return []
    out = ["<section><h2>Governance</h2>", *_certificates(g)]
    if g.policies:
        rows = [[p.digest, p.state, str(p.batches), p.note] for p in g.policies]
        out.append(_table("Policy digests", ["digest", "state", "batches", "note"], rows, {2}))
    cap = "none" if g.cap_rho_per_day is None else f"{fmt_num(g.cap_rho_per_day)} per {g.cap_per} and UTC day"
    out.append(f'<p class="meta">Central privacy cap (ρ): {esc(cap)}</p>')
    if g.spend:
        rows = [
            [s.day, s.agent or "(tenant)", fmt_num(s.rho), fmt_num(s.cap), fmt_pct(s.fraction)]
            for s in g.spend
        ]
        out.append(
            _table("ρ admitted per agent and day", ["day", "agent", "ρ", "cap", "use"], rows, {2, 3, 4})
        )
    out += [f'<p class="meta">{esc(n)}</p>' for n in g.notes]
    out.append("</section>")
    return out


def _kpi_html(r: KpiReport) -> str:
    ids = _Ids()
    windows = {(p.window_start, p.window_end) for s in r.series for p in s.points}
    head = [
        f"<header><h1>KPI report · tenant {esc(r.tenant)}</h1>",
        f'<p class="meta">Range {esc(r.since or "start")} .. {esc(r.until or "now")} · '
        f"{len(r.series)} series · {len(windows)} window(s) · values with {r.confidence:.0%} intervals "
        "derived from the declared DP noise. Counts are drawn and shown clipped at 0; the JSON and CSV "
        "exports keep the raw, unbiased values.</p>",
        "</header>",
    ]
    body = [
        *head,
        *_kpi_metrics(r, ids),
        *_kpi_totals(r),
        *_kpi_operations(r),
        *_kpi_governance(r),
        *_notes(r.notes),
    ]
    return _page(f"KPI report · {r.tenant}", body)


# --- funnel ------------------------------------------------------------------------------------


def _funnel_html(r: FunnelReport) -> str:
    ids = _Ids()
    body = [
        f"<header><h1>Funnel · tenant {esc(r.tenant)}</h1>",
        f'<p class="meta">Stage totals from {esc(r.stat)} rows summed over the range; {r.confidence:.0%} '
        "intervals from the declared DP noise; conversions with Fieller intervals. Counts are drawn "
        "clipped at 0.</p></header>",
        "<section><h2>Stages</h2>",
    ]
    desc = "one bar per stage, in funnel order, with its 95 % interval"
    svg = funnel_chart(r.stages, chart_id=ids.next(), desc=desc)
    if svg is not None:
        body.append(f"<figure>{svg}<figcaption>Funnel stages with 95 % intervals</figcaption></figure>")
    rows = []
    for i, s in enumerate(r.stages):
        step = r.steps[i - 1] if i > 0 else None
        total = "missing" if s.total is None else fmt_num(shown(s.total, "count")[0])
        interval = "" if s.total is None else _iv(*shown(s.total, "count")[1:])
        conv, drop, flag = "-", "-", ""
        if step is not None and step.conversion is not None:
            c = step.conversion
            conv = fmt_ratio(c)
        if step is not None and step.drop_off is not None:
            drop = f"{fmt_num(step.drop_off.value)} {_iv(step.drop_off.low, step.drop_off.high)}"
        if step is not None and step.inverted:
            flag = "later stage larger"
        if s.upper_bound:
            flag = (flag + "; " if flag else "") + "upper bound"
        rows.append([str(i + 1), s.name, total, interval, conv, drop, flag])
    body.append(
        _table(
            "Stages, step conversion and drop-off",
            ["#", "stage", "total", "95% interval", "step conversion", "drop-off", "flag"],
            rows,
            {0, 2, 3},
        )
    )
    if r.overall is not None:
        o = r.overall
        body.append(
            f"<p><strong>Overall conversion:</strong> {esc(fmt_ratio(o))} (95 % Fieller interval)</p>"
        )
    body.append("</section>")
    if r.ttv is not None:
        body += _ttv_html(r, ids)
    body += _notes(r.notes)
    return _page(f"Funnel · {r.tenant}", body)


def _ttv_html(r: FunnelReport, ids: _Ids) -> list[str]:
    t = r.ttv
    assert t is not None  # the caller checks
    out = [f"<section><h2>Time to value · {esc(t.metric)}</h2>"]
    if t.buckets and ids.n < MAX_CHARTS:
        vals = [shown(b.total, "histogram") for b in t.buckets]
        title = f"{t.metric}: observations per bucket, pooled over the range"
        svg = bar_chart(
            chart_id=ids.next(),
            title=title,
            desc="one bar per histogram bucket with its 95 % interval; counts drawn clipped at 0",
            labels=[b.bucket for b in t.buckets],
            values=[v for v, _, _ in vals],
            lows=[lo for _, lo, _ in vals],
            highs=[hi for _, _, hi in vals],
            value_labels=[f"{fmt_num(v)} {_iv(lo, hi)}" for v, lo, hi in vals],
        )
        out.append(f"<figure>{svg}<figcaption>{esc(title)}</figcaption></figure>")
    if t.pooled:
        rows = [
            [
                f"p{100 * h.q:g}",
                {"above": "≥ ", "below": "≤ "}.get(h.open_side or "", "") + fmt_num(h.value),
                _iv(h.low, h.high),
            ]
            for h in t.pooled
        ]
        n = (
            ""
            if t.histogram_total is None
            else f" (~{fmt_num(max(t.histogram_total.value, 0.0))} observations)"
        )
        out.append(
            _table(
                f"Pooled over the range from the histogram{n}",
                ["quantile", "value", "95% interval"],
                rows,
                {1, 2},
            )
        )
    if t.per_window:
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, w in enumerate(t.per_window):
            groups[(w.stat, w.agent)].append(i)
        lines = []
        for (stat, agent), idx in sorted(groups.items()):
            ws = [t.per_window[i] for i in idx]
            lines.append(
                Line(
                    name=f"{stat} · agent {agent}",
                    xs=[_x(w.window_start, i) for i, w in zip(idx, ws, strict=True)],
                    values=[w.estimate.value for w in ws],
                    lows=[w.estimate.low for w in ws],
                    highs=[w.estimate.high for w in ws],
                    tips=[
                        f"{window_label(w.window_start, w.window_end)}: {fmt_num(w.estimate.value)} "
                        f"{_iv(w.estimate.low, w.estimate.high)}"
                        for w in ws
                    ],
                )
            )
        first, last = t.per_window[0], t.per_window[-1]
        if ids.n < MAX_CHARTS:
            title = f"{t.metric} quantiles per window"
            svg = series_chart(
                chart_id=ids.next(),
                title=title,
                desc="released quantiles per window and agent with 95 % intervals",
                lines=lines[:7],
                x_labels=(
                    window_label(first.window_start, first.window_end),
                    window_label(last.window_start, last.window_end),
                ),
                floor_zero=False,
            )
            out.append(f"<figure>{svg}<figcaption>{esc(title)}</figcaption></figure>")
        rows = [
            [
                window_label(w.window_start, w.window_end),
                w.agent,
                w.stat,
                fmt_num(w.estimate.value),
                _iv(w.estimate.low, w.estimate.high),
            ]
            for w in t.per_window
        ]
        out.append(
            _table(
                "Released quantiles per window",
                ["window", "agent", "quantile", "value", "95% interval"],
                rows,
                {3, 4},
            )
        )
    if not t.pooled and not t.per_window:
        out.append("<p>No histogram or quantile rows for this metric.</p>")
    out.append("</section>")
    return out


def render_html(report: KpiReport | FunnelReport) -> str:
    """The report as one self-contained HTML document (str)."""
    return _kpi_html(report) if isinstance(report, KpiReport) else _funnel_html(report)
