"""How the agent reaches its collector: the gRPC channel (allow-listed endpoints, TLS, keepalive),
operator-readable transport errors, and the one capped, jittered back-off formula.

Used by :mod:`agent.sender` (delivery), :mod:`agent.enroll` (enrollment and probes) and the MQTT
source (reconnects), so a retry schedule or a TLS setting is written once.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import CollectorConfig
from hushmetric.errors import ConfigError

if TYPE_CHECKING:  # gRPC is imported where a channel is made: the MQTT source needs only Backoff
    import grpc.aio

__all__ = [
    "Backoff",
    "channel_credentials",
    "channel_for",
    "channel_options",
    "dial",
    "explain_transport",
]


def channel_options(server_name: str | None = None) -> list[tuple[str, Any]]:
    """Channel arguments: keepalive only while a call is in flight (servers' default ping policy
    tolerates that), replies are tiny, and our own back-off replaces gRPC's reconnect back-off
    (a failed channel is closed and a fresh one dialled on the next attempt)."""
    options: list[tuple[str, Any]] = [
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.max_receive_message_length", 1 << 20),
        ("grpc.primary_user_agent", "hush-agent"),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
        options.append(("grpc.default_authority", server_name))
    return options


class Backoff:
    """Capped exponential back-off with equal jitter: delay n is uniform in [d/2, d],
    d = min(cap, base·2ⁿ). Never zero, so a flapping collector is not hammered."""

    def __init__(self, base: float, cap: float, rng: random.Random) -> None:
        self.base: float = base
        self.cap: float = max(cap, base)
        self.attempt = 0
        self._rng = rng

    def next(self) -> float:
        d = min(self.cap, self.base * 2.0 ** min(self.attempt, 32))
        self.attempt += 1
        return d / 2 + self._rng.uniform(0, d / 2)

    def reset(self) -> None:
        self.attempt = 0


def _read_tls_file(value: str, base_dir: Path | None, key: str, what: str) -> bytes:
    path = Path(value)
    path = path if path.is_absolute() or base_dir is None else base_dir / path
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror or exc}", path=str(path), key=key) from exc


def channel_credentials(cfg: CollectorConfig, base_dir: Path | None = None) -> Any:
    """TLS credentials for ``cfg`` (None without TLS). Relative ``ca_file``, ``client_cert`` and
    ``client_key`` are resolved in ``base_dir`` (the config file's directory)."""
    if not cfg.tls:
        return None
    root = _read_tls_file(cfg.ca_file, base_dir, "collector.ca_file", "CA file") if cfg.ca_file else None
    if (cfg.client_cert is None) != (cfg.client_key is None):
        missing = "collector.client_key" if cfg.client_key is None else "collector.client_cert"
        raise ConfigError("client_cert and client_key go together (mutual TLS)", key=missing)
    chain = key = None
    if cfg.client_cert is not None and cfg.client_key is not None:
        chain = _read_tls_file(cfg.client_cert, base_dir, "collector.client_cert", "client certificate")
        key = _read_tls_file(cfg.client_key, base_dir, "collector.client_key", "client key")
        if b"-----BEGIN CERTIFICATE-----" not in chain:
            raise ConfigError("not a PEM certificate", key="collector.client_cert")
        if b"PRIVATE KEY-----" not in key:
            raise ConfigError("not a PEM private key", key="collector.client_key")
    import grpc

    return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)


# What gRPC's C core says when a connection fails, and what it means for an operator (first match).
_TLS_HINTS: tuple[tuple[str, str], ...] = (
    ("certificate has expired", "the collector's certificate has expired (or the agent's clock is wrong)"),
    ("certificate is not yet valid", "the collector's certificate is not valid yet (check the clocks)"),
    (
        "Hostname Verification",
        "the collector's certificate is not valid for the name {name} (collector.server_name)",
    ),
    (
        "CERTIFICATE_VERIFY_FAILED",
        "the collector's certificate is not signed by a CA this agent trusts ({ca})",
    ),
    ("WRONG_VERSION_NUMBER", "the collector does not speak TLS on this port (plaintext? see collector.tls)"),
)


def explain_transport(details: str, cfg: CollectorConfig, endpoint: str) -> str:
    """One line an operator can act on, for gRPC's description of a failed connection (pure)."""
    for needle, hint in _TLS_HINTS:
        if needle in details:
            name = cfg.server_name or endpoint.rpartition(":")[0]
            ca = (
                f"collector.ca_file {cfg.ca_file}"
                if cfg.ca_file
                else "the system trust store; set collector.ca_file"
            )
            return "TLS handshake failed: " + hint.format(name=name, ca=ca)
    if "Socket closed" in details and "failed to connect" in details:
        if not cfg.tls:
            return "the collector closed the connection: does it require TLS? (collector.tls = true)"
        if cfg.client_cert is None:
            return (
                "the collector closed the TLS connection: it may require a client certificate "
                "(mutual TLS: set collector.client_cert and collector.client_key)"
            )
        return (
            "the collector closed the TLS connection: it does not accept this agent's client certificate "
            "(collector.client_cert: issued by the CA the collector trusts, and not expired?)"
        )
    return details


def dial(cfg: CollectorConfig, credentials: Any, endpoint: str) -> grpc.aio.Channel:
    """A channel to ``endpoint``, which must be allow-listed (``collector.endpoints``)."""
    if endpoint not in cfg.endpoints:
        raise ConfigError(f"{endpoint!r} is not in the egress allow-list", key="collector.endpoints")
    import grpc.aio

    options = channel_options(cfg.server_name if cfg.tls else None)
    if credentials is not None:
        return grpc.aio.secure_channel(endpoint, credentials, options=options)
    return grpc.aio.insecure_channel(endpoint, options=options)


@asynccontextmanager
async def channel_for(
    cfg: CollectorConfig, endpoint: str, *, base_dir: Path | None = None
) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to one allow-listed endpoint with the sender's TLS and keepalive settings (for
    enrollment and probes); closed on exit. ConfigError if ``endpoint`` is not in ``cfg.endpoints``."""
    channel = dial(cfg, channel_credentials(cfg, base_dir), endpoint)
    try:
        yield channel
    finally:
        await channel.close()
