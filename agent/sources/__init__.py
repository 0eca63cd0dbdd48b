"""Where events come from: one :class:`Source` per ``[[sources]]`` entry of ``agent.toml``.

:func:`build_sources` turns the config into live sources; :func:`build_source` does it for one spec
(the CLI's ``run --input FILE|-`` builds a ``FileSource``/``StdinSource`` spec and calls it).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import ssl
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import config as cfg
from agent import journal
from agent.decode import Decoder
from agent.sources.base import Chunk, OffsetGetter, Source
from agent.sources.demo import DemoSource, generate_lines, write_dataset
from agent.sources.file import FileSource
from agent.sources.mqtt import MqttSource
from agent.sources.otlp_map import Mapping
from agent.sources.stdin import StdinSource
from agent.sources.syslog import SyslogFields, SyslogSource
from hushmetric.errors import ConfigError
from hushmetric.timefmt import parse_rfc3339

if TYPE_CHECKING:
    from agent.sources.otlp import OtlpSource


def __getattr__(name: str) -> Any:
    # The OTLP receiver pulls in gRPC and protobuf (~25 MiB resident): imported only when an OTLP
    # source is configured or the name is asked for, so an MQTT or file agent never loads them.
    if name in ("OtlpSource", "server_context"):
        from agent.sources import otlp

        return getattr(otlp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Chunk",
    "DemoSource",
    "FileSource",
    "MqttSource",
    "OffsetGetter",
    "OtlpSource",
    "Source",
    "StdinSource",
    "SyslogSource",
    "build_source",
    "build_sources",
    "generate_lines",
    "write_dataset",
]


def build_sources(
    loaded: cfg.LoadedConfig,
    *,
    once: bool,
    conn: sqlite3.Connection | None = None,
    offsets: OffsetGetter | None = None,
    override: Sequence[cfg.Source] | None = None,
    digest_key: bytes | None = None,
) -> list[Source]:
    """Every configured source (or the ``override`` specs instead, e.g. from ``run --input``).

    - ``once``: file sources stop at the end of the file instead of following it.
    - Committed offsets come from ``offsets`` if given, else from ``journal.get_offset`` on ``conn``;
      they are looked up when a resumable source starts, so build before or after replay alike.
    - File paths of configured sources are relative to the config's directory; paths of ``override``
      specs are relative to the current directory (what a user typing ``--input FILE`` means).

    - ``digest_key`` keys the digests of the dead letters the receivers make themselves
      (:func:`agent.deadletter.digest_key` of the site secret; a random per-process key without it).

    Raises :class:`ConfigError` for an unreadable password or CA file or a bad demo start time.
    """
    if offsets is None:
        offsets = (lambda key: journal.get_offset(conn, key)) if conn is not None else (lambda key: None)
    if override is not None:
        return [
            build_source(
                spec, loaded, once=once, offsets=offsets, index=i, cwd_paths=True, digest_key=digest_key
            )
            for i, spec in enumerate(override)
        ]
    return [
        build_source(spec, loaded, once=once, offsets=offsets, index=i, digest_key=digest_key)
        for i, spec in enumerate(loaded.config.sources)
    ]


def build_source(
    spec: cfg.Source,
    loaded: cfg.LoadedConfig,
    *,
    once: bool,
    offsets: OffsetGetter,
    index: int = 0,
    cwd_paths: bool = False,
    digest_key: bytes | None = None,
) -> Source:
    limits = loaded.config.limits
    match spec:
        case cfg.MqttSource():
            return _mqtt(spec, loaded, index)
        case cfg.FileSource():
            return FileSource(
                Path(spec.path).absolute() if cwd_paths else loaded.at(spec.path),
                follow=spec.follow and not once,
                offsets=offsets,
                max_line_bytes=limits.max_event_bytes,
            )
        case cfg.StdinSource():
            return StdinSource(max_line_bytes=limits.max_event_bytes)
        case cfg.OtlpSource():
            return _otlp(spec, loaded, index, digest_key)
        case cfg.SyslogSource():
            return _syslog(spec, loaded, index, digest_key)
        case cfg.DemoSource():
            try:
                start = parse_rfc3339(spec.start)
            except ValueError:
                raise ConfigError(
                    "expected an RFC 3339 time with offset, like 2026-01-05T00:00:00Z",
                    path=str(loaded.path),
                    key=f"sources[{index}].start",
                ) from None
            return DemoSource(seed=spec.seed, users=spec.users, days=spec.days, start=start)
    raise ConfigError(
        f"unknown source type {type(spec).__name__}", path=str(loaded.path), key=f"sources[{index}]"
    )


def _mqtt(spec: cfg.MqttSource, loaded: cfg.LoadedConfig, index: int) -> MqttSource:
    where = {"path": str(loaded.path)}
    password = None
    if spec.password_file is not None:
        path = loaded.at(spec.password_file)
        try:
            password = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"cannot read password file {path}: {exc.strerror}",
                **where,
                key=f"sources[{index}].password_file",
            ) from exc
    context = None
    if spec.tls:
        cafile = None if spec.ca_file is None else str(loaded.at(spec.ca_file))
        try:
            context = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load CA file {cafile}: {exc}", **where, key=f"sources[{index}].ca_file"
            ) from exc
    elif spec.ca_file is not None:
        raise ConfigError("ca_file is set but tls is false", **where, key=f"sources[{index}].tls")
    return MqttSource(
        host=spec.host,
        port=spec.port,
        topics=spec.topics,
        client_id=spec.client_id or f"hush-{loaded.config.agent}",
        username=spec.username,
        password=password,
        tls_context=context,
        keepalive=spec.keepalive,
        receive_maximum=spec.receive_maximum,
        protocol=spec.protocol,
    )


def _otlp(spec: cfg.OtlpSource, loaded: cfg.LoadedConfig, index: int, digest_key: bytes | None) -> OtlpSource:
    from agent.sources.otlp import OtlpSource, server_context  # gRPC only when configured

    letter_key = digest_key if digest_key is not None else os.urandom(32)
    where = {"path": str(loaded.path)}
    if not spec.grpc_port and not spec.http_port:
        raise ConfigError(
            "expected grpc_port or http_port (or both) above 0; both listeners are off",
            **where,
            key=f"sources[{index}].grpc_port",
        )
    tls = None
    if (spec.tls_cert is None) != (spec.tls_key is None):
        missing = "tls_key" if spec.tls_key is None else "tls_cert"
        raise ConfigError(
            "expected both tls_cert and tls_key (PEM files) or neither",
            **where,
            key=f"sources[{index}].{missing}",
        )
    if spec.tls_cert is not None and spec.tls_key is not None:
        tls = (loaded.at(spec.tls_cert), loaded.at(spec.tls_key))
        try:
            server_context(*tls)  # fail at start-up with the file named, not at the first connection
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load TLS certificate {tls[0]} with key {tls[1]}: {exc}",
                **where,
                key=f"sources[{index}].tls_cert",
            ) from exc
    for key in ("grpc_port", "http_port"):
        _check_listen(spec.host, getattr(spec, key), socket.SOCK_STREAM, loaded, f"sources[{index}].{key}")
    mapping = Mapping(
        unit_attribute=spec.unit_attribute,
        name_attribute=spec.name_attribute,
        name_from_body=spec.name_from_body,
        default_name=spec.default_name,
        body_attribute=spec.body_attribute,
        value_attribute=spec.value_attribute,
        digest_key=letter_key,
    )
    return OtlpSource(
        decoder=Decoder(loaded.config.limits, digest_key=letter_key),
        mapping=mapping,
        clock=time.time,
        host=spec.host,
        grpc_port=spec.grpc_port or None,
        http_port=spec.http_port or None,
        max_request_bytes=spec.max_request_bytes,
        max_pending=spec.max_pending,
        ack_timeout=spec.ack_timeout,
        retry_after=spec.retry_after,
        tls=tls,
    )


def _syslog(
    spec: cfg.SyslogSource, loaded: cfg.LoadedConfig, index: int, digest_key: bytes | None
) -> SyslogSource:
    if not spec.tcp_port and not spec.udp_port:
        raise ConfigError(
            "expected tcp_port or udp_port (or both) above 0; both listeners are off",
            path=str(loaded.path),
            key=f"sources[{index}].tcp_port",
        )
    _check_listen(spec.host, spec.tcp_port, socket.SOCK_STREAM, loaded, f"sources[{index}].tcp_port")
    _check_listen(spec.host, spec.udp_port, socket.SOCK_DGRAM, loaded, f"sources[{index}].udp_port")
    return SyslogSource(
        host=spec.host,
        tcp_port=spec.tcp_port or None,
        udp_port=spec.udp_port or None,
        fields=SyslogFields(
            name_field=spec.name_field,
            unit_field=spec.unit_field,
            default_name=spec.default_name,
            message_attribute=spec.message_attribute,
            digest_key=digest_key if digest_key is not None else os.urandom(32),
        ),
        clock=time.time,
        max_message_bytes=spec.max_message_bytes,
        max_connections=spec.max_connections,
    )


def _check_listen(host: str, port: int, kind: socket.SocketKind, loaded: cfg.LoadedConfig, key: str) -> None:
    """Fail at start-up, in one line naming the key, when a listener cannot bind (port taken, address
    not local, privileged port); the receiver binds for real when it starts."""
    if not port:
        return
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=kind)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", path=str(loaded.path), key=key
        ) from None
