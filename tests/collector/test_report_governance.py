"""The KPI report's governance section (collector/report/governance.py) and how each form shows it."""

from __future__ import annotations

import json

from collector.report.governance import GovernanceSection, governance_section, spend_days
from collector.report.kpi import kpi_report
from collector.report.render import render
from collector.store import PolicyRecord, PrivacyCap, SpendDay

OLD, NEW, EARLY = "aa" * 32, "bb" * 32, "cc" * 32


def section() -> GovernanceSection:
    policies = [
        PolicyRecord("acme", OLD, "revoked", "v1", 10.0, 20.0),
        PolicyRecord("acme", NEW, "approved", "v2", 15.0),
    ]
    spend = [
        SpendDay("acme", "a1", "2026-03-10", 750_000_000_000, 0.75),
        SpendDay("acme", None, "2026-03-10", 750_000_000_000, 0.75),
    ]
    return governance_section(policies, {OLD: 3, EARLY: 1}, PrivacyCap("acme", 1.0, "agent"), spend)


def test_revoked_and_unlisted_digests_are_marked_and_spend_is_set_against_its_cap() -> None:
    g = section()
    assert [(p.digest, p.state, p.batches) for p in g.policies] == [
        (OLD, "revoked", 3),
        (NEW, "approved", 0),
        (EARLY, "unlisted", 1),
    ]
    assert [(s.agent, s.cap, s.fraction) for s in g.spend] == [("a1", 1.0, 0.75), (None, None, None)]
    assert g.notes[0].startswith(f"3 stored batch(es) declare policy {OLD[:16]}, revoked since")
    assert "before the tenant approved" in g.notes[1]


def test_every_form_shows_the_section_and_reports_without_governance_do_not() -> None:
    report = kpi_report([], [], [], tenant="acme", since=None, until=None, governance=section())
    table = render(report, "table")
    assert isinstance(table, str)
    assert "Governance" in table
    assert f"{OLD[:16]}  revoked" in table
    assert "privacy cap (rho): 1 per agent and day" in table
    html = render(report, "html")
    assert isinstance(html, str)
    assert "<h2>Governance</h2>" in html
    assert "revoked since; they stay stored" in html
    doc = json.loads(render(report, "json"))
    assert doc["governance"]["policies"][0] == {"digest": OLD, "state": "revoked", "note": "v1", "batches": 3}
    plain = kpi_report([], [], [], tenant="acme", since=None, until=None)
    assert "Governance" not in str(render(plain, "table"))
    assert "Governance" not in str(render(plain, "html"))


def test_spend_days_are_the_inclusive_days_of_a_half_open_range() -> None:
    assert spend_days("2026-03-10T00:00:00Z", "2026-03-12T00:00:00Z") == ("2026-03-10", "2026-03-11")
    assert spend_days(None, "2026-03-12T00:00:01Z") == (None, "2026-03-12")
    assert spend_days(None, None) == (None, None)
