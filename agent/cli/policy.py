"""The policy and what it does to data, without running the pipeline: ``validate``, ``redact`` (dry
run), ``tune`` (expected error and bias), ``attest`` (signed statement for auditors), ``demo-data``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from agent.cli import tables
from agent.cli.kit import Context, Subcommands, write_output
from hushmetric.errors import ConfigError
from hushmetric.exitcodes import ExitCode

if TYPE_CHECKING:
    from agent.model import Event
    from agent.policy import Policy

__all__ = ["register"]


def validate(ctx: Context) -> ExitCode:
    from agent.policy import load_policy, policy_digest, used_attrs
    from agent.profiles import check_files, check_profile

    loaded, profile = ctx.config, ctx.args.profile
    policy = load_policy(loaded.policy_path)
    problems: list[str] = []
    for what, path in (("signing key", loaded.key_path), ("site secret", loaded.secret_path)):
        if not path.exists():
            problems.append(f"{path}: {what} missing")
    violations = check_files(loaded) + (check_profile(loaded.config, profile) if profile else [])
    problems += [f"{loaded.path}: {v.key}: {v.message}" for v in violations]
    if not problems and loaded.config.collector.tls:
        from agent.transport import channel_credentials

        try:  # the TLS files named in [collector] can be read and look like PEM
            channel_credentials(loaded.config.collector, loaded.base)
        except ConfigError as exc:
            problems.append(f"{loaded.path}: {exc}")
    if problems:
        for line in problems:
            ctx.warn(line)
        return ExitCode.USAGE
    unused = sorted(set(policy.attrs) - used_attrs(policy))
    if unused:
        ctx.note(f"note: allowed attributes no metric uses are dropped at the edge: {', '.join(unused)}\n")
    suffix = f", conforms to profile {profile}" if profile else ""
    ctx.say(
        f"ok: {loaded.path} and {loaded.policy_path} ({len(policy.metrics)} metrics, "
        f"policy digest {policy_digest(policy)[:16]}){suffix}"
    )
    ctx.say(_guarantee_line(policy))
    periodic = [m.name for m in policy.metrics if m.bound == "period"]
    if periodic:
        ctx.say(
            f"per-{policy.budget.period} bounds (charged once per {policy.budget.period}): "
            f"{', '.join(periodic)}; the other metrics per window (see `hush-agent tune`)"
        )
    # what central ops approve (issue 14): the full digest, as the collector compares it
    ctx.say(
        f"approve with: hush-collector policy approve {loaded.config.tenant} --digest {policy_digest(policy)}"
    )
    _print_custom_detectors(ctx, policy)
    return ExitCode.OK


def _guarantee_line(policy: Policy) -> str:
    from agent.epsilon import guarantee

    return tables.guarantee_line(guarantee(policy))


def _print_custom_detectors(ctx: Context, policy: Policy) -> None:
    from agent.detectors.custom import describe

    red = policy.redaction
    for rule in red.custom:
        action = rule.action or red.default
        ctx.say("custom detector " + describe(rule.name, rule.regex, rule.checksum, rule.context, action))


def redact(ctx: Context) -> ExitCode:
    """A dry run of the redaction stage: what each event (or text line) would look like after it."""
    from agent import deadletter
    from agent.decode import Decoder
    from agent.policy import load_policy, minimised
    from agent.redact import Redactor
    from agent.runtime import load_secret

    loaded = ctx.config
    policy = load_policy(loaded.policy_path)
    # Events are shown as the pipeline keeps them (minimised policy); --text lines are scanned as a
    # free-text value, whatever the policy's attributes.
    secret = load_secret(loaded.secret_path)
    redactor = Redactor(minimised(policy), secret, backend=loaded.config.limits.scanner)
    decoder = Decoder(loaded.config.limits, digest_key=deadletter.digest_key(secret))
    encoder = msgspec.json.Encoder()
    refused = 0
    with ctx.read_input(ctx.args.input) as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            if ctx.args.text:
                ctx.say(redactor.redact_text(line.decode("utf-8", "replace")))
                continue
            events, letters = decoder.decode(line, "redact", now=ctx.clock())
            for letter in letters:
                refused += 1
                ctx.say(f"# refused: {letter.reason}: {letter.detail}")
            for event in events:
                red = redactor.redact(event)
                ctx.say(
                    "# dropped: finding in event name or attribute key"
                    if red is None
                    else encoder.encode(red).decode()
                )
    counts = redactor.take_counts()
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no findings"
    ctx.note(f"findings: {summary}" + (f"; {refused} inputs refused" if refused else "") + "\n")
    return ExitCode.OK


def _sample_events(ctx: Context, policy: Policy, path: str) -> list[Event]:
    """The events of a JSON-lines sample as the pipeline keeps them (decoded, redacted)."""
    from agent.decode import Decoder
    from agent.policy import minimised
    from agent.redact import Redactor
    from agent.runtime import load_secret

    loaded = ctx.config
    redactor = Redactor(
        minimised(policy), load_secret(loaded.secret_path), backend=loaded.config.limits.scanner
    )
    decoder = Decoder(loaded.config.limits)
    with ctx.read_input(path) as fh:
        events, _letters = decoder.decode(fh.read(), "tune", now=ctx.clock())
    return list(redactor.redact_many(events))


def tune(ctx: Context) -> ExitCode:
    from agent.epsilon import epsilon_at, guarantee
    from agent.levels import clipping, compare_levels
    from agent.policy import load_policy, per_window_budget
    from agent.release import expected_error
    from agent.tune import suggest_budget, threshold_notes

    args = ctx.args
    policy = load_policy(ctx.config.policy_path)
    rows = expected_error(policy)
    suggestion = suggest_budget(policy, args.target, args.metric or ()) if args.target is not None else None
    if args.json:
        doc: dict[str, Any] = {
            "expected": rows,
            "suggestion": suggestion,
            "privacy": guarantee(policy),
            "levels": compare_levels(policy),
        }
        if args.input is not None:
            doc["clipping"] = clipping(policy, _sample_events(ctx, policy, args.input))
        ctx.json(doc)
        return ExitCode.OK
    measure = "rho" if policy.budget.mechanism == "zcdp" else "epsilon"
    ctx.say_lines(tables.error_table(rows, measure, per_window_budget(policy)))
    ctx.say_lines(threshold_notes(rows))
    ctx.say(tables.guarantee_line(guarantee(policy)))
    ctx.say_lines(tables.levels_table(compare_levels(policy), policy.budget.period))
    if args.input is not None:
        ctx.say_lines(
            tables.clipping_table(clipping(policy, _sample_events(ctx, policy, args.input)), args.input)
        )
    if suggestion is None:
        return ExitCode.OK
    if suggestion.needed_per_window == float("inf"):
        ctx.say("")
        target = tables.fmt(suggestion.target)
        ctx.say(f"no budget reaches ±{target}: loosen the bounds (max_contributions, upper)")
        return ExitCode.FAILED
    delta = policy.budget.delta
    eps = epsilon_at(suggestion.needed_per_period, delta) if suggestion.measure == "rho" else None
    ctx.say_lines(tables.suggestion_lines(suggestion, eps, delta))
    return ExitCode.OK


def attest(ctx: Context) -> ExitCode:
    """Sign (or verify) a statement of what this agent released under which policy."""
    from agent import attest as statements
    from agent.policy import load_policy
    from hushmetric.keys import load_signing_key

    if ctx.args.verify:
        return _verify_attestation(ctx)
    loaded = ctx.config
    policy = load_policy(loaded.policy_path)
    key = load_signing_key(loaded.key_path)
    with ctx.state() as conn:
        statement = statements.build(
            conn,
            policy,
            tenant=loaded.config.tenant,
            agent=loaded.config.agent,
            public_key=bytes(key.verify_key),
            now=ctx.clock(),
        )
    data = statements.sign(statement, key)
    if ctx.args.out:
        out = ctx.args.out
        write_output(out, data + b"\n")
        ctx.say(f"wrote a signed attestation to {out} (verify: hush-agent attest --verify {out})")
    else:
        ctx.say(data.decode())
    return ExitCode.OK


def _verify_attestation(ctx: Context) -> ExitCode:
    from agent import attest as statements
    from hushmetric.keys import load_signing_key, read_public_key_arg

    args = ctx.args
    try:
        data = Path(args.verify).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=args.verify) from exc
    if args.public_key:
        public = read_public_key_arg(args.public_key)
    else:
        public = bytes(load_signing_key(ctx.config.key_path).verify_key)
    statement = statements.verify(data, public)
    if args.json:
        ctx.json(statement)
        return ExitCode.OK
    spent = sum(p.spent for p in statement.periods)
    ctx.say(
        f"ok: attestation by {statement.agent} (tenant {statement.tenant}) at {statement.created}; "
        f"policy {statement.policy.name} {statement.policy.digest[:16]}; "
        f"{len(statement.periods)} periods, {statement.policy.mechanism} spent {spent:.4g}; "
        f"{statement.egress.batches} batches out, egress head {statement.egress.head[:16]}"
    )
    return ExitCode.OK


def demo_data(ctx: Context) -> ExitCode:
    from agent.sources.demo import write_dataset

    a = ctx.args
    try:
        count = write_dataset(Path(a.out), seed=a.seed, users=a.users, days=a.days)
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", path=a.out) from exc
    ctx.say(f"wrote {count} events to {a.out}")
    return ExitCode.OK


def register(sub: Subcommands) -> None:
    p = sub.add("validate", validate, "check config and policy (and a deployment profile)")
    p.add_argument("--profile", choices=["saas", "vpc", "on-prem", "air-gap"])

    p = sub.add("redact", redact, "dry run: print input as it would look after redaction")
    p.add_argument("--input", default="-", metavar="FILE|-", help="JSON-lines events (default: stdin)")
    p.add_argument("--text", action="store_true", help="treat each line as a free-text value")

    p = sub.add("tune", tune, "expected error of every metric, and the budget a target error needs")
    p.add_argument(
        "--target", type=float, metavar="ERROR", help="wanted 95%% half-width, in the metrics' units"
    )
    p.add_argument(
        "--metric", action="append", metavar="NAME", help="apply --target to this metric (repeatable)"
    )
    p.add_argument(
        "--input",
        metavar="FILE",
        help="a sample of events (JSON lines, - for stdin): what the caps drop, per window and per period",
    )
    p.add_argument("--json", action="store_true")

    p = sub.add("attest", attest, "sign a statement of what was released under which policy, for auditors")
    p.add_argument("--out", metavar="FILE", help="write the DSSE JSON envelope here (default: stdout)")
    p.add_argument("--verify", metavar="FILE", help="verify an attestation instead of making one")
    p.add_argument("--public-key", metavar="B64|@FILE", help="with --verify: the agent's key (default: own)")
    p.add_argument("--json", action="store_true", help="with --verify: print the verified statement")

    p = sub.add("demo-data", demo_data, "write the seeded demo dataset as JSON lines")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--users", type=int, default=400)
    p.add_argument("--days", type=int, default=2)
