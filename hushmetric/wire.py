"""Conversions between the DSSE Struct and its protobuf form on gRPC."""

from __future__ import annotations

from hushmetric.dsse import Envelope, Signature
from hushmetric.v1 import ingest_pb2

__all__ = ["envelope_from_proto", "envelope_to_proto"]


def envelope_to_proto(envelope: Envelope) -> ingest_pb2.Envelope:
    return ingest_pb2.Envelope(
        payload=envelope.payload,
        payload_type=envelope.payload_type,
        signatures=[ingest_pb2.Signature(sig=s.sig, keyid=s.keyid) for s in envelope.signatures],
    )


def envelope_from_proto(message: ingest_pb2.Envelope) -> Envelope:
    return Envelope(
        bytes(message.payload),
        message.payload_type,
        tuple(Signature(bytes(s.sig), s.keyid) for s in message.signatures),
    )
