"""The read-only JSON API over a real server: roles, errors, bounds, headers, and values that match
the report layer."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from collector.http.api import AGENTS_LIMIT
from collector.http.app import CSP, HttpLimits, http_server, secure_cookies
from collector.store import AgentCertificate, Store
from tests.collector.collector_testkit import Agent, Clock
from tests.collector.http.conftest import STAGES, Api, make_token

TENANT_PATHS = ("", "/usage", "/quota", "/refusals", "/kpi", "/privacy", "/policies", "/agents", "/audit")


async def test_operator_reads_every_tenant_viewer_one(api: Api) -> None:
    status, tenants = await api.get("/api/v1/tenants", api.tokens["operator"])
    assert status == 200
    assert [t["name"] for t in tenants] == ["acme", "beta"]
    status, tenants = await api.get("/api/v1/tenants", api.tokens["acme"])
    assert status == 200
    assert [t["name"] for t in tenants] == ["acme"]
    status, me = await api.get("/api/v1/me", api.tokens["acme"])
    assert me == {"token_id": me["token_id"], "role": "viewer", "tenant": "acme"}  # type: ignore[index]
    for path in TENANT_PATHS:
        assert (await api.get(f"/api/v1/tenants/acme{path}", api.tokens["acme"]))[0] == 200, path
        assert (await api.get(f"/api/v1/tenants/beta{path}", api.tokens["operator"]))[0] == 200, path
        # another tenant, existing or not: the same 403, so a viewer learns no names
        assert await api.get(f"/api/v1/tenants/beta{path}", api.tokens["acme"]) == (
            403,
            {"error": "this token may not read that"},
        )
        assert (await api.get(f"/api/v1/tenants/nobody{path}", api.tokens["acme"]))[0] == 403
        assert (await api.get(f"/api/v1/tenants/nobody{path}", api.tokens["operator"]))[0] == 404
    assert (await api.get("/api/v1/audit", api.tokens["acme"]))[0] == 403
    status, entries = await api.get("/api/v1/audit?limit=3", api.tokens["operator"])
    assert status == 200
    assert len(entries) == 3


@pytest.mark.parametrize(
    "token",
    [None, "", "hmu_", "hmu_0000000000000000_" + "A" * 43, "not a token at all"],
)
async def test_bad_tokens_are_one_401(api: Api, token: str | None) -> None:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with api.session.get(api.url + "api/v1/tenants", headers=headers) as r:
        assert r.status == 401
        assert await r.json() == {"error": "a valid API token is required"}
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_revoked_and_wrong_secret_tokens(api: Api, store: Store, clock: Clock) -> None:
    token = api.tokens["acme"]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert (await api.get("/api/v1/me", tampered))[0] == 401
    await store.revoke_api_token(token.split("_")[1], now=clock())
    assert (await api.get("/api/v1/me", token))[0] == 401


async def test_denied_requests_are_audited_once_a_minute(api: Api, store: Store, clock: Clock) -> None:
    before = len(await store.audit_entries())
    for _ in range(5):
        await api.get("/api/v1/tenants", "hmu_0000000000000000_" + "A" * 43)
        await api.get("/api/v1/tenants/beta/kpi", api.tokens["acme"])
    denied = [e for e in (await store.audit_entries())[before:] if e.action == "api.denied"]
    assert [(e.tenant, e.details["reason"], e.details["count"]) for e in denied] == [
        (None, "unauthorized", 1),
        ("acme", "forbidden", 1),
    ]
    clock.now += 60  # the next minute: one entry each, counting the denials it stands for
    await api.get("/api/v1/tenants", "hmu_0000000000000000_" + "A" * 43)
    denied = [e for e in (await store.audit_entries())[before:] if e.action == "api.denied"]
    assert denied[-1].details["count"] == 5
    assert denied[-1].details["reason"] == "unauthorized"


async def test_kpi_funnel_privacy_agents_match_the_report_layer(api: Api) -> None:
    token = api.tokens["acme"]
    status, kpi = await api.get("/api/v1/tenants/acme/kpi", token)
    assert status == 200
    totals = {(s["metric"], s["stat"]): s["total"] for s in kpi["series"]}  # type: ignore[index]
    assert totals[("signup", "count")]["value"] == 200.0  # two batches of 100
    assert totals[("signup", "count")]["low"] < 200.0 < totals[("signup", "count")]["high"]
    status, funnel = await api.get(f"/api/v1/tenants/acme/funnel?stages={','.join(STAGES)}", token)
    assert status == 200
    assert [s["total"]["value"] for s in funnel["stages"]] == [200.0, 120.0, 40.0]  # type: ignore[index]
    assert funnel["overall"]["value"] == pytest.approx(0.2)  # type: ignore[index]
    assert (await api.get("/api/v1/tenants/acme/funnel?stages=signup", token))[0] == 400
    status, privacy = await api.get("/api/v1/tenants/acme/privacy", token)
    assert status == 200
    assert privacy["cap_rho_per_day"] is None
    status, agents = await api.get("/api/v1/tenants/acme/agents", token)
    [a1] = agents  # type: ignore[misc]
    assert a1["agent"] == "a1"
    assert a1["key_state"] == "active"
    assert a1["batches"] == 2
    assert a1["last_seq"] == 2
    assert len(a1["policy"]) == 64
    assert a1["policy_state"] is None
    assert a1["certificate"] is None  # it has not certified
    status, usage = await api.get("/api/v1/tenants/acme/usage", token)
    assert [u["batches"] for u in usage] == [2]  # type: ignore[union-attr]
    status, quota = await api.get("/api/v1/tenants/acme/quota", token)
    assert quota["today"]["batches"] == 2  # type: ignore[index]


async def test_ranges_and_bad_parameters(api: Api) -> None:
    token = api.tokens["operator"]
    status, kpi = await api.get("/api/v1/tenants/acme/kpi?since=2030-01-01", token)
    assert status == 200
    assert kpi["series"] == []
    assert await api.get("/api/v1/tenants/acme/kpi?since=yesterday", token) == (
        400,
        {"error": "since: expected YYYY-MM-DD or an RFC 3339 timestamp"},
    )
    assert (await api.get("/api/v1/audit?limit=0", token))[0] == 400
    assert (await api.get("/api/v1/audit?limit=x", token))[0] == 400
    assert await api.get("/api/v1/nothing", token) == (404, {"error": "Not Found"})


async def test_every_response_has_the_security_headers(api: Api) -> None:
    for path, method in (("api/v1/tenants", "GET"), ("nothing", "GET"), ("login", "GET"),
                         ("static/app.js", "GET"), ("api/v1/tenants", "POST")):  # fmt: skip
        async with api.session.request(method, api.url + path) as r:
            assert r.headers["Content-Security-Policy"] == CSP, path
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert "Traceback" not in await r.text()
    async with api.session.post(api.url + "api/v1/tenants") as r:
        assert r.status == 405
        assert await r.json() == {"error": "Method Not Allowed"}


async def test_bounded_requests(api: Api) -> None:
    async with api.session.post(api.url + "login", data={"token": "x" * 100_000}) as r:
        assert r.status == 413
        assert "Traceback" not in await r.text()
    async with api.session.get(api.url + "api/v1/me", headers={"X-Big": "x" * 20_000}) as r:
        assert r.status in (400, 431)
        assert "Traceback" not in await r.text()


async def test_connections_beyond_the_limit_are_closed(api: Api) -> None:
    host, port = api.url.removeprefix("http://").rstrip("/").split(":")
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(8):  # the fixture's limit; keep-alive connections that stay open
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            held.append((reader, writer))
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await reader.read() == b""  # closed without an answer
        writer.close()
    finally:
        for _, w in held:
            w.close()


async def test_tokens_of_a_new_viewer_work_at_once(api: Api, store: Store, clock: Clock) -> None:
    token = await make_token(store, clock, "viewer", "beta")
    status, body = await api.get("/api/v1/tenants", token)
    assert status == 200
    assert [t["name"] for t in body] == ["beta"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/audit?limit=%C2%B2",  # "²": str.isdigit() says yes, int() says no
        "/api/v1/tenants/acme/audit?limit=%D9%A1",  # an Arabic-Indic one
        "/api/v1/tenants/acme/usage?since=0001-01-01T00:00:00%2B23:59",  # UTC day in year 0
        "/api/v1/tenants/acme/kpi?since=9999-12-31T23:59:59-23:59",  # UTC day in year 10000
        "/api/v1/tenants/acme/privacy?until=0001-01-01",  # the instant before it is in year 0
        "/t/acme?since=0001-01-01T00:00:00%2B23:59",
    ],
)
async def test_parameters_out_of_range_are_400_not_500(api: Api, path: str) -> None:
    status, _ = await api.get(path, api.tokens["operator"])
    assert status == 400


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "null"},  # a sandboxed frame or data: page of another site
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},  # no Origin, but the browser says where it came from
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},  # the sandboxed frame, in a browser
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_login_from_another_site_is_refused(api: Api, headers: dict[str, str]) -> None:
    """Login CSRF: another site must not sign the victim's browser in with the attacker's token."""
    data = {"token": api.tokens["acme"]}
    async with api.session.post(api.url + "login", data=data, headers=headers, allow_redirects=False) as r:
        assert r.status == 403
        assert "Set-Cookie" not in r.headers


async def test_login_and_logout_set_and_clear_the_cookie(api: Api) -> None:
    data = {"token": api.tokens["acme"]}
    # what Chromium sends for this site's own form: the pages' no-referrer policy makes it Origin: null
    headers = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    async with api.session.post(api.url + "login", data=data, headers=headers, allow_redirects=False) as r:
        assert r.status == 303
        assert r.headers["Location"] == "/"
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
    async with api.session.post(api.url + "logout", headers=headers, allow_redirects=False) as r:
        assert r.status == 303
        assert r.headers["Location"] == "/login"


async def test_a_viewer_loses_its_tenant_when_it_is_deleted(api: Api, store: Store, clock: Clock) -> None:
    """Deleting a tenant (an offboarded customer) ends what its viewer tokens read; operators still
    read it. Suspension does not: a suspended tenant's viewers see why batches are refused."""
    await store.set_tenant_state("acme", "suspended", now=clock())
    assert (await api.get("/api/v1/tenants/acme", api.tokens["acme"]))[0] == 200
    await store.set_tenant_state("acme", "deleted", now=clock())
    for path in TENANT_PATHS:
        assert (await api.get(f"/api/v1/tenants/acme{path}", api.tokens["acme"]))[0] == 403, path
        assert (await api.get(f"/api/v1/tenants/acme{path}", api.tokens["operator"]))[0] == 200, path
    assert await api.get("/api/v1/tenants", api.tokens["acme"]) == (200, [])
    assert (await api.get("/t/acme", api.tokens["acme"]))[0] == 403


def test_the_cookie_is_secure_unless_plaintext_is_the_real_scheme() -> None:
    """Beyond loopback, plaintext is allowed only behind a TLS-terminating proxy (--insecure): the
    browser speaks HTTPS, and the token cookie must not also go out over plain HTTP."""
    assert secure_cookies("127.0.0.1:8080", tls=False) is False
    assert secure_cookies("[::1]:8080", tls=False) is False
    assert secure_cookies("10.0.0.5:8080", tls=False) is True
    assert secure_cookies("0.0.0.0:8080", tls=False) is True
    assert secure_cookies("127.0.0.1:8443", tls=True) is True


async def test_a_secure_cookie_behind_a_proxy(store: Store, clock: Clock, data: object) -> None:
    token = await make_token(store, clock, "viewer", "acme")
    limits = HttpLimits(max_connections=8)
    async with (
        http_server(store, "127.0.0.1:0", clock=clock, limits=limits, secure_cookie=True) as url,
        aiohttp.ClientSession() as session,
        session.post(
            url + "login",
            data={"token": token},
            headers={"Sec-Fetch-Site": "same-origin"},
            allow_redirects=False,
        ) as r,
    ):
        assert r.status == 303
        assert "Secure" in r.headers["Set-Cookie"]


async def test_agents_are_paged(api: Api, store: Store, clock: Clock) -> None:
    for i in range(AGENTS_LIMIT + 1):  # a1 and these: two more than a page
        await store.add_key("acme", f"z{i:03d}", Agent("acme", f"z{i:03d}").public_key, now=clock())
    token = api.tokens["acme"]
    async with api.session.get(
        api.url + "api/v1/tenants/acme/agents", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 200
        assert r.headers["X-Total-Count"] == str(AGENTS_LIMIT + 2)
        first = await r.json()
    assert len(first) == AGENTS_LIMIT
    assert first[0]["agent"] == "a1"
    status, rest = await api.get(f"/api/v1/tenants/acme/agents?offset={AGENTS_LIMIT}", token)
    assert [a["agent"] for a in rest] == [f"z{AGENTS_LIMIT - 1:03d}", f"z{AGENTS_LIMIT:03d}"]  # type: ignore[union-attr]
    status, two = await api.get("/api/v1/tenants/acme/agents?limit=2&offset=1", token)
    assert [a["agent"] for a in two] == ["z000", "z001"]  # type: ignore[union-attr]
    assert await api.get("/api/v1/tenants/acme/agents?offset=999", token) == (200, [])
    for bad in ("limit=0", "limit=1001", "limit=x", "offset=-1", "offset=%C2%B2", "offset=99999999"):
        status, body = await api.get(f"/api/v1/tenants/acme/agents?{bad}", token)
        assert status == 400, bad
        assert "a whole number" in body["error"]  # type: ignore[index]
    # the page shows the first AGENTS_LIMIT, and says there are more
    page = await tenant_page(api, "acme")
    assert page.count('<tr data-agent="') == AGENTS_LIMIT
    assert f"The first {AGENTS_LIMIT} of {AGENTS_LIMIT + 2} agents" in page
    assert f"/api/v1/tenants/acme/agents?offset={AGENTS_LIMIT}" in page


async def test_a_page_view_reads_the_tenants_certificates_once(
    api: Api, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner = store.agent_certificates
    asked: list[str | None] = []

    async def counted(tenant: str | None, *, now: float | None = None) -> list[AgentCertificate]:
        asked.append(tenant)
        return await inner(tenant, now=now)

    monkeypatch.setattr(store, "agent_certificates", counted)
    page = await tenant_page(api, "acme")
    assert 'data-agent="a1"' in page
    assert "agents-more" not in page  # one agent: no note
    assert asked == ["acme"]


async def tenant_page(api: Api, tenant: str) -> str:
    """The tenant's dashboard page, logged in with the tenant's viewer token."""
    headers = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    data = {"token": api.tokens[tenant]}
    async with api.session.post(api.url + "login", data=data, headers=headers, allow_redirects=False) as r:
        assert r.status == 303
        cookie = r.headers["Set-Cookie"].split(";")[0]  # the session's jar keeps none for an IP address
    async with api.session.get(api.url + f"t/{tenant}", headers={"Cookie": cookie}) as r:
        assert r.status == 200
        return await r.text()
