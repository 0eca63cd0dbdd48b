"""OTLP export requests → the agent's JSON event lines and dead letters. Pure: no I/O, no clock.

Logs (one event per log record):
- ``unit``: the ``unit_attribute`` of the record, else of its resource (``enduser.id`` by default).
- ``name``: the ``name_attribute`` of the record (``event.name``), else its ``event_name`` field, else
  its string body when ``name_from_body``, else ``default_name``.
- ``ts``: ``time_unix_nano``, else ``observed_time_unix_nano``, else the receive time.
- ``value``: the numeric ``value_attribute`` when configured, else none.
- ``attrs``: resource attributes, then record attributes (the record wins on a clash), scalar values
  only (string, bool, int, double; arrays, maps and bytes are dropped here), without the unit and name
  attributes; ``severity`` when set; a string body as ``body_attribute``. Nothing is allowed by this
  step: the policy's redaction keeps only declared attributes and scans free text.

Metrics (one event per data point of a gauge or a delta sum):
- ``name`` is the metric's name, ``value`` the point's value, ``ts`` its ``time_unix_nano``, ``unit``
  the point's ``unit_attribute`` (else the resource's), ``attrs`` as for logs.
- A point without the unit attribute is refused (dead letter ``missing``): a point the SDK already
  aggregated over many users cannot be attributed to one privacy unit, so the agent cannot bound one
  unit's contribution — the DP guarantee would not hold for it.
- Histogram, exponential histogram and summary points are refused (``unsupported``): they are
  distributions, already aggregated, with no single value to bound per unit.
- Cumulative sums are refused (``unsupported``): each export repeats the running total since the
  start, so turning every point into an event would count the same increments again and again.
  Exporters send deltas with ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta``.

Refusals are counted per record/point, become :class:`DeadLetter` rows (reason, a digest of the
record's protobuf bytes, never its content) and are reported to the exporter as partial success.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from agent import deadletter
from agent.model import AttrValue, DeadLetter

__all__ = ["Mapped", "Mapping", "map_logs", "map_metrics"]

_NANOS = 1e-9


@dataclass(frozen=True, slots=True)
class Mapping:
    """How records become events; built from :class:`agent.config.OtlpSource`."""

    unit_attribute: str = "enduser.id"
    name_attribute: str = "event.name"
    name_from_body: bool = False
    default_name: str | None = None
    body_attribute: str = "body"
    value_attribute: str | None = None
    # Keys the dead letters' digests (agent.deadletter.digest_key of the site secret); a random
    # per-process key when none is given, so a digest is never an unkeyed hash of the input.
    digest_key: bytes = field(default_factory=lambda: os.urandom(32), repr=False)


@dataclass(slots=True)
class Mapped:
    """The result for one request: JSON event lines for the decoder, and what was refused here."""

    data: bytes = b""
    events: int = 0
    letters: list[DeadLetter] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.letters)

    def error_message(self) -> str:
        """One line for the exporter's partial-success message: counts per reason, no content."""
        counts: dict[str, int] = {}
        for letter in self.letters:
            counts[letter.detail] = counts.get(letter.detail, 0) + 1
        return "; ".join(f"{n} {detail}" for detail, n in sorted(counts.items()))


class _Line(msgspec.Struct, gc=False):
    name: str
    ts: float
    unit: str
    value: float | int | None
    attrs: dict[str, AttrValue]


_encoder = msgspec.json.Encoder()


_SCALARS = frozenset({"string_value", "bool_value", "int_value", "double_value"})


def _scalar(any_value: Any) -> AttrValue | None:
    """A string, bool, int or double AnyValue; None for arrays, maps, bytes and empty values (nothing
    the policy could declare)."""
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind in _SCALARS else None


def _attrs(into: dict[str, AttrValue], key_values: Iterable[Any]) -> None:
    # The hot loop of the receiver (one pass per attribute): _scalar inlined.
    for kv in key_values:
        value = kv.value
        kind = value.WhichOneof("value")
        if kind in _SCALARS and kv.key:
            into[kv.key] = getattr(value, kind)


def _letter(reason: str, detail: str, record: Any, source: str, now: float, key: bytes) -> DeadLetter:
    raw = record.SerializeToString()
    return DeadLetter(
        reason=reason, detail=detail, source=source, size=len(raw), digest=deadletter.digest(key, raw), at=now
    )


def _ts(*nanos: int, now: float) -> float:
    for n in nanos:
        if n:
            return n * _NANOS
    return now


def map_logs(request: Any, mapping: Mapping, *, source: str, now: float) -> Mapped:
    """An ``ExportLogsServiceRequest`` → event lines + refusals."""
    lines: list[_Line] = []
    out = Mapped()
    unit_key, name_key = mapping.unit_attribute, mapping.name_attribute
    for resource_logs in request.resource_logs:
        resource: dict[str, AttrValue] = {}
        _attrs(resource, resource_logs.resource.attributes)
        resource_unit = resource.pop(unit_key, None)
        resource.pop(name_key, None)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attrs = dict(resource)
                _attrs(attrs, record.attributes)
                unit = attrs.pop(unit_key, resource_unit)
                if unit is None or isinstance(unit, bool) or unit == "":
                    out.letters.append(
                        _letter(
                            "missing",
                            f"log record without a {unit_key} attribute",
                            record,
                            source,
                            now,
                            mapping.digest_key,
                        )
                    )
                    continue
                body = _scalar(record.body) if record.HasField("body") else None
                name = attrs.pop(name_key, None) or record.event_name or None
                if name is None and mapping.name_from_body and isinstance(body, str) and body:
                    name, body = body, None
                name = name or mapping.default_name
                if name is None or isinstance(name, bool):
                    out.letters.append(
                        _letter(
                            "missing",
                            f"log record without a {name_key} attribute",
                            record,
                            source,
                            now,
                            mapping.digest_key,
                        )
                    )
                    continue
                if isinstance(body, str) and body:
                    attrs[mapping.body_attribute] = body
                if record.severity_text:
                    attrs["severity"] = record.severity_text
                value: float | int | None = None
                if mapping.value_attribute is not None:
                    raw_value = attrs.pop(mapping.value_attribute, None)
                    if isinstance(raw_value, int | float) and not isinstance(raw_value, bool):
                        value = raw_value
                ts = _ts(record.time_unix_nano, record.observed_time_unix_nano, now=now)
                lines.append(_Line(str(name), ts, str(unit), value, attrs))
    out.data = _encoder.encode_lines(lines) if lines else b""
    out.events = len(lines)
    return out


_DISTRIBUTIONS = ("histogram", "exponential_histogram", "summary")
_DELTA = 1  # AGGREGATION_TEMPORALITY_DELTA


def map_metrics(request: Any, mapping: Mapping, *, source: str, now: float) -> Mapped:
    """An ``ExportMetricsServiceRequest`` → event lines + refusals (one per data point)."""
    lines: list[_Line] = []
    out = Mapped()
    unit_key = mapping.unit_attribute
    for resource_metrics in request.resource_metrics:
        resource: dict[str, AttrValue] = {}
        _attrs(resource, resource_metrics.resource.attributes)
        resource_unit = resource.pop(unit_key, None)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind in _DISTRIBUTIONS:
                    for point in getattr(metric, kind).data_points:
                        out.letters.append(
                            _letter(
                                "unsupported",
                                f"{kind} data point (pre-aggregated)",
                                point,
                                source,
                                now,
                                mapping.digest_key,
                            )
                        )
                    continue
                if kind not in ("gauge", "sum"):
                    continue  # no data: nothing to count
                if kind == "sum" and metric.sum.aggregation_temporality != _DELTA:
                    for point in metric.sum.data_points:
                        out.letters.append(
                            _letter(
                                "unsupported",
                                "cumulative sum data point (export delta)",
                                point,
                                source,
                                now,
                                mapping.digest_key,
                            )
                        )
                    continue
                for point in getattr(metric, kind).data_points:
                    attrs = dict(resource)
                    _attrs(attrs, point.attributes)
                    unit = attrs.pop(unit_key, resource_unit)
                    if unit is None or isinstance(unit, bool) or unit == "":
                        out.letters.append(
                            _letter(
                                "missing",
                                f"data point without a {unit_key} attribute",
                                point,
                                source,
                                now,
                                mapping.digest_key,
                            )
                        )
                        continue
                    which = point.WhichOneof("value")
                    if which is None:
                        out.letters.append(
                            _letter(
                                "missing",
                                "data point without a value",
                                point,
                                source,
                                now,
                                mapping.digest_key,
                            )
                        )
                        continue
                    value = point.as_double if which == "as_double" else point.as_int
                    if not metric.name:
                        out.letters.append(
                            _letter(
                                "missing", "metric without a name", point, source, now, mapping.digest_key
                            )
                        )
                        continue
                    lines.append(
                        _Line(metric.name, _ts(point.time_unix_nano, now=now), str(unit), value, attrs)
                    )
    out.data = _encoder.encode_lines(lines) if lines else b""
    out.events = len(lines)
    return out
