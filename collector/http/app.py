"""The HTTP server of the collector: read-only JSON API and dashboard on one port (issue 14).

aiohttp, in the collector's own event loop next to gRPC (:func:`http_server`). Bounds: request line
and header sizes and count, body size (only the login form has one), concurrent connections (more
are closed at once), keep-alive time. Every response carries a ``default-src 'self'``
Content-Security-Policy and no-sniff/no-frame/no-referrer headers; no error ever shows a traceback
(API errors are ``{"error": "..."}``, page errors a short page; details go to the server log).

Auth (:mod:`collector.http.auth`): the API takes ``Authorization: Bearer <token>``; the dashboard
also reads the token from an HttpOnly, ``SameSite=Strict`` cookie (``Secure`` over TLS) set by the
login form — an HttpOnly cookie rather than sessionStorage because script can never read it (an
injection could not steal the token) and because the pages are server-rendered and readable without
JavaScript. SameSite=Strict keeps other sites' pages from sending it; the two POSTs (login, logout)
also refuse a foreign ``Origin``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import msgspec
from aiohttp import web

from collector.errors import NotFound, Unavailable
from collector.http import api, pages
from collector.http.auth import COOKIE, DeniedLog, Principal, authenticate, bearer
from collector.store import Store
from collector.store.rules import day_of
from collector.tls import ServerTls, is_loopback
from hushmetric.errors import ConfigError

__all__ = ["HttpLimits", "build_app", "http_server", "plaintext_http", "secure_cookies", "server_ssl"]

log = logging.getLogger("hush.collector.http")

CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
_WHO: web.RequestKey[Principal] = web.RequestKey("who", Principal)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpLimits(msgspec.Struct, frozen=True):
    max_connections: int = 64
    max_body: int = 16 * 1024  # the login form
    max_line: int = 4096
    max_field: int = 8190
    max_headers: int = 64
    keepalive: float = 15.0


class Unauthorized(Exception):
    """No usable token; ``presented`` tells whether one was sent (audited) or none at all."""

    def __init__(self, presented: bool) -> None:
        super().__init__("a valid API token is required")
        self.presented = presented


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


class _Site:
    """The handlers and middleware of one app; see the module docstring."""

    def __init__(
        self, store: Store, *, secure: bool, clock: Callable[[], float], secure_cookie: bool | None = None
    ) -> None:
        self.store = store
        self.secure = secure
        self.secure_cookie = secure if secure_cookie is None else secure_cookie
        self.clock = clock
        self.denied = DeniedLog(store, clock)

    async def who_is(self, request: web.Request, *, cookie: bool = True) -> Principal:
        token = bearer(request.headers.get("Authorization"))
        if token is None and cookie:
            token = request.cookies.get(COOKIE)
        who = await authenticate(self.store, token, self.clock())
        if who is None:
            raise Unauthorized(token is not None)
        request[_WHO] = who
        return who

    async def api_principal(self, request: web.Request) -> Principal:
        return await self.who_is(request, cookie=False)

    @staticmethod
    def reply(request: web.Request, status: int, message: str) -> web.Response:
        if _is_api(request):
            resp = web.json_response({"error": message}, status=status)
            if status == 401:
                resp.headers["WWW-Authenticate"] = 'Bearer realm="hushmetric"'
            return resp
        if status == 401:  # back to the login form; a cookie that no longer opens anything goes
            resp = web.Response(text=pages.login_page(message), status=401, content_type="text/html")
            if COOKIE in request.cookies:
                resp.del_cookie(COOKIE, path="/")
            return resp
        text = pages.error_page(status, message, request.get(_WHO))
        return web.Response(text=text, status=status, content_type="text/html")

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Unauthorized as exc:
            if exc.presented or _is_api(request):
                await self.denied.denied("unauthorized", None, path=request.path, token_id=None)
            if not _is_api(request) and not exc.presented:
                raise web.HTTPSeeOther("/login") from None
            return self.reply(request, 401, "a valid API token is required")
        except PermissionError:
            who = request.get(_WHO)
            tenant, token_id = (who.tenant, who.token_id) if who else (None, None)
            await self.denied.denied("forbidden", tenant, path=request.path, token_id=token_id)
            return self.reply(request, 403, "this token may not read that")
        except NotFound as exc:
            return self.reply(request, 404, exc.message)
        except api.BadRequest as exc:
            return self.reply(request, 400, str(exc))
        except Unavailable as exc:
            log.warning("HTTP %s %s: %s", request.method, request.path, exc.message)
            return self.reply(request, 503, "the collector's database is unavailable; try again")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return self.reply(request, exc.status, exc.reason)
        except Exception:  # never a traceback to the client; the log has it
            log.exception("HTTP %s %s failed", request.method, request.path)
            return self.reply(request, 500, "internal error; see the collector's log")

    async def headers(self, request: web.Request, response: web.StreamResponse) -> None:
        h = response.headers
        h["Content-Security-Policy"] = CSP
        h["X-Content-Type-Options"] = "nosniff"
        h["X-Frame-Options"] = "DENY"
        h["Referrer-Policy"] = "no-referrer"
        h["Server"] = "hush-collector"
        h.setdefault("Cache-Control", "no-store")
        if self.secure:
            h["Strict-Transport-Security"] = "max-age=31536000"

    @staticmethod
    def same_origin(request: web.Request) -> None:
        """Refuse a POST another site's page sent (login CSRF would sign the victim in with the
        attacker's token). The browser's Sec-Fetch-Site decides when it is sent (script cannot set
        it); pages here send no referrer, so a browser's own form POST carries ``Origin: null``,
        and that header alone cannot tell this site's form from a sandboxed frame or data: page of
        another site. Without Sec-Fetch-Site the Origin must name this host, and ``null`` is
        refused. A client sending neither is not a browser, and has no cookie to abuse."""
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if fetch_site is not None:
            if fetch_site not in ("same-origin", "none"):
                raise PermissionError("origin")
            return
        origin = request.headers.get("Origin")
        if origin is not None and (origin == "null" or urlsplit(origin).netloc != request.host):
            raise PermissionError("origin")

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=pages.login_page(), content_type="text/html")

    async def login(self, request: web.Request) -> web.StreamResponse:
        self.same_origin(request)
        form = await request.post()
        token = str(form.get("token", "")).strip()
        if await authenticate(self.store, token, self.clock()) is None:
            raise Unauthorized(True)
        resp = _see_other("/")
        resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=self.secure_cookie, path="/")
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.same_origin(request)
        resp = _see_other("/login")
        resp.del_cookie(COOKIE, path="/")
        return resp

    async def home(self, request: web.Request) -> web.StreamResponse:
        who = await self.who_is(request)
        if who.role == "viewer" and who.tenant is not None:
            raise web.HTTPSeeOther(f"/t/{quote(who.tenant, safe='')}")
        tenants = await api.visible_tenants(self.store, who)
        now = self.clock()
        today = await self.store.usage(None, day_of(now), day_of(now))
        return web.Response(text=pages.overview_page(who, tenants, today, now), content_type="text/html")

    async def tenant_page(self, request: web.Request) -> web.StreamResponse:
        store = self.store
        who = await self.who_is(request)
        tenant = await api.tenant_for(store, who, request.match_info["tenant"])
        q = request.query
        query = {k: q[k][:1000] for k in ("since", "until", "stages") if q.get(k)}
        r = api.range_of(q)
        stages = api.stages_of(q.get("stages"))
        now = self.clock()
        usage = await store.usage(tenant.name, *r.days)
        agents = await api.agents_of(store, tenant.name, now)  # the first AGENTS_LIMIT, with badges
        page = pages.TenantPage(
            tenant=tenant,
            query=query,
            usage=usage,
            quota=await api.quota_of(store, tenant.name, now),
            refusals=api.refusals_of(usage),
            kpi=await api.kpi_of(store, tenant.name, r),
            funnel=await api.funnel_of(store, tenant.name, stages, r) if len(stages) >= 2 else None,
            governance=await api.governance_of(store, tenant.name, r),
            agents=agents.agents,
            badges=agents.badges,
            audit=await api.audit_of(store, tenant.name, api.AUDIT_LIMIT),
            agents_total=agents.total,
        )
        tenants = await api.visible_tenants(store, who)
        return web.Response(text=pages.tenant_page(who, tenants, page, now), content_type="text/html")


def _see_other(location: str) -> web.Response:
    """A 303 to ``location`` that carries cookies (a returned HTTPException is deprecated in aiohttp
    and warns on every login and logout)."""
    return web.Response(status=303, headers={"Location": location})


def _asset(name: str, content_type: str) -> Handler:
    body = importlib.resources.files("collector.http").joinpath("static", name).read_bytes()

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type, headers={"Cache-Control": "no-cache"})

    return handle


def build_app(
    store: Store,
    *,
    secure: bool,
    clock: Callable[[], float] = time.time,
    limits: HttpLimits | None = None,
    secure_cookie: bool | None = None,
) -> web.Application:
    """The aiohttp application: dashboard pages, login/logout, static assets and the JSON API.
    ``secure``: served over TLS (HSTS); ``secure_cookie`` (default: ``secure``): the token cookie
    is ``Secure`` (see :func:`secure_cookies`)."""
    site = _Site(store, secure=secure, clock=clock, secure_cookie=secure_cookie)
    app = web.Application(middlewares=[site.errors], client_max_size=(limits or HttpLimits()).max_body)
    app.on_response_prepare.append(site.headers)
    app.add_routes(
        [
            web.get("/", site.home),
            web.get("/t/{tenant}", site.tenant_page),
            web.get("/login", site.login_form),
            web.post("/login", site.login),
            web.post("/logout", site.logout),
            web.get("/static/app.css", _asset("app.css", "text/css")),
            web.get("/static/app.js", _asset("app.js", "text/javascript")),
            *api.routes(store, site.api_principal, clock),
        ]
    )
    return app


class _Refuse(asyncio.Protocol):
    """Closes a connection beyond the limit at once (the client may retry)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


@contextlib.asynccontextmanager
async def http_server(
    store: Store,
    listen: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    clock: Callable[[], float] = time.time,
    limits: HttpLimits | None = None,
    secure_cookie: bool | None = None,
) -> AsyncIterator[str]:
    """Serve the API and dashboard on ``listen`` (``HOST:PORT``; port 0 picks a free one) while the
    block runs; yields the bound URL. OSError when the address cannot be bound."""
    limits = limits or HttpLimits()
    app = build_app(
        store, secure=ssl_context is not None, clock=clock, limits=limits, secure_cookie=secure_cookie
    )
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        keepalive_timeout=limits.keepalive,
        max_line_size=limits.max_line,
        max_field_size=limits.max_field,
        max_headers=limits.max_headers,
    )
    await runner.setup()
    server = runner.server
    assert server is not None  # set by setup()

    def factory() -> Any:
        return _Refuse() if len(server.connections) >= limits.max_connections else server()

    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    try:
        srv = await asyncio.get_running_loop().create_server(
            factory, host or None, int(port), ssl=ssl_context, reuse_address=True
        )
    except BaseException:
        await runner.cleanup()
        raise
    try:
        bound = srv.sockets[0].getsockname()[1]
        shown = f"[{host}]" if ":" in host else host or "0.0.0.0"  # noqa: S104  # only what was asked for
        yield f"{'https' if ssl_context else 'http'}://{shown}:{bound}/"
    finally:
        srv.close()
        await runner.cleanup()
        await srv.wait_closed()


def server_ssl(tls: ServerTls) -> ssl.SSLContext:
    """A TLS 1.2+ server context from the gRPC port's certificate and key (no client certificates:
    browsers have none); ConfigError naming the file when they cannot serve."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot serve HTTPS with {tls.cert}: {exc}", key="--tls-cert") from exc
    return ctx


def secure_cookies(listen: str, *, tls: bool) -> bool:
    """Whether the token cookie is ``Secure``: over TLS, and in plaintext beyond loopback too, which
    ``serve`` allows only behind a TLS-terminating proxy (``--insecure``): the browser talks HTTPS
    to the proxy, and a cookie without the flag would also go out over any plain-HTTP request to
    the same host. On loopback, plaintext is the real scheme and the cookie must come back."""
    return tls or not is_loopback(listen)


def plaintext_http(listen: str, *, insecure: bool) -> str | None:
    """None for loopback; the warning for plaintext elsewhere with ``insecure``; ConfigError otherwise."""
    if is_loopback(listen):
        return None
    if not insecure:
        raise ConfigError(
            f"refusing plaintext HTTP on {listen}, which other hosts can reach: pass --tls-cert and "
            "--tls-key, or --insecure behind a TLS-terminating proxy",
            key="--http",
        )
    return (
        f"WARNING: serving the API and dashboard in plaintext on {listen} (--insecure): "
        "tokens cross the network in clear; terminate TLS in front of this port"
    )
