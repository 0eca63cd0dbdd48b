"""Test kit for the collector: a driven clock, agents that build and sign real batches, a server handle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
import nacl.signing

from hushmetric import dsse
from hushmetric.batch import Batch, Noise, Privacy, Row, Window, encode_batch, payload_digest
from hushmetric.keys import key_id
from hushmetric.timefmt import format_rfc3339, parse_rfc3339
from hushmetric.v1 import ingest_pb2_grpc
from hushmetric.wire import envelope_to_proto

T0 = parse_rfc3339("2026-03-10T12:00:00Z")
STORE_KINDS = ["sqlite"]  # extend with "postgres" when the PostgreSQL store lands


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Agent:
    """A test agent: its own key, a seq counter and a prev chain, producing real signed batches."""

    tenant: str
    agent: str
    key: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    seq: int = 0
    prev: str = ""
    created: float = T0

    @property
    def public_key(self) -> bytes:
        return bytes(self.key.verify_key)

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def rows(self, n: int) -> list[Row]:
        return [
            Row(f"metric{i % 3}", "count", {"region": f"r{i}"}, float(10 + i), Noise("gaussian", 1.5))
            for i in range(n)
        ]

    def payload(
        self, *, rows: int = 1, seq: int | None = None, prev: str | None = None, **over: Any
    ) -> bytes:
        fields: dict[str, Any] = {
            "v": 1,
            "tenant": self.tenant,
            "agent": self.agent,
            "seq": seq if seq is not None else self.seq + 1,
            "prev": prev if prev is not None else self.prev,
            "created": format_rfc3339(self.created),
            "window": Window(format_rfc3339(self.created - 60), format_rfc3339(self.created)),
            "policy": "ab" * 32,
            "privacy": Privacy("user", None, None, 0.01),
            "redactions": {"email": 2},
            "rows": self.rows(rows),
        }
        fields.update(over)
        return encode_batch(Batch(**fields))

    def sign(self, payload: bytes, payload_type: str = dsse.BATCH_PAYLOAD_TYPE) -> dsse.Envelope:
        return dsse.sign(payload, payload_type, self.key)

    def next(self, *, rows: int = 1, **over: Any) -> dsse.Envelope:
        """The next batch of the chain (advances seq and prev)."""
        payload = self.payload(rows=rows, **over)
        self.seq += 1
        self.prev = payload_digest(payload)
        return self.sign(payload)


@dataclass
class Server:
    address: str
    channel: grpc.aio.Channel
    stub: ingest_pb2_grpc.IngestStub

    async def submit(self, envelope: dsse.Envelope) -> Any:
        return await self.stub.Submit(envelope_to_proto(envelope))


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]
