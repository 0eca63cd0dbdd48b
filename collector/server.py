"""The gRPC face of the collector: a thin ``hushmetric.v1.Ingest`` servicer plus health and reflection.

The servicer decodes, calls :func:`collector.ingest.ingest`, and maps the outcome to a status code;
``RESOURCE_EXHAUSTED`` carries a ``google.rpc.RetryInfo``. Every refusal also carries its reason in
the ``hush-reason`` trailing metadata. :func:`serve` owns the server's lifetime and drains in-flight
calls on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]  # no stubs
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from collector import certs, enroll
from collector.errors import Conflict, NotFound, Unavailable
from collector.ingest import IngestSettings, Kind, Observer, Rejected, ingest
from collector.ingest_cache import LookupCache
from collector.ingest_refusals import FailureLimiter, RefusalBuffer, peer_host
from collector.store import UNATTRIBUTED, Refusal, Store
from collector.store.vocab import EnrollReason
from hushmetric.errors import ContractError
from hushmetric.timefmt import format_rfc3339
from hushmetric.v1 import ingest_pb2, ingest_pb2_grpc
from hushmetric.wire import envelope_from_proto

__all__ = ["DEFAULT_MAX_CONCURRENT_RPCS", "ENVELOPE_OVERHEAD", "IngestServicer", "serve"]

#: Room for the protobuf framing and signatures on top of the largest allowed payload.
ENVELOPE_OVERHEAD = 64 << 10
_GRACE_SECONDS = 10.0
_READINESS_SECONDS = 5.0
_FLUSH_SECONDS = 5.0
#: Calls served at once; beyond it gRPC refuses with RESOURCE_EXHAUSTED instead of queueing without
#: bound (each call may hold a database connection and up to a batch of memory).
DEFAULT_MAX_CONCURRENT_RPCS = 256
log = logging.getLogger("hush.collector")

_STATUS: dict[Kind, tuple[grpc.StatusCode, int]] = {
    "invalid_argument": (grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT),
    "unauthenticated": (grpc.StatusCode.UNAUTHENTICATED, code_pb2.UNAUTHENTICATED),
    "permission_denied": (grpc.StatusCode.PERMISSION_DENIED, code_pb2.PERMISSION_DENIED),
    "already_exists": (grpc.StatusCode.ALREADY_EXISTS, code_pb2.ALREADY_EXISTS),
    "failed_precondition": (grpc.StatusCode.FAILED_PRECONDITION, code_pb2.FAILED_PRECONDITION),
    "resource_exhausted": (grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED),
}


def _retry_status(message: str, retry_after: float) -> grpc.Status:
    seconds = math.floor(retry_after)
    delay = duration_pb2.Duration(seconds=seconds, nanos=int((retry_after - seconds) * 1e9))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message, details=[detail])
    result: grpc.Status = rpc_status.to_status(status)
    return result


def _lenient(parse: Callable[[bytes], object]) -> Callable[[bytes], object | None]:
    """A request deserializer that yields None for bytes that are not the expected protobuf message,
    so the servicer answers INVALID_ARGUMENT (and counts it) instead of gRPC answering UNKNOWN."""

    def deserialize(data: bytes) -> object | None:
        try:
            return parse(data)
        except DecodeError:
            return None

    return deserialize


_Req = TypeVar("_Req")
_Rep = TypeVar("_Rep")


def _guarded(
    method: Callable[[_Req, grpc.aio.ServicerContext], Awaitable[_Rep]],
) -> Callable[[_Req, grpc.aio.ServicerContext], Awaitable[_Rep]]:
    """An unexpected exception (a bug, not a refusal) answers INTERNAL with a fixed text and is
    logged here with its traceback: gRPC's default answer, UNKNOWN with the exception's text, would
    hand a caller whatever the text holds (SQL, paths, values). Aborts and cancellation pass."""

    @functools.wraps(method)
    async def guarded(request: _Req, context: grpc.aio.ServicerContext) -> _Rep:
        try:
            return await method(request, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("internal error in %s", getattr(method, "__name__", "an RPC"))
            message = "internal error; the collector's log has the details"
            await context.abort(grpc.StatusCode.INTERNAL, message)
            raise AssertionError("abort returns by raising") from None  # pragma: no cover

    return guarded


def _add_servicer(servicer: IngestServicer, server: grpc.aio.Server) -> None:
    """``add_IngestServicer_to_server`` with lenient request deserializers, every method guarded
    (:func:`_guarded`)."""
    handlers = {
        "Submit": grpc.unary_unary_rpc_method_handler(
            _guarded(servicer.Submit),
            request_deserializer=_lenient(ingest_pb2.Envelope.FromString),
            response_serializer=ingest_pb2.SubmitReply.SerializeToString,
        ),
        "Enroll": grpc.unary_unary_rpc_method_handler(
            _guarded(servicer.Enroll),
            request_deserializer=_lenient(ingest_pb2.EnrollRequest.FromString),
            response_serializer=ingest_pb2.EnrollReply.SerializeToString,
        ),
        "SubmitCertificate": grpc.unary_unary_rpc_method_handler(
            _guarded(servicer.SubmitCertificate),
            request_deserializer=_lenient(ingest_pb2.Envelope.FromString),
            response_serializer=ingest_pb2.CertificateReply.SerializeToString,
        ),
    }
    name = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


class IngestServicer(ingest_pb2_grpc.IngestServicer):
    """Maps requests to :mod:`collector.ingest` and :mod:`collector.enroll`, results to replies."""

    def __init__(
        self,
        store: Store,
        *,
        settings: IngestSettings | None = None,
        clock: Callable[[], float] = time.time,
        observer: Observer | None = None,
        refusals: RefusalBuffer | None = None,
        enroll_limiter: FailureLimiter | None = None,
    ) -> None:
        self._store = store
        self._settings = settings or IngestSettings()
        self._clock = clock
        self._observer = observer
        # unattributed refusals wait in memory for serve()'s periodic flush (junk costs no write)
        self.refusals = refusals or RefusalBuffer()
        self._enroll_limiter = enroll_limiter or FailureLimiter()
        # keys, active tenants and quotas for a few seconds: three reads less per batch, decisions
        # unchanged (the ingest transaction re-decides what could have changed; see ingest_cache)
        self._lookups = LookupCache(store)
        # a refused certificate replayed in a loop is audited once a minute, not once per call
        self._cert_refusals = certs.RefusedLog()

    async def Submit(  # gRPC method names are CamelCase
        self, request: ingest_pb2.Envelope | None, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.SubmitReply:
        if request is None:  # not a protobuf Envelope at all
            self.refusals.add(Refusal(UNATTRIBUTED, "malformed"), self._clock())
            if self._observer is not None:
                self._observer("malformed", UNATTRIBUTED, 0.0)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "malformed: the request is not a protobuf Envelope",
                trailing_metadata=(("hush-reason", "malformed"),),
            )
            raise AssertionError("abort returns by raising")  # pragma: no cover
        try:
            outcome = await ingest(
                self._store,
                envelope_from_proto(request),
                now=self._clock(),
                settings=self._settings,
                observer=self._observer,
                unattributed=self.refusals.add,
                cache=self._lookups,
            )
        except Unavailable as exc:
            await _storage_unavailable(context, exc)
            raise AssertionError("abort returns by raising") from exc
        if not isinstance(outcome, Rejected):
            return ingest_pb2.SubmitReply(seq=outcome.seq, duplicate=outcome.duplicate)
        code, _ = _STATUS[outcome.kind]
        metadata: tuple[tuple[str, str | bytes], ...] = (("hush-reason", outcome.reason),)
        if outcome.retry_after is not None and outcome.kind == "resource_exhausted":
            status = _retry_status(outcome.message, outcome.retry_after)
            metadata = (*metadata, *status.trailing_metadata)
        await context.abort(code, f"{outcome.reason}: {outcome.message}", trailing_metadata=metadata)
        raise AssertionError("abort returns by raising")  # pragma: no cover

    async def Enroll(  # gRPC method names are CamelCase
        self, request: ingest_pb2.EnrollRequest | None, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.EnrollReply:
        now, peer = self._clock(), peer_host(context.peer())
        wait = self._enroll_limiter.retry_after(peer, now)
        if wait is not None:  # too many failures from this address: not even looked at
            self.refusals.add(Refusal(UNATTRIBUTED, "enroll_rate_limited"), now)
            message = "enroll_rate_limited: too many failed enrollments from this address"
            status = _retry_status(message, wait)
            metadata = (("hush-reason", "enroll_rate_limited"), *status.trailing_metadata)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message, trailing_metadata=metadata)
        try:
            if request is None:
                raise ContractError("the request is not an EnrollRequest")
            key = await enroll.redeem(
                self._store, request.token, request.agent, bytes(request.public_key), now=now
            )
        except ContractError as exc:
            failure: tuple[EnrollReason, grpc.StatusCode, str] = (
                "enroll_malformed",
                grpc.StatusCode.INVALID_ARGUMENT,
                exc.message,
            )
        except NotFound:
            failure = (
                "enroll_token",
                grpc.StatusCode.UNAUTHENTICATED,
                "enroll token is unknown, used or expired",
            )
        except Conflict as exc:
            failure = ("enroll_conflict", grpc.StatusCode.FAILED_PRECONDITION, exc.message)
        except Unavailable as exc:
            await _storage_unavailable(context, exc)
            raise AssertionError("abort returns by raising") from exc
        else:
            return ingest_pb2.EnrollReply(tenant=key.tenant, key_id=key.key_id)
        reason, code, message = failure  # counted, audited (coalesced) and charged to the address
        self._enroll_limiter.failed(peer, now)
        self.refusals.add(Refusal(UNATTRIBUTED, reason), now)
        await context.abort(code, message, trailing_metadata=(("hush-reason", reason),))
        raise AssertionError("abort returns by raising")  # pragma: no cover

    async def SubmitCertificate(  # gRPC method names are CamelCase
        self, request: ingest_pb2.Envelope | None, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.CertificateReply:
        """Issue 14: verify and record an agent certificate (:mod:`collector.certs`)."""
        now = self._clock()
        if request is None:
            self.refusals.add(Refusal(UNATTRIBUTED, "malformed"), now)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "malformed: the request is not a protobuf Envelope",
                trailing_metadata=(("hush-reason", "malformed"),),
            )
            raise AssertionError("abort returns by raising")  # pragma: no cover
        try:
            outcome = await certs.submit(
                self._store,
                envelope_from_proto(request),
                now=now,
                unattributed=self.refusals.add,
                refused_log=self._cert_refusals,
            )
        except Unavailable as exc:
            await _storage_unavailable(context, exc)
            raise AssertionError("abort returns by raising") from exc
        if isinstance(outcome, certs.Recorded):
            rec = outcome.record
            return ingest_pb2.CertificateReply(
                tenant=rec.tenant,
                agent=rec.agent,
                profile=rec.profile,
                valid_until=format_rfc3339(rec.expires),
                duplicate=outcome.duplicate,
            )
        code, _ = _STATUS[outcome.kind]
        await context.abort(
            code, f"{outcome.reason}: {outcome.message}", trailing_metadata=(("hush-reason", outcome.reason),)
        )
        raise AssertionError("abort returns by raising")  # pragma: no cover


async def _storage_unavailable(context: grpc.aio.ServicerContext, exc: Unavailable) -> None:
    """Clients, signed or not, learn only that storage is unavailable; the detail goes to the log."""
    log.warning("storage unavailable: %s", exc.message)
    await context.abort(grpc.StatusCode.UNAVAILABLE, "storage is unavailable; retry later")


async def _flush_refusals(store: Store, refusals: RefusalBuffer, every: float, done: asyncio.Event) -> None:
    """Write the buffered refusals every ``every`` seconds, and once more when ``done`` is set (never
    cancelled mid-write: a write cut short would be counted again by the next flush)."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), every)
        try:
            await refusals.flush(store)
        except Unavailable as exc:  # kept in memory (bounded) for the next attempt
            log.warning("refusal counts not written yet: %s", exc.message)
        if done.is_set():
            return


async def _track_readiness(
    store: Store, health_servicer: Any, names: tuple[str, ...], every: float, stop: asyncio.Event
) -> None:
    serving = True
    while not stop.is_set():
        await asyncio.sleep(every)
        try:
            await store.ping()
            ok = True
        except Unavailable:
            ok = False
        if ok != serving:
            serving = ok
            status = (
                health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            log.warning(
                "database %s: health %s",
                "reachable" if ok else "unreachable",
                "SERVING" if ok else "NOT_SERVING",
            )
            for name in names:
                await health_servicer.set(name, status)


async def serve(
    store: Store,
    listen: str,
    *,
    stop: asyncio.Event,
    on_bound: Callable[[str], None],
    settings: IngestSettings | None = None,
    observer: Observer | None = None,
    clock: Callable[[], float] = time.time,
    grace_seconds: float = _GRACE_SECONDS,
    readiness_seconds: float = _READINESS_SECONDS,
    credentials: grpc.ServerCredentials | None = None,
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS,
    refusals: RefusalBuffer | None = None,
    flush_seconds: float = _FLUSH_SECONDS,
) -> None:
    """Serve until ``stop`` is set, then refuse new calls and give in-flight ones ``grace_seconds``.

    With ``credentials`` (:func:`collector.tls.server_credentials`) the port speaks TLS, or mutual TLS
    when they require client certificates; without, plaintext (the caller decides whether that is
    acceptable for ``listen``: :func:`collector.tls.plaintext_warning`).

    gRPC health reports SERVING while the store answers a ping and NOT_SERVING while it does not
    (a load balancer then routes around this replica); the server itself keeps running. At most
    ``max_concurrent_rpcs`` calls run at once (more are refused RESOURCE_EXHAUSTED by gRPC), and
    unattributed refusals held in ``refusals`` are written every ``flush_seconds`` and at the end.
    """
    settings = settings or IngestSettings()
    largest = max(settings.default_max_batch_bytes, await store.largest_batch_limit() or 0)
    server = grpc.aio.server(
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", largest + ENVELOPE_OVERHEAD),
            ("grpc.so_reuseport", 0),
        ],
    )
    servicer = IngestServicer(store, settings=settings, clock=clock, observer=observer, refusals=refusals)
    _add_servicer(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name
    reflection.enable_server_reflection(
        (service, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    host, _, _ = listen.rpartition(":")
    if credentials is not None:
        port = server.add_secure_port(listen, credentials)
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    stopped = asyncio.Event()
    flusher = asyncio.create_task(
        _flush_refusals(store, servicer.refusals, flush_seconds, stopped), name="refusal-flush"
    )
    try:
        for name in ("", service):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        on_bound(f"{host}:{port}")
        readiness = asyncio.create_task(
            _track_readiness(store, health_servicer, ("", service), readiness_seconds, stop),
            name="readiness",
        )
        await stop.wait()
        readiness.cancel()
        await health_servicer.enter_graceful_shutdown()
    finally:
        await server.stop(grace_seconds)
        stopped.set()  # the flusher writes what was refused until now, then ends
        await flusher
