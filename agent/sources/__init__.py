"""Where events come from: one :class:`Source` per ``[[sources]]`` entry of ``agent.toml``.

:func:`build_sources` turns the config into live sources; :func:`build_source` does it for one spec
(the CLI's ``run --input FILE|-`` builds a ``FileSource``/``StdinSource`` spec and calls it).
"""

from __future__ import annotations

import sqlite3
import ssl
from collections.abc import Sequence
from pathlib import Path

from agent import config as cfg
from agent import journal
from agent.sources.base import Chunk, OffsetGetter, Source
from agent.sources.demo import DemoSource, generate_lines, write_dataset
from agent.sources.file import FileSource
from agent.sources.mqtt import MqttSource
from agent.sources.stdin import StdinSource
from hushmetric.errors import ConfigError
from hushmetric.timefmt import parse_rfc3339

__all__ = [
    "Chunk",
    "DemoSource",
    "FileSource",
    "MqttSource",
    "OffsetGetter",
    "Source",
    "StdinSource",
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
) -> list[Source]:
    """Every configured source (or the ``override`` specs instead, e.g. from ``run --input``).

    - ``once``: file sources stop at the end of the file instead of following it.
    - Committed offsets come from ``offsets`` if given, else from ``journal.get_offset`` on ``conn``;
      they are looked up when a resumable source starts, so build before or after replay alike.
    - File paths of configured sources are relative to the config's directory; paths of ``override``
      specs are relative to the current directory (what a user typing ``--input FILE`` means).

    Raises :class:`ConfigError` for an unreadable password or CA file or a bad demo start time.
    """
    if offsets is None:
        offsets = (lambda key: journal.get_offset(conn, key)) if conn is not None else (lambda key: None)
    if override is not None:
        return [
            build_source(spec, loaded, once=once, offsets=offsets, index=i, cwd_paths=True)
            for i, spec in enumerate(override)
        ]
    return [
        build_source(spec, loaded, once=once, offsets=offsets, index=i)
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
