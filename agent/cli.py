"""``hush-agent``: the command line of the edge agent.

Exit codes (stable, for scripts):
    0  success
    1  the operation ran but failed: verification failed, delivery refused, budget exhausted
    2  usage or configuration error (bad flags, bad config or policy, unreadable key)
    4  unavailable: the collector could not be reached
    5  conflicts with current state: the state directory is in use by another hush-agent process
  130  interrupted
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from agent.config import LoadedConfig, load_config
from hushmetric.errors import ConfigError, HushError
from hushmetric.logs import setup_logging

if TYPE_CHECKING:
    from agent.policy import Policy

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 4, 5, 130
_json = msgspec.json.Encoder()


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _err(line: str) -> None:
    sys.stderr.write(f"hush-agent: {line}\n")


def _print_json(obj: Any) -> None:
    sys.stdout.write(_json.encode(obj).decode() + "\n")


def _config(args: argparse.Namespace) -> LoadedConfig:
    return load_config(Path(args.config))


def _run_async(coro: Any) -> Any:
    try:
        import uvloop  # optional: faster event loop when installed

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)


# -- commands ---------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from agent.setup import init_dir

    result = init_dir(
        Path(args.dir), tenant=args.tenant, collector=args.collector, agent=args.agent, force=args.force
    )
    _out(result.agent)
    sys.stderr.write(
        f"wrote {result.config}, {result.policy}, {result.key_file} and {result.secret_file} (0600)\n"
        f"next: hush-agent --config {result.config} validate\n"
        f"      hush-agent --config {result.config} run --once\n"
    )
    return EXIT_OK


def cmd_key_show(args: argparse.Namespace) -> int:
    from hushmetric.keys import key_id, load_signing_key, public_key_b64

    loaded = _config(args)
    public = bytes(load_signing_key(loaded.key_path).verify_key)
    if args.json:
        _print_json(
            {"public_key": public_key_b64(public), "key_id": key_id(public), "agent": loaded.config.agent}
        )
    else:
        _out(public_key_b64(public))
        _out(key_id(public))
    return EXIT_OK


def cmd_enroll(args: argparse.Namespace) -> int:
    from agent.enroll import enroll
    from hushmetric.keys import load_signing_key

    loaded = _config(args)
    endpoints = [args.endpoint] if args.endpoint else loaded.config.collector.endpoints
    if not endpoints:
        raise ConfigError("no collector endpoint: pass --endpoint HOST:PORT or set collector.endpoints")
    public = bytes(load_signing_key(loaded.key_path).verify_key)
    tenant, kid = _run_async(
        enroll(
            loaded.config.collector,
            endpoints[0],
            token=args.token,
            agent=loaded.config.agent,
            public_key=public,
            base_dir=loaded.base,
        )
    )
    if tenant != loaded.config.tenant:
        _err(
            f"warning: the collector bound this key to tenant {tenant!r}, "
            f"the config says {loaded.config.tenant!r}"
        )
    _out(kid)
    return EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    """Dial every collector endpoint with the configured TLS settings and ask gRPC health: the quick
    check after setting up TLS, mutual TLS or a firewall. Sends no batch."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from agent.sender import channel_credentials, channel_for, explain_transport
    from hushmetric.timefmt import parse_duration

    loaded = _config(args)
    cfg = loaded.config.collector
    if not cfg.endpoints:
        raise ConfigError("no collector endpoints to probe", key="collector.endpoints")
    channel_credentials(cfg, loaded.base)  # unreadable TLS files: a config error, before any dial
    mode = ("mutual TLS" if cfg.client_cert else "TLS") if cfg.tls else "plaintext"

    async def one(endpoint: str) -> str | None:
        async with channel_for(cfg, endpoint, base_dir=loaded.base) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=parse_duration(cfg.timeout))
            except grpc.aio.AioRpcError as exc:
                details = " ".join((exc.details() or "").split())
                return explain_transport(details, cfg, endpoint)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            return "reachable, but not serving (its storage is unavailable)"
        return None

    failed = 0
    for endpoint in cfg.endpoints:
        problem = _run_async(one(endpoint))
        if problem is None:
            _out(f"ok: {endpoint} ({mode})")
        else:
            failed += 1
            _err(f"{endpoint}: {problem}")
    return EXIT_UNAVAILABLE if failed else EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from agent.policy import load_policy, policy_digest, used_attrs

    loaded = _config(args)
    policy = load_policy(loaded.policy_path)
    from agent.profiles import check_files, check_profile

    problems: list[str] = []
    for what, path in (("signing key", loaded.key_path), ("site secret", loaded.secret_path)):
        if not path.exists():
            problems.append(f"{path}: {what} missing")
    violations = check_files(loaded) + (check_profile(loaded.config, args.profile) if args.profile else [])
    problems += [f"{loaded.path}: {v.key}: {v.message}" for v in violations]
    if not problems and loaded.config.collector.tls:
        from agent.sender import channel_credentials

        try:  # the TLS files named in [collector] can be read and look like PEM
            channel_credentials(loaded.config.collector, loaded.base)
        except ConfigError as exc:
            problems.append(f"{loaded.path}: {exc}")
    if problems:
        for line in problems:
            _err(line)
        return EXIT_USAGE
    unused = sorted(set(policy.attrs) - used_attrs(policy))
    if unused:
        sys.stderr.write(
            f"note: allowed attributes no metric uses are dropped at the edge: {', '.join(unused)}\n"
        )
    suffix = f", conforms to profile {args.profile}" if args.profile else ""
    _out(
        f"ok: {loaded.path} and {loaded.policy_path} ({len(policy.metrics)} metrics, "
        f"policy digest {policy_digest(policy)[:16]}){suffix}"
    )
    _out(_guarantee_line(policy))
    periodic = [m.name for m in policy.metrics if m.bound == "period"]
    if periodic:
        _out(
            f"per-{policy.budget.period} bounds (charged once per {policy.budget.period}): "
            f"{', '.join(periodic)}; the other metrics per window (see `hush-agent tune`)"
        )
    # what central ops approve (issue 14): the full digest, as the collector compares it
    _out(
        f"approve with: hush-collector policy approve {loaded.config.tenant} --digest {policy_digest(policy)}"
    )
    _print_custom_detectors(policy)
    return EXIT_OK


def _print_custom_detectors(policy: Any) -> None:
    from agent.detectors.custom import describe

    red = policy.redaction
    for rule in red.custom:
        action = rule.action or red.default
        _out("custom detector " + describe(rule.name, rule.regex, rule.checksum, rule.context, action))


def cmd_run(args: argparse.Namespace) -> int:
    from agent.runtime import Agent, install_signal_handlers

    loaded = _config(args)
    log_cfg = loaded.config.log
    setup_logging(log_cfg.format, "warning" if args.once and log_cfg.level == "info" else log_cfg.level)
    if not args.once and args.input is not None:
        raise ConfigError("--input reads a finite input: use it with --once")
    if not args.once and (args.range_from is not None or args.range_to is not None):
        raise ConfigError("--from and --to declare the range of a finite run: use them with --once")
    range_from = _parse_time(args.range_from, "--from")
    range_to = _parse_time(args.range_to, "--to")

    async def go() -> int:
        agent = Agent(loaded)
        try:
            if args.once:
                report = await agent.run_once(input_path=args.input, start=range_from, stop=range_to)
                if args.json:
                    _print_json(report)
                else:
                    _print_run_report(report)
                if report.windows_failed or (
                    (report.windows_refused or report.windows_held) and not report.windows_released
                ):
                    return EXIT_FAILED
                return EXIT_OK
            if loaded.config.metrics_listen:
                from agent.metrics import serve_metrics

                serve_metrics(loaded.config.metrics_listen, agent.metrics.registry)
            stop = asyncio.Event()
            install_signal_handlers(stop)
            await agent.serve(stop)
            return EXIT_OK
        finally:
            await agent.aclose()

    return int(_run_async(go()))


def _parse_time(text: str | None, flag: str) -> float | None:
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


def _print_run_report(report: Any) -> None:
    from agent.redact import COUNTERS

    # Everything that is not one of the counters is a detector's, built-in or the policy's own.
    found = {k: v for k, v in report.redactions.items() if k not in COUNTERS}
    other = {k: v for k, v in report.redactions.items() if k in COUNTERS}
    _out(f"events accepted   {report.events}")
    _out(f"dead letters      {report.dead_letters}")
    if report.late and report.range_from_now:
        _out(
            f"late (dropped)    {report.late} (before this run's range, which started at the current "
            "window: pass --from TIME to release historical data)"
        )
    else:
        _out(f"late (dropped)    {report.late}")
    if other:  # dropped_key: not allowed, or allowed but used by no metric (data minimisation)
        _out(
            "attrs dropped     "
            + ", ".join(f"{k} {v}" for k, v in sorted(other.items()))
            + " (unused or not allowed)"
        )
    _out("pii in kept attrs " + (", ".join(f"{k} {v}" for k, v in sorted(found.items())) or "none found"))
    _out(
        f"windows released  {report.windows_released} ({report.rows_released} rows)"
        + (f", range {report.range_from} .. {report.range_to}" if report.range_from else "")
    )
    if report.totals_released:
        _out(f"period totals     {report.totals_released} (one batch at each period's close)")
    if report.windows_refused:
        _out(f"windows refused   {report.windows_refused} (privacy budget exhausted)")
    if report.windows_held:
        held = report.windows_held
        _out(f"windows held      {held} (ledger unverified: see `hush-agent ledger --acknowledge-reset`)")
    if report.windows_failed:
        failed = report.windows_failed
        _out(f"windows failed    {failed} (see the log; kept in the journal for the next start)")
    _out(f"batches delivered {report.batches_sent}")
    _out(f"left in outbox    {report.outbox_depth}")
    if report.delivery_error:
        _out(f"delivery          {report.delivery_error}")


def cmd_export(args: argparse.Namespace) -> int:
    from agent.certify_cmd import read_certificate
    from agent.export import export_bundle
    from agent.runtime import open_agent_state
    from hushmetric.keys import load_signing_key

    loaded = _config(args)
    key = load_signing_key(loaded.key_path)
    conn = open_agent_state(loaded)
    try:
        result = export_bundle(
            conn,
            key,
            Path(args.out),
            tenant=loaded.config.tenant,
            agent=loaded.config.agent,
            at=time.time(),
            certificate=read_certificate(args.certificate),  # issue 14
        )
    finally:
        conn.close()
    if args.json:
        _print_json(result)
    else:
        _out(result.message)
    return EXIT_OK


def cmd_ledger(args: argparse.Namespace) -> int:
    from agent import ledger
    from agent.policy import load_policy
    from agent.runtime import open_agent_state

    loaded = _config(args)
    policy = load_policy(loaded.policy_path)
    if args.acknowledge_reset:
        from agent import integrity

        if not args.note.strip():
            raise ConfigError("--acknowledge-reset needs --note TEXT (who and why)", key="--note")
        integrity.check_state(loaded.state_dir)
        conn = open_agent_state(loaded)
        try:
            charged = integrity.acknowledge_reset(loaded.state_dir, conn, policy, note=args.note)
        finally:
            conn.close()
        _out("ledger acknowledged; " + ("; ".join(charged) if charged else "nothing missing to charge"))
        return EXIT_OK
    conn = open_agent_state(loaded)
    try:
        rows = ledger.summary(conn, policy)
    finally:
        conn.close()
    from agent.epsilon import guarantee

    # Each period's spend read as (ε, δ): ε by OpenDP's conversion at the policy's δ, and δ that
    # conversion's plus the partition-selection δ the period's windows were charged.
    spent_as = [guarantee(policy, spent=r.spent, selection_delta=r.delta) for r in rows]
    if args.json:
        _print_json(
            [
                {**msgspec.to_builtins(r), "epsilon": g.epsilon, "delta_total": g.delta_total}
                for r, g in zip(rows, spent_as, strict=True)
            ]
        )
        return EXIT_OK
    unit = "rho" if policy.budget.mechanism == "zcdp" else "epsilon"
    _out(
        f"{'period':<12} {unit + ' spent':>12} {'cap':>10} {'left':>10} {'releases':>9} {'refused':>8}"
        f" {'epsilon':>8} {'at delta':>9}"
    )
    for r, g in zip(rows, spent_as, strict=True):
        _out(
            f"{r.period:<12} {r.spent:>12.4f} {r.cap:>10.4f} {r.left:>10.4f} {r.releases:>9} {r.refusals:>8}"
            f" {g.epsilon:>8.3g} {g.delta_total:>9.2g}"
        )
    if not rows:
        _out("(nothing released yet)")
    _out("cap: " + _guarantee_line(policy))
    return EXIT_OK


def cmd_egress(args: argparse.Namespace) -> int:
    from agent import egress
    from agent.runtime import open_agent_state
    from agent.state import transaction

    loaded = _config(args)
    conn = open_agent_state(loaded)
    try:
        if args.action in ("stop", "resume"):
            with transaction(conn):
                if args.action == "stop":
                    egress.stop(conn, reason=args.reason, at=time.time())
                else:
                    egress.resume(conn, at=time.time())
            _out(
                "egress stopped: nothing leaves until `hush-agent egress resume`"
                if args.action == "stop"
                else "egress resumed"
            )
            return EXIT_OK
        if args.verify:
            result = egress.verify(conn)
            if args.json:
                _print_json(result)
            elif result.ok:
                _out(f"ok: {result.count} entries, head {result.head}")
            else:
                _out(f"FAILED at entry {result.first_bad}: {result.reason}")
            return EXIT_OK if result.ok else EXIT_FAILED
        entries = egress.entries(conn)
        stopped = egress.is_stopped(conn)
    finally:
        conn.close()
    if args.json:
        _print_json(entries)
        return EXIT_OK
    _out(f"egress is {'STOPPED' if stopped else 'open'}; {len(entries)} ledger entries")
    for e in entries[-args.limit :]:
        _out(egress.format_entry(e))
    return EXIT_OK


def cmd_dead_letter(args: argparse.Namespace) -> int:
    from agent import deadletter
    from agent.runtime import load_secret, open_agent_state

    loaded = _config(args)
    if args.digest_of is not None:
        # Digests are keyed with the site secret: this is how an operator matches an input from the
        # sender's own logs against a dead letter without the agent ever storing the input.
        key = deadletter.digest_key(load_secret(loaded.secret_path))
        with _read_input(args.digest_of) as fh:
            _out(deadletter.digest(key, fh.read()))
        return EXIT_OK
    conn = open_agent_state(loaded)
    try:
        letters = deadletter.recent(conn, args.limit)
        counts = deadletter.counts(conn)
    finally:
        conn.close()
    if args.json:
        _print_json({"counts": counts, "recent": letters})
        return EXIT_OK
    _out("refused inputs by reason: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    for d in letters:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(d.at))
        _out(f"{stamp} {d.reason:<16} {d.source} {d.size}B hmac:{d.digest[:16]} {d.detail}")
    return EXIT_OK


def cmd_outbox(args: argparse.Namespace) -> int:
    """The outbox quarantine: list it, put batches back (`retry`), or discard one with a note (`drop`)."""
    from agent import egress, outbox
    from agent.runtime import open_agent_state
    from agent.state import transaction

    loaded = _config(args)
    if args.action == "retry" and (args.seq is None) == (not args.all):
        raise ConfigError("`outbox retry` needs a SEQ or --all (not both)")
    if args.action == "drop" and (args.seq is None or args.all):
        raise ConfigError("`outbox drop` needs one SEQ (each drop is recorded on its own)")
    conn = open_agent_state(loaded)
    try:
        if args.action == "quarantine":
            held = outbox.quarantined(conn)
            if args.json:
                _print_json(held)
                return EXIT_OK
            _out(f"{len(held)} quarantined batches" + (":" if held else ""))
            for q in held:
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(q.at))
                _out(f"{q.seq:>8}  {when}  {q.rows} rows  {q.nbytes} bytes  {q.code}: {q.reason}")
            return EXIT_OK
        if args.action == "retry":
            with transaction(conn):
                seqs = (
                    outbox.requeue_all(conn)
                    if args.all
                    else ([args.seq] if outbox.requeue(conn, args.seq) else [])
                )
            if not seqs:
                _err(f"batch {args.seq} is not in the quarantine")
                return EXIT_FAILED
            _out(f"put back into the outbox: {', '.join(map(str, seqs))} (sent on the next delivery)")
            return EXIT_OK
        if not args.note.strip():
            raise ConfigError(
                "`outbox drop` needs --note TEXT (who and why; kept in the egress ledger)", key="--note"
            )
        with transaction(conn):
            gone = outbox.discard(conn, args.seq)
            if gone is not None:
                egress.record_drop(
                    conn,
                    seq=gone.seq,
                    digest=gone.digest,
                    nbytes=gone.nbytes,
                    rows=gone.rows,
                    note=args.note,
                    at=time.time(),
                )
        if gone is None:
            _err(f"batch {args.seq} is not in the quarantine")
            return EXIT_FAILED
        _out(f"dropped batch {gone.seq} (sha256:{gone.digest[:16]}); recorded in the egress ledger")
        return EXIT_OK
    finally:
        conn.close()


def _read_input(name: str) -> Any:
    if name == "-":
        return sys.stdin.buffer
    try:
        return Path(name).open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot read input: {exc.strerror or exc}", path=name) from exc


def cmd_redact(args: argparse.Namespace) -> int:
    """A dry run of the redaction stage: what each event (or text line) would look like after it."""
    from agent import deadletter
    from agent.decode import Decoder
    from agent.policy import load_policy, minimised
    from agent.redact import Redactor
    from agent.runtime import load_secret

    loaded = _config(args)
    policy = load_policy(loaded.policy_path)
    # Events are shown as the pipeline keeps them (minimised policy); --text lines are scanned as a
    # free-text value, whatever the policy's attributes.
    secret = load_secret(loaded.secret_path)
    redactor = Redactor(minimised(policy), secret)
    decoder = Decoder(loaded.config.limits, digest_key=deadletter.digest_key(secret))
    encoder = msgspec.json.Encoder()
    refused = 0
    with _read_input(args.input) as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            if args.text:
                _out(redactor.redact_text(line.decode("utf-8", "replace")))
                continue
            events, letters = decoder.decode(line, "redact", now=time.time())
            for letter in letters:
                refused += 1
                _out(f"# refused: {letter.reason}: {letter.detail}")
            for event in events:
                red = redactor.redact(event)
                _out(
                    "# dropped: finding in event name or attribute key"
                    if red is None
                    else encoder.encode(red).decode()
                )
    counts = redactor.take_counts()
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no findings"
    sys.stderr.write(f"findings: {summary}" + (f"; {refused} inputs refused" if refused else "") + "\n")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from agent.status import collect_status, format_status

    loaded = _config(args)
    status = collect_status(loaded, now=time.time())
    if args.json:
        _print_json(status)
    else:
        for line in format_status(status):
            _out(line)
    return EXIT_OK


def cmd_tune(args: argparse.Namespace) -> int:
    from agent.policy import load_policy, per_window_budget
    from agent.release import expected_error
    from agent.tune import suggest_budget, threshold_notes

    loaded = _config(args)
    policy = load_policy(loaded.policy_path)
    rows = expected_error(policy)
    suggestion = suggest_budget(policy, args.target, args.metric or ()) if args.target is not None else None
    if args.json:
        from agent.epsilon import guarantee
        from agent.levels import compare_levels

        doc: dict[str, Any] = {
            "expected": rows,
            "suggestion": suggestion,
            "privacy": guarantee(policy),
            "levels": compare_levels(policy),
        }
        if args.input is not None:
            from agent.levels import clipping

            doc["clipping"] = clipping(policy, _sample_events(loaded, policy, args.input))
        _print_json(doc)
        return EXIT_OK
    measure = "rho" if policy.budget.mechanism == "zcdp" else "epsilon"
    _out(f"expected error per released entry, per window, at {measure} {_fmt(per_window_budget(policy))}")
    head = ("metric", "stat", "noised", "mechanism", "std", "95% ±", "threshold")
    _out("{:<22} {:<14} {:<16} {:<9} {:>10} {:>10} {:>9}".format(*head))
    for r in rows:
        threshold = "-" if r.threshold is None else f"{r.threshold:.0f}"
        _out(
            f"{r.metric:<22} {r.stat:<14} {r.basis:<16} {r.mechanism:<9} "
            f"{_fmt(r.std):>10} {_fmt(r.half_width_95):>10} {threshold:>9}"
        )
    for line in threshold_notes(rows):
        _out(line)
    _out(_guarantee_line(policy))
    _print_levels(policy)
    if args.input is not None:
        _print_clipping(loaded, policy, args.input)
    if suggestion is not None:
        _out("")
        if suggestion.needed_per_window == float("inf"):
            _out(
                f"no budget reaches ±{_fmt(suggestion.target)}: loosen the bounds (max_contributions, upper)"
            )
            return EXIT_FAILED
        _out(
            f"for ±{_fmt(suggestion.target)} on {', '.join(suggestion.metrics)}: "
            f"{suggestion.measure} {_fmt(suggestion.needed_per_window)} per window, i.e. "
            f"[budget] {suggestion.measure} = {_fmt(suggestion.needed_per_period)} per {suggestion.period} "
            f"(now {_fmt(suggestion.current_per_window)} per window)"
        )
        if suggestion.measure == "rho":
            from agent.epsilon import epsilon_at

            eps = epsilon_at(suggestion.needed_per_period, policy.budget.delta)
            _out(
                f"  that is epsilon {eps:.3g} per {suggestion.period} at delta {policy.budget.delta:.2g} "
                "(OpenDP), plus the delta of partition selection"
            )
        if suggestion.missing_now:
            _out(f"over the target at the current budget: {', '.join(suggestion.missing_now)}")
        else:
            _out("every one of them already meets the target at the current budget")
    return EXIT_OK


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _guarantee_line(policy: Any) -> str:
    """One line: a full period of this policy in (epsilon, delta)-DP terms, by OpenDP's conversion."""
    from agent.epsilon import guarantee

    g = guarantee(policy)
    head = (
        f"privacy per {g.period}: {g.measure} {_fmt(g.cap)} gives "
        f"(epsilon {g.epsilon:.3g}, delta {g.delta_total:.2g})"
    )
    parts = []
    if g.measure == "rho":
        parts.append(f"{g.delta_conversion:.2g} to read rho as epsilon (OpenDP's conversion)")
    if g.delta_selection:
        parts.append(f"{g.windows} windows x {g.delta_selection_per_window:.2g} for partition selection")
    return head + (f"; delta = {' + '.join(parts)}" if parts else "")


def _sample_events(loaded: LoadedConfig, policy: Policy, path: str) -> list[Any]:
    """The events of a JSON-lines sample as the pipeline keeps them (decoded, redacted)."""
    from agent.decode import Decoder
    from agent.policy import minimised
    from agent.redact import Redactor
    from agent.runtime import load_secret

    redactor = Redactor(minimised(policy), load_secret(loaded.secret_path))
    decoder = Decoder(loaded.config.limits)
    with _read_input(path) as fh:
        events, _letters = decoder.decode(fh.read(), "tune", now=time.time())
    return list(redactor.redact_many(events))


def _print_clipping(loaded: LoadedConfig, policy: Policy, path: str) -> None:
    """``tune --input``: the bias side: what the caps drop from a sample, per window and per period."""
    from agent.levels import clipping

    rows = clipping(policy, _sample_events(loaded, policy, path))
    if not rows:
        return
    _out("")
    _out(f"bias on the sample {path}: contributions the caps drop (missing from released values)")
    _out(
        "{:<22} {:<7} {:>13} {:>9} {:>8} {:>14}".format(
            "metric", "bound", "contributions", "dropped", "units", "units clipped"
        )
    )
    for r in rows:
        share = f"{r.dropped / r.contributions:.1%}" if r.contributions else "-"
        _out(
            f"{r.metric:<22} {r.bound:<7} {r.contributions:>13} {share:>9} {r.units:>8} {r.units_clipped:>14}"
        )


def _print_levels(policy: Policy) -> None:
    """``tune``: 95 % half-widths under window bounds, period bounds, and period bounds with a total."""
    from agent.levels import compare_levels

    rows = compare_levels(policy)
    if not rows:
        return
    _out("")
    _out(
        f"95% ± of a window value / of a {policy.budget.period} total (normal approx.): window bounds, "
        "period bounds, period bounds with a period total (least squares at the collector)"
    )
    head = ("metric", "bound", "window bounds", "period bounds", "with total", "total share")
    _out("{:<22} {:<7} {:>21} {:>21} {:>21} {:>11}".format(*head))
    for r in rows:
        levels = "-" if r.levels_window is None else f"{_fmt(r.levels_window)} / {_fmt(r.levels_total or 0)}"
        share = "-" if r.total_share is None else f"{r.total_share:g}"
        window = f"{_fmt(r.window_bound_window)} / {_fmt(r.window_bound_total)}"
        period = f"{_fmt(r.period_bound_window)} / {_fmt(r.period_bound_total)}"
        _out(f"{r.metric:<22} {r.bound:<7} {window:>21} {period:>21} {levels:>21} {share:>11}")
    _out(
        f"period bounds cap what a unit adds over the whole {policy.budget.period} (max_partitions, "
        "max_contributions): more is dropped and counted as contributions_dropped"
    )


def cmd_attest(args: argparse.Namespace) -> int:
    """Sign (or verify) a statement of what this agent released under which policy."""
    from agent import attest
    from agent.policy import load_policy
    from agent.runtime import open_agent_state
    from hushmetric.keys import load_signing_key, read_public_key_arg

    if args.verify:
        try:
            data = Path(args.verify).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror or exc}", path=args.verify) from exc
        if args.public_key:
            public = read_public_key_arg(args.public_key)
        else:
            public = bytes(load_signing_key(_config(args).key_path).verify_key)
        statement = attest.verify(data, public)
        if args.json:
            _print_json(statement)
        else:
            spent = sum(p.spent for p in statement.periods)
            _out(
                f"ok: attestation by {statement.agent} (tenant {statement.tenant}) at {statement.created}; "
                f"policy {statement.policy.name} {statement.policy.digest[:16]}; "
                f"{len(statement.periods)} periods, {statement.policy.mechanism} spent {spent:.4g}; "
                f"{statement.egress.batches} batches out, egress head {statement.egress.head[:16]}"
            )
        return EXIT_OK
    loaded = _config(args)
    policy = load_policy(loaded.policy_path)
    key = load_signing_key(loaded.key_path)
    conn = open_agent_state(loaded)
    try:
        statement = attest.build(
            conn,
            policy,
            tenant=loaded.config.tenant,
            agent=loaded.config.agent,
            public_key=bytes(key.verify_key),
            now=time.time(),
        )
    finally:
        conn.close()
    data = attest.sign(statement, key)
    if args.out:
        Path(args.out).write_bytes(data + b"\n")
        _out(f"wrote a signed attestation to {args.out} (verify: hush-agent attest --verify {args.out})")
    else:
        sys.stdout.write(data.decode() + "\n")
    return EXIT_OK


def cmd_demo_data(args: argparse.Namespace) -> int:
    from agent.sources.demo import write_dataset

    count = write_dataset(Path(args.out), seed=args.seed, users=args.users, days=args.days)
    _out(f"wrote {count} events to {args.out}")
    return EXIT_OK


# -- parser -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    config_help = "agent config file (default: $HUSH_AGENT_CONFIG or ./agent.toml)"
    # --config is accepted before and after the command; the copy on each command must not
    # overwrite a value given before it with its default, hence SUPPRESS there.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    parser = argparse.ArgumentParser(
        prog="hush-agent",
        description="Edge agent of hushmetric: redacts personal data, aggregates with differential privacy, "
        "signs each release and delivers it to the collector or into an offline bundle.",
        epilog="Exit codes: 0 ok, 1 failed (verification, refusal, budget), 2 usage or config error, "
        "4 collector unreachable, 5 state directory in use by another process, 130 interrupted.",
    )
    default_config = os.environ.get("HUSH_AGENT_CONFIG", "agent.toml")
    parser.add_argument("--config", default=default_config, help=config_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    p = add("init", cmd_init, "create a config directory that runs as is (demo source)")
    p.add_argument("--dir", required=True, help="directory to write agent.toml, policy.toml and keys into")
    p.add_argument("--tenant", required=True, help="tenant name at the collector")
    p.add_argument("--collector", metavar="HOST:PORT", help="collector endpoint (omit for air-gap)")
    p.add_argument("--agent", help="agent id (default: a new random one)")
    p.add_argument("--force", action="store_true", help="overwrite an existing config and keys")

    p = add("key", cmd_key_show, "show the agent's public key and key id")
    p.add_argument("action", choices=["show"])
    p.add_argument("--json", action="store_true")

    p = add("enroll", cmd_enroll, "bind this agent's key to its tenant with a one-time token")
    p.add_argument("--token", required=True, help="token from `hush-collector enroll-token`")
    p.add_argument("--endpoint", metavar="HOST:PORT", help="collector (default: the first configured)")

    p = add("validate", cmd_validate, "check config and policy (and a deployment profile)")
    p.add_argument("--profile", choices=["saas", "vpc", "on-prem", "air-gap"])

    add("probe", cmd_probe, "dial each collector endpoint with the TLS settings and check its health")

    p = add("run", cmd_run, "run the pipeline (daemon, or --once over finite input)")
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

    p = add("export", cmd_export, "move the outbox into a signed bundle for the air gap")
    p.add_argument("--out", required=True, metavar="FILE.tar")
    p.add_argument("--certificate", metavar="FILE", help="add a `certify --out` certificate to the bundle")
    p.add_argument("--json", action="store_true")

    p = add("ledger", cmd_ledger, "privacy budget spent and left per period")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--acknowledge-reset",
        action="store_true",
        help="after a state integrity failure: restore the ledger to its last head and unblock releases",
    )
    p.add_argument("--note", default="", help="who acknowledges and why (recorded; with --acknowledge-reset)")

    p = add("egress", cmd_egress, "what left this site; `stop` / `resume` is the local kill switch")
    p.add_argument("action", nargs="?", choices=["stop", "resume"], help="stop or resume all egress")
    p.add_argument("--verify", action="store_true", help="verify the hash chain of the egress ledger")
    p.add_argument("--reason", default="operator", help="recorded with `stop`")
    p.add_argument("--limit", type=int, default=20, help="entries to list (default 20)")
    p.add_argument("--json", action="store_true")

    p = add("dead-letter", cmd_dead_letter, "inputs refused by the decoder, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument(
        "--digest-of",
        metavar="FILE|-",
        help="print the site's keyed digest of this exact input (to match a dead letter), then exit",
    )
    p.add_argument("--json", action="store_true")

    p = add("outbox", cmd_outbox, "batches the collector refused for good: list, retry or drop them")
    p.add_argument("action", choices=["quarantine", "retry", "drop"], help="quarantine lists them")
    p.add_argument("seq", nargs="?", type=int, metavar="SEQ", help="the batch (retry, drop)")
    p.add_argument("--all", action="store_true", help="retry: every quarantined batch")
    p.add_argument("--note", default="", help="drop: who and why (recorded in the egress ledger)")
    p.add_argument("--json", action="store_true")

    p = add("redact", cmd_redact, "dry run: print input as it would look after redaction")
    p.add_argument("--input", default="-", metavar="FILE|-", help="JSON-lines events (default: stdin)")
    p.add_argument("--text", action="store_true", help="treat each line as a free-text value")

    p = add("status", cmd_status, "outbox, last delivery, egress state, budget, dead letters")
    p.add_argument("--json", action="store_true")

    p = add("tune", cmd_tune, "expected error of every metric, and the budget a target error needs")
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

    p = add("attest", cmd_attest, "sign a statement of what was released under which policy, for auditors")
    p.add_argument("--out", metavar="FILE", help="write the DSSE JSON envelope here (default: stdout)")
    p.add_argument("--verify", metavar="FILE", help="verify an attestation instead of making one")
    p.add_argument("--public-key", metavar="B64|@FILE", help="with --verify: the agent's key (default: own)")
    p.add_argument("--json", action="store_true", help="with --verify: print the verified statement")

    from agent import certify_cmd  # issue 14: certified agents

    certify_cmd.register(sub, common)

    p = add("demo-data", cmd_demo_data, "write the seeded demo dataset as JSON lines")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--users", type=int, default=400)
    p.add_argument("--days", type=int, default=2)
    return parser


def _state_lock(args: argparse.Namespace) -> Any:
    """The state-lock hook: commands that release, charge or drain hold the state directory's lock for
    the whole process (one writer per state directory). ``egress stop|resume`` deliberately does not:
    the kill switch must work while the daemon runs, and it is one SQLite transaction the sender
    re-reads before every delivery. Read-only commands never lock."""
    writes = args.command in ("run", "export") or (
        args.command == "ledger" and getattr(args, "acknowledge_reset", False)
    )
    if not writes:
        return None
    from agent.state import lock_state

    return lock_state(_config(args).state_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    lock = None
    try:
        lock = _state_lock(args)
        return int(args.fn(args))
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except HushError as exc:
        _err(str(exc))
        if exc.code == "locked":
            return EXIT_LOCKED
        return EXIT_UNAVAILABLE if exc.code in ("unavailable", "deadline_exceeded") else EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK
    finally:
        if lock is not None:
            lock.release()


if __name__ == "__main__":
    sys.exit(main())
