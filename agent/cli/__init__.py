"""``hush-agent``: the command line of the edge agent.

Exit codes (:class:`hushmetric.exitcodes.ExitCode`, shared with ``hush-collector``; stable, for scripts):
    0  success
    1  the operation ran but failed: verification failed, delivery refused, budget exhausted
    2  usage or configuration error (bad flags, bad config or policy, unreadable key)
    4  unavailable: the collector could not be reached
    5  conflicts with current state: the state directory is in use by another hush-agent process
  130  interrupted
Errors are one line on stderr (``hush-agent: …``), never a traceback.

Layout: this module builds the parser and runs a command with the one-line error handling; each
command group is one module with a ``register(sub)`` function:

    keys.py     init, key show, enroll, probe   (identity and the link to the collector)
    policy.py   validate, redact, tune, attest, demo-data   (the policy, without running the pipeline)
    run.py      run, export, status             (the pipeline and what it holds)
    ledgers.py  ledger, egress, dead-letter, outbox   (what was recorded and what left the site)
    kit.py      Context (arguments, env, streams, clock; the config, the state database and its lock)
    tables.py   pure formatters: records in, lines out

Adding a command: write a module with the handler, ``def name(ctx: Context) -> ExitCode``, and
``def register(sub: Subcommands) -> None`` that calls ``sub.add("name", name, "help")`` and adds
its arguments to the parser it returns; then append the module to :data:`COMMAND_MODULES`. Handlers
write through ``ctx.say``/``ctx.json`` (results) and ``ctx.warn``/``ctx.note`` (stderr), read time
from ``ctx.clock``, open state with ``with ctx.state() as conn`` (``lock=True``, or ``ctx.state_lock()``,
when the command releases, charges or drains), and raise ``ConfigError``/``HushError`` for failures;
:func:`main` maps them to exit codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import IO, TextIO

from agent.cli import certify, keys, ledgers, policy, run
from agent.cli.kit import Context, Subcommands
from hushmetric.errors import ConfigError, HushError
from hushmetric.exitcodes import ExitCode

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

# In the order their commands are listed by --help.
COMMAND_MODULES = (keys, policy, run, ledgers, certify)


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="hush-agent",
        description="Edge agent of hushmetric: redacts personal data, aggregates with differential privacy, "
        "signs each release and delivers it to the collector or into an offline bundle.",
        epilog="Exit codes: 0 ok, 1 failed (verification, refusal, budget), 2 usage or config error, "
        "4 collector unreachable, 5 state directory in use by another process, 130 interrupted.",
    )
    config_help = "agent config file (default: $HUSH_AGENT_CONFIG or ./agent.toml)"
    parser.add_argument("--config", default=env.get("HUSH_AGENT_CONFIG", "agent.toml"), help=config_help)
    sub = Subcommands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), config_help)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _exit_code(exc: HushError) -> ExitCode:
    if isinstance(exc, ConfigError):
        return ExitCode.USAGE
    if exc.code == "locked":  # agent.state.StateLocked: another process holds the state directory
        return ExitCode.CONFLICT
    return ExitCode.UNAVAILABLE if exc.code in ("unavailable", "deadline_exceeded") else ExitCode.FAILED


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: IO[bytes] | None = None,
) -> int:
    env = os.environ if environ is None else environ
    args = build_parser(env).parse_args(argv)
    ctx = Context(args=args, env=env, out=stdout or sys.stdout, err=stderr or sys.stderr, stdin=stdin)
    try:
        return int(args.fn(ctx))
    except KeyboardInterrupt:
        ctx.warn("interrupted")
        return ExitCode.INTERRUPTED
    except HushError as exc:
        ctx.warn(str(exc))
        return _exit_code(exc)
    except BrokenPipeError:
        return ExitCode.OK
