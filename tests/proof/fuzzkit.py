"""Inputs for proof family 7: hostile corpora, hypothesis strategies and seeded byte mutators.

Every generator is deterministic for a given ``random.Random``; hypothesis strategies are used with
``derandomize`` in short mode so ``make test`` sees the same inputs on every run.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec
from hypothesis import strategies as st

__all__ = [
    "DEEP",
    "Tally",
    "chunks",
    "decoder_corpus",
    "json_values",
    "msgpack_of",
    "mutate",
    "otlp_requests",
    "syslog_corpus",
    "tar_of",
]

DEEP = 200_000  # nesting depth of the deep inputs: far past any recursion limit


@dataclass
class Tally:
    """What one fuzz target did: inputs tried, accepted, refused with a clear error, crashed."""

    tried: int = 0
    accepted: int = 0
    clear: int = 0
    crashes: int = 0
    examples: list[str] = field(default_factory=list)

    def crash(self, what: str) -> None:
        self.crashes += 1
        if len(self.examples) < 8:
            self.examples.append(what[:300])


def mutate(data: bytes, rng: random.Random, *, rounds: int | None = None) -> bytes:
    """A few random byte-level edits: flip, set, delete a range, insert junk, duplicate a range, truncate."""
    out = bytearray(data)
    for _ in range(rounds or rng.randint(1, 4)):
        op = rng.randrange(7)
        n = len(out)
        if n == 0:
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            continue
        i = rng.randrange(n)
        if op == 0:
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[i] = rng.choice([0, 0x22, 0x5C, 0x7B, 0x7D, 0x5B, 0x5D, 0x0A, 0xFF, 0xC0, 0x80])
        elif op == 2:
            del out[i : i + rng.randint(1, 16)]
        elif op == 3:
            out[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4:
            j = rng.randrange(n)
            out[i:i] = out[j : j + rng.randint(1, 64)]
        elif op == 5:
            del out[i:]
        else:
            out[i:i] = rng.choice([b"\xef\xbb\xbf", b"\x00", b"\r\n", b"\\ud800", b"NaN", b"1e999", b"-0"])
    return bytes(out)


def decoder_corpus() -> Iterator[tuple[str, bytes]]:
    """Hand-picked hostile inputs for the event decoder (and anything else that reads JSON)."""
    ok = b'{"name":"login","ts":"2026-01-05T10:00:00Z","unit":"u1","value":1.5,"attrs":{"plan":"pro"}}'
    yield "valid", ok
    yield "empty", b""
    yield "whitespace", b" \n\t\r\n "
    yield "null", b"null"
    yield "number", b"42"
    yield "string", b'"x"'
    yield "empty array", b"[]"
    yield "array of scalars", b"[1,2,3]"
    yield "array of arrays", b"[[],[[]]]"
    yield "deep array", b"[" * DEEP + b"]" * DEEP
    yield "deep array unterminated", b"[" * DEEP
    yield "deep object", b'{"a":' * DEEP + b"1" + b"}" * DEEP
    yield "deep in attrs", b'{"name":"n","ts":1,"unit":"u","attrs":{"a":' + b"[" * DEEP + b"]" * DEEP + b"}}"
    yield "deep line among good", ok + b"\n" + b"[" * DEEP + b"\n" + ok
    yield "deep element in array", b"[" + ok + b"," + b"[" * DEEP + b"]" * DEEP + b"]"
    yield "huge string", b'{"name":"' + b"a" * (2 << 20) + b'","ts":1,"unit":"u"}'
    yield "huge attr", b'{"name":"n","ts":1,"unit":"u","attrs":{"k":"' + b"x" * (1 << 20) + b'"}}'
    yield (
        "many attrs",
        b'{"name":"n","ts":1,"unit":"u","attrs":{'
        + b",".join(b'"k%d":%d' % (i, i) for i in range(20000))
        + b"}}",
    )
    yield "many lines", b"\n".join([ok] * 20000)
    yield "many lines mixed", b"\n".join([ok, b"{", b"[]", b"\xff\xfe"] * 2000)
    yield "big array", b"[" + b",".join([ok] * 20000) + b"]"
    yield "over payload limit", b" " * ((16 << 20) + 1)
    yield "non-utf8 in string", b'{"name":"\xff\xfe","ts":1,"unit":"u"}'
    yield "non-utf8 key", b'{"name":"n","ts":1,"unit":"u","attrs":{"\xc3\x28":"v"}}'
    yield "overlong utf8", b'{"name":"\xc0\xaf","ts":1,"unit":"u"}'
    yield "lone surrogate escape", b'{"name":"\\ud800","ts":1,"unit":"u"}'
    yield "nul in string", b'{"name":"a\\u0000b","ts":1,"unit":"u"}'
    yield "raw nul", b'{"name":"a\x00b","ts":1,"unit":"u"}'
    yield "bom", b"\xef\xbb\xbf" + ok
    yield "utf16", ok.decode().encode("utf-16")
    yield "nan token", b'{"name":"n","ts":NaN,"unit":"u"}'
    yield "infinity token", b'{"name":"n","ts":1,"unit":"u","value":Infinity}'
    yield "huge exponent", b'{"name":"n","ts":1,"unit":"u","value":1e999}'
    yield "tiny exponent", b'{"name":"n","ts":1,"unit":"u","value":1e-999}'
    yield "huge int", b'{"name":"n","ts":1,"unit":"u","value":' + b"9" * 5000 + b"}"
    yield "huge int attr", b'{"name":"n","ts":1,"unit":"u","attrs":{"k":' + b"9" * 40 + b"}}"
    yield "negative zero", b'{"name":"n","ts":-0,"unit":"u","value":-0.0}'
    yield "bool ts", b'{"name":"n","ts":true,"unit":"u"}'
    yield "null ts", b'{"name":"n","ts":null,"unit":"u"}'
    yield "negative ts", b'{"name":"n","ts":-1,"unit":"u"}'
    yield "far future ts", b'{"name":"n","ts":1e20,"unit":"u"}'
    for stamp in (
        "2026-01-05T10:00:00",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-14:00",
        "2026-02-30T00:00:00Z",
        "2026-12-31T23:59:60Z",
        "2026-01-05T10:00:00+99:00",
        "1969-12-31T23:59:59Z",
        "2026-01-05",
        "",
        "x" * 10000,
        "2026-01-05T10:00:00.123456789123Z",
    ):
        yield f"ts {stamp[:24]!r}", b'{"name":"n","ts":%b,"unit":"u"}' % json.dumps(stamp).encode()
    yield "name number", b'{"name":1,"ts":1,"unit":"u"}'
    yield "name empty", b'{"name":"","ts":1,"unit":"u"}'
    yield "unit object", b'{"name":"n","ts":1,"unit":{}}'
    yield "missing unit", b'{"name":"n","ts":1}'
    yield "attrs array", b'{"name":"n","ts":1,"unit":"u","attrs":[]}'
    yield "attr null", b'{"name":"n","ts":1,"unit":"u","attrs":{"k":null}}'
    yield "attr object", b'{"name":"n","ts":1,"unit":"u","attrs":{"k":{"x":1}}}'
    yield "value string", b'{"name":"n","ts":1,"unit":"u","value":"1"}'
    yield "duplicate keys", b'{"name":"n","name":"m","ts":1,"ts":2,"unit":"u"}'
    yield "trailing comma", b'{"name":"n","ts":1,"unit":"u",}'
    yield "trailing garbage", ok + b"garbage"
    yield "two objects one line", ok + ok
    yield "pretty printed", json.dumps(json.loads(ok), indent=2).encode()
    yield "crlf lines", ok + b"\r\n" + ok + b"\r\n"
    yield "cr only", ok + b"\r" + ok
    yield "array unterminated", b"[" + ok
    yield "array then junk", b"[" + ok + b"]x"
    yield "only newlines", b"\n" * 100000


def json_values() -> st.SearchStrategy[object]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=40)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )


def _events() -> st.SearchStrategy[dict[str, object]]:
    anything = json_values()
    stamp = st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | st.text(max_size=40)
    return st.fixed_dictionaries(
        {},
        optional={
            "name": st.text(max_size=300) | anything,
            "ts": st.floats() | st.integers() | stamp | anything,
            "unit": st.text(max_size=300) | anything,
            "value": st.floats() | st.integers() | anything,
            "attrs": st.dictionaries(st.text(max_size=300), anything, max_size=70) | anything,
            "extra": anything,
        },
    )


def _dump(obj: object) -> bytes:
    return json.dumps(obj, allow_nan=True).encode("utf-8", "surrogatepass")


@st.composite
def chunks(draw: st.DrawFn) -> bytes:
    """One chunk as a source would deliver it: raw bytes, an event, JSON lines, an array, or a mutation."""
    kind = draw(st.sampled_from(["binary", "one", "lines", "array", "mutated", "value"]))
    if kind == "binary":
        return draw(st.binary(max_size=2000))
    if kind == "value":
        return _dump(draw(json_values()))
    events = draw(st.lists(_events(), min_size=1, max_size=6))
    if kind == "one":
        return _dump(events[0])
    if kind == "lines":
        return b"\n".join(_dump(e) for e in events)
    data = _dump(events)
    if kind == "array":
        return data
    return mutate(data, random.Random(draw(st.integers(0, 2**32))))


def tar_of(members: list[tuple[tarfile.TarInfo, bytes | None]], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, body in members:
            if body is not None:
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
            else:
                tar.addfile(info)
    return out.getvalue()


def msgpack_of(obj: object) -> bytes:
    return msgspec.msgpack.encode(obj)


# -- OTLP and syslog receivers -------------------------------------------------------------------------


def _any_values(depth: int = 3) -> st.SearchStrategy[object]:
    """OTLP AnyValue messages: every kind, NaN and infinities, huge ints, long text, nested maps."""
    from opentelemetry.proto.common.v1 import common_pb2

    scalars = st.one_of(
        st.text(max_size=60).map(lambda v: common_pb2.AnyValue(string_value=v)),
        st.text(min_size=4000, max_size=6000, alphabet="ab").map(
            lambda v: common_pb2.AnyValue(string_value=v)
        ),
        st.booleans().map(lambda v: common_pb2.AnyValue(bool_value=v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: common_pb2.AnyValue(int_value=v)),
        st.floats().map(lambda v: common_pb2.AnyValue(double_value=v)),
        st.binary(max_size=20).map(lambda v: common_pb2.AnyValue(bytes_value=v)),
        st.just(common_pb2.AnyValue()),
    )
    if depth == 0:
        return scalars
    inner = _any_values(depth - 1)
    return scalars | st.lists(inner, max_size=3).map(
        lambda vs: common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=vs))  # type: ignore[arg-type]
    )


def _key_values() -> st.SearchStrategy[list[object]]:
    from opentelemetry.proto.common.v1 import common_pb2

    keys = st.sampled_from(["enduser.id", "event.name", "plan", "", "k" * 300]) | st.text(max_size=12)
    return st.lists(
        st.builds(lambda k, v: common_pb2.KeyValue(key=k, value=v), keys, _any_values()), max_size=8
    )


@st.composite
def otlp_requests(draw: st.DrawFn) -> tuple[str, bytes]:
    """A serialized OTLP export request (logs or metrics) with hostile but well-formed content."""
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    from opentelemetry.proto.logs.v1 import logs_pb2
    from opentelemetry.proto.metrics.v1 import metrics_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2

    stamp = st.integers(0, 2**64 - 1)
    resource = resource_pb2.Resource(attributes=draw(_key_values()))  # type: ignore[arg-type]
    if draw(st.booleans()):
        records = [
            logs_pb2.LogRecord(
                time_unix_nano=draw(stamp),
                observed_time_unix_nano=draw(stamp),
                severity_text=draw(st.text(max_size=10)),
                body=draw(_any_values()),  # type: ignore[arg-type]
                attributes=draw(_key_values()),  # type: ignore[arg-type]
                event_name=draw(st.text(max_size=300)),
            )
            for _ in range(draw(st.integers(0, 5)))
        ]
        logs = logs_service_pb2.ExportLogsServiceRequest(
            resource_logs=[
                logs_pb2.ResourceLogs(resource=resource, scope_logs=[logs_pb2.ScopeLogs(log_records=records)])
            ]
        )
        return "logs", logs.SerializeToString()
    points = [
        metrics_pb2.NumberDataPoint(
            time_unix_nano=draw(stamp),
            attributes=draw(_key_values()),  # type: ignore[arg-type]
            **draw(
                st.sampled_from(
                    [{}, {"as_int": 2**63 - 1}, {"as_double": float("nan")}, {"as_double": 1e308}]
                )
            ),
        )
        for _ in range(draw(st.integers(0, 5)))
    ]
    kind = draw(st.sampled_from(["gauge", "sum", "cumulative", "histogram", "empty"]))
    name = draw(st.text(max_size=300))
    if kind == "gauge":
        metric = metrics_pb2.Metric(name=name, gauge=metrics_pb2.Gauge(data_points=points))
    elif kind in ("sum", "cumulative"):
        temporality = 1 if kind == "sum" else 2
        metric = metrics_pb2.Metric(
            name=name, sum=metrics_pb2.Sum(data_points=points, aggregation_temporality=temporality)
        )
    elif kind == "histogram":
        metric = metrics_pb2.Metric(
            name=name,
            histogram=metrics_pb2.Histogram(data_points=[metrics_pb2.HistogramDataPoint(count=1, sum=1.0)]),
        )
    else:
        metric = metrics_pb2.Metric(name=name)
    metrics = metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource, scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[metric])]
            )
        ]
    )
    return "metrics", metrics.SerializeToString()


def syslog_corpus() -> Iterator[tuple[str, bytes]]:
    """Hand-picked hostile syslog input, as TCP stream bytes (framing included)."""
    ok = b"<13>1 2026-01-05T10:00:00Z host-1 app - - - hello"
    yield "valid 5424", ok + b"\n"
    yield "valid 3164", b"<34>Oct 11 22:14:15 host su: failed\n"
    yield "octet counted", b"%d %s" % (len(ok), ok)
    yield "huge octet count", b"99999999999 " + ok
    yield "octet count longer than the stream", b"500 " + ok
    yield "zero octet count", b"0 " + ok + b"\n"
    yield "empty", b""
    yield "newlines only", b"\n" * 5000
    yield "nul bytes", b"\x00" * 5000
    yield "binary", bytes(range(256)) * 8
    yield "overlong line", b"<13>" + b"x" * 100_000 + b"\n" + ok + b"\n"
    yield "bad pri", b"<999>x\n<-1>x\n<>x\n<1\n"
    yield "bad 5424 stamp", b"<13>1 2026-13-45T99:00:00Z h a p m - x\n"
    yield "bad sd", b'<13>1 - h a p m [a b="c] x\n<13>1 - h a p m [\n<13>1 - h a p m [x y=z]\n'
    yield "many sd params", b"<13>1 - h a p m [x " + b" ".join(b'p%d="v"' % i for i in range(5000)) + b"] m\n"
    yield "deep brackets", b"<13>1 - h a p m " + b"[" * 5000 + b"\n"
    yield "bad 3164 date", b"<13>Feb 30 25:61:61 host app: x\n"
    yield "non-utf8", b"<13>1 - h\xff a\xc0 p m - \xfe\xfd\n"
    yield "bom only", b"<13>1 - h a p m - \xef\xbb\xbf\n"
    yield "crlf", ok + b"\r\n" + ok + b"\r\n"
