"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright, installed
by ``make services`` through scripts/ensure-chromium.sh; never a downloaded browser).

A real ``hush-collector serve --http 127.0.0.1:0`` on SQLite, batches through real gRPC, tokens from
the CLI. Skipped, with the reason, only where no browser is installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from hushmetric import dsse
from hushmetric.certificate import (
    CERTIFICATE_PAYLOAD_TYPE,
    Certificate,
    Conformance,
    EgressHead,
    ProfileCheck,
    encode_statement,
)
from hushmetric.keys import public_key_b64
from hushmetric.timefmt import format_rfc3339
from hushmetric.v1 import ingest_pb2_grpc
from hushmetric.wire import envelope_to_proto
from tests.batchkit import POLICY
from tests.collector.collector_testkit import CLI, Agent, Hush
from tests.collector.http.conftest import STAGES, FunnelAgent

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or shutil.which("chromium") is None,
    reason="no /usr/bin/chromium: `make services` installs Debian's chromium (root and apt-get needed)",
)


@dataclass
class Site:
    url: str  # http://127.0.0.1:PORT/
    tokens: dict[str, str]
    hush: Hush

    def api(self, path: str, token: str) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        req = urllib.request.Request(self.url + path.lstrip("/"), headers=headers)  # noqa: S310  # loopback
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310  # a loopback http URL
            return json.loads(r.read())

    def status(self, path: str, token: str) -> int:
        try:
            self.api(path, token)
        except urllib.error.HTTPError as exc:
            return exc.code
        return 200


def _certificate(agent: Agent, now: float) -> dsse.Envelope:
    """A conforming on-prem certificate of ``agent``, valid for 30 days, under the batches' policy."""
    cert = Certificate(
        v=1,
        agent=agent.agent,
        tenant=agent.tenant,
        key_id=agent.key_id,
        public_key=agent.public_key,
        profile="on-prem",
        policy_name="demo",
        policy_digest=POLICY,
        mechanism="zcdp",
        measure="rho",
        budget_period="day",
        cap=100.0,
        conformance=Conformance("on-prem", True, [ProfileCheck("collector-tls", True)]),
        egress=EgressHead(0, ""),
        spend=[],
        issued=format_rfc3339(now - 60),
        valid_until=format_rfc3339(now + 30 * 86400),
    )
    return dsse.sign(encode_statement(cert), CERTIFICATE_PAYLOAD_TYPE, agent.key)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    hush = Hush(tmp_path_factory.mktemp("dash"))
    hush.ok("init")
    agents = {}
    for tenant, name in (("acme", "a1"), ("beta", "b1")):
        hush.ok("tenant", "create", tenant)
        agent = FunnelAgent(tenant, name, created=time.time() - 600)
        hush.ok("key", "add", tenant, "--agent", name, "--public-key", public_key_b64(agent.public_key))
        agents[tenant] = agent
    tokens = {
        "operator": hush.ok("api-token", "create", "--role", "operator").strip(),
        "acme": hush.ok("api-token", "create", "--role", "viewer", "--tenant", "acme").strip(),
    }
    proc = subprocess.Popen(
        [*CLI, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", str(hush.db)],
        cwd=hush.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address, url = proc.stdout.readline().strip(), proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), (address, url)
        with grpc.insecure_channel(address) as channel:
            stub = ingest_pb2_grpc.IngestStub(channel)
            # acme's agent is certified, beta's is not: the dashboard shows both kinds of badge
            stub.SubmitCertificate(envelope_to_proto(_certificate(agents["acme"], time.time())), timeout=30)
            for tenant, batches in (("acme", 2), ("beta", 1)):
                for _ in range(batches):
                    stub.Submit(envelope_to_proto(agents[tenant].next()), timeout=30)
                    agents[tenant].created += 60
        yield Site(url, tokens, hush)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _login(browser: Any, site: Site, token: str) -> Any:
    context = browser.new_context()
    page = context.new_page()
    page.csp_errors = []
    page.on(
        "console", lambda m: page.csp_errors.append(m.text) if "Content Security Policy" in m.text else None
    )
    page.goto(site.url + "login")
    page.fill("#token", token)
    with page.expect_navigation():
        page.click("button[type=submit]")
    return page


def test_viewer_sees_one_tenant_with_kpis_and_funnel_matching_the_api(browser: Any, site: Site) -> None:
    page = _login(browser, site, site.tokens["acme"])
    assert page.url == site.url + "t/acme"
    assert page.text_content("#who") == "viewer · acme"
    assert page.query_selector("#tenant-switcher") is None  # no tenant switcher for a viewer
    assert "beta" not in page.content()
    # KPI: the chart renders, and every total in the table is the API's
    kpi = site.api("/api/v1/tenants/acme/kpi", site.tokens["acme"])
    assert page.locator("#kpi figure svg.chart").count() >= 1
    assert page.locator("#kpi figure svg.chart polyline, #kpi figure svg.chart circle").count() >= 1
    for s in kpi["series"]:
        dims = ", ".join(f"{k}={v}" for k, v in sorted(s["dims"].items())) or "-"
        cell = page.locator(f'#kpi-totals tr[data-series="{s["metric"]}|{s["stat"]}|{dims}"] td.total')
        assert float(cell.get_attribute("data-value")) == s["total"]["value"], s["metric"]
    # funnel: asked for by stages; bars and table values are the API's
    stages = ",".join(STAGES)
    page.goto(site.url + f"t/acme?stages={stages}")
    funnel = site.api(f"/api/v1/tenants/acme/funnel?stages={stages}", site.tokens["acme"])
    assert page.locator("#funnel figure svg.chart rect").count() == len(STAGES)
    shown = [float(c.get_attribute("data-value")) for c in page.locator("#funnel-stages td.total").all()]
    assert shown == [s["total"]["value"] for s in funnel["stages"]]
    assert shown == [200.0, 120.0, 40.0]
    assert "20.0%" in page.text_content("#funnel-overall")
    # agents, with the certificate badge column: a1 is certified, and the badge says as the API does
    row = page.locator('#agents-table tr[data-agent="a1"]')
    assert row.locator("td.cert svg").count() == 1
    badge = row.locator("td.cert").inner_text() + (row.locator("td.cert title").text_content() or "")
    agents = site.api("/api/v1/tenants/acme/agents", site.tokens["acme"])
    (a1,) = [a for a in agents if a["agent"] == "a1"]
    assert a1["certificate"]["status"] == "valid"
    assert "on-prem" in badge
    assert a1["certificate"]["expires"][:10] in badge
    assert page.locator("#audit-tail tbody tr").count() >= 1
    assert page.csp_errors == []
    # another tenant: 403, on the page and in the API
    response = page.goto(site.url + "t/beta")
    assert response.status == 403
    assert site.status("/api/v1/tenants/beta/kpi", site.tokens["acme"]) == 403
    page.context.close()


def test_operator_sees_every_tenant_and_switches(browser: Any, site: Site) -> None:
    page = _login(browser, site, site.tokens["operator"])
    assert page.url == site.url
    assert [r.get_attribute("data-tenant") for r in page.locator("#tenants tbody tr").all()] == [
        "acme",
        "beta",
    ]
    assert page.locator("#tenant-switcher a").all_text_contents() == ["acme", "beta"]
    with page.expect_navigation():
        page.click("#tenant-switcher >> text=beta")
    assert page.text_content("#tenant-name") == "beta"
    assert page.locator('#agents-table tr[data-agent="b1"]').count() == 1
    assert page.csp_errors == []
    page.context.close()


def test_wrong_token_gets_401_and_no_cookie(browser: Any, site: Site) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(site.url + "login")
    page.fill("#token", "hmu_0000000000000000_" + "A" * 43)
    with page.expect_response(lambda r: r.url.endswith("/login") and r.request.method == "POST") as info:
        page.click("button[type=submit]")
    assert info.value.status == 401
    assert "a valid API token is required" in page.text_content("#error")
    assert context.cookies() == []
    assert page.goto(site.url + "t/acme").url == site.url + "login"  # not signed in: the login page
    assert site.status("/api/v1/tenants", "hmu_0000000000000000_" + "A" * 43) == 401
    context.close()


def test_the_cookie_is_httponly_and_strict(browser: Any, site: Site) -> None:
    page = _login(browser, site, site.tokens["acme"])
    [cookie] = page.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # script cannot read the token
    with page.expect_navigation():
        page.click(".logout button")
    assert page.url == site.url + "login"
    assert page.context.cookies() == []
    page.context.close()


def test_a_revoked_token_signs_the_browser_out(browser: Any, site: Site) -> None:
    token = site.hush.ok("api-token", "create", "--role", "viewer", "--tenant", "acme").strip()
    page = _login(browser, site, token)
    assert page.url == site.url + "t/acme"
    site.hush.ok("api-token", "revoke", token.split("_")[1])
    response = page.reload()
    assert response.status == 401
    assert page.query_selector("#token") is not None  # the login form
    assert page.context.cookies() == []
    page.context.close()


def test_the_refresh_script_loads_under_the_csp(browser: Any, site: Site) -> None:
    page = _login(browser, site, site.tokens["acme"])
    assert page.evaluate("document.querySelector('main').dataset.refresh") == "30"
    assert page.evaluate("Array.from(document.scripts).map(s => s.src)") == [site.url + "static/app.js"]
    assert page.csp_errors == []
    page.context.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
