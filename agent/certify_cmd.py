"""``hush-agent certify --profile P [--valid 30d] [--out FILE] [--send]``: sign a certificate.

Refuses (exit 1, one line) when the config does not conform to the profile. ``--send`` delivers it
to the collector's ``SubmitCertificate`` RPC (over the configured endpoint and TLS settings, never
while the egress kill switch is on) and lists it in the egress ledger; ``--out`` writes the file
for ``hush-collector certify verify`` or for an air-gap bundle (``hush-agent export --certificate
FILE``). Without either it is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
from pathlib import Path

import grpc

from agent import certify, egress
from agent.config import CollectorConfig, LoadedConfig, load_config
from hushmetric.errors import ConfigError, HushError
from hushmetric.exitcodes import ExitCode
from hushmetric.timefmt import parse_duration

__all__ = ["cmd_certify", "read_certificate", "register", "send"]


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add ``certify`` to ``hush-agent``'s sub-commands (``common`` carries ``--config``)."""
    help_ = "sign a certificate: profile conformance, policy, spend and egress head, valid for a time"
    p = sub.add_parser("certify", parents=[common], help=help_, description=help_)
    p.set_defaults(fn=cmd_certify)
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
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=path) from exc


def _valid_seconds(text: str) -> int:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(str(exc), key="--valid") from exc
    if not 0 < seconds <= 400 * 86400:
        raise ConfigError("validity must be between 1 second and 400 days", key="--valid")
    return seconds


def cmd_certify(args: argparse.Namespace) -> int:
    from agent.policy import load_policy
    from agent.profiles import check_files, check_profile
    from agent.runtime import open_agent_state
    from hushmetric.keys import load_signing_key

    valid = _valid_seconds(args.valid)
    loaded = load_config(Path(args.config))
    policy = load_policy(loaded.policy_path)
    key = load_signing_key(loaded.key_path)
    result = certify.conformance(
        args.profile, check_profile(loaded.config, args.profile), check_files(loaded)
    )
    if not result.passed:
        failed = "; ".join(f"{c.name} ({', '.join(c.problems)})" for c in result.checks if not c.passed)
        sys.stderr.write(
            f"hush-agent: not certified: config does not conform to profile {args.profile}: {failed} "
            f"(details: hush-agent validate --profile {args.profile})\n"
        )
        return ExitCode.FAILED
    conn = open_agent_state(loaded)
    try:
        cert = certify.build(
            conn,
            policy,
            result,
            tenant=loaded.config.tenant,
            agent=loaded.config.agent,
            public_key=bytes(key.verify_key),
            now=time.time(),
            valid_seconds=valid,
        )
        switch = egress.state(conn)
    finally:
        conn.close()
    data = certify.sign(cert, key)
    summary = f"profile {cert.profile}, policy {cert.policy_digest[:16]}, valid until {cert.valid_until}"
    if args.out:
        Path(args.out).write_bytes(data + b"\n")
        sys.stdout.write(f"wrote a certificate to {args.out}: {summary}\n")
    elif not args.send:
        sys.stdout.write(data.decode() + "\n")
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
        reply = asyncio.run(send(cfg, endpoint, data, base_dir=loaded.base))
        _record_egress(loaded, f"grpc:{endpoint}", data)
        sys.stdout.write(f"sent to {endpoint}: recorded as the current certificate of {reply}\n")
    return ExitCode.OK


def _record_egress(loaded: LoadedConfig, destination: str, data: bytes) -> None:
    """What left is listed in the egress ledger, like a delivered batch (after the collector answered)."""
    from agent.runtime import open_agent_state
    from agent.state import transaction

    conn = open_agent_state(loaded)
    try:
        with transaction(conn):
            egress.record_certificate(
                conn,
                destination=destination,
                digest=hashlib.sha256(data).hexdigest(),
                nbytes=len(data),
                at=time.time(),
            )
    finally:
        conn.close()


async def send(cfg: CollectorConfig, endpoint: str, data: bytes, *, base_dir: Path | None = None) -> str:
    """Submit one certificate file; returns ``tenant/agent`` as the collector recorded it."""
    from agent.transport import channel_for, explain_transport
    from hushmetric.certificate import open_envelope
    from hushmetric.v1 import ingest_pb2_grpc
    from hushmetric.wire import envelope_to_proto

    async with channel_for(cfg, endpoint, base_dir=base_dir) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)  # type: ignore[no-untyped-call]  # generated stub
        try:
            reply = await stub.SubmitCertificate(
                envelope_to_proto(open_envelope(data)), timeout=parse_duration(cfg.timeout)
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name.lower()
            details = " ".join((exc.details() or "").split())
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                details = explain_transport(details, cfg, endpoint)
            raise HushError(f"certificate refused by {endpoint}: {code}: {details}", code=code) from exc
    return f"{reply.tenant}/{reply.agent} (valid until {reply.valid_until})"
