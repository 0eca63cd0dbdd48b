"""What the agent recorded and what left the site: ``ledger`` (privacy budget), ``egress`` (what left,
and the kill switch), ``dead-letter`` (refused inputs), ``outbox`` (the quarantine)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import msgspec

from agent.cli import tables
from agent.cli.kit import Context, Subcommands
from hushmetric.errors import ConfigError
from hushmetric.exitcodes import ExitCode

if TYPE_CHECKING:
    import sqlite3

    from agent.policy import Policy

__all__ = ["register"]

_MAX_SEQ = 2**63 - 1  # what the wire contract and SQLite's INTEGER hold


def _count(text: str) -> int:
    """A ``--limit``: a whole number of entries, 0 or more (a negative one listed from the wrong end)."""
    if not (text.isascii() and text.isdigit()) or int(text) > _MAX_SEQ:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a count (0 or more)")
    return int(text)


def _seq(text: str) -> int:
    """A batch sequence number, 1 to 2**63 - 1 (a larger one made SQLite raise OverflowError)."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= _MAX_SEQ:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a batch sequence number")
    return int(text)


def ledger(ctx: Context) -> ExitCode:
    from agent import ledger as privacy_ledger
    from agent.epsilon import guarantee
    from agent.policy import load_policy

    policy = load_policy(ctx.config.policy_path)
    if ctx.args.acknowledge_reset:
        return _acknowledge_reset(ctx, policy)
    with ctx.state() as conn:
        rows = privacy_ledger.summary(conn, policy)
    # Each period's spend read as (ε, δ): ε by OpenDP's conversion at the policy's δ, and δ that
    # conversion's plus the partition-selection δ the period's windows were charged.
    spent_as = [guarantee(policy, spent=r.spent, selection_delta=r.delta) for r in rows]
    if ctx.args.json:
        ctx.json(
            [
                {**msgspec.to_builtins(r), "epsilon": g.epsilon, "delta_total": g.delta_total}
                for r, g in zip(rows, spent_as, strict=True)
            ]
        )
        return ExitCode.OK
    unit = "rho" if policy.budget.mechanism == "zcdp" else "epsilon"
    ctx.say_lines(tables.ledger_table(rows, spent_as, unit))
    ctx.say("cap: " + tables.guarantee_line(guarantee(policy)))
    return ExitCode.OK


def _acknowledge_reset(ctx: Context, policy: Policy) -> ExitCode:
    from agent import integrity

    loaded = ctx.config
    with ctx.state_lock():  # before the check: it may quarantine files another process has open
        if not ctx.args.note.strip():
            raise ConfigError("--acknowledge-reset needs --note TEXT (who and why)", key="--note")
        integrity.check_state(loaded.state_dir)
        with ctx.state() as conn:
            charged = integrity.acknowledge_reset(loaded.state_dir, conn, policy, note=ctx.args.note)
    ctx.say("ledger acknowledged; " + ("; ".join(charged) if charged else "nothing missing to charge"))
    return ExitCode.OK


def egress(ctx: Context) -> ExitCode:
    from agent import egress as ledger
    from agent.state import transaction

    args = ctx.args
    with ctx.state() as conn:
        if args.action in ("stop", "resume"):
            with transaction(conn):
                if args.action == "stop":
                    ledger.stop(conn, reason=args.reason, at=ctx.clock())
                else:
                    ledger.resume(conn, at=ctx.clock())
            ctx.say(
                "egress stopped: nothing leaves until `hush-agent egress resume`"
                if args.action == "stop"
                else "egress resumed"
            )
            return ExitCode.OK
        if args.verify:
            result = ledger.verify(conn)
            if args.json:
                ctx.json(result)
            elif result.ok:
                ctx.say(f"ok: {result.count} entries, head {result.head}")
            else:
                ctx.say(f"FAILED at entry {result.first_bad}: {result.reason}")
            return ExitCode.OK if result.ok else ExitCode.FAILED
        entries = ledger.entries(conn)
        stopped = ledger.is_stopped(conn)
    if args.json:
        ctx.json(entries)
        return ExitCode.OK
    ctx.say(f"egress is {'STOPPED' if stopped else 'open'}; {len(entries)} ledger entries")
    ctx.say_lines([ledger.format_entry(e) for e in entries[-args.limit :]])
    return ExitCode.OK


def dead_letter(ctx: Context) -> ExitCode:
    from agent import deadletter
    from agent.runtime import load_secret

    if ctx.args.digest_of is not None:
        # Digests are keyed with the site secret: this is how an operator matches an input from the
        # sender's own logs against a dead letter without the agent ever storing the input.
        key = deadletter.digest_key(load_secret(ctx.config.secret_path))
        with ctx.read_input(ctx.args.digest_of) as fh:
            ctx.say(deadletter.digest(key, fh.read()))
        return ExitCode.OK
    with ctx.state() as conn:
        letters = deadletter.recent(conn, ctx.args.limit)
        counts = deadletter.counts(conn)
    if ctx.args.json:
        ctx.json({"counts": counts, "recent": letters})
    else:
        ctx.say_lines(tables.dead_letter_lines(counts, letters))
    return ExitCode.OK


def outbox(ctx: Context) -> ExitCode:
    """The outbox quarantine: list it, put batches back (`retry`), or discard one with a note (`drop`)."""
    args = ctx.args
    ctx.config  # noqa: B018 - a bad config is reported before a usage problem, as it always was
    if args.action == "retry" and (args.seq is None) == (not args.all):
        raise ConfigError("`outbox retry` needs a SEQ or --all (not both)")
    if args.action == "drop" and (args.seq is None or args.all):
        raise ConfigError("`outbox drop` needs one SEQ (each drop is recorded on its own)")
    with ctx.state() as conn:
        if args.action == "quarantine":
            from agent.outbox import quarantined

            held = quarantined(conn)
            if args.json:
                ctx.json(held)
            else:
                ctx.say_lines(tables.quarantine_lines(held))
            return ExitCode.OK
        if args.action == "retry":
            return _retry(ctx, conn)
        return _drop(ctx, conn)


def _retry(ctx: Context, conn: sqlite3.Connection) -> ExitCode:
    from agent import outbox as box
    from agent.state import transaction

    args = ctx.args
    with transaction(conn):
        seqs = box.requeue_all(conn) if args.all else ([args.seq] if box.requeue(conn, args.seq) else [])
    if not seqs:
        ctx.warn(f"batch {args.seq} is not in the quarantine")
        return ExitCode.FAILED
    ctx.say(f"put back into the outbox: {', '.join(map(str, seqs))} (sent on the next delivery)")
    return ExitCode.OK


def _drop(ctx: Context, conn: sqlite3.Connection) -> ExitCode:
    from agent import egress as ledger
    from agent import outbox as box
    from agent.state import transaction

    args = ctx.args
    if not args.note.strip():
        raise ConfigError(
            "`outbox drop` needs --note TEXT (who and why; kept in the egress ledger)", key="--note"
        )
    with transaction(conn):
        gone = box.discard(conn, args.seq)
        if gone is not None:
            ledger.record_drop(
                conn,
                seq=gone.seq,
                digest=gone.digest,
                nbytes=gone.nbytes,
                rows=gone.rows,
                note=args.note,
                at=ctx.clock(),
            )
    if gone is None:
        ctx.warn(f"batch {args.seq} is not in the quarantine")
        return ExitCode.FAILED
    ctx.say(f"dropped batch {gone.seq} (sha256:{gone.digest[:16]}); recorded in the egress ledger")
    return ExitCode.OK


def register(sub: Subcommands) -> None:
    p = sub.add("ledger", ledger, "privacy budget spent and left per period")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--acknowledge-reset",
        action="store_true",
        help="after a state integrity failure: restore the ledger to its last head and unblock releases",
    )
    p.add_argument("--note", default="", help="who acknowledges and why (recorded; with --acknowledge-reset)")

    p = sub.add("egress", egress, "what left this site; `stop` / `resume` is the local kill switch")
    p.add_argument("action", nargs="?", choices=["stop", "resume"], help="stop or resume all egress")
    p.add_argument("--verify", action="store_true", help="verify the hash chain of the egress ledger")
    p.add_argument("--reason", default="operator", help="recorded with `stop`")
    p.add_argument("--limit", type=_count, default=20, help="entries to list (default 20)")
    p.add_argument("--json", action="store_true")

    p = sub.add("dead-letter", dead_letter, "inputs refused by the decoder, newest first")
    p.add_argument("--limit", type=_count, default=20)
    p.add_argument(
        "--digest-of",
        metavar="FILE|-",
        help="print the site's keyed digest of this exact input (to match a dead letter), then exit",
    )
    p.add_argument("--json", action="store_true")

    p = sub.add("outbox", outbox, "batches the collector refused for good: list, retry or drop them")
    p.add_argument("action", choices=["quarantine", "retry", "drop"], help="quarantine lists them")
    p.add_argument("seq", nargs="?", type=_seq, metavar="SEQ", help="the batch (retry, drop)")
    p.add_argument("--all", action="store_true", help="retry: every quarantined batch")
    p.add_argument("--note", default="", help="drop: who and why (recorded in the egress ledger)")
    p.add_argument("--json", action="store_true")
