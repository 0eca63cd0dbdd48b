"""Load TOML files into typed msgspec Structs, with errors that name the file, the key and the expectation."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from hushmetric.errors import ConfigError
from hushmetric.timefmt import parse_duration

__all__ = ["MAX_CONFIG_BYTES", "Duration", "convert", "load_toml"]

T = TypeVar("T")
MAX_CONFIG_BYTES = 1 << 20
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def _split(exc: msgspec.ValidationError) -> tuple[str, str | None]:
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any string
    path = match.group("path")
    key = path.lstrip(".").replace(".[", "[") if path else None
    msg = match.group("msg").replace("Object contains unknown field", "unknown key")
    return _one_line(msg), _one_line(key) if key else None


def _one_line(text: str, limit: int = 200) -> str:
    """Messages quote the offending value or key: keep them one short line whatever the file holds."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Duration(int):
    """Seconds, written in a config file as ``"90d"``, ``"1h30m"``, ``"45s"`` or ``"300"``.

    Parsed while the file is decoded (a malformed value is a ConfigError naming its key), so code
    reads a number and never parses a setting it looked up by name."""


def _decode_hook(type_: type, obj: Any) -> Any:
    if type_ is Duration:
        if not isinstance(obj, str):
            raise ValueError('expected a duration string like "5m" or "45s"')
        return Duration(parse_duration(obj))  # ValueError names the text; msgspec adds the key
    raise NotImplementedError(type_)


def convert(obj: Any, type_: type[T], *, path: str) -> T:
    """``msgspec.convert`` with a ConfigError that names ``path`` and the offending key."""
    try:
        return msgspec.convert(obj, type_, strict=True, dec_hook=_decode_hook)
    except msgspec.ValidationError as exc:
        msg, key = _split(exc)
        raise ConfigError(msg, path=path, key=key) from exc


def load_toml(path: Path, type_: type[T]) -> T:
    """Read, parse and validate ``path``. Every failure is a one-line ConfigError."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError as exc:
        raise ConfigError("file not found", path=str(path)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=str(path)) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_CONFIG_BYTES} bytes", path=str(path))
    try:
        obj = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError("not UTF-8 text", path=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=str(path)) from exc
    except RecursionError as exc:  # tomllib recurses into nested arrays and inline tables
        raise ConfigError("invalid TOML: nested too deeply", path=str(path)) from exc
    return convert(obj, type_, path=str(path))
