"""The dashboard's HTML: pure functions from the API's records and report Structs to markup.

Server-rendered and readable without JavaScript (``/static/app.js`` only refreshes ``<main>`` in
place); no inline script or style, so the ``default-src 'self'`` Content-Security-Policy holds, and
every text from agents or operators goes through :func:`collector.report.svg.esc`. Charts are the
report's SVG components (:mod:`collector.report.svg`); every number in a chart is also in a table,
and table cells carry the exact value in ``data-value`` (what the browser tests compare with the API).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote, urlencode

import msgspec

from collector.audit import AuditEntry
from collector.http.auth import Principal
from collector.report.fmt import fmt_interval, fmt_num, fmt_pct, fmt_ratio, shown, window_label
from collector.report.funnel import FunnelReport
from collector.report.governance import GovernanceSection
from collector.report.html import funnel_chart
from collector.report.kpi import COUNT_LIKE_STATS, KpiReport, Series, dims_label
from collector.report.svg import Line, bar_chart, esc, series_chart
from collector.store import Tenant
from collector.store.records import UsageDay
from hushmetric.timefmt import format_rfc3339, parse_rfc3339

__all__ = [
    "MAX_CHARTS",
    "REFRESH_SECONDS",
    "TenantPage",
    "error_page",
    "login_page",
    "overview_page",
    "tenant_page",
]

MAX_CHARTS = 6  # KPI series drawn as charts; every series is in the totals table
REFRESH_SECONDS = 30
_json = msgspec.json.Encoder()


class TenantPage(msgspec.Struct, frozen=True):
    """Everything one tenant's page shows, as the API returns it."""

    tenant: Tenant
    query: dict[str, str]  # since/until/stages as asked (kept in links and forms)
    usage: list[UsageDay]
    quota: dict[str, Any]
    refusals: dict[str, Any]
    kpi: KpiReport
    funnel: FunnelReport | None
    governance: GovernanceSection
    agents: list[dict[str, Any]]
    badges: dict[str, str]  # agent -> certificate badge SVG
    audit: list[AuditEntry]
    agents_total: int | None = None  # agents of the tenant, when ``agents`` may be only the first ones


def _page(
    title: str, body: Iterable[str], who: Principal | None, tenants: Sequence[Tenant] = (), now: float = 0
) -> str:
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"/>',
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
        f"<title>{esc(title)} · hushmetric</title>",
        '<link rel="stylesheet" href="/static/app.css"/>',
        '<script src="/static/app.js" defer="defer"></script>',
        "</head><body>",
        '<header class="top"><a class="brand" href="/">hushmetric</a>',
    ]
    if who is not None:
        scope = "operator · all tenants" if who.role == "operator" else f"viewer · {who.tenant}"
        head.append(f'<span class="who" id="who">{esc(scope)}</span>')
        head.append(
            '<form method="post" action="/logout" class="logout">'
            '<button type="submit">Log out</button></form>'
        )
    head.append("</header>")
    if who is not None and who.role == "operator" and tenants:
        links = "".join(f'<li><a href="/t/{quote(t.name, safe="")}">{esc(t.name)}</a></li>' for t in tenants)
        head.append(f'<nav class="tenants" aria-label="Tenants"><ul id="tenant-switcher">{links}</ul></nav>')
    refresh = f' data-refresh="{REFRESH_SECONDS}"' if who is not None else ""
    stamp = f'<p class="meta" id="updated">Updated {esc(format_rfc3339(now))}</p>' if now else ""
    return "\n".join([*head, f"<main{refresh}>", *body, stamp, "</main></body></html>", ""])


def _td(text: str, *, value: float | int | None = None, cls: str = "") -> str:
    attrs = f' class="{cls}"' if cls else ""
    if value is not None:
        attrs += f' data-value="{esc(repr(value))}"'
    return f"<td{attrs}>{esc(text)}</td>"


def _table(caption: str, headers: Sequence[str], rows: Iterable[str], table_id: str = "") -> str:
    ident = f' id="{table_id}"' if table_id else ""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = "".join(rows) or f'<tr><td colspan="{len(headers)}" class="empty">none</td></tr>'
    return (
        f"<table{ident}><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def login_page(message: str | None = None) -> str:
    body = [
        "<h1>Sign in</h1>",
        '<p class="meta">Paste an API token (<code>hush-collector api-token create</code>). It is kept in an '
        "HttpOnly cookie for this site only.</p>",
    ]
    if message:
        body.append(f'<p class="error" role="alert" id="error">{esc(message)}</p>')
    body.append(
        '<form method="post" action="/login" class="login"><label for="token">API token</label> '
        '<input id="token" name="token" type="password" autocomplete="off" required="required" size="60"/> '
        '<button type="submit">Sign in</button></form>'
    )
    return _page("Sign in", body, None)


def error_page(status: int, message: str, who: Principal | None = None) -> str:
    body = [
        f"<h1>{status}</h1>",
        f'<p class="error" role="alert" id="error">{esc(message)}</p>',
        '<p><a href="/">Back</a></p>',
    ]
    return _page(str(status), body, who)


def overview_page(who: Principal, tenants: Sequence[Tenant], today: Sequence[UsageDay], now: float) -> str:
    by_tenant = {u.tenant: u for u in today}
    rows = []
    for t in tenants:
        u = by_tenant.get(t.name)
        refused = sum(u.refused.values()) if u else 0
        rows.append(
            f'<tr data-tenant="{esc(t.name)}">'
            f'<td><a href="/t/{quote(t.name, safe="")}">{esc(t.name)}</a></td>'
            + _td(t.state)
            + _td(fmt_num(u.batches if u else 0), value=u.batches if u else 0, cls="n")
            + _td(fmt_num(u.rows if u else 0), value=u.rows if u else 0, cls="n")
            + _td(fmt_num(refused), value=refused, cls="n")
            + "</tr>"
        )
    body = [
        "<h1>Overview</h1>",
        _table(
            "Tenants, with today's (UTC) use",
            ["tenant", "state", "batches", "rows", "refused"],
            rows,
            "tenants",
        ),
    ]
    return _page("Overview", body, who, tenants, now)


# -- one tenant -----------------------------------------------------------------------------------


def _link(tenant: str, query: dict[str, str], anchor: str = "") -> str:
    q = urlencode({k: v for k, v in query.items() if v})
    return f"/t/{quote(tenant, safe='')}" + (f"?{q}" if q else "") + anchor


def _usage_section(p: TenantPage) -> list[str]:
    totals = {
        k: sum(getattr(u, k) for u in p.usage) for k in ("batches", "rows", "bytes", "duplicates", "gaps")
    }
    rows = [f"<tr>{_td(k)}{_td(fmt_num(v), value=v, cls='n')}</tr>" for k, v in totals.items()]
    limits = [
        f"<tr>{_td(k)}{_td('unlimited' if v is None else fmt_num(v), value=v, cls='n')}</tr>"
        for k, v in p.quota.items()
        if k not in ("tenant", "today")
    ]
    today = p.quota["today"]
    limits.append(f"<tr>{_td('rows today')}{_td(fmt_num(today['rows']), value=today['rows'], cls='n')}</tr>")
    refused = [
        f"<tr>{_td(r)}{_td(fmt_num(n), value=n, cls='n')}</tr>" for r, n in p.refusals["total"].items()
    ]
    return [
        '<section id="usage"><h2>Usage and quotas</h2><div class="cols">',
        _table("Metered in the range", ["", "total"], rows, "usage-totals"),
        _table("Quota", ["limit", "value"], limits, "quota"),
        _table("Refused, by reason", ["reason", "count"], refused, "refusals"),
        "</div></section>",
    ]


def _x(stamp: str, index: int) -> float:
    try:
        return parse_rfc3339(stamp)
    except ValueError:
        return float(index)


def _series_svg(s: Series, chart_id: str) -> str:
    groups: dict[str, list[tuple[int, Any]]] = {}
    for i, pt in enumerate(s.points):
        groups.setdefault("all" if s.additive else ",".join(pt.agents), []).append((i, pt))
    lines = []
    for name, pts in sorted(groups.items()):
        shown_pts = [(i, pt, shown(pt.estimate, s.stat)) for i, pt in pts]
        lines.append(
            Line(
                name=s.stat if s.additive else f"{s.stat} · agent {name}",
                xs=[_x(pt.window_start, i) for i, pt, _ in shown_pts],
                values=[v for _, _, (v, _, _) in shown_pts],
                lows=[lo for _, _, (_, lo, _) in shown_pts],
                highs=[hi for _, _, (_, _, hi) in shown_pts],
                tips=[
                    f"{window_label(pt.window_start, pt.window_end)}: {fmt_num(v)} {fmt_interval(lo, hi)}"
                    for _, pt, (v, lo, hi) in shown_pts
                ],
            )
        )
    first, last = s.points[0], s.points[-1]
    title = f"{s.metric} · {s.stat}" + (f" · {dims_label(s.dims)}" if s.dims else "") + " per window"
    return series_chart(
        chart_id=chart_id,
        title=title,
        desc=f"{len(s.points)} window(s); shaded band: 95 % interval from the DP noise",
        lines=lines,
        x_labels=(
            window_label(first.window_start, first.window_end),
            window_label(last.window_start, last.window_end),
        ),
        floor_zero=s.stat in COUNT_LIKE_STATS,
    )


def _kpi_section(r: KpiReport) -> list[str]:
    rows = []
    for s in r.series:
        key = f"{s.metric}|{s.stat}|{dims_label(s.dims)}"
        if s.total is None:
            total, iv, value = "-", "", None
        else:
            v, lo, hi = shown(s.total, s.stat)
            total, iv, value = fmt_num(v), fmt_interval(lo, hi), s.total.value
        rows.append(
            f'<tr data-series="{esc(key)}">{_td(s.metric)}{_td(s.stat)}{_td(dims_label(s.dims))}'
            f"{_td(total, value=value, cls='n total')}{_td(iv, cls='n')}"
            f"{_td(str(len(s.points)), cls='n')}</tr>"
        )
    charted = [s for s in r.series if s.points and s.additive and not s.dims][:MAX_CHARTS]
    out = ['<section id="kpi"><h2>KPIs</h2>', '<div class="charts">']
    for i, s in enumerate(charted):
        caption = f"{s.metric} · {s.stat} per window"
        out.append(
            f'<figure class="kpi-chart">{_series_svg(s, f"kpi{i}")}'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )
    out.append("</div>")
    if len(r.series) > len(charted):
        out.append(
            f'<p class="meta">{len(charted)} of {len(r.series)} series drawn; all are in the table.</p>'
        )
    out.append(
        _table(
            f"Series totals over the range ({r.confidence:.0%} intervals)",
            ["metric", "stat", "dims", "total", "interval", "windows"],
            rows,
            "kpi-totals",
        )
    )
    out.extend(f'<p class="note">{esc(n)}</p>' for n in r.notes)
    out.append("</section>")
    return out


def _funnel_section(tenant: str, query: dict[str, str], f: FunnelReport | None) -> list[str]:
    hidden = "".join(
        f'<input type="hidden" name="{k}" value="{esc(query[k])}"/>'
        for k in ("since", "until")
        if query.get(k)
    )
    out = [
        '<section id="funnel"><h2>Funnel</h2>',
        f'<form method="get" action="{esc(_link(tenant, {}))}" class="stages">{hidden}'
        '<label for="stages">Stages (metrics, in order)</label> '
        f'<input id="stages" name="stages" size="60" value="{esc(query.get("stages", ""))}"/> '
        '<button type="submit">Show</button></form>',
    ]
    if f is None:
        out.append('<p class="meta">Name two or more stage metrics to see the funnel.</p></section>')
        return out
    svg = funnel_chart(f.stages, chart_id="funnel-chart", desc="one bar per stage with its 95 % interval")
    if svg is not None:
        out.append(f'<figure class="funnel-chart">{svg}</figure>')
    rows = []
    for i, s in enumerate(f.stages):
        step = f.steps[i - 1] if i > 0 else None
        conv = fmt_ratio(step.conversion) if step is not None and step.conversion is not None else "-"
        total = "missing" if s.total is None else fmt_num(shown(s.total, "count")[0])
        rows.append(
            f'<tr data-stage="{esc(s.name)}">{_td(str(i + 1), cls="n")}{_td(s.name)}'
            f"{_td(total, value=None if s.total is None else s.total.value, cls='n total')}"
            f"{_td(conv, cls='n')}</tr>"
        )
    out.append(
        _table("Stages and step conversion", ["#", "stage", "total", "conversion"], rows, "funnel-stages")
    )
    if f.overall is not None:
        out.append(f'<p id="funnel-overall">Overall conversion: {esc(fmt_ratio(f.overall))}</p>')
    out.extend(f'<p class="note">{esc(n)}</p>' for n in f.notes)
    out.append("</section>")
    return out


def _privacy_section(g: GovernanceSection) -> list[str]:
    cap = "no cap" if g.cap_rho_per_day is None else f"cap ρ {g.cap_rho_per_day:g} per day per {g.cap_per}"
    out = ['<section id="privacy"><h2>Privacy spend vs cap</h2>', f'<p class="meta" id="cap">{esc(cap)}</p>']
    recent = g.spend[-12:]
    if recent:
        labels = [f"{s.day} · {s.agent or 'tenant'}" for s in recent]
        svg = bar_chart(
            chart_id="spend-chart",
            title="ρ admitted per day",
            desc="declared zCDP ρ admitted per agent and day",
            labels=labels,
            values=[s.rho for s in recent],
            lows=[s.rho for s in recent],
            highs=[s.rho for s in recent],
            value_labels=[f"{s.rho:.4g}" + ("" if s.cap is None else f" of {s.cap:g}") for s in recent],
        )
        out.append(f'<figure class="spend-chart">{svg}</figure>')
    rows = [
        f"<tr>{_td(s.day)}{_td(s.agent or '(tenant)')}{_td(f'{s.rho:.6g}', value=s.rho, cls='n')}"
        f"{_td('-' if s.cap is None else f'{s.cap:g}', value=s.cap, cls='n')}"
        f"{_td(fmt_pct(s.fraction), cls='n')}</tr>"
        for s in g.spend
    ]
    out.append(
        _table("ρ admitted per agent and UTC day", ["day", "agent", "ρ", "cap", "of cap"], rows, "spend")
    )
    pol = [
        f"<tr>{_td(u.digest[:16] + '…')}{_td(u.state)}"
        f"{_td(str(u.batches), value=u.batches, cls='n')}{_td(u.note)}</tr>"
        for u in g.policies
    ]
    out.append(_table("Policy digests", ["digest", "state", "batches", "note"], pol, "policies"))
    out.extend(f'<p class="note">{esc(n)}</p>' for n in g.notes)
    out.append("</section>")
    return out


def _agents_section(p: TenantPage) -> list[str]:
    agents, badges = p.agents, p.badges
    rows = []
    for a in agents:
        policy = (
            "-" if a["policy"] is None else f"{a['policy'][:16]}… ({a['policy_state'] or 'no approvals'})"
        )
        rows.append(
            f'<tr data-agent="{esc(a["agent"])}">{_td(a["agent"])}{_td(a["key_state"] or "no key")}'
            f"{_td(a['last_seen'] or 'never')}{_td(str(a['batches']), value=a['batches'], cls='n')}"
            f"{_td(policy)}"
            f'<td class="cert">{badges.get(a["agent"], "")}</td></tr>'
        )
    return [
        '<section id="agents"><h2>Agents</h2>',
        _table(
            "Agents", ["agent", "key", "last seen", "batches", "policy", "certificate"], rows, "agents-table"
        ),
        *_more_agents(p),
        "</section>",
    ]


def _more_agents(p: TenantPage) -> list[str]:
    """The note under a table that shows only the first agents (the API pages through all)."""
    if p.agents_total is None or p.agents_total <= len(p.agents):
        return []
    path = f"/api/v1/tenants/{quote(p.tenant.name, safe='')}/agents?offset={len(p.agents)}"
    return [
        f'<p class="note" id="agents-more">The first {len(p.agents)} of {p.agents_total} agents, by name; '
        f"the others: <code>{esc(path)}</code></p>"
    ]


def _audit_section(entries: list[AuditEntry]) -> list[str]:
    rows = [
        f"<tr>{_td(str(e.i), cls='n')}{_td(e.ts)}{_td(e.action)}{_td(e.tenant or '-')}"
        f"{_td(_json.encode(e.details).decode()[:300], cls='details')}</tr>"
        for e in entries
    ]
    return [
        '<section id="audit"><h2>Audit log (newest first)</h2>',
        _table("Audit tail", ["#", "time", "action", "tenant", "details"], rows, "audit-tail"),
        "</section>",
    ]


def tenant_page(who: Principal, tenants: Sequence[Tenant], p: TenantPage, now: float) -> str:
    name = p.tenant.name
    toc = "".join(
        f'<li><a href="#{a}">{esc(t)}</a></li>'
        for a, t in (
            ("usage", "Usage"),
            ("kpi", "KPIs"),
            ("funnel", "Funnel"),
            ("privacy", "Privacy"),
            ("agents", "Agents"),
            ("audit", "Audit"),
        )
    )
    since, until = p.query.get("since", ""), p.query.get("until", "")
    rng = f"windows from {since or 'the first'} until {until or 'now'}"
    body = [
        f'<h1>Tenant <span id="tenant-name">{esc(name)}</span> '
        f'<span class="state">{esc(p.tenant.state)}</span></h1>',
        f'<p class="meta">{esc(rng)}</p><nav aria-label="Sections"><ul class="toc">{toc}</ul></nav>',
        *_usage_section(p),
        *_kpi_section(p.kpi),
        *_funnel_section(name, p.query, p.funnel),
        *_privacy_section(p.governance),
        *_agents_section(p),
        *_audit_section(p.audit),
    ]
    return _page(f"Tenant {name}", body, who, tenants, now)
