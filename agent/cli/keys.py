"""The agent's identity and its link to the collector: ``init``, ``key show``, ``enroll``, ``probe``."""

from __future__ import annotations

from pathlib import Path

from agent.cli.kit import Context, Subcommands, run_async
from hushmetric.errors import ConfigError
from hushmetric.exitcodes import ExitCode

__all__ = ["register"]


def init(ctx: Context) -> ExitCode:
    from agent.scaffold import init_dir

    a = ctx.args
    result = init_dir(Path(a.dir), tenant=a.tenant, collector=a.collector, agent=a.agent, force=a.force)
    ctx.say(result.agent)
    ctx.note(
        f"wrote {result.config}, {result.policy}, {result.key_file} and {result.secret_file} (0600)\n"
        f"next: hush-agent --config {result.config} validate\n"
        f"      hush-agent --config {result.config} run --once\n"
    )
    return ExitCode.OK


def key_show(ctx: Context) -> ExitCode:
    from hushmetric.keys import key_id, load_signing_key, public_key_b64

    loaded = ctx.config
    public = bytes(load_signing_key(loaded.key_path).verify_key)
    if ctx.args.json:
        ctx.json(
            {"public_key": public_key_b64(public), "key_id": key_id(public), "agent": loaded.config.agent}
        )
    else:
        ctx.say(public_key_b64(public))
        ctx.say(key_id(public))
    return ExitCode.OK


def enroll(ctx: Context) -> ExitCode:
    from agent.enroll import enroll as enroll_key
    from hushmetric.keys import load_signing_key

    loaded = ctx.config
    endpoints = [ctx.args.endpoint] if ctx.args.endpoint else loaded.config.collector.endpoints
    if not endpoints:
        raise ConfigError("no collector endpoint: pass --endpoint HOST:PORT or set collector.endpoints")
    public = bytes(load_signing_key(loaded.key_path).verify_key)
    tenant, kid = run_async(
        enroll_key(
            loaded.config.collector,
            endpoints[0],
            token=ctx.args.token,
            agent=loaded.config.agent,
            public_key=public,
            base_dir=loaded.base,
        )
    )
    if tenant != loaded.config.tenant:
        ctx.warn(
            f"warning: the collector bound this key to tenant {tenant!r}, "
            f"the config says {loaded.config.tenant!r}"
        )
    ctx.say(kid)
    return ExitCode.OK


def probe(ctx: Context) -> ExitCode:
    """Dial every collector endpoint with the configured TLS settings and ask gRPC health: the quick
    check after setting up TLS, mutual TLS or a firewall. Sends no batch."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from agent.transport import channel_credentials, channel_for, explain_transport

    loaded = ctx.config
    cfg = loaded.config.collector
    if not cfg.endpoints:
        raise ConfigError("no collector endpoints to probe", key="collector.endpoints")
    channel_credentials(cfg, loaded.base)  # unreadable TLS files: a config error, before any dial
    mode = ("mutual TLS" if cfg.client_cert else "TLS") if cfg.tls else "plaintext"

    async def one(endpoint: str) -> str | None:
        async with channel_for(cfg, endpoint, base_dir=loaded.base) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=float(cfg.timeout))
            except grpc.aio.AioRpcError as exc:
                details = " ".join((exc.details() or "").split())
                return explain_transport(details, cfg, endpoint)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            return "reachable, but not serving (its storage is unavailable)"
        return None

    failed = 0
    for endpoint in cfg.endpoints:
        problem = run_async(one(endpoint))
        if problem is None:
            ctx.say(f"ok: {endpoint} ({mode})")
        else:
            failed += 1
            ctx.warn(f"{endpoint}: {problem}")
    return ExitCode.UNAVAILABLE if failed else ExitCode.OK


def register(sub: Subcommands) -> None:
    p = sub.add("init", init, "create a config directory that runs as is (demo source)")
    p.add_argument("--dir", required=True, help="directory to write agent.toml, policy.toml and keys into")
    p.add_argument("--tenant", required=True, help="tenant name at the collector")
    p.add_argument("--collector", metavar="HOST:PORT", help="collector endpoint (omit for air-gap)")
    p.add_argument("--agent", help="agent id (default: a new random one)")
    p.add_argument("--force", action="store_true", help="overwrite an existing config and keys")

    p = sub.add("key", key_show, "show the agent's public key and key id")
    p.add_argument("action", choices=["show"])
    p.add_argument("--json", action="store_true")

    p = sub.add("enroll", enroll, "bind this agent's key to its tenant with a one-time token")
    p.add_argument("--token", required=True, help="token from `hush-collector enroll-token`")
    p.add_argument("--endpoint", metavar="HOST:PORT", help="collector (default: the first configured)")

    sub.add("probe", probe, "dial each collector endpoint with the TLS settings and check its health")
