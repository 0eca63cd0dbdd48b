"""The batch codec: round trips for any valid batch, forward compatibility, strict required keys."""

from __future__ import annotations

import math
import time

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hushmetric.batch import Batch, Noise, Privacy, Row, Window, decode_batch, encode_batch, payload_digest
from hushmetric.errors import ContractError

ids = st.from_regex(r"[A-Za-z0-9._:@-]{1,24}", fullmatch=True)
names = st.text(min_size=1, max_size=24)
hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
stamps = st.integers(0, 4_000_000_000).map(lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)))
finite = st.floats(allow_nan=False, allow_infinity=True)
nonneg = st.floats(min_value=0, allow_nan=False, allow_infinity=False)
rows = st.builds(
    Row,
    metric=names,
    stat=st.sampled_from(["count", "sum", "mean", "histogram", "distinct_units", "p50"]),
    dims=st.dictionaries(names, st.text(max_size=32), max_size=4),
    value=finite,
    noise=st.builds(Noise, mechanism=st.sampled_from(["gaussian", "laplace", "derived"]), scale=nonneg),
)
batches = st.builds(
    Batch,
    v=st.just(1),
    tenant=ids,
    agent=ids,
    seq=st.integers(1, 2**63 - 1),
    prev=st.one_of(st.just(""), hex64),
    created=stamps,
    window=st.builds(Window, start=stamps, end=stamps),
    policy=hex64,
    privacy=st.builds(
        Privacy, unit=names, epsilon=st.none() | nonneg, delta=st.none() | nonneg, rho=st.none() | nonneg
    ),
    redactions=st.dictionaries(st.text(max_size=16), st.integers(0, 2**31), max_size=4),
    rows=st.lists(rows, max_size=5),
)


@given(batches)
def test_round_trip(batch: Batch) -> None:
    payload = encode_batch(batch)
    assert decode_batch(payload) == batch
    assert encode_batch(decode_batch(payload)) == payload  # a retry resends identical bytes
    assert len(payload_digest(payload)) == 64


@given(
    batches,
    st.dictionaries(
        st.text(min_size=1).filter(lambda k: k not in Batch.__struct_fields__),
        st.integers(-(2**63), 2**64 - 1) | st.text(),
        max_size=3,
    ),
)
def test_unknown_keys_are_ignored(batch: Batch, extra: dict[str, object]) -> None:
    doc = msgspec.to_builtins(batch)
    doc.update(extra)
    assert decode_batch(msgspec.msgpack.encode(doc)) == batch


def _doc() -> dict[str, object]:
    return msgspec.to_builtins(
        Batch(
            1,
            "t",
            "a",
            1,
            "",
            "2026-03-10T12:00:00Z",
            Window("2026-03-10T11:00:00Z", "2026-03-10T12:00:00Z"),
            "ab" * 32,
            Privacy("user"),
            {},
            [Row("m", "count", {}, 1.0, Noise("gaussian", 1.0))],
        )
    )


@pytest.mark.parametrize(
    "key",
    ["v", "tenant", "agent", "seq", "prev", "created", "window", "policy", "privacy", "redactions", "rows"],
)
def test_missing_required_key_is_an_error(key: str) -> None:
    doc = _doc()
    del doc[key]
    with pytest.raises(ContractError, match=key):
        decode_batch(msgspec.msgpack.encode(doc))


@pytest.mark.parametrize(
    ("key", "value"),
    [("seq", "1"), ("seq", 0), ("tenant", "has space"), ("prev", "XYZ"), ("rows", {}), ("v", 2)],
)
def test_mistyped_or_out_of_range_is_an_error(key: str, value: object) -> None:
    doc = _doc()
    doc[key] = value
    with pytest.raises(ContractError):
        decode_batch(msgspec.msgpack.encode(doc))


def test_integer_value_is_accepted_as_float() -> None:
    doc = _doc()
    doc["rows"] = [
        {"metric": "m", "stat": "count", "dims": {}, "value": 3, "noise": {"mechanism": "g", "scale": 1}}
    ]
    row = decode_batch(msgspec.msgpack.encode(doc)).rows[0]
    assert row.value == 3.0
    assert isinstance(row.value, float)
    assert not math.isnan(row.value)


def test_not_msgpack_is_an_error() -> None:
    with pytest.raises(ContractError):
        decode_batch(b"\xc1")
