"""A third party follows docs/wire.md with nothing of hushmetric but the .proto: plain dicts encoded by a
generic msgpack encoder, PAE and Ed25519 by hand with PyNaCl, a real gRPC call to a real
``hush-collector serve``, then the batch shows up in ``usage``."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import grpc
import msgspec
import nacl.signing
import pytest

from hushmetric.v1 import ingest_pb2, ingest_pb2_grpc  # generated from proto/, as a third party would
from tests.collector.collector_testkit import Hush, serving

PAYLOAD_TYPE = "application/vnd.hushmetric.batch.v1+msgpack"


def pae(payload_type: str, body: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 " + str(len(t)).encode() + b" " + t + b" " + str(len(body)).encode() + b" " + body


def stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@pytest.fixture
def hush(tmp_path: Path) -> Hush:
    h = Hush(tmp_path)
    h.ok("init")
    h.ok("tenant", "create", "initech")
    return h


def test_third_party_batch_is_accepted_metered_and_reported(hush: Hush) -> None:
    signing = nacl.signing.SigningKey.generate()
    public = bytes(signing.verify_key)
    key_id = hashlib.sha256(public).hexdigest()
    printed = hush.ok(
        "key", "add", "initech", "--agent", "tp-1", "--public-key", base64.b64encode(public).decode()
    )
    assert printed.strip() == key_id

    now = time.time()
    batch = {
        "seq": 1,  # map order is free
        "v": 1,
        "tenant": "initech",
        "agent": "tp-1",
        "prev": "",
        "created": stamp(now),
        "window": {"start": stamp(now - 60), "end": stamp(now)},
        "policy": hashlib.sha256(b"my policy").hexdigest(),
        "privacy": {"unit": "device", "epsilon": 0.5},  # delta and rho absent: not applicable
        "redactions": {},
        "rows": [
            {
                "metric": "reboots",
                "stat": "count",
                "dims": {"model": "x1"},
                "value": 12,
                "noise": {"mechanism": "laplace", "scale": 2.0},
            },
            {
                "metric": "uptime_h",
                "stat": "mean",
                "dims": {},
                "value": 401.25,
                "noise": {"mechanism": "derived", "scale": 3.5},
            },
        ],
        "x-vendor-note": "unknown keys are ignored",
    }
    payload = msgspec.msgpack.encode(batch)
    sig = signing.sign(pae(PAYLOAD_TYPE, payload)).signature
    envelope = ingest_pb2.Envelope(
        payload=payload, payload_type=PAYLOAD_TYPE, signatures=[ingest_pb2.Signature(sig=sig, keyid=key_id)]
    )

    with serving(hush) as served, grpc.insecure_channel(served.address) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        reply = stub.Submit(envelope, timeout=10)
        assert (reply.seq, reply.duplicate) == (1, False)
        assert stub.Submit(envelope, timeout=10).duplicate is True

    usage = json.loads(hush.ok("usage", "--tenant", "initech", "--format", "json"))
    assert len(usage) == 1
    day = usage[0]
    assert set(day) == {"tenant", "day", "batches", "rows", "bytes", "duplicates", "refused", "gaps"}
    assert (day["tenant"], day["batches"], day["rows"], day["bytes"], day["duplicates"]) == (
        "initech",
        1,
        2,
        len(payload),
        1,
    )
    assert day["refused"] == {}
    assert day["gaps"] == 0
    csv_out = hush.ok("usage", "--format", "csv")
    assert csv_out.splitlines()[0] == "tenant,day,batches,rows,bytes,duplicates,refused,gaps"
    assert "initech" in hush.ok("usage")
