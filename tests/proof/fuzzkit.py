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
