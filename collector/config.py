"""The collector's settings: TOML (``--config FILE``) decoded into a frozen Struct; flags override it.

Example::

    db = "/var/lib/hushmetric/collector.db"
    key_file = "/var/lib/hushmetric/collector.key"
    listen = "0.0.0.0:7443"
    metrics_listen = "127.0.0.1:9464"
    http_listen = "127.0.0.1:8443"   # read-only JSON API and dashboard (TLS with tls_cert/tls_key)
    max_clock_skew = "5m"
    default_max_batch_bytes = 4194304
    max_concurrent_rpcs = 256
    shutdown_grace = "10s"
    tls_cert = "server.pem"     # TLS on the gRPC port (paths relative to this file's directory)
    tls_key = "server.key"
    client_ca = "agents-ca.pem"  # mutual TLS: agents must present a certificate from this CA

Errors name the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from hushmetric.config import Duration, load_toml
from hushmetric.errors import ConfigError

__all__ = ["CollectorConfig", "load_config"]


class CollectorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    db: str | None = None
    key_file: str | None = None
    listen: str | None = None
    metrics_listen: str | None = None
    http_listen: str | None = None  # HOST:PORT of the read-only HTTP API and dashboard (collector/http/)
    max_clock_skew: Duration = Duration(300)  # seconds; "5m" in the file
    default_max_batch_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1 << 30)] = 4 << 20
    max_concurrent_rpcs: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256  # more: RESOURCE_EXHAUSTED
    shutdown_grace: Duration = Duration(10)
    # Native TLS: certificate chain and key (both or neither); client_ca turns on mutual TLS.
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    insecure: bool = False  # allow plaintext on an address other hosts can reach (behind a TLS proxy)
    # Outputs (collector/outputs/): pushed as batches are stored, each from its own durable cursor.
    remote_write: str | None = None  # Prometheus remote-write URL, e.g. http://127.0.0.1:9090/api/v1/write
    otlp_export: str | None = None  # OTLP/gRPC metrics endpoint HOST:PORT


def _listen_ok(value: str | None) -> bool:
    if value is None:
        return True
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and int(port) < 65536)


def load_config(path: Path) -> CollectorConfig:
    config = load_toml(path, CollectorConfig)  # durations are parsed here, by their type
    for key, value in (
        ("listen", config.listen),
        ("metrics_listen", config.metrics_listen),
        ("http_listen", config.http_listen),
    ):
        if not _listen_ok(value):
            raise ConfigError("expected HOST:PORT", path=str(path), key=key)
    return config
