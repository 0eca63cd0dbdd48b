from __future__ import annotations

import hashlib
import hmac

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import deadletter
from agent.config import Limits
from agent.decode import Decoder
from agent.model import Event

LIMITS = Limits()
DECODER = Decoder(LIMITS)
GOOD = b'{"name":"a","ts":1,"unit":"u"}'

keys = st.text(min_size=1, max_size=20)
attr_values = st.one_of(
    st.text(max_size=50),
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300),
    st.booleans(),
)
events = st.builds(
    Event,
    name=keys,
    ts=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    unit=keys,
    value=st.none() | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300),
    attrs=st.dictionaries(keys, attr_values, max_size=10),
)


def decode(data: bytes) -> tuple[list[Event], list[tuple[str, str]]]:
    good, bad = DECODER.decode(data, "test", now=5.0)
    return good, [(d.reason, d.detail) for d in bad]


@settings(max_examples=150, deadline=None)
@given(st.lists(events, min_size=1, max_size=20))
def test_round_trip_json_lines_array_and_single(batch: list[Event]) -> None:
    lines = b"".join(msgspec.json.encode(e) + b"\n" for e in batch)
    got, bad = decode(lines)
    assert bad == []
    assert got == batch
    got, bad = decode(msgspec.json.encode(batch))
    assert bad == []
    assert got == batch
    got, bad = decode(msgspec.json.encode(batch[0]))
    assert bad == []
    assert got == batch[:1]


def test_rfc3339_and_integer_timestamps() -> None:
    got, bad = decode(
        b'{"name":"a","ts":"2026-01-05T01:00:00.500+01:00","unit":"u"}\n'
        b'{"name":"a","ts":1767571200,"unit":"u","value":3}\n'
    )
    assert bad == []
    assert got[0].ts == 1767571200.5
    assert got[1].ts == 1767571200.0
    assert isinstance(got[1].ts, float)
    assert got[1].value == 3.0


def test_pretty_printed_single_object() -> None:
    got, bad = decode(b'{\n  "name": "a",\n  "ts": 1,\n  "unit": "u"\n}\n')
    assert bad == []
    assert [e.name for e in got] == ["a"]


def test_mixed_chunk_keeps_good_lines_and_names_each_bad_one() -> None:
    lines = [
        GOOD,
        b"not json",
        b'{"name":"a","unit":"u"}',
        b'{"name":"a","ts":true,"unit":"u"}',
        b'{"name":"a","ts":"yesterday","unit":"u"}',
        b'{"name":"a","ts":1,"unit":"u","attrs":{"k":{"nested":1}}}',
        b'{"name":"a","ts":1,"unit":"u","value":"12"}',
        b'"just a string"',
        b'{"name":"a","ts":1,"unit":"u","attrs":{"k":"' + b"x" * 5000 + b'"}}',
        b'{"name":"\xff\xfe","ts":1,"unit":"u"}',
        b"[" * 3000 + b"]" * 3000,
        b'{"name":"a","ts":1,"unit":"u","attrs":{"n":1e999}}',
        b'{"name":"a","ts":1,"unit":"u","attrs":{"n":123456789012345678901234567890}}',
        GOOD.replace(b'"a"', b'"b"'),
    ]
    got, bad = decode(b"\n".join(lines) + b"\n")
    assert [e.name for e in got] == ["a", "b"]
    assert [reason for reason, _ in bad] == [
        "json",
        "missing",
        "type",
        "ts",
        "type",
        "type",
        "type",
        "value_too_long",
        "not_utf8",
        "json",
        "type",
        "type",
    ]


def test_limits() -> None:
    many = {f"k{i}": "v" for i in range(5000)}
    line = msgspec.json.encode({"name": "a", "ts": 1, "unit": "u", "attrs": many})
    assert decode(line)[1][0][0] in {"too_many_attrs", "too_large"}
    small = Decoder(Limits(max_attrs=10, max_event_bytes=1 << 20))
    good, bad = small.decode(line, "t", now=0)
    assert good == []
    assert [d.reason for d in bad] == ["too_many_attrs"]
    huge = b'{"name":"a","ts":1,"unit":"u","attrs":{"k":"' + b"x" * 100_000 + b'"}}'
    assert [r for r, _ in decode(huge + b"\n" + GOOD)[1]] == ["too_large"]
    long_name = msgspec.json.encode({"name": "n" * 300, "ts": 1, "unit": "u"})
    assert [r for r, _ in decode(long_name)[1]] == ["value_too_long"]
    payload = GOOD + b"\n" + b" " * (LIMITS.max_payload_bytes)
    got, bad = decode(payload)
    assert got == []
    assert [r for r, _ in bad] == ["too_large"]


def test_array_items_refused_one_by_one() -> None:
    items = [
        b'{"name":"a","ts":1,"unit":"u"}',
        b"1",
        b'{"ts":1,"unit":"u"}',
        b'{"name":"a","ts":1,"unit":"u","attrs":{"k":"' + b"x" * 70_000 + b'"}}',
        b'{"name":"c","ts":2,"unit":"u"}',
    ]
    got, bad = decode(b"[" + b",".join(items) + b"]")
    assert [e.name for e in got] == ["a", "c"]
    assert [r for r, _ in bad] == ["type", "missing", "too_large"]
    assert decode(b'[{"name":"a",')[1] == [("json", "malformed JSON array")]


def test_dead_letter_fields_hold_no_raw_content() -> None:
    secret = b"alice@example.com"
    line = b'{"name":"a","ts":"' + secret + b'","unit":"u"}'
    _, letters = DECODER.decode(line, "file:x", now=42.0)
    (letter,) = letters
    assert letter.reason == "ts"
    assert letter.source == "file:x"
    assert letter.at == 42.0
    assert letter.size == len(line)
    assert len(letter.digest) == 64
    assert letter.digest != hashlib.sha256(line).hexdigest()  # keyed: not guessable by dictionary
    assert "alice" not in letter.detail


def test_dead_letter_digest_is_keyed_stable_per_key_and_differs_across_sites() -> None:
    line = b'{"name":"a","ts":"alice@example.com","unit":"u"}'
    site_a = Decoder(LIMITS, digest_key=deadletter.digest_key(b"a" * 32))
    site_b = Decoder(LIMITS, digest_key=deadletter.digest_key(b"b" * 32))
    first = site_a.decode(line, "file:x", now=1.0)[1][0].digest
    assert site_a.decode(line, "file:y", now=2.0)[1][0].digest == first  # stable on one site
    assert Decoder(LIMITS, digest_key=deadletter.digest_key(b"a" * 32)).digest(line) == first  # and restarts
    assert site_b.digest(line) != first
    assert first == hmac.new(deadletter.digest_key(b"a" * 32), line, hashlib.sha256).hexdigest()
    assert deadletter.digest_key(b"a" * 32) != b"a" * 32  # derived, not the pseudonym key itself


def test_utf8_bom_is_skipped() -> None:
    got, bad = decode(b"\xef\xbb\xbf" + GOOD + b"\n" + GOOD)
    assert bad == []
    assert len(got) == 2


def test_empty_and_blank_input() -> None:
    assert decode(b"") == ([], [])
    assert decode(b"\n\n  \r\n") == ([], [])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    good, bad = DECODER.decode(data, "fuzz", now=0)
    assert all(isinstance(e, Event) for e in good)
    assert all(d.reason for d in bad)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c) | st.dictionaries(st.text(max_size=5), c),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_raises(value: object) -> None:
    data = msgspec.json.encode(value)
    for chunk in (data, data + b"\n" + GOOD, b"[" + data + b"," + GOOD + b"]"):
        DECODER.decode(chunk, "fuzz", now=0)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
stamps = st.sampled_from(
    [
        "2026-01-05T00:00:00Z",
        "2026-01-05T00:00:00.123456789Z",
        "2026-01-05t00:00:00z",
        "2026-01-05 00:00:00Z",
        "2026-01-05T00:00:00+0100",
        "2026-01-05T00:00:00",
        "2026-01-05",
        "1969-12-31T23:59:59Z",
        "2026-01-05T23:59:60Z",
        "2026-01-05T00:00:00-23:59",
    ]
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=5) | json_scalars,
        "ts": st.floats(min_value=-10, max_value=3e11, allow_nan=False) | stamps | json_scalars,
        "unit": st.text(max_size=5) | json_scalars,
        "value": json_scalars,
        "attrs": st.dictionaries(
            st.text(max_size=3), json_scalars | st.lists(st.integers(), max_size=2), max_size=3
        )
        | json_scalars,
    },
)


@settings(max_examples=400, deadline=None)
@given(event_like)
def test_fast_and_slow_paths_agree(obj: dict[str, object]) -> None:
    line = msgspec.json.encode(obj)
    fast_events, fast_letters = DECODER.decode(line, "t", now=0)
    # A malformed neighbour forces the per-line path for the same line.
    slow_events, slow_letters = DECODER.decode(line + b"\n{broken", "t", now=0)
    assert slow_letters[-1].reason == "json"
    assert fast_events == slow_events
    assert [d.reason for d in fast_letters] == [d.reason for d in slow_letters[:-1]]


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-01-05T00:00:00.123456789Z",  # rounds up
        "2026-01-05T00:00:00.1234564Z",  # rounds down
        "2026-01-05T00:00:00.999999999Z",  # carries into the next second
        "2026-01-05T23:59:59.9999996+01:00",  # carries across midnight, with an offset
    ],
)
def test_sub_microsecond_stamps_agree_on_both_paths(stamp: str) -> None:
    """Found by the property test above: the per-line path truncated nanoseconds, msgspec rounds."""
    line = msgspec.json.encode({"name": "a", "ts": stamp, "unit": "u"})
    fast, _ = DECODER.decode(line, "t", now=0)
    slow, _ = DECODER.decode(line + b"\n{broken", "t", now=0)
    assert len(fast) == 1
    assert fast == slow[:1]
