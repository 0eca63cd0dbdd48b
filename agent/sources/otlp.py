"""OTLP receiver for logs and metrics: gRPC ``LogsService``/``MetricsService``, OTLP/HTTP protobuf + JSON.

Each export request becomes one :class:`Chunk` (event lines from :mod:`agent.sources.otlp_map`, plus
the records refused there as dead letters). The exporter is answered only once the pipeline called
the chunk's ``ack``, i.e. after the journal transaction holding its events and dead letters committed
— the same guarantee as the MQTT PUBACK. So a crash before the commit is a failed export, which every
OTLP exporter retries.

Backpressure, in the retryable terms of the OTLP specification:
- at most ``max_pending`` requests wait for the pipeline; one more is answered at once with gRPC
  ``RESOURCE_EXHAUSTED`` + ``RetryInfo`` (trailers ``grpc-status-details-bin`` and
  ``google.rpc.retryinfo-bin``, the latter read by the Python exporter) or HTTP 429 + ``Retry-After``;
- a request not committed within ``ack_timeout`` (outbox full, disk stalled) or cut by shutdown is
  answered ``UNAVAILABLE`` + ``RetryInfo`` / HTTP 503 + ``Retry-After``. Its chunk may still commit
  later: a retry then delivers it twice (at least once, like MQTT redelivery — never lost).

Partial success: records refused by the mapping (no privacy unit, no name, distributions) or by the
decoder's limits (too many attributes, values too long, bad numbers) are dead-lettered and reported
as ``rejected_log_records``/``rejected_data_points`` with a one-line count per reason.

Bounds: a request body over ``max_request_bytes`` (after gzip inflation too) is refused (gRPC
``RESOURCE_EXHAUSTED`` from grpc itself, HTTP 413); HTTP headers are capped in size, count and time;
concurrent HTTP connections are capped; nothing in a request reaches a log line. Listens on loopback
by default; with ``tls_cert``/``tls_key`` both listeners speak TLS only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]  # no stubs
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from agent.decode import Decoder
from agent.sources.base import Chunk
from agent.sources.otlp_map import Mapped, Mapping, map_logs, map_metrics

__all__ = ["OtlpSource", "Outcome", "response_for", "server_context"]

log = logging.getLogger(__name__)

HEADER_BYTES = 16 << 10  # request line + headers
HEADER_LINES = 100
HEADER_SECONDS = 30.0  # to send the headers (slow clients hold a connection slot)
BODY_SECONDS = 60.0
IDLE_SECONDS = 120.0  # keep-alive
MAX_HTTP_CONNECTIONS = 256


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to answer: ``status`` "ok" (with ``rejected`` and ``message``), "busy" or "unavailable"."""

    status: str
    rejected: int = 0
    message: str = ""


_KINDS: dict[str, tuple[type[Message], type[Message], Callable[..., Mapped]]] = {
    "logs": (
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
        map_logs,
    ),
    "metrics": (
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
        map_metrics,
    ),
}


def response_for(kind: str, outcome: Outcome) -> Message:
    response = _KINDS[kind][1]()
    if outcome.rejected:
        partial: Any = response.partial_success  # type: ignore[attr-defined]
        if kind == "logs":
            partial.rejected_log_records = outcome.rejected
        else:
            partial.rejected_data_points = outcome.rejected
        partial.error_message = outcome.message
    return response


class OtlpSource:
    live = True  # `run --once` drains it until idle, like MQTT

    def __init__(
        self,
        *,
        decoder: Decoder,
        mapping: Mapping,
        clock: Callable[[], float],
        host: str = "127.0.0.1",
        grpc_port: int | None = 4317,
        http_port: int | None = 4318,
        max_request_bytes: int = 4 << 20,
        max_pending: int = 16,
        ack_timeout: float = 10.0,
        retry_after: int = 2,
        tls: tuple[Path, Path] | None = None,  # (PEM certificate chain, PEM key)
    ) -> None:
        self.name = f"otlp:{host}"
        self._decoder = decoder
        self._mapping = mapping
        self._clock = clock
        self._host = host
        self._grpc_port = grpc_port
        self._http_port = http_port
        self._max_bytes = max_request_bytes
        self._ack_timeout = ack_timeout
        self._retry_after = retry_after
        self._tls = tls
        self._queue: asyncio.Queue[Chunk] = asyncio.Queue(max_pending)
        self._connections = 0
        self.grpc_bound: int | None = None  # the ports actually bound (port 0 picks a free one)
        self.http_bound: int | None = None
        self.ready = asyncio.Event()

    # -- the Source interface ---------------------------------------------------------------------

    async def chunks(self) -> AsyncIterator[Chunk]:
        grpc_server = await self._start_grpc() if self._grpc_port is not None else None
        http_server = await self._start_http() if self._http_port is not None else None
        self.ready.set()
        try:
            while True:
                yield await self._queue.get()
        finally:
            self.ready.clear()
            if http_server is not None:
                http_server.close()
            if grpc_server is not None:
                await grpc_server.stop(grace=None)

    # -- shared by both protocols -------------------------------------------------------------------

    async def submit(self, kind: str, request: Any) -> Outcome:
        """Map, queue and wait for the commit of one export request."""
        now = self._clock()
        source = f"{self.name}/{kind}"
        mapped: Mapped = _KINDS[kind][2](request, self._mapping, source=source, now=now)
        # The decoder's verdict on these lines, now, so the exporter hears which records are refused;
        # the pipeline decodes the same bytes again with the same limits and dead-letters the same ones.
        refused = self._decoder.decode(mapped.data, source, now=now)[1] if mapped.data else []
        rejected = mapped.rejected + len(refused)
        message = "; ".join(m for m in (mapped.error_message(), _reasons(refused)) if m)
        if not mapped.data and not mapped.letters:
            return Outcome("ok")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not done.done():
                done.set_result(None)

        def ack() -> None:  # called by the pipeline after its commit; may come from another thread
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
                loop.call_soon_threadsafe(settle)

        chunk = Chunk(source, mapped.data, ack=ack, letters=tuple(mapped.letters))
        try:
            self._queue.put_nowait(chunk)
        except asyncio.QueueFull:
            return Outcome("busy")
        try:
            await asyncio.wait_for(asyncio.shield(done), self._ack_timeout)
        except TimeoutError:
            return Outcome("unavailable")
        return Outcome("ok", rejected, message)

    # -- gRPC -----------------------------------------------------------------------------------------

    async def _start_grpc(self) -> grpc.aio.Server:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._max_bytes),
                ("grpc.max_send_message_length", 1 << 20),
                ("grpc.so_reuseport", 0),  # a second agent on the same port must fail, not share it
            ]
        )
        # Generic handlers on raw bytes, not the generated servicers: grpc's own deserializer answers an
        # undecodable request with INTERNAL; parsing here answers it INVALID_ARGUMENT (not retryable).
        for service, kind in (
            ("opentelemetry.proto.collector.logs.v1.LogsService", "logs"),
            ("opentelemetry.proto.collector.metrics.v1.MetricsService", "metrics"),
        ):
            handler = grpc.unary_unary_rpc_method_handler(
                partial(self.grpc_export, kind), response_serializer=_serialize
            )
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, {"Export": handler}),)
            )
        address = f"{_bracket(self._host)}:{self._grpc_port}"
        if self._tls is not None:
            cert, key = self._tls
            credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
        await server.start()
        self.grpc_bound = port
        log.info("otlp grpc listening on %s:%d", self._host, port)
        return server

    async def grpc_export(self, kind: str, body: bytes, context: Any) -> Message:
        request = _KINDS[kind][0]()
        if _parse(request, body, as_json=False) is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed OTLP protobuf request")
        outcome = await self.submit(kind, request)
        if outcome.status == "ok":
            return response_for(kind, outcome)
        busy = outcome.status == "busy"
        code = grpc.StatusCode.RESOURCE_EXHAUSTED if busy else grpc.StatusCode.UNAVAILABLE
        text = "agent busy: too many exports waiting" if busy else "agent could not commit in time"
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.seconds = self._retry_after
        status = status_pb2.Status(
            code=code_pb2.RESOURCE_EXHAUSTED if busy else code_pb2.UNAVAILABLE, message=text
        )
        status.details.add().Pack(retry)
        await context.abort(
            code,
            text,
            trailing_metadata=(
                ("grpc-status-details-bin", status.SerializeToString()),
                ("google.rpc.retryinfo-bin", retry.SerializeToString()),
            ),
        )
        raise AssertionError("abort returned")  # pragma: no cover - abort always raises

    # -- HTTP -----------------------------------------------------------------------------------------

    async def _start_http(self) -> asyncio.Server:
        context = server_context(*self._tls) if self._tls is not None else None
        server = await asyncio.start_server(
            self._http_connection, self._host, self._http_port, ssl=context, limit=HEADER_BYTES
        )
        self.http_bound = server.sockets[0].getsockname()[1]
        log.info("otlp http listening on %s:%d", self._host, self.http_bound)
        return server

    async def _http_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= MAX_HTTP_CONNECTIONS:
            writer.close()
            return
        self._connections += 1
        try:
            while await self._http_request(reader, writer):
                pass
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away or stalled: nothing to answer
        except Exception:  # hostile input must never take the daemon down; never log its content
            log.exception("otlp http: unexpected error; connection closed")
        finally:
            self._connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _http_request(  # noqa: C901 - one flat pass over an HTTP/1.1 request's checks, in order
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; whether the connection stays open for another."""
        try:
            async with asyncio.timeout(IDLE_SECONDS):
                first = await reader.readline()
        except ValueError:  # line over the reader's limit
            await _answer(writer, 431, b"", "text/plain", close=True)
            return False
        if not first:
            return False
        try:
            async with asyncio.timeout(HEADER_SECONDS):
                headers = await _read_headers(reader)
        except (ValueError, _BadRequest):
            await _answer(writer, 431, b"request header too large", "text/plain", close=True)
            return False
        parts = first.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await _answer(writer, 400, b"bad request line", "text/plain", close=True)
            return False
        method, target, version = parts
        close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
        kind = {"/v1/logs": "logs", "/v1/metrics": "metrics"}.get(target.split("?", 1)[0])
        if "transfer-encoding" in headers:
            await _answer(writer, 411, b"send a Content-Length", "text/plain", close=True)
            return False
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit() or len(length_text) > 12:
            await _answer(writer, 400, b"bad Content-Length", "text/plain", close=True)
            return False
        length = int(length_text)
        if length > self._max_bytes:
            await _answer(writer, 413, b"request body too large", "text/plain", close=True)
            return False
        async with asyncio.timeout(BODY_SECONDS):
            body = await reader.readexactly(length)
        if kind is None:
            await _answer(writer, 404, b"not found: POST /v1/logs or /v1/metrics", "text/plain", close=close)
            return not close
        if method != "POST":
            await _answer(writer, 405, b"method not allowed", "text/plain", close=close, allow="POST")
            return not close
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding == "gzip":
            inflated = _gunzip(body, self._max_bytes)
            if inflated is None:
                await _answer(writer, 400, b"bad or oversized gzip body", "text/plain", close=close)
                return not close
            body = inflated
        elif encoding != "identity":
            await _answer(writer, 415, b"unsupported Content-Encoding", "text/plain", close=close)
            return not close
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media not in ("application/x-protobuf", "application/json"):
            await _answer(
                writer, 415, b"use application/x-protobuf or application/json", "text/plain", close=close
            )
            return not close
        as_json = media == "application/json"
        request = _KINDS[kind][0]()
        error = _parse(request, body, as_json=as_json)
        if error is not None:
            await _answer_status(writer, 400, code_pb2.INVALID_ARGUMENT, error, as_json=as_json, close=close)
            return not close
        outcome = await self.submit(kind, request)
        if outcome.status == "ok":
            response = response_for(kind, outcome)
            data = json_format.MessageToJson(response).encode() if as_json else response.SerializeToString()
            await _answer(writer, 200, data, media, close=close)
            return not close
        busy = outcome.status == "busy"
        await _answer_status(
            writer,
            429 if busy else 503,
            code_pb2.RESOURCE_EXHAUSTED if busy else code_pb2.UNAVAILABLE,
            "agent busy: too many exports waiting" if busy else "agent could not commit in time",
            as_json=as_json,
            close=close,
            retry_after=self._retry_after,
        )
        return not close


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class _BadRequest(Exception):
    pass


def _reasons(letters: list[Any]) -> str:
    counts: dict[str, int] = {}
    for letter in letters:
        counts[letter.reason] = counts.get(letter.reason, 0) + 1
    return "; ".join(f"{n} refused by the agent's limits ({reason})" for reason, n in sorted(counts.items()))


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    total = 0
    for _ in range(HEADER_LINES + 1):
        line = await reader.readline()
        total += len(line)
        if total > HEADER_BYTES or not line.endswith(b"\n"):
            raise _BadRequest
        text = line.decode("latin-1").strip()
        if not text:
            return headers
        name, sep, value = text.partition(":")
        if not sep:
            raise _BadRequest
        headers[name.strip().lower()] = value.strip()
    raise _BadRequest


def _gunzip(body: bytes, limit: int) -> bytes | None:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        return None
    if len(data) > limit or inflater.unconsumed_tail or not inflater.eof:
        return None
    return data


def _parse(request: Message, body: bytes, *, as_json: bool) -> str | None:
    """Fill ``request`` from ``body``; a one-line reason (without input content) if that fails."""
    try:
        if as_json:
            json_format.Parse(body, request, ignore_unknown_fields=True, max_recursion_depth=64)
        else:
            request.ParseFromString(body)
    except (DecodeError, json_format.ParseError):
        return "malformed OTLP/JSON request" if as_json else "malformed OTLP protobuf request"
    except (RecursionError, ValueError, TypeError, UnicodeDecodeError):
        return "malformed or too deeply nested OTLP request"
    return None


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


async def _answer(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    media: str,
    *,
    close: bool,
    retry_after: int | None = None,
    allow: str | None = None,
) -> None:
    head = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {media}",
        f"Content-Length: {len(body)}",
    ]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    if allow is not None:
        head.append(f"Allow: {allow}")
    if close:
        head.append("Connection: close")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body)
    await writer.drain()


async def _answer_status(
    writer: asyncio.StreamWriter,
    status: int,
    code: int,
    message: str,
    *,
    as_json: bool,
    close: bool,
    retry_after: int | None = None,
) -> None:
    """An error answer with a ``google.rpc.Status`` body, as OTLP/HTTP asks."""
    body = status_pb2.Status(code=code, message=message)
    if retry_after is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.seconds = retry_after
        body.details.add().Pack(retry)
    data = json_format.MessageToJson(body).encode() if as_json else body.SerializeToString()
    media = "application/json" if as_json else "application/x-protobuf"
    await _answer(writer, status, data, media, close=close, retry_after=retry_after)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The HTTP listener's TLS context (TLS 1.2 or newer). Raises OSError/ssl.SSLError for bad files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
