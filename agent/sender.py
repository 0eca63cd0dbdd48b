"""Deliver the outbox to the collector over gRPC (``hushmetric.v1.Ingest/Submit``), strictly in seq order.

What happens to a batch depends on the collector's answer. The collector names the reason of every
refusal in the ``hush-reason`` trailing metadata (:data:`collector.ingest.REASONS`); the sender
classifies by that reason first and by the status code only when the reason is absent or new to it
(:func:`classify`):

===============================  =====================================================================
OK, or OK with duplicate         acknowledged: one transaction removes it from the outbox and appends it
                                 to the egress ledger (``grpc:HOST:PORT``)
UNAVAILABLE, DEADLINE, other     transport trouble: fail over to the next configured endpoint, in order;
                                 after a full round, capped jittered exponential back-off, then start
                                 over from the first endpoint
rate_limited, quota_*            throttled: wait what ``google.rpc.RetryInfo`` asks (back-off when
(RESOURCE_EXHAUSTED)             absent), then resend the same bytes to the same endpoint
tenant_suspended,                held: refused for a reason that is not about this batch and that time or
tenant_deleted, future_dated,    an operator fixes (resume the tenant, fix a clock, approve the policy);
policy_unapproved, unknown       every later batch would be refused the same way, so the batch stays at
reason of PERMISSION_DENIED /    the head, the reason is logged once and the sender backs off long
UNAUTHENTICATED /                (``refused_retry_max``); no failover — every endpoint is one collector
FAILED_PRECONDITION /
UNIMPLEMENTED / NOT_FOUND
malformed, payload_type,         permanent: these exact bytes can never be accepted (the payload, its
too_large, bad_signature,        ``created`` time and its signatures are fixed), so holding the batch
unknown_key, revoked_key,        would block every later one forever. It moves to the outbox quarantine
retired_key, tenant_mismatch,    (kept, never dropped silently; listed by ``status`` and ``outbox
agent_mismatch, signer_mismatch, quarantine``; ``outbox retry`` puts it back after the cause is fixed,
conflict, too_old, privacy_cap;  ``outbox drop`` removes it with a note in the egress ledger) and
INVALID_ARGUMENT, ALREADY_EXISTS delivery continues with the next seq. The collector records the
without reason; "larger than     skipped seq as a chain gap, never as a refusal of later batches.
max" (gRPC's own receive cap)
===============================  =====================================================================

Nothing is sent while the egress kill switch is engaged; it is checked before every send. The sender
only ever dials ``cfg.endpoints`` (the egress allow-list). All SQLite work runs on one worker thread
with the sender's own connection, so the event loop never blocks and access is serialised; other
writers (the pipeline) use their own connections (WAL, busy timeout).

One log line per state change (``delivering``, ``unavailable``, ``throttled``, ``refused``, ``stopped``,
``idle``), never one per retry; a quarantined batch is logged on its own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import grpc
import grpc.aio
import msgspec
from google.protobuf.message import DecodeError
from google.rpc import (  # type: ignore[import-untyped]  # googleapis-common-protos ships no py.typed
    error_details_pb2,
    status_pb2,
)

from agent import egress, outbox
from agent.config import CollectorConfig
from agent.seal import Sealed
from agent.state import transaction
from agent.transport import Backoff, channel_credentials, dial, explain_transport
from hushmetric.v1 import ingest_pb2_grpc
from hushmetric.wire import envelope_to_proto

__all__ = ["SendReport", "Sender", "SenderStatus", "StateDb", "classify"]

log = logging.getLogger("agent.sender")
T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
State = Literal[
    "starting",
    "delivering",
    "idle",
    "unavailable",
    "throttled",
    "refused",
    "stopped",
    "unconfigured",
    "error",
]

BATCH_LIMIT = 64  # batches read from the outbox per round trip to the worker thread
IDLE_POLL = 30.0  # seconds between outbox polls when idle (batches may be put by another process)
STOPPED_POLL = 5.0  # seconds between kill-switch polls while egress is stopped
MAX_RETRY_INFO = 3600.0  # a collector asking for more than an hour is capped to an hour
_DETAILS_KEY = "grpc-status-details-bin"
_TOO_LARGE = "larger than max"  # gRPC's RESOURCE_EXHAUSTED for a message over the receive limit

Verdict = Literal["transport", "throttled", "held", "permanent"]

#: What each refusal reason of the collector (``hush-reason``) means for the refused batch, and why.
_BY_REASON: dict[str, Verdict] = {
    # The bytes are not a batch this collector can ever take: resending them cannot change that.
    "malformed": "permanent",
    "payload_type": "permanent",
    "too_large": "permanent",  # over the tenant's max batch size: a signed batch cannot shrink
    "bad_signature": "permanent",  # the signature over these exact bytes does not verify
    "conflict": "permanent",  # a different batch already holds this seq at the collector
    # About the key that signed these bytes; the signature cannot be swapped without re-signing.
    "unknown_key": "permanent",  # not registered (after `key add`, `outbox retry` sends it again)
    "revoked_key": "permanent",  # revocation is final for everything that key signed
    "retired_key": "permanent",  # created after its key was retired; ``created`` is signed
    "tenant_mismatch": "permanent",  # the signed header names a tenant/agent the key is not bound to
    "agent_mismatch": "permanent",
    "signer_mismatch": "permanent",  # signed by keys of different tenants or agents: never acceptable
    "too_old": "permanent",  # older than the tenant's max age: it only gets older
    # Its window's day at the collector has no room for the ρ this batch declares, and the day is
    # signed into it: waiting cannot help, while batches of later days fit. `outbox retry` resends
    # it once an operator raised the cap.
    "privacy_cap": "permanent",
    # Not about this batch: every later batch would be refused alike, so the head batch waits.
    "future_dated": "held",  # the agent's clock runs ahead; time or NTP fixes it
    "tenant_suspended": "held",  # until an operator resumes the tenant
    "tenant_deleted": "held",  # nothing of the tenant is taken; quarantining everything gains nothing
    # The tenant has not approved this policy digest (yet): every later batch carries the same
    # digest, so they wait for the approval (`policy approve`) instead of all going to quarantine.
    "policy_unapproved": "held",
    # Time fixes these; RetryInfo says when.
    "rate_limited": "throttled",
    "quota_rows_day": "throttled",
    "quota_rows_month": "throttled",
    "quota_bytes_day": "throttled",
}
#: By status code, for answers without a reason we know (an older or newer collector, a proxy).
_BY_CODE: dict[grpc.StatusCode, Verdict] = {
    grpc.StatusCode.RESOURCE_EXHAUSTED: "throttled",
    grpc.StatusCode.PERMISSION_DENIED: "held",
    grpc.StatusCode.UNAUTHENTICATED: "held",
    grpc.StatusCode.FAILED_PRECONDITION: "held",
    grpc.StatusCode.UNIMPLEMENTED: "held",
    grpc.StatusCode.NOT_FOUND: "held",
    grpc.StatusCode.INVALID_ARGUMENT: "permanent",
    grpc.StatusCode.ALREADY_EXISTS: "permanent",
}
_REASON_KEY = "hush-reason"
_TRANSPORT_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


def classify(code: grpc.StatusCode | None, reason: str | None) -> Verdict:
    """What to do with a batch the collector did not acknowledge (pure; see the module's table).

    ``reason`` is the collector's ``hush-reason``; a reason we do not know falls back to the code, and
    a code we do not know is transport trouble. Only ``transport`` fails over to another endpoint: the
    other verdicts are answers of the collector itself, which every endpoint fronts."""
    if code is None or code in _TRANSPORT_CODES:
        return "transport"  # whatever a proxy or the storage layer put into the metadata
    return _BY_REASON.get(reason or "") or _BY_CODE.get(code) or "transport"


def _reason_of(exc: grpc.aio.AioRpcError) -> str | None:
    for key, value in exc.trailing_metadata() or ():
        if key == _REASON_KEY and isinstance(value, str):
            return value
    return None


class StateDb:
    """Runs SQLite work off the event loop, one call at a time, on a single worker thread.

    Either the sender owns everything (``connect`` is a factory: its own connection, opened lazily on
    its own thread), or it borrows the pipeline's connection *and* the single-thread executor that
    already serialises all access to it; borrowed things are not closed by :meth:`aclose`.
    """

    def __init__(
        self, db: sqlite3.Connection | Callable[[], sqlite3.Connection], executor: Executor | None = None
    ) -> None:
        if isinstance(db, sqlite3.Connection):
            self._conn: sqlite3.Connection | None = db
            self._connect: Callable[[], sqlite3.Connection] | None = None
        else:
            self._conn, self._connect = None, db
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="hush-sender-db")

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            assert self._connect is not None  # a factory was given
            self._conn = self._connect()
        return fn(self._conn)

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, fn)

    def _close(self) -> None:
        if self._connect is not None and self._conn is not None:
            self._conn.close()
            self._conn = None

    async def aclose(self) -> None:
        if self._own_executor:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
            self._executor.shutdown(wait=True)


class SendReport(msgspec.Struct, frozen=True):
    delivered: int  # acknowledged as new
    duplicates: int  # acknowledged as already held by the collector
    quarantined: int  # refused as malformed/conflicting, moved to the quarantine
    pending: int  # still in the outbox afterwards
    stopped: bool  # egress kill switch engaged
    last_error: str | None  # the reason delivery stopped short, one line; None when all went

    @property
    def sent(self) -> int:
        """Batches acknowledged (new or duplicate): they left the outbox."""
        return self.delivered + self.duplicates

    @property
    def error(self) -> str | None:
        return self.last_error


class SenderStatus(msgspec.Struct, frozen=True):
    state: State
    reason: str
    since: float
    endpoint: str | None  # the endpoint in use (or last tried)
    delivered: int
    duplicates: int
    quarantined: int


class _Outcome(msgspec.Struct, frozen=True):
    kind: Literal["empty", "stopped", "transport", "throttled", "refused", "unconfigured", "halt"]
    reason: str = ""
    code: str = ""
    retry_after: float | None = None


def _retry_delay(exc: grpc.aio.AioRpcError) -> float | None:
    """The delay a ``google.rpc.RetryInfo`` in the status details asks for, if any."""
    for key, value in exc.trailing_metadata() or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:  # undecodable details just mean "no hint"
            return None
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                delay = float(info.retry_delay.seconds) + float(info.retry_delay.nanos) / 1e9
                return min(max(delay, 0.0), MAX_RETRY_INFO)
    return None


def _one_line(text: str | None, limit: int = 300) -> str:
    return " ".join((text or "").split())[:limit]


class Sender:
    """Delivers the outbox. Use as ``async with Sender(...) as s:`` (or call :meth:`aclose`).

    ``db`` is either a factory for the sender's own connection to the state database (e.g.
    ``lambda: open_state(dir, schemas)``), or a shared connection together with ``executor``, the
    single-thread executor that serialises every use of it. ``base_dir`` resolves a relative
    ``ca_file``. ``clock``, ``sleep`` and ``rng`` are injectable so tests can drive time.
    """

    def __init__(
        self,
        db: sqlite3.Connection | Callable[[], sqlite3.Connection],
        cfg: CollectorConfig,
        *,
        executor: Executor | None = None,
        base_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        batch_limit: int = BATCH_LIMIT,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        # on_result: told "OK" for every acknowledged batch, the gRPC code name of every failed
        # attempt, and "QUARANTINED" for every batch moved to the quarantine (metrics hook; must not
        # block).
        self._on_result = on_result or (lambda _code: None)
        self._cfg = cfg
        self._endpoints = list(cfg.endpoints)
        self._timeout = float(cfg.timeout)  # durations are seconds, checked when the config is loaded
        rng = rng or random.Random()
        self._backoff = Backoff(float(cfg.retry_initial), float(cfg.retry_max), rng)
        long_cap = float(cfg.refused_retry_max)
        self._refused_backoff = Backoff(min(30.0, long_cap), long_cap, rng)
        self._credentials = channel_credentials(cfg, base_dir)
        self._db = StateDb(db, executor)
        self._clock, self._sleep, self._limit = clock, sleep, batch_limit
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._current = 0
        self._wake = asyncio.Event()
        self._state: State = "starting"
        self._code = ""
        self._reason = ""
        self._since = clock()
        self._counts = {"delivered": 0, "duplicates": 0, "quarantined": 0}
        self._seq_warned = False

    # -- lifetime --------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
        await self._db.aclose()

    def notify(self) -> None:
        """Wake the daemon loop: new batches were put. Call from the event loop's thread."""
        self._wake.set()

    @property
    def status(self) -> SenderStatus:
        endpoint = self._endpoints[self._current] if self._endpoints else None
        return SenderStatus(self._state, self._reason, self._since, endpoint, **self._counts)

    # -- the two ways to run -----------------------------------------------------------------------

    async def drain_once(self) -> SendReport:
        """One pass for ``run --once``: deliver what can go now; no waiting and no back-off."""
        before = dict(self._counts)
        outcome = await self._pass(None)
        depth = await self._db.call(outbox.depth)
        return SendReport(
            delivered=self._counts["delivered"] - before["delivered"],
            duplicates=self._counts["duplicates"] - before["duplicates"],
            quarantined=self._counts["quarantined"] - before["quarantined"],
            pending=depth.count,
            stopped=outcome.kind == "stopped",
            last_error=outcome.reason or None,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Daemon loop until ``stop`` is set: deliver, then sleep until :meth:`notify`, a poll, or a
        back-off ends. An in-flight call finishes (bounded by the deadline) before it returns."""
        while not stop.is_set():
            try:
                outcome = await self._pass(stop)
            except sqlite3.Error as exc:  # e.g. locked past the busy timeout, disk full: retry later
                self._set_state("error", _one_line(str(exc)), code="STATE_DB")
                outcome = _Outcome("transport", f"STATE_DB: {_one_line(str(exc))}", "STATE_DB")
            if stop.is_set():
                break
            match outcome.kind:
                case "empty":
                    self._backoff.reset()
                    self._refused_backoff.reset()
                    await self._wait(IDLE_POLL, stop, wakeable=True)
                case "stopped":
                    await self._wait(STOPPED_POLL, stop, wakeable=True)
                case "transport":
                    await self._wait(self._backoff.next(), stop, wakeable=False)
                case "throttled":
                    delay = outcome.retry_after
                    await self._wait(self._backoff.next() if delay is None else delay, stop, wakeable=False)
                case "refused":
                    await self._wait(self._refused_backoff.next(), stop, wakeable=False)
                case "unconfigured":
                    await stop.wait()  # nothing to dial; batches wait for an export
                case "halt":
                    break

    # -- internals -------------------------------------------------------------------------------

    def _set_state(self, state: State, reason: str = "", *, code: str = "") -> None:
        """Log once per change of (state, code); retries in the same state stay quiet."""
        if (state, code) == (self._state, self._code):
            return
        self._state, self._code, self._since = state, code, self._clock()
        self._reason = f"{code}: {reason}" if code else reason
        fields = {"state": state, "code": code, "reason": reason}
        if state in ("unavailable", "refused", "stopped", "unconfigured", "error"):
            log.warning("sender %s: %s", state, self._reason, extra={"fields": fields})
        else:
            log.info(
                "sender %s%s", state, f": {self._reason}" if self._reason else "", extra={"fields": fields}
            )

    async def _wait(self, delay: float, stop: asyncio.Event | None, *, wakeable: bool) -> None:
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._sleep(delay))]
        if stop is not None:
            waiters.append(asyncio.ensure_future(stop.wait()))
        if wakeable:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def _pass(self, stop: asyncio.Event | None) -> _Outcome:
        """Deliver waiting batches in seq order until the outbox is empty or something stops us."""
        self._wake.clear()
        if not self._endpoints:
            reason = "no collector endpoints configured (collector.endpoints)"
            self._set_state("unconfigured", reason)
            return _Outcome("unconfigured", reason)
        while True:
            batches = await self._db.call(lambda c: outbox.pending(c, self._limit))
            if not batches:
                self._set_state("idle")
                return _Outcome("empty")
            for batch in batches:
                if stop is not None and stop.is_set():
                    return _Outcome("halt")
                switch = await self._db.call(egress.state)
                if switch.stopped:
                    self._set_state("stopped", switch.reason)
                    return _Outcome("stopped", f"egress is stopped: {switch.reason}")
                outcome = await self._deliver(batch)
                if outcome is not None:
                    return outcome

    async def _deliver(self, batch: Sealed) -> _Outcome | None:
        """Send one batch, trying endpoints in order on transport failure. None when it was settled
        (acknowledged or quarantined), else why the pass has to stop."""
        last: _Outcome | None = None
        for i in range(self._current, len(self._endpoints)):
            endpoint = self._endpoints[i]
            try:
                reply = await self._stub(endpoint).Submit(
                    envelope_to_proto(batch.envelope), timeout=self._timeout
                )
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                name = code.name if code is not None else "UNKNOWN"
                self._on_result(name)
                reason = _one_line(exc.details()) or name
                kind = classify(code, _reason_of(exc))
                if kind == "throttled" and _TOO_LARGE in reason and _retry_delay(exc) is None:
                    kind = "permanent"  # gRPC's own receive limit: this batch will never fit
                if kind == "transport":
                    reason = _one_line(explain_transport(reason, self._cfg, endpoint))
                    await self._drop(endpoint)
                    last = _Outcome("transport", f"{name}: {endpoint}: {reason}", name)
                    continue  # fail over to the next endpoint
                self._current = i
                if kind == "permanent":
                    await self._quarantine(batch, name, reason)
                    return None
                if kind == "throttled":
                    self._set_state("throttled", reason, code=name)
                    return _Outcome("throttled", f"{name}: {reason}", name, _retry_delay(exc))
                self._set_state("refused", reason, code=name)
                return _Outcome("refused", f"{name}: {reason}", name)
            self._current = i
            await self._acknowledge(batch, endpoint, duplicate=reply.duplicate, echoed=reply.seq)
            return None
        self._current = 0  # after a full failed round, start again from the first endpoint
        assert last is not None  # at least one endpoint was tried
        self._set_state("unavailable", last.reason.removeprefix(f"{last.code}: "), code=last.code)
        return last

    def _stub(self, endpoint: str) -> Any:
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = dial(self._cfg, self._credentials, endpoint)
            self._channels[endpoint] = channel
        return ingest_pb2_grpc.IngestStub(channel)  # type: ignore[no-untyped-call]  # generated, untyped

    async def _drop(self, endpoint: str) -> None:
        channel = self._channels.pop(endpoint, None)
        if channel is not None:
            await channel.close()

    async def _acknowledge(self, batch: Sealed, endpoint: str, *, duplicate: bool, echoed: int) -> None:
        if echoed != batch.seq and not self._seq_warned:
            self._seq_warned = True
            log.warning("collector acknowledged seq %d for batch %d", echoed, batch.seq)
        at = self._clock()

        def commit(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                if outbox.remove(conn, [batch.seq]):  # gone already: an export took it (and recorded it)
                    egress.record(
                        conn,
                        destination=f"grpc:{endpoint}",
                        seq=batch.seq,
                        digest=batch.digest,
                        nbytes=len(batch.payload),
                        rows=batch.rows,
                        at=at,
                    )

        await self._db.call(commit)
        self._on_result("OK")
        self._counts["duplicates" if duplicate else "delivered"] += 1
        self._backoff.reset()
        self._refused_backoff.reset()
        self._set_state("delivering")

    async def _quarantine(self, batch: Sealed, code: str, reason: str) -> None:
        at = self._clock()

        def move(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                outbox.quarantine(conn, batch.seq, code=code, reason=reason, at=at)

        await self._db.call(move)
        self._on_result("QUARANTINED")
        self._counts["quarantined"] += 1
        log.error(
            "batch %d refused by the collector (%s: %s); kept in the outbox quarantine",
            batch.seq,
            code,
            reason,
            extra={"fields": {"seq": batch.seq, "code": code, "reason": reason, "digest": batch.digest}},
        )
