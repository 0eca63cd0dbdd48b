"""What each ``hush-collector`` command does, given parsed arguments. :mod:`collector.cli` parses,
maps errors to exit codes and prints them; everything here returns an exit status or raises a
:class:`~hushmetric.errors.HushError`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import msgspec
import nacl.signing

from collector import audit, enroll
from collector.config import CollectorConfig, load_config, seconds
from collector.db import DEFAULT_DB, default_key_path, open_store, sqlite_path
from collector.errors import AuditError, Conflict, NotFound, Unavailable
from collector.importer import import_bundle
from collector.ingest import IngestSettings
from collector.store import UNATTRIBUTED, Store, TenantState, day_of
from collector.tables import format_usage, keys_table, tenants_table
from hushmetric.errors import ConfigError
from hushmetric.keys import generate_signing_key, load_signing_key, public_key_b64, read_public_key_arg
from hushmetric.timefmt import format_rfc3339, parse_duration, parse_rfc3339

__all__ = ["QUOTA_FLAGS", "Context", "run"]

QUOTA_FLAGS = (
    "batches_per_second",
    "burst",
    "rows_per_day",
    "rows_per_month",
    "bytes_per_day",
    "max_batch_bytes",
)
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")  # the wire contract's tenant and agent ids
_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class Context:
    args: argparse.Namespace
    env: Mapping[str, str]
    out: TextIO
    err: TextIO
    clock: Callable[[], float] = time.time

    @property
    def db(self) -> str:
        return str(self.args.db or self.env.get("HUSH_COLLECTOR_DB") or DEFAULT_DB)

    @property
    def key_path(self) -> Path:
        given = self.args.key or self.env.get("HUSH_COLLECTOR_KEY")
        return Path(given) if given else default_key_path(self.db)

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def _signing_key(ctx: Context) -> nacl.signing.SigningKey:
    if not ctx.key_path.exists():
        raise Unavailable(f"collector key {ctx.key_path} not found; run `hush-collector init` first")
    return load_signing_key(ctx.key_path)


@contextlib.asynccontextmanager
async def _store(ctx: Context, *, signed: bool = True) -> AsyncIterator[Store]:
    store = await open_store(ctx.db, signing_key=_signing_key(ctx) if signed else None)
    try:
        yield store
    finally:
        await store.close()


def _check_id(value: str, what: str) -> None:
    if not _ID.match(value) or value == UNATTRIBUTED:
        raise ConfigError(
            f"{value[:40]!r} must be 1-128 characters of A-Z a-z 0-9 . _ : @ - (and not '-')", key=what
        )


def _json_line(ctx: Context, obj: object) -> None:
    ctx.say(_json.encode(obj).decode())


async def _init(ctx: Context) -> int:
    path = sqlite_path(ctx.db)
    existed = path is not None and path.exists()
    if ctx.key_path.exists():
        key = load_signing_key(ctx.key_path)
    elif existed:
        raise Conflict(f"{ctx.db} exists but its key {ctx.key_path} is missing; restore the key file")
    else:
        key = generate_signing_key(ctx.key_path)
    store = await open_store(ctx.db, signing_key=key, create=True)
    try:
        if not await store.audit_entries():
            details = {"public_key": public_key_b64(bytes(key.verify_key))}
            await store.append_audit("collector.init", None, details, now=ctx.clock())
    finally:
        await store.close()
    ctx.say(f"initialised {ctx.db} (audit key {ctx.key_path})")
    return 0


async def _pubkey(ctx: Context) -> int:
    ctx.say(public_key_b64(bytes(_signing_key(ctx).verify_key)))
    return 0


async def _tenant(ctx: Context) -> int:
    a = ctx.args
    async with _store(ctx, signed=a.action != "list") as store:
        if a.action == "list":
            tenants = await store.list_tenants()
            if a.json:
                _json_line(
                    ctx,
                    [
                        {"name": t.name, "state": t.state, "created": format_rfc3339(t.created)}
                        for t in tenants
                    ],
                )
            else:
                ctx.out.write(tenants_table(tenants))
            return 0
        if a.action == "create":
            _check_id(a.name, "tenant name")
            tenant = await store.create_tenant(a.name, now=ctx.clock())
        else:
            states: dict[str, TenantState] = {"suspend": "suspended", "resume": "active", "delete": "deleted"}
            state = states[a.action]
            tenant = await store.set_tenant_state(a.name, state, now=ctx.clock())
        ctx.say(f"tenant {tenant.name}: {tenant.state}")
    return 0


async def _key(ctx: Context) -> int:
    a = ctx.args
    async with _store(ctx, signed=a.action != "list") as store:
        if a.action == "add":
            _check_id(a.agent, "--agent")
            public = read_public_key_arg(a.public_key)
            record = await store.add_key(a.tenant, a.agent, public, now=ctx.clock())
            ctx.say(record.key_id)
        elif a.action == "list":
            if a.tenant and await store.get_tenant(a.tenant) is None:
                raise NotFound("tenant", a.tenant)
            keys = await store.list_keys(a.tenant)
            if a.json:
                _json_line(
                    ctx,
                    [
                        {
                            "key_id": k.key_id,
                            "tenant": k.tenant,
                            "agent": k.agent,
                            "state": k.state,
                            "public_key": public_key_b64(k.public_key),
                            "added": format_rfc3339(k.added),
                            "retired_at": format_rfc3339(k.retired_at) if k.retired_at else None,
                            "revoked_at": format_rfc3339(k.revoked_at) if k.revoked_at else None,
                        }
                        for k in keys
                    ],
                )
            else:
                ctx.out.write(keys_table(keys))
        else:
            record = await store.set_key_state(
                a.key_id, "retired" if a.action == "retire" else "revoked", now=ctx.clock()
            )
            ctx.say(f"key {record.key_id}: {record.state}")
    return 0


def _duration(text: str, flag: str) -> int:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(str(exc), key=flag) from exc
    if value <= 0:
        raise ConfigError("must be positive", key=flag)
    return value


async def _enroll_token(ctx: Context) -> int:
    ttl = _duration(ctx.args.ttl, "--ttl")
    async with _store(ctx) as store:
        ctx.say(await enroll.issue_token(store, ctx.args.tenant, ttl_seconds=ttl, now=ctx.clock()))
    return 0


def _quota_value(flag: str, text: str) -> float | int | None:
    if text.strip().lower() == "none":
        return None
    name = "--" + flag.replace("_", "-")
    try:
        value: float | int = float(text) if flag == "batches_per_second" else int(text)
    except ValueError as exc:
        raise ConfigError(f"expected a number or 'none', got {text!r}", key=name) from exc
    if not value > 0:
        raise ConfigError("must be positive", key=name)
    return value


async def _quota(ctx: Context) -> int:
    a = ctx.args
    async with _store(ctx, signed=a.action == "set") as store:
        quota = await store.get_quota(a.tenant)
        if a.action == "set":
            changes: dict[str, float | int | None] = {
                f: _quota_value(f, getattr(a, f)) for f in QUOTA_FLAGS if getattr(a, f) is not None
            }
            if a.max_age is not None:
                changes["max_age_seconds"] = (
                    None if a.max_age == "none" else _duration(a.max_age, "--max-age")
                )
            if not changes:
                raise ConfigError("name at least one limit to set (see --help)")
            quota = await store.set_quota(msgspec.structs.replace(quota, **changes), now=ctx.clock())
        today = day_of(ctx.clock())
        used = next(iter(await store.usage(a.tenant, today, today)), None)
    doc = msgspec.to_builtins(quota)
    doc["today"] = {
        "day": today,
        "batches": used.batches if used else 0,
        "rows": used.rows if used else 0,
        "bytes": used.bytes if used else 0,
    }
    if getattr(a, "json", False):
        _json_line(ctx, doc)
    else:
        for name, value in doc.items():
            if name != "today":
                ctx.say(f"{name:20} {'unlimited' if value is None else value}")
        ctx.say(
            f"{'used today':20} {doc['today']['rows']} rows, {doc['today']['bytes']} bytes, "
            f"{doc['today']['batches']} batches"
        )
    return 0


def _day(text: str | None, flag: str) -> str | None:
    if text is not None and not _DAY.match(text):
        raise ConfigError("expected a date YYYY-MM-DD", key=flag)
    return text


async def _usage(ctx: Context) -> int:
    a = ctx.args
    since, until = _day(a.since, "--since"), _day(a.until, "--until")
    async with _store(ctx, signed=False) as store:
        if a.tenant and await store.get_tenant(a.tenant) is None:
            raise NotFound("tenant", a.tenant)
        days = await store.usage(a.tenant, since, until)
    ctx.out.write(format_usage(days, a.format))
    return 0


async def _audit(ctx: Context) -> int:
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
        return 0
    key = _signing_key(ctx)
    async with _store(ctx, signed=False) as store:
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
    return 0


async def _import(ctx: Context) -> int:
    failed = False
    async with _store(ctx) as store:
        for name in ctx.args.files:
            try:
                data = await asyncio.to_thread(Path(name).read_bytes)
            except FileNotFoundError as exc:
                raise NotFound("file", name) from exc
            except OSError as exc:
                raise Unavailable(f"cannot read {name}: {exc.strerror or exc}") from exc
            report = await import_bundle(store, data, now=ctx.clock())
            refused = sum(report.refused.values())
            reasons = ", ".join(f"{r}={n}" for r, n in sorted(report.refused.items()))
            line = f"{name}: accepted {report.accepted}, duplicate {report.duplicate}, refused {refused}"
            ctx.say(
                line + (f" ({reasons})" if reasons else "") + (f": {report.error}" if report.error else "")
            )
            await store.append_audit(
                "bundle.import",
                None,
                {
                    "file": Path(name).name,
                    "accepted": report.accepted,
                    "duplicate": report.duplicate,
                    "refused": refused,
                },
                now=ctx.clock(),
            )
            failed = failed or refused > 0
    return 1 if failed else 0


async def _serve(ctx: Context) -> int:
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
    settings = IngestSettings(
        max_clock_skew_seconds=seconds(config, "max_clock_skew", path=cfg_path),
        default_max_batch_bytes=config.default_max_batch_bytes,
    )
    grace = float(seconds(config, "shutdown_grace", path=cfg_path))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics_addr = a.metrics_listen or config.metrics_listen
    observer = None
    metrics = None
    if metrics_addr:
        from collector.metrics import IngestMetrics  # Prometheus is loaded only when asked for

        metrics = IngestMetrics()
        metrics.start(metrics_addr)
        observer = metrics.observe

    from collector.server import serve  # gRPC loads only for the server

    def bound(address: str) -> None:
        ctx.say(address)
        print(f"hush-collector: serving {ctx.db} on {address}", file=ctx.err, flush=True)

    try:
        async with _store(ctx) as store:
            try:
                await serve(
                    store,
                    listen,
                    stop=stop,
                    on_bound=bound,
                    settings=settings,
                    observer=observer,
                    grace_seconds=grace,
                )
            except OSError as exc:
                raise Unavailable(f"cannot listen on {listen}: {exc}") from exc
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if metrics is not None:
            metrics.stop()
    print("hush-collector: stopped", file=ctx.err, flush=True)
    return 0


async def _reports(ctx: Context) -> int:
    from collector.funnel import funnel_report  # reports load only for these commands
    from collector.render import render
    from collector.report import kpi_report

    a = ctx.args
    async with _store(ctx, signed=False) as store:
        if await store.get_tenant(a.tenant) is None:
            raise NotFound("tenant", a.tenant)
        since, until = _bound(a.since, "--since"), _bound(a.until, "--until")
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
            report = kpi_report(rows, privacy, usage, tenant=a.tenant, since=since, until=until, quota=limits)
    text = render(report, a.format)  # type: ignore[arg-type]  # report is KpiReport | FunnelReport
    ctx.out.write(text.decode() + "\n" if isinstance(text, bytes) else text)
    return 0


def _bound(text: str | None, flag: str) -> str | None:
    """A date becomes its UTC midnight; an RFC 3339 stamp passes through."""
    if text is None:
        return None
    if _DAY.match(text):
        return f"{text}T00:00:00Z"
    try:
        parse_rfc3339(text)
    except ValueError as exc:
        raise ConfigError("expected YYYY-MM-DD or an RFC 3339 timestamp", key=flag) from exc
    return text


_COMMANDS: dict[str, Callable[[Context], Awaitable[int]]] = {
    "init": _init,
    "pubkey": _pubkey,
    "serve": _serve,
    "tenant": _tenant,
    "key": _key,
    "enroll-token": _enroll_token,
    "quota": _quota,
    "usage": _usage,
    "audit": _audit,
    "import": _import,
    "report": _reports,
    "funnel": _reports,
}


async def run(ctx: Context) -> int:
    return await _COMMANDS[ctx.args.command](ctx)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use hush-collector")
