"""The dashboard's HTML is built from untrusted names (tenants, agents, metrics, dims, notes): all of
it is escaped, and no page carries inline script or style (the CSP would block them anyway)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from collector.http.auth import Principal
from collector.http.pages import TenantPage, error_page, login_page, overview_page, tenant_page
from collector.report.badge import certificate_badge
from collector.report.funnel import funnel_report
from collector.report.governance import governance_section
from collector.report.kpi import kpi_report
from collector.store import Tenant
from collector.store.records import StoredRow, UsageDay

EVIL = "<script>alert(1)</script>\"'&"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))
        if tag == "style" or any(k == "style" or k.startswith("on") for k, _ in attrs):
            self.inline.append(tag)


def _check(html: str) -> None:
    assert "<script>alert" not in html
    tags = _Tags()
    tags.feed(html)
    assert tags.scripts == [{"src": "/static/app.js", "defer": "defer"}] or tags.scripts == []
    assert tags.inline == []


def test_hostile_names_are_escaped_everywhere() -> None:
    who = Principal("t1", "operator", None)
    tenants = [Tenant(EVIL, "active", 0.0, 0.0)]
    row = StoredRow(EVIL, EVIL, 1, "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", EVIL, "count",
                    {EVIL: EVIL}, 5.0, "gaussian", 1.0)  # fmt: skip
    plain = StoredRow(EVIL, EVIL, 1, "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", EVIL + "2", "count",
                      {}, 5.0, "gaussian", 1.0)  # fmt: skip
    kpi = kpi_report([row, plain], [], [], tenant=EVIL, since=None, until=None)
    funnel = funnel_report([row, plain], tenant=EVIL, stages=[EVIL, EVIL + "2"])
    usage = [UsageDay(EVIL, "2026-01-01", 1, 2, 3, 0, {EVIL: 1}, 0)]
    page = TenantPage(
        tenant=tenants[0],
        query={"stages": EVIL, "since": EVIL},
        usage=usage,
        quota={"tenant": EVIL, "rows_per_day": None, "today": {"rows": 0}},
        refusals={"total": {EVIL: 1}, "days": []},
        kpi=kpi,
        funnel=funnel,
        governance=governance_section([], {EVIL: 1}, None, []),
        agents=[
            {
                "agent": EVIL,
                "key_state": "active",
                "last_seen": None,
                "batches": 1,
                "policy": EVIL,
                "policy_state": EVIL,
            }
        ],
        badges={EVIL: certificate_badge(None, 1.0)},
        audit=[],
    )
    html = tenant_page(who, tenants, page, 1.0)
    _check(html)
    assert html.count("&lt;script&gt;") > 10
    _check(overview_page(who, tenants, usage, 1.0))
    _check(login_page(EVIL))
    _check(error_page(403, EVIL, who))
    assert re.search(r'data-refresh="\d+"', html)
    assert "data-refresh" not in login_page()  # nothing to refresh before signing in
