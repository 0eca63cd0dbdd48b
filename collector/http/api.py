"""The read-only JSON API (``GET /api/v1/…``) and the reads behind it, which the dashboard shares.

Every read goes through the :class:`~collector.store.Store` protocol and the report layer
(:mod:`collector.report`): no SQL here. The gatherers (``*_of``) return records and report Structs;
the handlers turn them into JSON with :func:`msgspec.to_builtins`, so the dashboard and the API show
the same numbers from the same code. Ranges: ``since``/``until`` take a date (its UTC midnight) or an
RFC 3339 stamp; KPI rows and funnels cover windows starting in ``[since, until)``, day-based reads
(usage, refusals, privacy spend) the UTC days that range touches. No range: everything stored.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from collector.audit import AuditEntry
from collector.errors import NotFound
from collector.http.auth import Principal, may_read
from collector.http.certs import certificate_views
from collector.report.funnel import FunnelReport, funnel_report
from collector.report.governance import GovernanceSection, governance_section, spend_days
from collector.report.kpi import KpiReport, kpi_report
from collector.store import Store, Tenant
from collector.store.records import UsageDay
from collector.store.rules import day_of
from hushmetric.timefmt import format_rfc3339, parse_rfc3339

__all__ = [
    "AGENTS_LIMIT",
    "AUDIT_LIMIT",
    "AgentList",
    "BadRequest",
    "Range",
    "agents_of",
    "audit_of",
    "funnel_of",
    "governance_of",
    "kpi_of",
    "quota_of",
    "range_of",
    "refusals_of",
    "routes",
    "stages_of",
    "tenant_for",
    "visible_tenants",
]

AUDIT_LIMIT = 50  # default audit tail
_MAX_AUDIT = 500
AGENTS_LIMIT = 100  # default page of the agents list (and all the dashboard's table shows)
_MAX_AGENTS = 1000
_MAX_OFFSET = 10**7
_MAX_STAGES = 20
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")  # the wire contract's tenant and agent ids


class BadRequest(Exception):
    """A query parameter that cannot be used; the message is the 400 answer."""


class Range(msgspec.Struct, frozen=True):
    since: str | None  # RFC 3339
    until: str | None

    @property
    def days(self) -> tuple[str | None, str | None]:
        return spend_days(self.since, self.until)


def _bound(text: str | None, name: str) -> str | None:
    if not text:
        return None
    if _DAY.match(text):
        text = f"{text}T00:00:00Z"
    try:
        # the day reads name the UTC day of the bound (and of the instant before it): a time whose
        # UTC day falls outside years 1-9999 cannot be named, and is a 400, not a 500
        day_of(parse_rfc3339(text) - 1e-3)
        day_of(parse_rfc3339(text))
    except (ValueError, OverflowError, OSError) as exc:
        raise BadRequest(f"{name}: expected YYYY-MM-DD or an RFC 3339 timestamp") from exc
    return text


def range_of(query: Any) -> Range:
    return Range(_bound(query.get("since"), "since"), _bound(query.get("until"), "until"))


def stages_of(text: str | None) -> list[str]:
    stages = [s.strip() for s in (text or "").split(",") if s.strip()]
    if len(stages) > _MAX_STAGES or any(len(s) > 200 for s in stages):
        raise BadRequest(f"stages: at most {_MAX_STAGES} metric names")
    return stages


# -- gatherers (shared with the dashboard) ------------------------------------------------------


def _open_to(who: Principal, tenant: Tenant) -> bool:
    """A viewer's token reads its tenant until the tenant is deleted (no new viewer token can be made
    for a deleted tenant either); an operator reads every tenant, deleted ones too."""
    return may_read(who, tenant.name) and (who.role == "operator" or tenant.state != "deleted")


async def visible_tenants(store: Store, who: Principal) -> list[Tenant]:
    tenants = await store.list_tenants()
    return [t for t in tenants if _open_to(who, t)]


async def tenant_for(store: Store, who: Principal, name: str) -> Tenant:
    """The tenant ``who`` asks for; PermissionError (403) for a viewer's other tenant — before any
    lookup, so the answer does not say whether it exists — or its own once deleted; NotFound (404)
    otherwise."""
    if not may_read(who, name):
        raise PermissionError(name)
    tenant = await store.get_tenant(name) if _ID.match(name) else None
    if tenant is None:
        raise NotFound("tenant", name)
    if not _open_to(who, tenant):
        raise PermissionError(name)
    return tenant


async def kpi_of(store: Store, tenant: str, r: Range) -> KpiReport:
    rows = await store.released_rows(tenant, r.since, r.until)
    privacy = await store.batch_privacy(tenant, r.since, r.until)
    first, last = r.days
    usage = await store.usage(tenant, first, last)
    q = await store.get_quota(tenant)
    limits = {
        "rows_per_day": q.rows_per_day,
        "rows_per_month": q.rows_per_month,
        "bytes_per_day": q.bytes_per_day,
    }
    return kpi_report(
        rows,
        privacy,
        usage,
        tenant=tenant,
        since=r.since,
        until=r.until,
        quota=limits,
        governance=await governance_of(store, tenant, r),
    )


async def funnel_of(
    store: Store, tenant: str, stages: list[str], r: Range, ttv_metric: str | None = None
) -> FunnelReport:
    rows = await store.released_rows(tenant, r.since, r.until)
    return funnel_report(rows, tenant=tenant, stages=stages, ttv_metric=ttv_metric)


async def governance_of(store: Store, tenant: str, r: Range) -> GovernanceSection:
    return governance_section(
        await store.list_policies(tenant),
        await store.policy_batches(tenant, r.since, r.until),
        await store.get_privacy_cap(tenant),
        await store.privacy_spend(tenant, *r.days),
    )


async def quota_of(store: Store, tenant: str, now: float) -> dict[str, Any]:
    quota = await store.get_quota(tenant)
    today = day_of(now)
    used = next(iter(await store.usage(tenant, today, today)), None)
    doc: dict[str, Any] = msgspec.to_builtins(quota)
    doc["today"] = {
        "day": today,
        "batches": used.batches if used else 0,
        "rows": used.rows if used else 0,
        "bytes": used.bytes if used else 0,
    }
    return doc


def refusals_of(days: list[UsageDay]) -> dict[str, Any]:
    total: dict[str, int] = {}
    per_day = []
    for u in days:
        for reason, n in u.refused.items():
            total[reason] = total.get(reason, 0) + n
            per_day.append({"day": u.day, "reason": reason, "count": n})
    return {"total": dict(sorted(total.items())), "days": per_day}


class AgentList(msgspec.Struct, frozen=True):
    """One page of a tenant's agents (by name): their rows and badges, and how many there are."""

    agents: list[dict[str, Any]]
    badges: dict[str, str]  # agent -> certificate badge SVG, for the agents of the page
    total: int  # agents of the tenant, on every page


async def agents_of(
    store: Store, tenant: str, now: float, limit: int = AGENTS_LIMIT, offset: int = 0
) -> AgentList:
    """Per agent (with a key or a stored batch), ``limit`` of them from ``offset`` by name: keys and
    their states, last seen, the policy digest of its newest batch and that digest's state here,
    and its certificate (the tenant's certificates read once, for the JSON and the badges alike)."""
    keys = await store.list_keys(tenant)
    activity = {a.agent: a for a in await store.agent_activity(tenant)}
    policies = {p.digest: p.state for p in await store.list_policies(tenant)}
    every = sorted({k.agent for k in keys} | set(activity))
    names = every[offset : offset + limit]
    certs = await certificate_views(store, tenant, names, now)
    out = []
    for name in names:
        own = [k for k in keys if k.agent == name]
        states = {k.state for k in own}
        seen = activity.get(name)
        out.append(
            {
                "agent": name,
                "key_state": next((s for s in ("active", "retired", "revoked") if s in states), None),
                "keys": [
                    {"key_id": k.key_id, "state": k.state, "added": format_rfc3339(k.added)} for k in own
                ],
                "last_seen": format_rfc3339(seen.last_seen) if seen else None,
                "last_seq": seen.last_seq if seen else None,
                "batches": seen.batches if seen else 0,
                "policy": seen.policy if seen else None,
                "policy_state": (policies.get(seen.policy, "unlisted") if policies else None)
                if seen
                else None,
                "certificate": certs[name].doc,
            }
        )
    return AgentList(out, {name: c.badge for name, c in certs.items()}, len(every))


async def audit_of(store: Store, tenant: str | None, limit: int) -> list[AuditEntry]:
    return await store.audit_tail(limit, tenant)


def _whole(query: Any, name: str, default: int, low: int, high: int) -> int:
    """The query's ``name`` as a whole number in [low, high] (``default`` when absent)."""
    text = query.get(name, str(default))
    digits = text.isascii() and text.isdigit() and len(text) <= len(str(high))
    if not digits or not low <= int(text) <= high:
        raise BadRequest(f"{name}: a whole number from {low} to {high}")
    return int(text)


def _limit(query: Any) -> int:
    text = query.get("limit", str(AUDIT_LIMIT))
    # isdigit() alone takes "²", which int() refuses: ASCII digits only, few of them
    if not (text.isascii() and text.isdigit() and len(text) <= 4) or not 1 <= int(text) <= _MAX_AUDIT:
        raise BadRequest(f"limit: a whole number from 1 to {_MAX_AUDIT}")
    return int(text)


# -- JSON handlers ------------------------------------------------------------------------------


def _json(obj: object) -> web.Response:
    return web.Response(body=msgspec.json.encode(obj), content_type="application/json")


class _Api:
    """The JSON handlers: each authenticates, checks the tenant, reads, encodes."""

    def __init__(
        self,
        store: Store,
        principal: Callable[[web.Request], Awaitable[Principal]],
        clock: Callable[[], float],
    ) -> None:
        self.store, self.principal, self.clock = store, principal, clock

    def tenant_route(self, path: str, read: Callable[[web.Request, str], Awaitable[object]]) -> web.RouteDef:
        async def handle(request: web.Request) -> web.StreamResponse:
            who = await self.principal(request)
            tenant = await tenant_for(self.store, who, request.match_info["tenant"])
            out = await read(request, tenant.name)
            return out if isinstance(out, web.StreamResponse) else _json(out)

        return web.get(f"/api/v1/tenants/{{tenant}}{path}", handle)

    async def me(self, request: web.Request) -> web.StreamResponse:
        who = await self.principal(request)
        return _json({"token_id": who.token_id, "role": who.role, "tenant": who.tenant})

    async def tenants(self, request: web.Request) -> web.StreamResponse:
        return _json(await visible_tenants(self.store, await self.principal(request)))

    async def all_audit(self, request: web.Request) -> web.StreamResponse:
        who = await self.principal(request)
        if who.role != "operator":
            raise PermissionError("audit")
        return _json(await audit_of(self.store, None, _limit(request.query)))

    async def tenant(self, request: web.Request, name: str) -> object:
        return await self.store.get_tenant(name)

    async def usage(self, request: web.Request, name: str) -> object:
        return await self.store.usage(name, *range_of(request.query).days)

    async def quota(self, request: web.Request, name: str) -> object:
        return await quota_of(self.store, name, self.clock())

    async def refusals(self, request: web.Request, name: str) -> object:
        return refusals_of(await self.store.usage(name, *range_of(request.query).days))

    async def kpi(self, request: web.Request, name: str) -> object:
        return await kpi_of(self.store, name, range_of(request.query))

    async def funnel(self, request: web.Request, name: str) -> object:
        stages = stages_of(request.query.get("stages"))
        if len(stages) < 2:
            raise BadRequest("stages: name at least two metrics, comma-separated")
        ttv = request.query.get("time_metric") or None
        return await funnel_of(self.store, name, stages, range_of(request.query), ttv)

    async def privacy(self, request: web.Request, name: str) -> object:
        return await governance_of(self.store, name, range_of(request.query))

    async def policies(self, request: web.Request, name: str) -> object:
        return await self.store.list_policies(name)

    async def agents(self, request: web.Request, name: str) -> object:
        q = request.query
        limit = _whole(q, "limit", AGENTS_LIMIT, 1, _MAX_AGENTS)
        offset = _whole(q, "offset", 0, 0, _MAX_OFFSET)
        found = await agents_of(self.store, name, self.clock(), limit, offset)
        out = _json(found.agents)  # a list, as before paging: the total rides in a header
        out.headers["X-Total-Count"] = str(found.total)
        return out

    async def audit(self, request: web.Request, name: str) -> object:
        return await audit_of(self.store, name, _limit(request.query))


def routes(
    store: Store,
    principal: Callable[[web.Request], Awaitable[Principal]],
    clock: Callable[[], float] = time.time,
) -> list[web.RouteDef]:
    """The API's GET routes; ``principal`` returns who asks (or raises for a bad token)."""
    a = _Api(store, principal, clock)
    return [
        web.get("/api/v1/me", a.me),
        web.get("/api/v1/tenants", a.tenants),
        web.get("/api/v1/audit", a.all_audit),
        a.tenant_route("", a.tenant),
        a.tenant_route("/usage", a.usage),
        a.tenant_route("/quota", a.quota),
        a.tenant_route("/refusals", a.refusals),
        a.tenant_route("/kpi", a.kpi),
        a.tenant_route("/funnel", a.funnel),
        a.tenant_route("/privacy", a.privacy),
        a.tenant_route("/policies", a.policies),
        a.tenant_route("/agents", a.agents),
        a.tenant_route("/audit", a.audit),
    ]
