"""The terminal table and the CSV form of the KPI and funnel reports (see :mod:`collector.report.render`).

Tables clip counts at 0 for display only and pass agent-supplied names through
:func:`collector.report.fmt.term_text`; CSV keeps raw values at full precision and neutralises
formula-like cells with :func:`collector.report.fmt.csv_text`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from collector.report.fmt import (
    csv_text,
    fmt_interval,
    fmt_num,
    fmt_pct,
    fmt_ratio,
    shown,
    term_text,
    window_label,
)
from collector.report.funnel import FunnelReport
from collector.report.kpi import KpiReport, Series, dims_label

__all__ = ["CSV_FIELDS_FUNNEL", "CSV_FIELDS_KPI", "funnel_csv", "funnel_table", "kpi_csv", "kpi_table"]

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

_OPEN_MARK = {"above": ">=", "below": "<="}  # a quantile in an open-ended histogram bucket


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


def kpi_table(r: KpiReport, *, windows: bool = True) -> str:
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
    out += _governance_lines(r)
    if r.notes:
        out += ["", "Notes", *(f"- {term_text(n, 400)}" for n in r.notes)]
    return "\n".join(out) + "\n"


def _governance_lines(r: KpiReport) -> list[str]:
    """Approved policies (stored batches under revoked ones marked) and ρ admitted against the cap."""
    g = r.governance
    if g is None or not (g.policies or g.spend or g.cap_rho_per_day is not None or g.certificates):
        return []
    out = ["", "Governance"]
    if g.certificates:  # issue 14: each agent's current certificate
        rows = [
            [term_text(c.agent, 24), term_text(c.profile, 24), c.status, term_text(c.reason, 60)]
            for c in g.certificates
        ]
        out += _table(["agent", "profile", "certificate", "reason"], rows, set())
    if g.policies:
        rows = [[p.digest[:16], p.state, str(p.batches), term_text(p.note, 40)] for p in g.policies]
        out += _table(["policy", "state", "batches", "note"], rows, {2})
    cap = "none" if g.cap_rho_per_day is None else f"{fmt_num(g.cap_rho_per_day)} per {g.cap_per} and day"
    out += [f"privacy cap (rho): {cap}"]
    if g.spend:
        rows = [
            [s.day, term_text(s.agent or "(tenant)", 24), fmt_num(s.rho), fmt_num(s.cap), fmt_pct(s.fraction)]
            for s in g.spend
        ]
        out += _table(["day", "agent", "rho", "cap", "use"], rows, {2, 3, 4})
    out += [f"- {term_text(n, 400)}" for n in g.notes]
    return out


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


def kpi_csv(r: KpiReport) -> str:
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


def funnel_table(r: FunnelReport) -> str:
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


def funnel_csv(r: FunnelReport) -> str:
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
