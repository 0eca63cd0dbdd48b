"""Prometheus remote-write 1.0: the request body (pure) and the POST that delivers it.

The body is a ``prometheus.WriteRequest`` protobuf compressed with snappy's block format, as the
1.0 specification requires. The message has four fixed fields, so it is encoded here by hand
(tag + length + bytes) rather than through generated code for a .proto this project does not own;
:func:`decode_write_request` is the inverse the tests use. Snappy comes from ``cramjam`` (the
``remote-write`` extra): small, wheels on every platform, no system library.

Delivery follows the specification's retry rules: a connection failure, 5xx or 429 is retryable
(:class:`RetryableError`, the pusher backs off and sends the same body again; Prometheus ignores an
identical duplicate sample), any other 4xx means Prometheus refuses these samples for good
(:class:`RefusedError`).
"""

from __future__ import annotations

import asyncio
import struct
import urllib.error
import urllib.request
from collections.abc import Iterable
from itertools import groupby

from collector.outputs.series import Sample
from hushmetric.errors import ConfigError

__all__ = [
    "RefusedError",
    "RetryableError",
    "compress",
    "decode_write_request",
    "encode_write_request",
    "post",
]

_VERSION_HEADER = "0.1.0"  # X-Prometheus-Remote-Write-Version of the 1.0 protocol


class RetryableError(Exception):
    """The receiver did not take the batch now; the same body may be sent again later."""


class RefusedError(Exception):
    """The receiver refused the body for good (HTTP 4xx other than 429)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 fields are two's complement on the wire
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _label(name: str, value: str) -> bytes:
    return _field(1, name.encode()) + _field(2, value.encode())


def _sample(value: float, timestamp_ms: int) -> bytes:
    return b"\x09" + struct.pack("<d", value) + b"\x10" + _varint(timestamp_ms)


def encode_write_request(samples: Iterable[Sample]) -> bytes:
    """``WriteRequest{timeseries}``: one TimeSeries per label set, its samples in time order."""
    out = bytearray()
    ordered = sorted(samples, key=lambda s: (s.labels, s.timestamp_ms))
    for labels, group in groupby(ordered, key=lambda s: s.labels):
        series = b"".join(_field(1, _label(n, v)) for n, v in labels)
        series += b"".join(_field(2, _sample(s.value, s.timestamp_ms)) for s in group)
        out += _field(1, series)
    return bytes(out)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def _fields(data: bytes) -> list[tuple[int, bytes | int]]:
    out: list[tuple[int, bytes | int]] = []
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 2:
            size, i = _read_varint(data, i)
            out.append((number, data[i : i + size]))
            i += size
        elif wire == 1:
            out.append((number, data[i : i + 8]))
            i += 8
        elif wire == 0:
            value, i = _read_varint(data, i)
            out.append((number, value - (1 << 64) if value >> 63 else value))
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return out


def decode_write_request(data: bytes) -> list[tuple[dict[str, str], list[tuple[float, int]]]]:
    """The (labels, [(value, timestamp_ms)]) of every series in an uncompressed WriteRequest."""
    result = []
    for _, series in _fields(data):
        assert isinstance(series, bytes)
        labels: dict[str, str] = {}
        points: list[tuple[float, int]] = []
        for number, part in _fields(series):
            assert isinstance(part, bytes)
            inner = dict(_fields(part))
            if number == 1:
                name, value = inner.get(1, b""), inner.get(2, b"")
                assert isinstance(name, bytes) and isinstance(value, bytes)
                labels[name.decode()] = value.decode()
            else:
                raw, ts = inner.get(1, bytes(8)), inner.get(2, 0)
                assert isinstance(raw, bytes) and isinstance(ts, int)
                points.append((struct.unpack("<d", raw)[0], ts))
        result.append((labels, points))
    return result


def compress(body: bytes) -> bytes:
    """Snappy block format (not framed), as remote-write requires."""
    try:
        import cramjam  # the remote-write extra; the agent never needs it
    except ImportError as exc:
        raise ConfigError(
            "Prometheus remote-write needs snappy: pip install 'hushmetric[remote-write]' (cramjam)"
        ) from exc
    return bytes(cramjam.snappy.compress_raw(body))


def _post_blocking(url: str, body: bytes, timeout: float) -> None:
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's configured endpoint
        url,
        data=body,
        method="POST",
        headers={
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "User-Agent": "hush-collector",
            "X-Prometheus-Remote-Write-Version": _VERSION_HEADER,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 - see above
            reply.read()
    except urllib.error.HTTPError as exc:
        message = exc.read(512).decode(errors="replace").strip()
        if exc.code == 429 or exc.code >= 500:
            raise RetryableError(f"HTTP {exc.code}: {message}") from exc
        raise RefusedError(exc.code, message) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise RetryableError(f"cannot reach {url}: {exc}") from exc


async def post(url: str, samples: list[Sample], *, deadline: float = 30.0) -> None:
    """Deliver ``samples`` in one request (in a worker thread: urllib blocks)."""
    if not samples:
        return
    body = compress(encode_write_request(samples))
    await asyncio.to_thread(_post_blocking, url, body, deadline)
