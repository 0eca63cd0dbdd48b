"""``postgresql://`` URLs for the collector: recognise, redact, and take the pool options out. Pure.

Besides what libpq and asyncpg understand, the URL may carry the store's own options as query
parameters, so ``--db`` (or ``db =`` in the config file) alone configures a replica:

``pool_min`` / ``pool_max``  connections kept open / at most (default 1 / 10)
``statement_timeout``       per statement, a duration such as ``30s``, ``500ms`` or seconds (default 30s)
``connect_timeout``         per connection attempt, same form (default 10s)

They are removed before the URL reaches asyncpg (which would send unknown parameters to the server
as settings). Explicit arguments to :func:`collector.store.pg.store.open_pg_store` win over the URL.
"""

from __future__ import annotations

import re
import urllib.parse

import msgspec

from hushmetric.errors import ConfigError
from hushmetric.timefmt import parse_duration

__all__ = ["PgOptions", "check", "database_of", "is_pg_url", "redact_url", "split_options", "with_database"]

_MS = re.compile(r"^(\d+(?:\.\d+)?)ms$")


class PgOptions(msgspec.Struct, frozen=True):
    min_size: int = 1
    max_size: int = 10
    statement_timeout: float = 30.0  # seconds
    connect_timeout: float = 10.0  # seconds


def is_pg_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL without its password, fit for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def database_of(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.lstrip("/"))


def with_database(url: str, name: str) -> str:
    """The same server and login, another database (``postgres`` to create one)."""
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path=f"/{urllib.parse.quote(name)}"))


def _seconds(text: str, key: str, url: str) -> float:
    text = text.strip()
    try:
        if match := _MS.match(text):
            value = float(match.group(1)) / 1000
        elif re.fullmatch(r"\d+(\.\d+)?", text):
            value = float(text)
        else:
            value = float(parse_duration(text))
    except ValueError as exc:
        raise ConfigError(f"{key}={text!r} is not a duration (30s, 500ms, 2m)", path=redact_url(url)) from exc
    if value <= 0:
        raise ConfigError(f"{key} must be positive", path=redact_url(url))
    return value


def _count(text: str, key: str, url: str) -> int:
    if not text.strip().isdigit():
        raise ConfigError(f"{key}={text!r} is not a whole number", path=redact_url(url))
    return int(text)


def split_options(url: str) -> tuple[str, PgOptions]:
    """The URL without the store's own query parameters, and the options they set."""
    parts = urllib.parse.urlsplit(url)
    keep: list[tuple[str, str]] = []
    found: dict[str, object] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key == "pool_min":
            found["min_size"] = _count(value, key, url)
        elif key == "pool_max":
            found["max_size"] = _count(value, key, url)
        elif key in ("statement_timeout", "connect_timeout"):
            found[key] = _seconds(value, key, url)
        else:
            keep.append((key, value))
    clean = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(keep)))
    return clean, msgspec.convert(found, PgOptions)


def check(options: PgOptions, url: str) -> PgOptions:
    """ConfigError unless 0 <= min_size <= max_size, 1 <= max_size and both timeouts are positive."""
    if not 0 <= options.min_size <= options.max_size or options.max_size < 1:
        raise ConfigError(
            "pool size must satisfy 0 <= pool_min <= pool_max and pool_max >= 1 "
            f"(got {options.min_size}, {options.max_size})",
            path=redact_url(url),
        )
    if options.statement_timeout <= 0 or options.connect_timeout <= 0:
        raise ConfigError("timeouts must be positive", path=redact_url(url))
    return options
