"""``agent.toml``: where the agent reads from, where it may send to, and where it keeps its state.

Relative paths are resolved against the directory of the config file, so a config directory made by
``hush-agent init`` can be moved as a whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from agent.memory import parse_size
from hushmetric.config import Duration, load_toml
from hushmetric.errors import ConfigError

__all__ = [
    "AgentConfig",
    "CollectorConfig",
    "DemoSource",
    "FileSource",
    "Limits",
    "LoadedConfig",
    "LogConfig",
    "MqttSource",
    "OtlpSource",
    "OutboxConfig",
    "Source",
    "StdinSource",
    "SyslogSource",
    "deprecations",
    "load_config",
]

# Below this, the interpreter and the modules alone exceed the limit: it could never be met.
MIN_MEMORY = 64 << 20

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]


class MqttSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="mqtt", tag_field="type"):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 1883
    topics: Annotated[list[str], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["telemetry/#"]
    )
    client_id: str | None = None  # stable id for the persistent session; default: "hush-" + agent id
    username: str | None = None
    password_file: str | None = None  # never the password itself in the config
    tls: bool = False
    ca_file: str | None = None
    keepalive: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 30
    # Unacknowledged messages the broker may send at once (MQTT 5 Receive Maximum; with a 3.1.1
    # broker its max_inflight_messages decides). See docs/operations.md, "MQTT brokers".
    receive_maximum: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 1000
    # "3.1.1" (default): the window is the broker's max_inflight_messages; "5": asks for receive_maximum,
    # for a broker behind a slow link whose settings cannot be changed (paho parses MQTT 5 packets at
    # about half the speed, measured: see docs/operations.md). "5" falls back to 3.1.1 if refused.
    protocol: Literal["5", "3.1.1"] = "3.1.1"


class FileSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="file", tag_field="type"):
    path: str
    follow: bool = True  # keep reading appended lines (ignored with `run --once`)


class StdinSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="stdin", tag_field="type"):
    pass


class DemoSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="demo", tag_field="type"):
    seed: int = 7
    users: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 400
    days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 2
    start: str = "2026-01-05T00:00:00Z"  # event time of the first event (deterministic output)


Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]  # 0: this listener is off
AttrKey = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class OtlpSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="otlp", tag_field="type"):
    """OTLP receiver for logs and metrics (agent/sources/otlp.py); the mapping is described there."""

    host: str = "127.0.0.1"  # loopback by default: exposing it is a decision, not an accident
    grpc_port: Port = 4317
    http_port: Port = 4318  # protobuf and JSON on POST /v1/logs and /v1/metrics
    # The privacy unit: this attribute of the record (or data point), else of its resource.
    unit_attribute: AttrKey = "enduser.id"
    # Log event name: this attribute, else the record's event_name, else the body (if name_from_body),
    # else default_name; a record with none of them is dead-lettered.
    name_attribute: AttrKey = "event.name"
    name_from_body: bool = False
    default_name: AttrKey | None = None
    body_attribute: AttrKey = "body"  # a string body becomes this free-text attribute (redacted)
    value_attribute: AttrKey | None = None  # a numeric log attribute to use as the event value
    max_request_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 << 20)] = 4 << 20
    max_pending: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 16  # requests waiting for a commit
    ack_timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0  # then: retryable error
    retry_after: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 2  # seconds, in RetryInfo / Retry-After
    tls_cert: str | None = None  # PEM chain; with tls_key, both listeners use TLS
    tls_key: str | None = None


class SyslogSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="syslog", tag_field="type"):
    """Syslog receiver, RFC 5424 and RFC 3164 (agent/sources/syslog.py); fields are described there."""

    host: str = "127.0.0.1"
    tcp_port: Port = 5140  # octet-counted or newline-framed
    udp_port: Port = 0  # one message per datagram, no acknowledgement possible
    name_field: AttrKey = "app_name"  # app_name, msgid, hostname, procid, facility or SDID.PARAM
    unit_field: AttrKey = "hostname"
    default_name: AttrKey | None = None  # when name_field is absent ("-") in a message
    message_attribute: AttrKey = "message"  # the free text, redacted by the policy like any attribute
    max_message_bytes: Annotated[int, msgspec.Meta(ge=480, le=1 << 20)] = 8192
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 256


Source = MqttSource | FileSource | StdinSource | DemoSource | OtlpSource | SyslogSource


class CollectorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # The only destinations the agent will ever send to (egress allow-list).
    endpoints: list[str] = []
    tls: bool = False
    ca_file: str | None = None  # PEM CA bundle that signed the collector's certificate (default: system)
    server_name: str | None = None  # the name the collector's certificate must carry (default: the host)
    # Mutual TLS: this agent's certificate chain and its key (0600), when the collector asks for one.
    client_cert: str | None = None
    client_key: str | None = None
    # Durations are seconds, written "10s", "2m" in the file (parsed while decoding; longer than 0s).
    timeout: Duration = Duration(10)  # per-RPC deadline
    # Back-off after a transport failure (collector down, deadline): capped, jittered, doubling.
    retry_initial: Duration = Duration(1)
    retry_max: Duration = Duration(120)
    # Longer back-off cap after PERMISSION_DENIED / UNAUTHENTICATED / FAILED_PRECONDITION: these need
    # an operator on one side or the other, so the agent keeps its outbox and asks rarely.
    refused_retry_max: Duration = Duration(900)


class OutboxConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_batches: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    max_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 512 << 20
    # What happens when the outbox is full: stop releasing and apply backpressure to sources.
    overflow: Literal["backpressure"] = "backpressure"


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_event_bytes: Annotated[int, msgspec.Meta(ge=64, le=16 << 20)] = 64 << 10
    max_attrs: Annotated[int, msgspec.Meta(ge=0, le=4096)] = 64
    max_value_length: Annotated[int, msgspec.Meta(ge=1, le=1 << 20)] = 4096
    max_payload_bytes: Annotated[int, msgspec.Meta(ge=1024, le=256 << 20)] = 16 << 20
    # Longest event name, privacy unit id or attribute key, in characters.
    max_key_length: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 256
    dead_letter_max: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    # Deprecated, ignored (still accepted so older configs load): a global cap on distinct values let
    # the first units to arrive decide which values survive. Memory is bounded per unit instead
    # (units x max_partitions per metric and window); see ``deprecations``.
    max_open_values: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # Memory limit of the agent process ("256MiB", "1GiB"): past 90 % of it, input is taken one
    # chunk at a time and the sources block (see agent/memory.py). Unset: no limiter, and a fixed
    # 16 MiB of raw input queued plus 4 MiB per group commit.
    max_memory: str | None = None
    # PII scanner backend (agent/detectors): "python" (the default) is pure Python; "hyperscan" adds a
    # one-pass prefilter over every detector (needs hushmetric[fast]; about 13 MiB more RSS); "auto"
    # uses Hyperscan when it can be imported. The findings are the same whichever runs.
    scanner: Literal["auto", "python", "hyperscan"] = "python"

    @property
    def max_memory_bytes(self) -> int | None:
        """``max_memory`` in bytes; checked by :func:`load_config`."""
        return None if self.max_memory is None else parse_size(self.max_memory)


class LogConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: Literal["plain", "json"] = "plain"
    level: Literal["debug", "info", "warning", "error"] = "info"


class AgentConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tenant: Id
    agent: Id
    policy: str = "policy.toml"
    state_dir: str = "state"  # SQLite state: journal, ledger, outbox, egress ledger, dead letters
    key_file: str = "agent.key"  # Ed25519 seed, mode 0600
    secret_file: str = "site.secret"  # HMAC key for pseudonyms, mode 0600
    collector: CollectorConfig = CollectorConfig()
    sources: list[Source] = msgspec.field(default_factory=lambda: [DemoSource()])
    outbox: OutboxConfig = OutboxConfig()
    limits: Limits = Limits()
    log: LogConfig = LogConfig()
    metrics_listen: str | None = None  # e.g. "127.0.0.1:9464" for Prometheus

    def resolve(self, base: Path, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else base / path


class LoadedConfig(msgspec.Struct, frozen=True):
    """A config together with the file it came from, with every path resolved."""

    config: AgentConfig
    path: Path
    base: Path

    def at(self, value: str) -> Path:
        return self.config.resolve(self.base, value)

    @property
    def policy_path(self) -> Path:
        return self.at(self.config.policy)

    @property
    def state_dir(self) -> Path:
        return self.at(self.config.state_dir)

    @property
    def key_path(self) -> Path:
        return self.at(self.config.key_file)

    @property
    def secret_path(self) -> Path:
        return self.at(self.config.secret_file)


def load_config(path: Path) -> LoadedConfig:
    config = load_toml(path, AgentConfig)  # durations are parsed here, by their type
    c = config.collector
    durations = {
        "timeout": c.timeout,
        "retry_initial": c.retry_initial,
        "retry_max": c.retry_max,
        "refused_retry_max": c.refused_retry_max,
    }
    for name, seconds in durations.items():  # a zero deadline or back-off would spin
        if seconds <= 0:
            raise ConfigError("must be longer than 0s", path=str(path), key=f"collector.{name}")
    for i, endpoint in enumerate(config.collector.endpoints):
        host, sep, port = endpoint.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError("expected HOST:PORT", path=str(path), key=f"collector.endpoints[{i}]")
    if config.limits.max_memory is not None:
        try:
            size = parse_size(config.limits.max_memory)
        except ValueError:
            size = 0
        if size < MIN_MEMORY:
            raise ConfigError(
                f"expected a size of at least {MIN_MEMORY >> 20}MiB, like 256MiB or 1GiB",
                path=str(path),
                key="limits.max_memory",
            )
    if config.limits.scanner == "hyperscan" and not _hyperscan_importable():
        raise ConfigError(
            'the hyperscan scanner needs the hyperscan package (pip install "hushmetric[fast]"); '
            'use "auto" to fall back to pure Python',
            path=str(path),
            key="limits.scanner",
        )
    return LoadedConfig(config, path, path.resolve().parent)


def _hyperscan_importable() -> bool:
    from agent.detectors import _hyperscan  # the check only; the scanner loads it when it is built

    return _hyperscan.available()


def deprecations(loaded: LoadedConfig) -> list[str]:
    """One line per deprecated key the config still sets (for ``validate`` to print as notes)."""
    notes = []
    if loaded.config.limits.max_open_values is not None:
        notes.append(
            f"{loaded.path}: limits.max_open_values is deprecated and ignored: memory is bounded by "
            "units x max_partitions per metric and window (see docs/privacy.md); remove the key"
        )
    return notes
