"""The operating commands of ``hush-collector``: serve, usage, audit export/verify, import, and the
report/funnel commands over the reports engine."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from collector import audit
from collector.cli.kit import Context, check_bound, check_day, open_for, signing_key
from collector.cli.outputs import pushers
from collector.cli.tables import format_usage
from collector.config import CollectorConfig, load_config
from collector.errors import AuditError, NotFound, Unavailable
from collector.importer import import_bundle
from collector.ingest import IngestSettings
from collector.store import Store
from collector.store.db import sqlite_path
from collector.store.pg.url import redact_url
from collector.tls import ServerTls
from hushmetric.errors import ConfigError
from hushmetric.exitcodes import ExitCode
from hushmetric.keys import read_public_key_arg
from hushmetric.timefmt import format_rfc3339

if TYPE_CHECKING:  # gRPC loads only for the server
    import grpc

    from collector.tls import Reloader

__all__ = ["audit_cmd", "import_cmd", "reports_cmd", "serve_cmd", "tls_cmd", "usage_cmd"]


async def usage_cmd(ctx: Context) -> int:
    a = ctx.args
    since, until = check_day(a.since, "--since"), check_day(a.until, "--until")
    async with open_for(ctx, signed=False) as store:
        if a.tenant and await store.get_tenant(a.tenant) is None:
            raise NotFound("tenant", a.tenant)
        days = await store.usage(a.tenant, since, until)
    ctx.out.write(format_usage(days, a.format))
    return ExitCode.OK


async def audit_cmd(ctx: Context) -> int:
    a = ctx.args
    if a.action == "verify":
        public = read_public_key_arg(a.public_key)
        try:
            lines = (await asyncio.to_thread(Path(a.file).read_bytes)).splitlines()
        except OSError as exc:
            raise Unavailable(f"cannot read {a.file}: {exc.strerror or exc}") from exc
        try:
            result = audit.verify(lines, public)
        except AuditError as exc:
            raise AuditError(f"{a.file}: {exc.message}", line=exc.line) from exc
        ctx.say(f"verified {result.count} entries; head {result.head}")
        return ExitCode.OK
    key = signing_key(ctx)
    async with open_for(ctx, signed=False) as store:
        if a.tenant and await store.get_tenant(a.tenant) is None:
            raise NotFound("tenant", a.tenant)
        entries = await store.audit_entries()
    lines = list(audit.export_lines(entries, key, ts=format_rfc3339(ctx.clock()), tenant=a.tenant))
    body = b"".join(line + b"\n" for line in lines)
    if a.out:
        try:
            await asyncio.to_thread(Path(a.out).write_bytes, body)
        except OSError as exc:
            raise Unavailable(f"cannot write {a.out}: {exc.strerror or exc}") from exc
        print(f"exported {len(entries)} entries to {a.out}", file=ctx.err)
    else:
        ctx.out.write(body.decode())
    return ExitCode.OK


async def import_cmd(ctx: Context) -> int:
    failed = False
    async with open_for(ctx) as store:
        for name in ctx.args.files:
            try:
                fh = await asyncio.to_thread(Path(name).open, "rb")
            except FileNotFoundError as exc:
                raise NotFound("file", name) from exc
            except OSError as exc:
                raise Unavailable(f"cannot read {name}: {exc.strerror or exc}") from exc
            with fh:  # streamed: the importer checks the size first and reads one member at a time
                report = await import_bundle(store, fh, now=ctx.clock())
            refused = sum(report.refused.values())
            reasons = ", ".join(f"{r}={n}" for r, n in sorted(report.refused.items()))
            line = f"{name}: accepted {report.accepted}, duplicate {report.duplicate}, refused {refused}"
            if report.certificate is not None:  # issue 14: the bundle's certificate member
                line += f"; certificate {report.certificate}"
                failed = failed or report.certificate.startswith("refused")
            ctx.say(
                line + (f" ({reasons})" if reasons else "") + (f": {report.error}" if report.error else "")
            )
            await store.append_audit(
                "bundle.import",
                report.tenant,
                {
                    "file": Path(name).name,
                    "accepted": report.accepted,
                    "duplicate": report.duplicate,
                    "refused": refused,
                },
                now=ctx.clock(),
            )
            failed = failed or refused > 0
    return ExitCode.FAILED if failed else ExitCode.OK


def _server_tls(ctx: Context, config: CollectorConfig, cfg_path: str | None) -> ServerTls | None:
    """TLS files from the flags (relative to the working directory) or else from the config file
    (relative to its directory); None for plaintext."""
    a = ctx.args
    base = Path(cfg_path).resolve().parent if cfg_path else Path()

    def pick(flag: str | None, value: str | None) -> Path | None:
        if flag:
            return Path(flag)
        return None if value is None else base / value

    cert, key, client_ca = (
        pick(a.tls_cert, config.tls_cert),
        pick(a.tls_key, config.tls_key),
        pick(a.client_ca, config.client_ca),
    )
    if (cert is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key go together (or tls_cert and tls_key in the config)")
    if cert is None or key is None:
        if client_ca is not None:
            raise ConfigError("mutual TLS needs --tls-cert and --tls-key too", key="--client-ca")
        return None
    return ServerTls(cert, key, client_ca)


def _transport(
    ctx: Context, config: CollectorConfig, cfg_path: str | None, listen: str
) -> tuple[grpc.ServerCredentials | None, Reloader | None]:
    """The gRPC port's credentials and certificate reloader (both None for plaintext), announced on
    stderr: the TLS mode, or the warning for plaintext beyond loopback."""
    server_tls = _server_tls(ctx, config, cfg_path)
    if server_tls is None:
        from collector.tls import plaintext_warning

        warning = plaintext_warning(listen, insecure=ctx.args.insecure or config.insecure)
        if warning:
            print(f"hush-collector: {warning}", file=ctx.err, flush=True)
        return None, None
    from collector.tls import server_credentials

    credentials, reloader = server_credentials(server_tls)
    mode = "mutual TLS" if server_tls.client_ca is not None else "TLS"
    print(
        f"hush-collector: {mode} on the gRPC port (certificates reload on change or SIGHUP)",
        file=ctx.err,
        flush=True,
    )
    return credentials, reloader


@contextlib.asynccontextmanager
async def _http(
    ctx: Context, config: CollectorConfig, cfg_path: str | None, store: Store
) -> AsyncIterator[str | None]:
    """The API and dashboard on ``--http`` (or ``http_listen``) while the block runs: TLS with the
    gRPC port's certificate when given, plaintext on loopback (elsewhere only with --insecure)."""
    listen = ctx.args.http or config.http_listen
    if not listen:
        yield None
        return
    from collector.http.app import (  # aiohttp loads only when asked
        http_server,
        plaintext_http,
        secure_cookies,
        server_ssl,
    )

    server_tls = _server_tls(ctx, config, cfg_path)
    ssl_context = None
    if server_tls is None:
        warning = plaintext_http(listen, insecure=ctx.args.insecure or config.insecure)
        if warning:
            print(f"hush-collector: {warning}", file=ctx.err, flush=True)
    else:
        ssl_context = server_ssl(server_tls)
    async with contextlib.AsyncExitStack() as stack:
        try:
            secure_cookie = secure_cookies(listen, tls=ssl_context is not None)
            url = await stack.enter_async_context(
                http_server(store, listen, ssl_context=ssl_context, secure_cookie=secure_cookie)
            )
        except OSError as exc:
            raise Unavailable(f"cannot listen on {listen}: {exc}") from exc
        yield url


async def serve_cmd(ctx: Context) -> int:
    a = ctx.args
    config = load_config(Path(a.config)) if a.config else CollectorConfig()
    cfg_path = a.config
    if a.db is None and config.db is not None:
        a.db = config.db
    if a.key is None and config.key_file is not None:
        a.key = config.key_file
    listen = a.listen or config.listen
    if not listen:
        raise ConfigError("--listen HOST:PORT is required (or `listen` in the config file)")
    credentials, reloader = _transport(ctx, config, cfg_path, listen)
    settings = IngestSettings(
        max_clock_skew_seconds=config.max_clock_skew,
        default_max_batch_bytes=config.default_max_batch_bytes,
    )
    grace = float(config.shutdown_grace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if reloader is not None:  # certificates also reload by themselves when their files change
        loop.add_signal_handler(signal.SIGHUP, reloader.request)
    metrics_addr = a.metrics_listen or config.metrics_listen
    observer = None
    metrics = None
    if metrics_addr:
        from collector.metrics import IngestMetrics  # Prometheus is loaded only when asked for

        metrics = IngestMetrics()
        metrics.start(metrics_addr)
        observer = metrics.observe

    from collector.server import serve  # gRPC loads only for the server

    http_url: list[str] = []  # known once the HTTP port is bound, printed after the gRPC address

    def bound(address: str) -> None:
        ctx.say(address)
        for url in http_url:
            ctx.say(url)
        print(f"hush-collector: serving {redact_url(ctx.db)} on {address}", file=ctx.err, flush=True)
        for url in http_url:
            print(f"hush-collector: API and dashboard on {url}", file=ctx.err, flush=True)

    db_file = sqlite_path(ctx.db)
    if db_file is not None:  # a SQLite file: check it, quarantine what is unreadable, then serve
        from collector.store.integrity import check_db

        check = await asyncio.to_thread(check_db, db_file)
        if not check.ok:
            print(f"hush-collector: {check.message()}", file=ctx.err, flush=True)
    try:
        async with (
            open_for(ctx) as store,
            pushers(
                store,
                remote_write=a.remote_write or config.remote_write,
                otlp_export=a.otlp_export or config.otlp_export,
                err=ctx.err,
            ),
            _http(ctx, config, cfg_path, store) as url,
        ):
            http_url.extend([url] if url else [])
            try:
                await serve(
                    store,
                    listen,
                    stop=stop,
                    on_bound=bound,
                    settings=settings,
                    observer=observer,
                    grace_seconds=grace,
                    credentials=credentials,
                    max_concurrent_rpcs=config.max_concurrent_rpcs,
                )
            except OSError as exc:
                raise Unavailable(f"cannot listen on {listen}: {exc}") from exc
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if metrics is not None:
            metrics.stop()
    print("hush-collector: stopped", file=ctx.err, flush=True)
    return ExitCode.OK


async def reports_cmd(ctx: Context) -> int:
    from collector.report.funnel import funnel_report  # reports load only for these commands
    from collector.report.governance import governance_section, spend_days
    from collector.report.kpi import kpi_report
    from collector.report.render import render

    a = ctx.args
    a.tenant = a.tenant_arg or a.tenant
    if not a.tenant:
        raise ConfigError("name the tenant: `hush-collector report TENANT`", key="TENANT")
    async with open_for(ctx, signed=False) as store:
        if await store.get_tenant(a.tenant) is None:
            raise NotFound("tenant", a.tenant)
        since, until = check_bound(a.since, "--since"), check_bound(a.until, "--until")
        rows = await store.released_rows(a.tenant, since, until)
        if a.command == "funnel":
            stages = [s.strip() for s in a.stages.split(",") if s.strip()]
            if len(stages) < 2:
                raise ConfigError("name at least two stages", key="--stages")
            report: object = funnel_report(rows, tenant=a.tenant, stages=stages, ttv_metric=a.time_metric)
        else:
            privacy = await store.batch_privacy(a.tenant, since, until)
            usage = await store.usage(a.tenant, since[:10] if since else None, None)
            q = await store.get_quota(a.tenant)
            limits = {
                "rows_per_day": q.rows_per_day,
                "rows_per_month": q.rows_per_month,
                "bytes_per_day": q.bytes_per_day,
            }
            governed = governance_section(
                await store.list_policies(a.tenant),
                await store.policy_batches(a.tenant, since, until),
                await store.get_privacy_cap(a.tenant),
                await store.privacy_spend(a.tenant, *spend_days(since, until)),
                await store.agent_certificates(a.tenant, now=ctx.clock()),  # issue 14: badges
                ctx.clock(),
            )
            report = kpi_report(
                rows,
                privacy,
                usage,
                tenant=a.tenant,
                since=since,
                until=until,
                quota=limits,
                governance=governed,
            )
    windows = not getattr(a, "totals", False)
    text = render(report, a.format, windows=windows)  # type: ignore[arg-type]  # KpiReport | FunnelReport
    data = text if isinstance(text, bytes) else text.encode()
    if a.out:
        try:
            await asyncio.to_thread(Path(a.out).write_bytes, data)
        except OSError as exc:
            raise ConfigError(f"cannot write report: {exc.strerror or exc}", key="--out") from exc
        print(f"wrote {a.command} report ({a.format}, {len(data)} bytes) to {a.out}", file=ctx.err)
        return ExitCode.OK
    ctx.out.write(data.decode() + ("" if data.endswith(b"\n") else "\n"))
    return ExitCode.OK


async def tls_cmd(ctx: Context) -> int:
    """``tls selfsigned``: a throw-away CA, a server and a client certificate to try (mutual) TLS."""
    from collector.pki import write_selfsigned

    a = ctx.args
    out = Path(a.out)
    written = await asyncio.to_thread(write_selfsigned, out, names=a.name or (), days=a.days, force=a.force)
    for path in written:
        ctx.say(str(path))
    print(
        f"hush-collector: wrote a throw-away CA and certificates valid {a.days} days (keys 0600); try:\n"
        f"  hush-collector serve --listen 127.0.0.1:7443 --tls-cert {out / 'server.pem'} "
        f"--tls-key {out / 'server.key'} --client-ca {out / 'ca.pem'}\n"
        f'  agent.toml [collector]: tls = true, ca_file = "{out / "ca.pem"}", '
        f'client_cert = "{out / "client.pem"}", client_key = "{out / "client.key"}"',
        file=ctx.err,
    )
    return ExitCode.OK
