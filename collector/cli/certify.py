"""``hush-collector certify …`` (issue 14): check an agent certificate file, list recorded ones.

``verify FILE [--public-key B64|@FILE]`` checks a ``hush-agent certify --out`` file offline: the
signature against the given key (or, without one, against the key registered in the collector's
database), the statement's bounds, profile conformance and validity window at the current time.
Exit 0 and one ``ok:`` line when valid; exit 1 and one line with the reason when not.

``list [TENANT] [--json]`` shows every recorded certificate with its status (valid, expired,
contradicted by later batches, superseded by a newer one), computed now from the stored batches.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector import certs
from collector.cli.kit import Context, check_id, json_line, open_for
from collector.cli.tables import table
from collector.errors import NotFound, Unavailable
from collector.report.fmt import term_text
from hushmetric.certificate import Certificate, open_envelope, statement_problem, verify_certificate
from hushmetric.errors import HushError
from hushmetric.exitcodes import ExitCode
from hushmetric.keys import read_public_key_arg
from hushmetric.timefmt import format_rfc3339

__all__ = ["certify_cmd", "register"]


def register(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``certify verify|list`` (``cmd`` makes a sub-parser with ``--db``/``--key``)."""
    group = sub.add_parser("certify", help="agent certificates: verify a file, list recorded ones")
    actions = group.add_subparsers(dest="action", required=True, parser_class=type(group))
    p = cmd("verify", "check a certificate file offline (exit 0 valid, 1 invalid)", parent=actions)
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--public-key", metavar="B64|@FILE", help="the agent's key (default: as registered in the database)"
    )
    p = cmd("list", "recorded certificates with their status now", parent=actions)
    p.add_argument("tenant", nargs="?", metavar="TENANT")
    p.add_argument("--json", action="store_true")


async def certify_cmd(ctx: Context) -> int:
    if ctx.args.action == "verify":
        return await _verify(ctx)
    tenant = ctx.args.tenant
    if tenant is not None:
        check_id(tenant, "TENANT")
    async with open_for(ctx, signed=False) as store:
        if tenant is not None and await store.get_tenant(tenant) is None:
            raise NotFound("tenant", tenant)
        found = await store.agent_certificates(tenant, now=ctx.clock())
    if ctx.args.json:
        json_line(ctx, [certs.certificate_doc(c) for c in found])
        return ExitCode.OK
    rows = [
        [
            c.tenant,
            c.agent,
            term_text(c.profile, 64),  # the agent's words: no escape sequence reaches the terminal
            c.status,
            format_rfc3339(c.issued),
            format_rfc3339(c.expires),
            term_text(c.reason, 120),
        ]
        for c in found
    ]
    ctx.out.write(table(["tenant", "agent", "profile", "status", "issued", "expires", "reason"], rows))
    return ExitCode.OK


async def _verify(ctx: Context) -> int:
    a = ctx.args
    try:
        data = await asyncio.to_thread(Path(a.file).read_bytes)
    except FileNotFoundError as exc:
        raise NotFound("file", a.file) from exc
    except OSError as exc:
        raise Unavailable(f"cannot read {a.file}: {exc.strerror or exc}") from exc
    now = ctx.clock()
    try:
        envelope = open_envelope(data)
        if a.public_key:
            cert = verify_certificate(envelope, read_public_key_arg(a.public_key))
            problem = statement_problem(cert, now)
        else:
            cert, problem = await _against_registry(ctx, data, now)
    except HushError as exc:
        if exc.code == "config":  # an unreadable --public-key is a usage error, not a verdict
            raise
        return _invalid(ctx, a.file, exc.code, exc.message)
    if problem is not None:
        return _invalid(ctx, a.file, *problem)
    agent, tenant = term_text(cert.agent, 128), term_text(cert.tenant or "-", 128)
    ctx.say(
        f"ok: certificate of agent {agent} (tenant {tenant}, key {cert.key_id[:16]}), "
        f"profile {term_text(cert.profile, 64)}, policy {cert.policy_digest[:16]}, "
        f"valid until {term_text(cert.valid_until)}"
    )
    return ExitCode.OK


async def _against_registry(
    ctx: Context, data: bytes, now: float
) -> tuple[Certificate, tuple[str, str] | None]:
    """Verify against the key registered for the signing key id, with the checks online submission runs."""
    envelope = open_envelope(data)
    async with open_for(ctx, signed=False) as store:
        for sig in envelope.signatures:
            key = await store.get_key(sig.keyid) if len(sig.keyid) == 64 else None
            if key is None:
                continue
            cert = verify_certificate(envelope, key.public_key)
            refused = certs.check(cert, key, await store.get_tenant(key.tenant), now)
            return cert, None if refused is None else (refused.reason, refused.message)
    raise HushError(
        "signed by a key this collector has not registered (use --public-key)", code="unknown_key"
    )


def _invalid(ctx: Context, name: str, reason: str, message: str) -> int:
    # the message may quote the file's own words (a period or check name): made safe for a terminal
    print(f"hush-collector: invalid certificate {name}: {reason}: {term_text(message, 300)}", file=ctx.err)
    return ExitCode.FAILED
