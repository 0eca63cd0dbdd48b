"""The batch payload of wire contract v1: typed msgspec Structs and the msgpack codec.

A batch is what an agent releases for one window. It is encoded as a msgpack map with string keys,
signed inside a DSSE envelope, and chained to the previous batch of the same agent by ``prev``.
Unknown keys are ignored (forward compatibility); missing or mistyped required keys are an error.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

import msgspec

from hushmetric.errors import ContractError

__all__ = [
    "CONTRACT_VERSION",
    "Batch",
    "Noise",
    "Privacy",
    "Row",
    "Window",
    "decode_batch",
    "encode_batch",
    "payload_digest",
]

CONTRACT_VERSION = 1

# Bounds that keep a hostile payload from costing more than its size: ids are short, names are short,
# dimension maps are small. They are part of the contract (docs/wire.md).
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Label = Annotated[str, msgspec.Meta(max_length=256)]
Hex64 = Annotated[str, msgspec.Meta(pattern=r"^([0-9a-f]{64})?$")]
Timestamp = Annotated[str, msgspec.Meta(min_length=20, max_length=40)]
# NaN is refused here, not by the database (SQLite would store it as NULL); scales and privacy
# figures are also finite. A row value may be infinite (the contract's property tests round-trip it).
_FLOAT_MAX = 1.7976931348623157e308
NonNegative = Annotated[float, msgspec.Meta(ge=0, le=_FLOAT_MAX)]


class Window(msgspec.Struct, frozen=True):
    start: Timestamp
    end: Timestamp


class Privacy(msgspec.Struct, frozen=True):
    """Privacy spent by this release. ``unit`` names the privacy unit (e.g. "user")."""

    unit: Name
    epsilon: NonNegative | None = None
    delta: NonNegative | None = None
    rho: NonNegative | None = None


class Noise(msgspec.Struct, frozen=True):
    """The mechanism and the scale (standard deviation units of the mechanism) of a released value."""

    mechanism: Annotated[str, msgspec.Meta(max_length=32)]
    scale: NonNegative


# Release levels of a row: one window (the default), or a whole budget period's total.
Level = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]


class Row(msgspec.Struct, frozen=True, omit_defaults=True):
    metric: Name
    stat: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    dims: Annotated[dict[Name, Label], msgspec.Meta(max_length=16)]
    value: float  # NaN is refused by decode_batch
    noise: Noise
    # Added after v1 shipped, optional: absent means "window", and a window row is encoded without
    # it, so its bytes are those of an older agent. "period": the total of the batch's window (a
    # whole budget period). Older collectors ignore the key (unknown keys are ignored).
    level: Level = "window"


class Batch(msgspec.Struct, frozen=True):
    v: Annotated[int, msgspec.Meta(ge=1)]
    tenant: Id
    agent: Id
    seq: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
    prev: Hex64
    created: Timestamp
    window: Window
    policy: Hex64
    privacy: Privacy
    redactions: Annotated[dict[Annotated[str, msgspec.Meta(max_length=64)], int], msgspec.Meta(max_length=64)]
    rows: list[Row]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Batch)


def encode_batch(batch: Batch) -> bytes:
    return _encoder.encode(batch)


def decode_batch(payload: bytes) -> Batch:
    """Decode and validate a payload; any defect is a ContractError naming the offending path."""
    try:
        batch = _decoder.decode(payload)
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise ContractError(f"malformed batch: {exc}") from exc
    except UnicodeDecodeError as exc:  # msgspec raises it for a str that is not UTF-8
        raise ContractError("malformed batch: a string is not valid UTF-8") from exc
    except RecursionError as exc:  # nesting (e.g. inside an ignored unknown key) past the stack
        raise ContractError("malformed batch: nested too deeply") from exc
    if batch.v != CONTRACT_VERSION:
        raise ContractError(f"unsupported batch version {batch.v}")
    for i, row in enumerate(batch.rows):
        if row.value != row.value:  # NaN
            raise ContractError(f"malformed batch: NaN value - at `$.rows[{i}].value`")
    return batch


def payload_digest(payload: bytes) -> str:
    """Hex SHA-256 of the payload bytes: what the next batch's ``prev`` names."""
    return hashlib.sha256(payload).hexdigest()
