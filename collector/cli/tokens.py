"""``hush-collector api-token …``: bearer tokens of the read-only HTTP API and dashboard (issue 14).

``create --role operator|viewer [--tenant T] [--ttl 30d|none]`` prints the token once, alone on its
line (only a SHA-256 of its secret is stored); ``list`` shows ids, roles, tenants and expiry, never a
secret; ``revoke ID`` stops it at once. Creation and revocation are audited by the store.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from collector.cli.kit import Context, check_duration, check_id, check_note, json_line, open_for
from collector.cli.tables import table
from collector.store import ApiToken
from collector.store.records import API_ROLES
from collector.store.tokens import new_token, token_doc
from hushmetric.errors import ConfigError
from hushmetric.exitcodes import ExitCode

__all__ = ["DEFAULT_TTL", "add_parser", "api_token_cmd"]

DEFAULT_TTL = "30d"


def add_parser(sub: argparse._SubParsersAction[Any], common: Callable[..., None]) -> None:
    """The ``api-token`` command and its actions; ``common`` adds --db and --key."""
    group = sub.add_parser("api-token", help="bearer tokens of the read-only HTTP API and dashboard")
    actions = group.add_subparsers(dest="action", required=True, parser_class=type(group))

    def action(name: str, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help_, description=help_)
        common(p)
        return p

    p = action("create", "print a new API token once (operator: every tenant; viewer: one tenant)")
    p.add_argument("--role", required=True, choices=API_ROLES)
    p.add_argument("--tenant", metavar="TENANT", help="the viewer's tenant (viewers only)")
    p.add_argument(
        "--ttl", default=DEFAULT_TTL, metavar="DURATION|none", help=f"lifetime (default {DEFAULT_TTL})"
    )
    p.add_argument("--note", metavar="TEXT", help="who or what holds it (kept and audited)")
    p = action("list", "list API tokens (never their secrets)")
    p.add_argument("--json", action="store_true")
    action("revoke", "revoke an API token at once").add_argument("token_id", metavar="ID")


def _expiry(ctx: Context) -> float | None:
    ttl = ctx.args.ttl
    if ttl.strip().lower() == "none":
        return None
    return ctx.clock() + check_duration(ttl, "--ttl")


async def api_token_cmd(ctx: Context) -> int:
    a = ctx.args
    note = check_note(a.note) if a.action == "create" else ""  # refused before the store is opened
    async with open_for(ctx, signed=a.action != "list") as store:
        if a.action == "create":
            if (a.role == "viewer") != (a.tenant is not None):
                raise ConfigError(
                    "a viewer token needs --tenant; an operator token takes none", key="--tenant"
                )
            if a.tenant is not None:
                check_id(a.tenant, "--tenant")
            token_id, secret, digest = new_token()
            now = ctx.clock()
            record = ApiToken(token_id, a.role, a.tenant, note, now, _expiry(ctx), None, digest)
            await store.create_api_token(record, now=now)
            ctx.say(secret)
            scope = f"tenant {a.tenant}" if a.tenant else "every tenant"
            print(f"hush-collector: API token {token_id} ({a.role}, {scope}); shown once", file=ctx.err)
        elif a.action == "list":
            docs = [token_doc(t) for t in await store.list_api_tokens()]
            if a.json:
                json_line(ctx, docs)
            else:
                rows = [
                    [str(d["id"]), str(d["role"]), str(d["tenant"] or "*"), str(d["expires"] or "never"),
                     str(d["revoked"] or "-"), str(d["note"])]
                    for d in docs
                ]  # fmt: skip
                ctx.out.write(table(["id", "role", "tenant", "expires", "revoked", "note"], rows))
        else:
            t = await store.revoke_api_token(a.token_id, now=ctx.clock())
            ctx.say(f"API token {t.token_id} revoked")
    return ExitCode.OK
