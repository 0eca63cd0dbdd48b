"""Seal a release: encode it as a v1 batch and sign it into a DSSE envelope. Pure, no I/O.

The payload bytes produced here are the bytes that travel; the outbox stores them as they are, so a
retry (or a bundle export) carries exactly what was signed.

``Batch.redactions`` stays in wire contract v1 (decoders accept it) but this agent always sends it
empty: exact redaction counters are data-dependent and un-noised, so they must not leave the site
(they stay local: run report, status, metrics endpoint). There is deliberately no parameter for it.
"""

from __future__ import annotations

import msgspec
import nacl.signing

from hushmetric import dsse
from hushmetric.batch import (
    CONTRACT_VERSION,
    Batch,
    Privacy,
    Row,
    Window,
    decode_batch,
    encode_batch,
    payload_digest,
)
from hushmetric.timefmt import format_rfc3339

__all__ = ["Sealed", "seal"]


class Sealed(msgspec.Struct, frozen=True):
    """A signed batch ready for the outbox. ``digest`` is what the next batch's ``prev`` names."""

    seq: int
    payload: bytes
    digest: str
    envelope: dsse.Envelope
    rows: int
    window_start: int
    window_end: int
    created: float = 0.0  # epoch seconds the batch was sealed (for outbox age); 0 when unknown


def seal(
    *,
    tenant: str,
    agent: str,
    seq: int,
    prev: str,
    created: float,
    window: tuple[int, int],
    policy_digest: str,
    privacy: Privacy,
    rows: list[Row],
    key: nacl.signing.SigningKey,
) -> Sealed:
    """Build batch ``seq`` (chained to ``prev``, "" for seq 1) and sign it with ``key``.

    ``window`` is (start, end) in epoch seconds; ``created`` is epoch seconds. Raises ValueError for
    a chain that cannot be right (seq < 1, seq 1 with a prev, or a later seq without one), and
    ContractError for a batch the wire contract would refuse (ids, name lengths, too many dims).
    """
    if seq < 1:
        raise ValueError(f"seq must be >= 1, got {seq}")
    if (seq == 1) != (prev == ""):
        raise ValueError(f"seq {seq} with prev {prev!r}: only seq 1 has an empty prev")
    start, end = window
    batch = Batch(
        v=CONTRACT_VERSION,
        tenant=tenant,
        agent=agent,
        seq=seq,
        prev=prev,
        created=format_rfc3339(created),
        window=Window(format_rfc3339(start), format_rfc3339(end)),
        policy=policy_digest,
        privacy=privacy,
        redactions={},  # never data-dependent counts: see the module docstring
        rows=list(rows),
    )
    payload = encode_batch(batch)
    decode_batch(payload)  # the contract's own bounds: refuse here what the collector would refuse
    envelope = dsse.sign(payload, dsse.BATCH_PAYLOAD_TYPE, key)
    return Sealed(
        seq=seq,
        payload=payload,
        digest=payload_digest(payload),
        envelope=envelope,
        rows=len(rows),
        window_start=int(start),
        window_end=int(end),
        created=float(created),
    )
