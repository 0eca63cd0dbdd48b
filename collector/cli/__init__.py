"""``hush-collector``: the admin CLI and the server entry point.

Exit codes (:class:`hushmetric.exitcodes.ExitCode`, shared with ``hush-agent``): 0 ok; 1 verification
failed or something was refused; 2 usage or configuration error; 3 not found; 4 unavailable
(database, key file, address); 5 conflicts with the current state; 130 interrupted.
Errors are one line on stderr, never a traceback. Output that scripts read (key id, token, public
key, the bound address) is alone on its line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn, TextIO

from collector.cli import admin as commands
from collector.cli.tokens import add_parser as add_api_token
from collector.errors import AuditError, Conflict, NotFound, Unavailable
from collector.store.db import DEFAULT_DB
from hushmetric.errors import ConfigError, ContractError, HushError, SignatureError
from hushmetric.exitcodes import ExitCode

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db", metavar="URL", help=f"database file or URL (env HUSH_COLLECTOR_DB, default {DEFAULT_DB})"
    )
    p.add_argument(
        "--key", metavar="FILE", help="collector signing key (env HUSH_COLLECTOR_KEY, default <db>.key)"
    )


def _outputs(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--remote-write", metavar="URL", help=f"Prometheus remote-write endpoint (…/api/v1/write): {what}"
    )
    p.add_argument("--otlp-export", metavar="HOST:PORT", help=f"OTLP/gRPC metrics endpoint: {what}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hush-collector",
        description="Verify, meter and audit signed telemetry batches; administer tenants, keys and quotas.",
        epilog="exit status: 0 ok, 1 verification failed or something was refused, 2 usage or configuration "
        "error, 3 not found, 4 unavailable (database, key file, address), 5 conflicts with the current state",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def cmd(name: str, help_: str, *, parent: argparse._SubParsersAction[_Parser] = sub) -> _Parser:
        p = parent.add_parser(name, help=help_, description=help_)
        _common(p)
        return p

    cmd("init", "create the database and the collector's audit signing key (0600)")
    cmd("migrate", "bring the database to the current schema version (also done at every start)")
    cmd("pubkey", "print the collector's public key (base64)")
    p = cmd("serve", "serve the gRPC ingest service until SIGTERM/SIGINT")
    p.add_argument("--listen", metavar="HOST:PORT", help="address; port 0 picks a free one (printed first)")
    p.add_argument("--config", metavar="FILE", help="TOML settings (flags win)")
    p.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics here")
    p.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve the read-only JSON API and dashboard here (TLS with --tls-cert; port 0 picks a free "
        "one, printed after the gRPC address)",
    )
    p.add_argument(
        "--tls-cert", metavar="FILE", help="PEM certificate chain: serve TLS 1.2+ (reloads on change)"
    )
    p.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    p.add_argument(
        "--client-ca", metavar="FILE", help="mutual TLS: agents must present a certificate of this CA"
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow plaintext on a non-loopback address (behind a TLS proxy)",
    )
    _outputs(p, "push released rows as batches are stored (durable cursor, retries)")

    tls = sub.add_parser("tls", help="certificates for trying TLS").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    p = tls.add_parser(
        "selfsigned",
        help="write a throw-away CA, a server and a client certificate (keys 0600)",
        description="write a throw-away CA, a server certificate (localhost, 127.0.0.1 and --name) and a "
        "client certificate for mutual TLS into --out; for trials, not production",
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument(
        "--name", action="append", metavar="DNS|IP", help="another name of the server (repeatable)"
    )
    p.add_argument("--days", type=int, default=30, help="validity (default 30)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")

    tenant = sub.add_parser("tenant", help="tenant lifecycle").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    for action, help_ in (
        ("create", "create an active tenant"),
        ("suspend", "refuse every batch of the tenant at once (kill switch)"),
        ("resume", "accept batches again"),
        ("delete", "delete the tenant (refused for good; the audit trail stays)"),
    ):
        cmd(action, help_, parent=tenant).add_argument("name", metavar="NAME")
    cmd("list", "list tenants", parent=tenant).add_argument("--json", action="store_true")

    key = sub.add_parser("key", help="agent keys").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    p = cmd("add", "register an agent's public key; prints the key id", parent=key)
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("--agent", required=True, metavar="ID")
    p.add_argument("--public-key", required=True, metavar="B64|@FILE")
    cmd("retire", "accept only batches created before now (rotation)", parent=key).add_argument("key_id")
    cmd("revoke", "refuse everything signed by the key, immediately", parent=key).add_argument("key_id")
    p = cmd("list", "list keys", parent=key)
    p.add_argument("tenant", nargs="?", metavar="TENANT")
    p.add_argument("--json", action="store_true")

    p = cmd("enroll-token", "print a one-time token the Enroll RPC exchanges for a bound key")
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("--ttl", default="1h", metavar="DURATION", help="lifetime, e.g. 15m, 1h, 2d (default 1h)")
    p.add_argument("--agent", metavar="ID", help="bind the token to this agent id (only it can enroll)")
    p.add_argument(
        "--rotate", action="store_true", help="with --agent: may add a key to an agent that already has one"
    )

    quota = sub.add_parser("quota", help="tenant quotas").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    p = cmd("set", "set limits (unnamed ones are kept; 'none' removes one)", parent=quota)
    p.add_argument("tenant", metavar="TENANT")
    for flag in commands.QUOTA_FLAGS:
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, metavar="N|none")
    p.add_argument("--max-age", dest="max_age", metavar="DURATION|none")
    p = cmd("show", "show limits and today's use", parent=quota)
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("--json", action="store_true")

    policy = sub.add_parser("policy", help="approved policy digests and privacy caps").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    for action, help_ in (
        ("approve", "approve a policy digest: the tenant then refuses batches under any other"),
        ("revoke", "revoke an approved digest: new batches under it are refused at once"),
    ):
        p = cmd(action, help_, parent=policy)
        p.add_argument("tenant", metavar="TENANT")
        p.add_argument("--digest", required=True, metavar="SHA256", help="as `hush-agent validate` prints it")
        if action == "approve":
            p.add_argument("--note", metavar="TEXT", help="why (kept with the approval and audited)")
    p = cmd("list", "list approved and revoked digests", parent=policy)
    p.add_argument("tenant", nargs="?", metavar="TENANT")
    p.add_argument("--json", action="store_true")
    p = cmd("cap", "cap the rho the tenant's batches may declare per UTC day of their windows", parent=policy)
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("--rho-per-day", required=True, metavar="R|none", help="zCDP rho; 'none' lifts the cap")
    p.add_argument("--per", choices=("agent", "tenant"), default="agent", help="each agent, or all together")
    p = cmd("spend", "rho admitted per agent on a UTC day, against the cap", parent=policy)
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("--day", metavar="YYYY-MM-DD", help="default: today")
    p.add_argument("--json", action="store_true")

    add_api_token(sub, _common)

    p = cmd("usage", "usage per tenant and UTC day")
    p.add_argument("--tenant")
    p.add_argument("--since", metavar="YYYY-MM-DD")
    p.add_argument("--until", metavar="YYYY-MM-DD")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")

    audit = sub.add_parser("audit", help="the signed audit log").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    p = cmd("export", "write the audit log as JSON lines", parent=audit)
    p.add_argument("--tenant", help="full entries of this tenant only; others as signed stubs")
    p.add_argument("--out", metavar="FILE", help="default: stdout")
    p = cmd("verify", "check an export offline with the collector's public key", parent=audit)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--public-key", required=True, metavar="B64|@FILE")

    p = cmd("import", "import air-gap bundles with the checks of online ingest")
    p.add_argument("files", nargs="+", metavar="FILE.tar")

    p = cmd("export", "released rows with their noise std and 95-percent interval, as CSV or Parquet")
    p.add_argument("--tenant", required=True)
    p.add_argument("--from", dest="since", metavar="DATE|RFC3339", help="windows starting at or after")
    p.add_argument("--until", metavar="DATE|RFC3339", help="windows starting before")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--out", metavar="FILE", help="default: stdout (CSV only)")
    p.add_argument(
        "--consistent",
        action="store_true",
        help="windows combined with their period totals by least squares (they add up to the totals; "
        "the totals themselves left out) instead of the values as released",
    )
    p = cmd("push", "push one tenant's released rows in a window range to an output, now")
    p.add_argument("--tenant", required=True)
    p.add_argument("--from", dest="since", metavar="DATE|RFC3339", help="windows starting at or after")
    p.add_argument("--until", metavar="DATE|RFC3339", help="windows starting before")
    _outputs(p, "the output to push to")

    for name, help_ in (("report", "KPI report over released metrics"), ("funnel", "funnel report")):
        p = cmd(name, help_)
        p.add_argument("tenant_arg", nargs="?", metavar="TENANT", help="the tenant (or --tenant)")
        p.add_argument("--tenant", help=argparse.SUPPRESS)
        p.add_argument("--out", metavar="FILE", help="write the report to FILE instead of stdout")
        if name == "report":
            p.add_argument("--totals", action="store_true", help="table: totals only, no per-window rows")
        p.add_argument("--since", metavar="DATE|RFC3339")
        p.add_argument("--until", metavar="DATE|RFC3339")
        p.add_argument("--format", choices=("table", "json", "csv", "html"), default="table")
        if name == "funnel":
            p.add_argument(
                "--stages", required=True, metavar="M1,M2,...", help="metrics of the stages, in order"
            )
            p.add_argument("--time-metric", metavar="METRIC", help="histogram metric of time to value")

    from collector.cli import certify  # issue 14: certified agents

    certify.register(sub, cmd)
    return parser


def _exit_code(exc: HushError) -> ExitCode:
    if isinstance(exc, NotFound):
        return ExitCode.NOT_FOUND
    if isinstance(exc, Unavailable):
        return ExitCode.UNAVAILABLE
    if isinstance(exc, Conflict):
        return ExitCode.CONFLICT
    if isinstance(exc, AuditError | SignatureError):
        return ExitCode.FAILED
    if isinstance(exc, ConfigError | ContractError):
        return ExitCode.USAGE
    return ExitCode.FAILED


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = build_parser().parse_args(argv)
    env = os.environ if environ is None else environ
    ctx = commands.Context(args=args, env=env, out=out, err=err)
    try:
        if args.command == "tls":  # needs no database: not one of the store commands
            from collector.cli.ops import tls_cmd

            return asyncio.run(tls_cmd(ctx))
        if args.command == "api-token":
            from collector.cli.tokens import api_token_cmd

            return asyncio.run(api_token_cmd(ctx))
        if args.command == "certify":  # issue 14: its own module, not in admin's table
            from collector.cli.certify import certify_cmd

            return asyncio.run(certify_cmd(ctx))
        return asyncio.run(commands.run(ctx))
    except HushError as exc:
        print(f"hush-collector: {exc.message}", file=err)
        return _exit_code(exc)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
