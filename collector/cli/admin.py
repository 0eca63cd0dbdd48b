"""What each ``hush-collector`` command does, given parsed arguments. :mod:`collector.cli` parses,
maps errors to exit codes and prints them; everything here returns an exit status or raises a
:class:`~hushmetric.errors.HushError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from collector import enroll
from collector.cli import ops
from collector.cli.kit import Context, check_duration, check_id, json_line, open_for, signing_key
from collector.cli.tables import keys_table, tenants_table
from collector.errors import Conflict, NotFound, Unavailable
from collector.store import TenantState, day_of
from collector.store.db import open_store, sqlite_path
from collector.store.pg.url import redact_url
from hushmetric.errors import ConfigError
from hushmetric.exitcodes import ExitCode
from hushmetric.keys import generate_signing_key, load_signing_key, public_key_b64, read_public_key_arg
from hushmetric.timefmt import format_rfc3339

__all__ = ["QUOTA_FLAGS", "Context", "run"]

QUOTA_FLAGS = (
    "batches_per_second",
    "burst",
    "rows_per_day",
    "rows_per_month",
    "bytes_per_day",
    "max_batch_bytes",
)


async def _init(ctx: Context) -> int:
    path = sqlite_path(ctx.db)
    if path is not None:
        existed = path.exists()
    else:
        from collector.store.pg.store import pg_initialised  # asyncpg is an optional extra ([postgres])

        existed = await pg_initialised(ctx.db)
    if ctx.key_path.exists():
        key = load_signing_key(ctx.key_path)
    elif existed:
        raise Conflict(
            f"{redact_url(ctx.db)} exists but its key {ctx.key_path} is missing; restore the key file"
        )
    else:
        key = generate_signing_key(ctx.key_path)
    store = await open_store(ctx.db, signing_key=key, create=True)
    try:
        if not await store.audit_entries():
            details = {"public_key": public_key_b64(bytes(key.verify_key))}
            await store.append_audit("collector.init", None, details, now=ctx.clock())
    finally:
        await store.close()
    ctx.say(f"initialised {redact_url(ctx.db)} (audit key {ctx.key_path})")  # never a password
    return ExitCode.OK


async def _migrate(ctx: Context) -> int:
    """Bring an existing database to the current schema (also done at every start) and say so."""
    from collector.store.schema import MIGRATIONS

    newest = MIGRATIONS[-1][0]
    path = sqlite_path(ctx.db)
    if path is None:
        from collector.store.pg.store import open_pg_store  # asyncpg is an optional extra ([postgres])

        pg = await open_pg_store(ctx.db, migrate=False)
        try:
            before, after = await pg.migrate(create=False)
        finally:
            await pg.close()
    else:
        if not path.exists():
            raise Unavailable(f"database {path} does not exist; run `hush-collector init` first")
        before = await asyncio.to_thread(_sqlite_version, path)
        async with open_for(ctx, signed=False):
            after = newest
    if before == after:
        ctx.say(f"{redact_url(ctx.db)}: schema v{after}, up to date")
    else:
        ctx.say(f"{redact_url(ctx.db)}: schema v{before} -> v{after}")
    return ExitCode.OK


def _sqlite_version(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        try:
            row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        except sqlite3.DatabaseError:
            return ExitCode.OK
    return int(row[0] or 0)


async def _pubkey(ctx: Context) -> int:
    ctx.say(public_key_b64(bytes(signing_key(ctx).verify_key)))
    return ExitCode.OK


async def _tenant(ctx: Context) -> int:
    a = ctx.args
    async with open_for(ctx, signed=a.action != "list") as store:
        if a.action == "list":
            tenants = await store.list_tenants()
            if a.json:
                json_line(
                    ctx,
                    [
                        {"name": t.name, "state": t.state, "created": format_rfc3339(t.created)}
                        for t in tenants
                    ],
                )
            else:
                ctx.out.write(tenants_table(tenants))
            return ExitCode.OK
        if a.action == "create":
            check_id(a.name, "tenant name")
            tenant = await store.create_tenant(a.name, now=ctx.clock())
        else:
            states: dict[str, TenantState] = {"suspend": "suspended", "resume": "active", "delete": "deleted"}
            state = states[a.action]
            tenant = await store.set_tenant_state(a.name, state, now=ctx.clock())
        ctx.say(f"tenant {tenant.name}: {tenant.state}")
    return ExitCode.OK


async def _key(ctx: Context) -> int:
    a = ctx.args
    async with open_for(ctx, signed=a.action != "list") as store:
        if a.action == "add":
            check_id(a.agent, "--agent")
            public = read_public_key_arg(a.public_key)
            record = await store.add_key(a.tenant, a.agent, public, now=ctx.clock())
            ctx.say(record.key_id)
        elif a.action == "list":
            if a.tenant and await store.get_tenant(a.tenant) is None:
                raise NotFound("tenant", a.tenant)
            keys = await store.list_keys(a.tenant)
            if a.json:
                json_line(
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
    return ExitCode.OK


async def _enroll_token(ctx: Context) -> int:
    a = ctx.args
    ttl = check_duration(a.ttl, "--ttl")
    if a.agent is not None:
        check_id(a.agent, "--agent")
    if a.rotate and a.agent is None:
        raise ConfigError("a rotation token is for one agent: name it with --agent ID", key="--rotate")
    async with open_for(ctx) as store:
        token = await enroll.issue_token(
            store, a.tenant, ttl_seconds=ttl, now=ctx.clock(), agent=a.agent, rotate=a.rotate
        )
    ctx.say(token)
    return ExitCode.OK


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
    async with open_for(ctx, signed=a.action == "set") as store:
        quota = await store.get_quota(a.tenant)
        if a.action == "set":
            changes: dict[str, float | int | None] = {
                f: _quota_value(f, getattr(a, f)) for f in QUOTA_FLAGS if getattr(a, f) is not None
            }
            if a.max_age is not None:
                changes["max_age_seconds"] = (
                    None if a.max_age == "none" else check_duration(a.max_age, "--max-age")
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
        json_line(ctx, doc)
    else:
        for name, value in doc.items():
            if name != "today":
                ctx.say(f"{name:20} {'unlimited' if value is None else value}")
        ctx.say(
            f"{'used today':20} {doc['today']['rows']} rows, {doc['today']['bytes']} bytes, "
            f"{doc['today']['batches']} batches"
        )
    return ExitCode.OK


_COMMANDS: dict[str, Callable[[Context], Awaitable[int]]] = {
    "init": _init,
    "migrate": _migrate,
    "pubkey": _pubkey,
    "serve": ops.serve_cmd,
    "tenant": _tenant,
    "key": _key,
    "enroll-token": _enroll_token,
    "quota": _quota,
    "usage": ops.usage_cmd,
    "audit": ops.audit_cmd,
    "import": ops.import_cmd,
    "report": ops.reports_cmd,
    "funnel": ops.reports_cmd,
}


async def run(ctx: Context) -> int:
    return await _COMMANDS[ctx.args.command](ctx)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use hush-collector")
