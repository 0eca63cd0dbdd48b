"""``hush-agent certify --profile P [--valid 30d] [--out FILE] [--send]``: sign a certificate.

Refuses (exit 1, one line) when the config does not conform to the profile. ``--send`` delivers it
to the collector's ``SubmitCertificate`` RPC (over the configured endpoint and TLS settings, never
while the egress kill switch is on) and lists it in the egress ledger; ``--out`` writes the file
for ``hush-collector certify verify`` or for an air-gap bundle (``hush-agent export --certificate
FILE``). Without either it is printed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from agent import certify as statements
from agent import egress
from agent.cli.kit import Context, Subcommands, run_async, write_output
from agent.config import CollectorConfig
from hushmetric.certificate import MAX_CERTIFICATE_BYTES
from hushmetric.errors import ConfigError, HushError
from hushmetric.exitcodes import ExitCode
from hushmetric.timefmt import parse_duration

__all__ = ["certify", "read_certificate", "register", "send"]

_MAX_VALID = 400 * 86400


def register(sub: Subcommands) -> None:
    p = sub.add(
        "certify",
        certify,
        "sign a certificate: profile conformance, policy, spend and egress head, valid for a time",
    )
    p.add_argument("--profile", required=True, choices=["saas", "vpc", "on-prem", "air-gap"])
    p.add_argument("--valid", default="30d", metavar="DURATION", help="validity (default 30d, at most 400d)")
    p.add_argument("--out", metavar="FILE", help="write the DSSE JSON envelope here")
    p.add_argument("--send", action="store_true", help="submit it to the collector")
    p.add_argument("--endpoint", metavar="HOST:PORT", help="with --send: the collector (default: the first)")


def read_certificate(path: str | None) -> bytes | None:
    """The bytes of a certificate file named on the command line (None: none named)."""
    if path is None:
        return None
    try:
        with Path(path).open("rb") as fh:  # bounded: the path may name a device or a huge file
            data = fh.read(MAX_CERTIFICATE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise ConfigError(f"larger than a certificate can be ({MAX_CERTIFICATE_BYTES} bytes)", path=path)
    return data


def _valid_seconds(text: str) -> int:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(str(exc), key="--valid") from exc
    if not 0 < seconds <= _MAX_VALID:
        raise ConfigError("validity must be between 1 second and 400 days", key="--valid")
    return seconds


def certify(ctx: Context) -> ExitCode:
    from agent.policy import load_policy
    from agent.profiles import check_files, check_profile
    from hushmetric.keys import load_signing_key

    args = ctx.args
    valid = _valid_seconds(args.valid)
    loaded = ctx.config
    policy = load_policy(loaded.policy_path)
    key = load_signing_key(loaded.key_path)
    result = statements.conformance(
        args.profile, check_profile(loaded.config, args.profile), check_files(loaded)
    )
    if not result.passed:
        failed = "; ".join(f"{c.name} ({', '.join(c.problems)})" for c in result.checks if not c.passed)
        ctx.warn(
            f"not certified: config does not conform to profile {args.profile}: {failed} "
            f"(details: hush-agent validate --profile {args.profile})"
        )
        return ExitCode.FAILED
    with ctx.state() as conn:
        cert = statements.build(
            conn,
            policy,
            result,
            tenant=loaded.config.tenant,
            agent=loaded.config.agent,
            public_key=bytes(key.verify_key),
            now=ctx.clock(),
            valid_seconds=valid,
        )
        switch = egress.state(conn)
    data = statements.sign(cert, key)
    summary = f"profile {cert.profile}, policy {cert.policy_digest[:16]}, valid until {cert.valid_until}"
    if args.out:
        write_output(args.out, data + b"\n")
        ctx.say(f"wrote a certificate to {args.out}: {summary}")
    elif not args.send:
        ctx.say(data.decode())
    if args.send:
        if switch.stopped:
            raise HushError(
                f"egress is stopped ({switch.reason}); the certificate was not sent", code="stopped"
            )
        cfg = loaded.config.collector
        endpoint = args.endpoint or (cfg.endpoints[0] if cfg.endpoints else None)
        if endpoint is None:
            raise ConfigError(
                "no collector endpoint configured; use --out and an air-gap bundle", key="--send"
            )
        reply = run_async(send(cfg, endpoint, data, base_dir=loaded.base))
        _record_egress(ctx, f"grpc:{endpoint}", data)
        ctx.say(f"sent to {endpoint}: recorded as the current certificate of {reply}")
    return ExitCode.OK


def _record_egress(ctx: Context, destination: str, data: bytes) -> None:
    """What left is listed in the egress ledger, like a delivered batch (after the collector answered)."""
    from agent.state import transaction

    with ctx.state() as conn, transaction(conn):
        egress.record_certificate(
            conn,
            destination=destination,
            digest=hashlib.sha256(data).hexdigest(),
            nbytes=len(data),
            at=ctx.clock(),
        )


async def send(cfg: CollectorConfig, endpoint: str, data: bytes, *, base_dir: Path | None = None) -> str:
    """Submit one certificate file; returns ``tenant/agent`` as the collector recorded it."""
    import grpc

    from agent.transport import channel_for, explain_transport
    from hushmetric.certificate import open_envelope
    from hushmetric.v1 import ingest_pb2_grpc
    from hushmetric.wire import envelope_to_proto

    async with channel_for(cfg, endpoint, base_dir=base_dir) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)  # type: ignore[no-untyped-call]  # generated stub
        try:
            reply = await stub.SubmitCertificate(
                envelope_to_proto(open_envelope(data)), timeout=cfg.timeout
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name.lower()
            details = " ".join((exc.details() or "").split())
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                details = explain_transport(details, cfg, endpoint)
            raise HushError(f"certificate refused by {endpoint}: {code}: {details}", code=code) from exc
    return f"{reply.tenant}/{reply.agent} (valid until {reply.valid_until})"
