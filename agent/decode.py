"""Decode + validate: raw bytes from a source → typed :class:`Event` values and :class:`DeadLetter` refusals.

Pure: no I/O, no clock (``now`` is passed in). A chunk may hold one JSON object (also pretty-printed
over several lines), a JSON array of objects, or JSON lines. Every bad item becomes its own dead letter
with a machine-readable reason; good items in the same chunk are still decoded; nothing raises.

Fast path: one msgspec call decodes a whole JSON-lines chunk (``Decoder.decode_lines``) or array into
``list[RawEvent]``, where ``RawEvent`` is built once per :class:`Limits` with every bound (string
lengths, attribute count, number ranges) expressed as msgspec constraints, so validation runs in C.
Only when that call fails is the chunk split and each item classified on its own (slow path, bad
input only).

Reason codes: ``json`` (not JSON, or nested too deeply), ``type`` (not an object, or a field of the
wrong type, or a number out of range), ``missing`` (``name``, ``ts`` or ``unit`` absent), ``ts``
(timestamp string not RFC 3339 with an offset, or out of range), ``too_large`` (item over
``max_event_bytes``, or the chunk over ``max_payload_bytes``), ``too_many_attrs``, ``value_too_long``
(attribute value over ``max_value_length``, or name/unit/key over ``max_key_length``), ``not_utf8``.
Details never quote input values, and a dead letter's digest is keyed (``digest_key``, derived from
the site secret by :func:`agent.deadletter.digest_key`; a random per-process key when none is given,
so no caller can end up with an unkeyed digest).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any, Protocol, cast

import msgspec

from agent import deadletter
from agent.config import Limits
from agent.model import AttrValue, DeadLetter, Event
from hushmetric.timefmt import parse_rfc3339

__all__ = ["Decoder"]

_TS_MAX = 253402300800.0  # 10000-01-01T00:00:00Z
_VALUE_MAX = 1e300
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1  # what msgpack (the journal) can hold
_REQUIRED = ("name", "ts", "unit")
_BOM = b"\xef\xbb\xbf"  # some Windows tools start UTF-8 files with one


class _Raw(Protocol):
    name: str
    ts: float | datetime
    unit: str
    value: float | None
    attrs: dict[str, AttrValue]


def _raw_type(limits: Limits) -> type[msgspec.Struct]:
    key = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.max_key_length)]
    text = Annotated[str, msgspec.Meta(max_length=limits.max_value_length)]
    number = Annotated[float, msgspec.Meta(ge=-_VALUE_MAX, le=_VALUE_MAX)]
    integer = Annotated[int, msgspec.Meta(ge=_INT_MIN, le=_INT_MAX)]
    ts = Annotated[float, msgspec.Meta(ge=0, lt=_TS_MAX)]
    stamp = Annotated[datetime, msgspec.Meta(tz=True)]  # RFC 3339 with an offset, parsed in C
    attrs = Annotated[dict[key, text | integer | number | bool], msgspec.Meta(max_length=limits.max_attrs)]
    return msgspec.defstruct(
        "RawEvent",
        [
            ("name", key),
            ("ts", ts | stamp),
            ("unit", key),
            ("value", number | None, None),
            ("attrs", attrs, {}),
        ],
        gc=False,
    )


def _lines_within(data: bytes, limit: int) -> bool:
    """Whether no line of ``data`` is longer than ``limit`` bytes — in O(len / limit) ``rfind`` calls."""
    pos, end = 0, len(data)
    while end - pos > limit:
        cut = data.rfind(b"\n", pos, pos + limit + 1)
        if cut < 0:
            return False
        pos = cut + 1
    return True


class _Refused(Exception):
    """Internal control flow of the slow path; never escapes this module."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _parse_ts(value: str) -> float:
    try:
        ts = parse_rfc3339(value)
    except ValueError:
        raise _Refused("ts", "ts is not an RFC 3339 timestamp with an offset") from None
    if not 0 <= ts < _TS_MAX:
        raise _Refused("ts", "ts out of range")
    return ts


class Decoder:
    """Built once per :class:`Limits`; :meth:`decode` is then called per chunk."""

    def __init__(self, limits: Limits, *, digest_key: bytes | None = None) -> None:
        self._limits = limits
        self._key = digest_key if digest_key is not None else os.urandom(32)
        raw = _raw_type(limits)
        self._lines = msgspec.json.Decoder(raw)
        self._many = msgspec.json.Decoder(list[raw])  # type: ignore[valid-type]
        self._split = msgspec.json.Decoder(list[msgspec.Raw])
        self._any = msgspec.json.Decoder()

    # -- public ------------------------------------------------------------------------------------

    def decode(self, data: bytes, source: str, *, now: float) -> tuple[list[Event], list[DeadLetter]]:
        """Decode one chunk. Never raises for bad input."""
        limits = self._limits
        if len(data) > limits.max_payload_bytes:
            return [], [
                self._letter(
                    "too_large", f"payload of {len(data)} bytes over max_payload_bytes", data, source, now
                )
            ]
        if data.startswith(_BOM):
            data = data[len(_BOM) :]
        head = data.lstrip()[:1]
        if not head:
            return [], []
        if head == b"[":
            return self._decode_array(data, source, now)
        return self._decode_lines(data, source, now)

    # -- fast paths ------------------------------------------------------------------------------------

    def _fast(self, decode: Callable[[bytes], object], data: bytes) -> list[Event] | None:
        """One typed decode of the whole input; None sends it to the slow path, which classifies."""
        try:
            raws = cast("list[_Raw]", decode(data))
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            return None
        return self._convert(raws)

    def _decode_lines(self, data: bytes, source: str, now: float) -> tuple[list[Event], list[DeadLetter]]:
        limit = self._limits.max_event_bytes
        if _lines_within(data, limit):
            if (events := self._fast(self._lines.decode_lines, data)) is not None:
                return events, []
            # One object pretty-printed over several lines?
            if data.count(b"\n", 0, len(data.rstrip())) and data.lstrip()[:1] == b"{":
                try:
                    self._any.decode(data)
                except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):  # slow path classifies
                    pass
                else:
                    return self._slow([data], source, now)
        lines = [line for line in data.split(b"\n") if line.strip()]
        return self._slow(lines, source, now)

    def _decode_array(self, data: bytes, source: str, now: float) -> tuple[list[Event], list[DeadLetter]]:
        small = len(data) <= self._limits.max_event_bytes
        if small and (events := self._fast(self._many.decode, data)) is not None:
            return events, []
        try:
            items = self._split.decode(data)
        except msgspec.ValidationError:  # the value is JSON but not an array (cannot happen after "[")
            return [], [self._letter("type", "expected an object or an array of objects", data, source, now)]
        except msgspec.DecodeError:
            return [], [self._letter("json", "malformed JSON array", data, source, now)]
        except RecursionError:
            return [], [self._letter("json", "JSON nested too deeply", data, source, now)]
        except UnicodeDecodeError:
            return [], [self._letter("not_utf8", "input is not valid UTF-8", data, source, now)]
        fits = all(len(item) <= self._limits.max_event_bytes for item in items)
        if fits and (events := self._fast(self._many.decode, data)) is not None:
            return events, []
        return self._slow([bytes(item) for item in items], source, now)

    @staticmethod
    def _convert(raws: list[_Raw]) -> list[Event] | None:
        """Typed items → Events; ``None`` if a timestamp is out of range (then: slow path)."""
        events: list[Event] = []
        append = events.append
        for raw in raws:
            ts = raw.ts
            if ts.__class__ is not float:
                ts = cast("datetime", ts).timestamp()
                if not 0 <= ts < _TS_MAX:  # before 1970, or past year 9999 once the offset applies
                    return None
            append(Event(raw.name, ts, raw.unit, raw.value, raw.attrs))
        return events

    # -- slow path: classify each item on its own -----------------------------------------------------

    def _slow(self, items: Iterable[bytes], source: str, now: float) -> tuple[list[Event], list[DeadLetter]]:
        events: list[Event] = []
        letters: list[DeadLetter] = []
        for item in items:
            try:
                events.append(self._one_item(item))
            except _Refused as refused:
                letters.append(self._letter(refused.reason, refused.detail, item, source, now))
        return events, letters

    def _one_item(self, item: bytes) -> Event:
        limits = self._limits
        if len(item) > limits.max_event_bytes:
            raise _Refused("too_large", f"event of {len(item)} bytes over max_event_bytes")
        try:
            item.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused("not_utf8", "input is not valid UTF-8") from None
        try:
            obj = self._any.decode(item)
        except RecursionError:
            raise _Refused("json", "JSON nested too deeply") from None
        except msgspec.ValidationError:
            raise _Refused("type", "number out of range") from None
        except msgspec.DecodeError:
            raise _Refused("json", "malformed JSON") from None
        self._check(obj)
        ts = obj["ts"]
        value = obj.get("value")
        return Event(
            obj["name"],
            _parse_ts(ts) if isinstance(ts, str) else float(ts),
            obj["unit"],
            None if value is None else float(value),
            obj.get("attrs", {}),
        )

    def _check(self, obj: Any) -> None:  # noqa: C901  # one flat list of checks, in the order they must run
        limits = self._limits
        if not isinstance(obj, dict):
            raise _Refused("type", "expected an object")
        for field in _REQUIRED:
            if field not in obj:
                raise _Refused("missing", f"{field} is missing")
        for field in ("name", "unit"):
            value = obj[field]
            if not isinstance(value, str):
                raise _Refused("type", f"{field} must be a string")
            if not value:
                raise _Refused("missing", f"{field} is empty")
            if len(value) > limits.max_key_length:
                raise _Refused("value_too_long", f"{field} longer than {limits.max_key_length} characters")
        ts = obj["ts"]
        if isinstance(ts, str):
            _parse_ts(ts)
        elif isinstance(ts, bool) or not isinstance(ts, int | float):
            raise _Refused("type", "ts must be epoch seconds or an RFC 3339 string")
        elif not 0 <= ts < _TS_MAX:
            raise _Refused("ts", "ts out of range")
        value = obj.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _Refused("type", "value must be a number")
        if value is not None and not (math.isfinite(value) and abs(value) <= _VALUE_MAX):
            raise _Refused("type", "value out of range")
        attrs = obj.get("attrs", {})
        if not isinstance(attrs, dict):
            raise _Refused("type", "attrs must be an object")
        if len(attrs) > limits.max_attrs:
            raise _Refused("too_many_attrs", f"{len(attrs)} attributes, more than {limits.max_attrs}")
        for key, val in attrs.items():
            if not key or len(key) > limits.max_key_length:
                raise _Refused("value_too_long", "attribute key empty or too long")
            if isinstance(val, str):
                if len(val) > limits.max_value_length:
                    raise _Refused(
                        "value_too_long", f"attribute value longer than {limits.max_value_length} characters"
                    )
            elif not isinstance(val, int | float | bool):
                raise _Refused("type", "attribute values must be strings, numbers or booleans")
            elif isinstance(val, float) and not (math.isfinite(val) and abs(val) <= _VALUE_MAX):
                raise _Refused("type", "attribute number out of range")
            elif isinstance(val, int) and not isinstance(val, bool) and not _INT_MIN <= val <= _INT_MAX:
                raise _Refused("type", "attribute integer out of range")

    def digest(self, data: bytes) -> str:
        """The keyed digest a dead letter of ``data`` carries."""
        return deadletter.digest(self._key, data)

    def _letter(self, reason: str, detail: str, data: bytes, source: str, now: float) -> DeadLetter:
        return DeadLetter(
            reason=reason,
            detail=detail,
            source=source,
            size=len(data),
            digest=deadletter.digest(self._key, data),
            at=now,
        )
