"""The pipeline and what it holds: ``run`` (daemon or ``--once``), ``export`` (air gap), ``status``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.cli import tables
from agent.cli.kit import Context, Subcommands, run_async
from hushmetric.errors import ConfigError
from hushmetric.exitcodes import ExitCode
from hushmetric.logs import setup_logging

__all__ = ["parse_time", "register"]


def parse_time(text: str | None, flag: str) -> float | None:
    """``--from``/``--to``: RFC 3339 with an offset, or epoch seconds."""
    if text is None:
        return None
    from hushmetric.timefmt import parse_rfc3339

    try:
        return float(text) if text.strip().lstrip("-").replace(".", "", 1).isdigit() else parse_rfc3339(text)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a time: use RFC 3339 (2026-01-05T00:00:00Z) or epoch seconds", key=flag
        ) from None


def run(ctx: Context) -> ExitCode:
    with ctx.state_lock():  # one writer per state directory, for the whole run
        return _run(ctx)


def _run(ctx: Context) -> ExitCode:
    from agent.runtime import Agent, install_signal_handlers

    args, loaded = ctx.args, ctx.config
    log_cfg = loaded.config.log
    setup_logging(log_cfg.format, "warning" if args.once and log_cfg.level == "info" else log_cfg.level)
    if not args.once and args.input is not None:
        raise ConfigError("--input reads a finite input: use it with --once")
    if not args.once and (args.range_from is not None or args.range_to is not None):
        raise ConfigError("--from and --to declare the range of a finite run: use them with --once")
    range_from = parse_time(args.range_from, "--from")
    range_to = parse_time(args.range_to, "--to")

    async def go() -> ExitCode:
        agent = Agent(loaded)
        try:
            if args.once:
                report = await agent.run_once(input_path=args.input, start=range_from, stop=range_to)
                if args.json:
                    ctx.json(report)
                else:
                    from agent.redact import COUNTERS

                    ctx.say_lines(tables.run_report(report, COUNTERS))
                if report.windows_failed or (
                    (report.windows_refused or report.windows_held) and not report.windows_released
                ):
                    return ExitCode.FAILED
                return ExitCode.OK
            if loaded.config.metrics_listen:
                from agent.metrics import serve_metrics

                serve_metrics(loaded.config.metrics_listen, agent.metrics.registry)
            stop = asyncio.Event()
            install_signal_handlers(stop)
            await agent.serve(stop)
            return ExitCode.OK
        finally:
            await agent.aclose()

    return run_async(go())


def export(ctx: Context) -> ExitCode:
    from agent.cli.certify import read_certificate
    from agent.export import export_bundle
    from hushmetric.keys import load_signing_key

    loaded = ctx.config
    certificate = read_certificate(ctx.args.certificate)
    key = load_signing_key(loaded.key_path)
    with ctx.state(lock=True) as conn:  # export drains the outbox: one writer per state directory
        result = export_bundle(
            conn,
            key,
            Path(ctx.args.out),
            tenant=loaded.config.tenant,
            agent=loaded.config.agent,
            at=ctx.clock(),
            certificate=certificate,
        )
    if ctx.args.json:
        ctx.json(result)
    else:
        ctx.say(result.message)
    return ExitCode.OK


def status(ctx: Context) -> ExitCode:
    from agent.status import collect_status, format_status

    result = collect_status(ctx.config, now=ctx.clock())
    if ctx.args.json:
        ctx.json(result)
    else:
        ctx.say_lines(format_status(result))
    return ExitCode.OK


def register(sub: Subcommands) -> None:
    p = sub.add("run", run, "run the pipeline (daemon, or --once over finite input)")
    p.add_argument(
        "--once", action="store_true", help="read finite sources to the end, release, deliver, exit"
    )
    p.add_argument(
        "--input", metavar="FILE|-", help="a JSON-lines file or - for stdin instead of the sources"
    )
    p.add_argument(
        "--from",
        dest="range_from",
        metavar="TIME",
        help="with --once: first window to release (RFC 3339 or epoch seconds; default: where the "
        "schedule stands, else the demo source's start, else the current window)",
    )
    p.add_argument(
        "--to",
        dest="range_to",
        metavar="TIME",
        help="with --once: release windows before this time (default: the last window the clock has "
        "closed, or the demo source's end); later events wait in the journal",
    )
    p.add_argument("--json", action="store_true", help="print the --once report as JSON")

    p = sub.add("export", export, "move the outbox into a signed bundle for the air gap")
    p.add_argument("--out", required=True, metavar="FILE.tar")
    p.add_argument("--certificate", metavar="FILE", help="add a `certify --out` certificate to the bundle")
    p.add_argument("--json", action="store_true")

    p = sub.add("status", status, "outbox, last delivery, egress state, budget, dead letters")
    p.add_argument("--json", action="store_true")
