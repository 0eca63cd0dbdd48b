"""What every ``hush-collector`` command shares: the context (arguments, environment, streams, clock),
opening the store with or without the signing key, and argument checks that raise ConfigError."""

from __future__ import annotations

import argparse
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import msgspec
import nacl.signing

from collector.errors import Unavailable
from collector.store import UNATTRIBUTED, Store
from collector.store.db import DEFAULT_DB, default_key_path, open_store
from hushmetric.errors import ConfigError
from hushmetric.keys import load_signing_key
from hushmetric.timefmt import parse_duration, parse_rfc3339

__all__ = [
    "Context",
    "check_bound",
    "check_day",
    "check_duration",
    "check_id",
    "check_note",
    "json_line",
    "open_for",
    "signing_key",
]

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")  # the wire contract's tenant and agent ids
_json = msgspec.json.Encoder()
#: The longest ``--note`` kept (an API token's, a policy approval's): a note is listed in tables
#: and written into the audit log, so it stays a short line.
MAX_NOTE = 200
# C0/C1 controls, line and paragraph separators, bidi overrides and isolates, lone surrogates
_NOTE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


@dataclass(frozen=True)
class Context:
    args: argparse.Namespace
    env: Mapping[str, str]
    out: TextIO
    err: TextIO
    clock: Callable[[], float] = time.time

    @property
    def db(self) -> str:
        return str(self.args.db or self.env.get("HUSH_COLLECTOR_DB") or DEFAULT_DB)

    @property
    def key_path(self) -> Path:
        given = self.args.key or self.env.get("HUSH_COLLECTOR_KEY")
        return Path(given) if given else default_key_path(self.db)

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def signing_key(ctx: Context) -> nacl.signing.SigningKey:
    if not ctx.key_path.exists():
        raise Unavailable(f"collector key {ctx.key_path} not found; run `hush-collector init` first")
    return load_signing_key(ctx.key_path)


@contextlib.asynccontextmanager
async def open_for(ctx: Context, *, signed: bool = True) -> AsyncIterator[Store]:
    store = await open_store(ctx.db, signing_key=signing_key(ctx) if signed else None)
    try:
        yield store
    finally:
        await store.close()


def check_id(value: str, what: str) -> None:
    if not _ID.match(value) or value == UNATTRIBUTED:
        raise ConfigError(
            f"{value[:40]!r} must be 1-128 characters of A-Z a-z 0-9 . _ : @ - (and not '-')", key=what
        )


def check_note(text: str | None, flag: str = "--note") -> str:
    """An operator's note as kept: at most :data:`MAX_NOTE` characters, no control characters."""
    if text is None:
        return ""
    if len(text) > MAX_NOTE:
        raise ConfigError(f"at most {MAX_NOTE} characters (got {len(text)})", key=flag)
    if _NOTE_CONTROL.search(text):
        raise ConfigError("no control characters (newlines, escapes, bidi overrides)", key=flag)
    return text


def json_line(ctx: Context, obj: object) -> None:
    ctx.say(_json.encode(obj).decode())


#: The longest duration a flag takes (a century): an expiry further out cannot be shown as a date,
#: and a token stored with one made every later ``api-token list`` fail.
MAX_DURATION = 100 * 365 * 86400


def check_duration(text: str, flag: str) -> int:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(str(exc), key=flag) from exc
    if value <= 0:
        raise ConfigError("must be positive", key=flag)
    if value > MAX_DURATION:
        raise ConfigError("at most 36500d (a century)", key=flag)
    return value


def check_day(text: str | None, flag: str) -> str | None:
    if text is not None and not _DAY.match(text):
        raise ConfigError("expected a date YYYY-MM-DD", key=flag)
    return text


def check_bound(text: str | None, flag: str) -> str | None:
    """A date becomes its UTC midnight; an RFC 3339 stamp passes through."""
    if text is None:
        return None
    if _DAY.match(text):
        return f"{text}T00:00:00Z"
    try:
        parse_rfc3339(text)
    except ValueError as exc:
        raise ConfigError("expected YYYY-MM-DD or an RFC 3339 timestamp", key=flag) from exc
    return text
