"""The agent daemon: wires the stages together and owns durability.

    sources ─► queue ─► decode ─► redact ─► journal (group commit) ─► ack ─► aggregate ─► release
                                                                                    │
                  egress ledger ◄── sender ◄── outbox ◄── seal ◄── ledger charge ◄──┘

Durability rules, each with a test:
- An event is acknowledged to its source only after it (or its dead letter) is committed to the
  journal; a crash before that means the source redelivers it.
- A window is released in ONE transaction: the privacy charge, the signed batch in the outbox, and
  the removal of the window's events from the journal. A crash before COMMIT leaves the window in
  the journal, so it is re-aggregated on restart; the noise drawn for the lost attempt was never
  written anywhere, so nothing re-spends and nothing noised twice ever leaves.
- Every stage's blocking work (SQLite, OpenDP) runs on one worker thread, serialising access to the
  state database without locks.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import msgspec
import nacl.signing

from agent import attest, deadletter, egress, integrity, journal, ledger, outbox, periods
from agent.aggregate import WindowAggregator, WindowState
from agent.config import DemoSource, FileSource, LoadedConfig, StdinSource
from agent.decode import Decoder
from agent.memory import ByteQueue, MemoryLimiter, budget
from agent.metrics import AgentMetrics
from agent.model import DeadLetter, Event
from agent.policy import Policy, load_policy, minimised, period_key, policy_digest, window_start
from agent.redact import Redactor
from agent.release import Release, period_cost, release_period_total, release_window, window_cost
from agent.seal import Sealed, seal
from agent.sources import build_sources
from agent.sources.base import Chunk, Source
from agent.state import open_state, transaction
from hushmetric.batch import Privacy
from hushmetric.errors import ConfigError, HushError
from hushmetric.keys import load_signing_key
from hushmetric.timefmt import format_rfc3339, parse_rfc3339

if TYPE_CHECKING:
    from agent.sender import Sender

__all__ = ["Agent", "RunReport", "load_secret", "open_agent_state"]

log = logging.getLogger("hush.agent")
T = TypeVar("T")

SCHEMAS = (
    journal.SCHEMA,
    deadletter.SCHEMA,
    ledger.SCHEMA,
    outbox.SCHEMA,
    egress.SCHEMA,
    attest.SCHEMA,
    periods.SCHEMA,
)
# Input in flight (bytes queued between sources and the ingest loop, bytes per group commit) comes
# from limits.max_memory: see agent/memory.py for the memory model.
TICK_SECONDS = 1.0
# Events stamped further ahead of the agent's clock are refused: one far-future timestamp would
# otherwise push the event-time watermark ahead and close every open window at once.
MAX_FUTURE_SKEW = 300.0
# Windows close by wall clock only after input has been idle this long (see Agent._tick).
IDLE_BEFORE_WALL_CLOCK = 2 * TICK_SECONDS
# `run --once` drains a live source (MQTT) until it has delivered nothing for this long.
ONCE_IDLE_SECONDS = 3.0


class RunReport(msgspec.Struct):
    """What one ``run`` did; printed by ``run --once`` (``--json`` prints it as is)."""

    events: int = 0
    dead_letters: int = 0
    late: int = 0
    redactions: dict[str, int] = {}
    range_from: str = ""  # run --once: the windows released are [range_from, range_to)
    range_to: str = ""
    range_from_now: bool = False  # range_from defaulted to the current window (no --from, no schedule)
    windows_released: int = 0
    windows_refused: int = 0
    windows_held: int = 0  # not released: the ledger awaits an operator's acknowledgement
    windows_failed: int = 0  # not released because of an error (logged); retried at the next start
    rows_released: int = 0
    totals_released: int = 0  # period-total batches (per-period bounds with a total), after their windows
    batches_sent: int = 0
    outbox_depth: int = 0
    delivery_error: str | None = None


def _future(event: Event, source: str, now: float, decoder: Decoder) -> DeadLetter:
    body = msgspec.msgpack.encode(event)  # already redacted, and the digest is keyed anyway
    return DeadLetter(
        reason="future_ts",
        detail=f"timestamp {event.ts - now:.0f} s ahead of the agent clock (max {MAX_FUTURE_SKEW:.0f} s)",
        source=source,
        size=len(body),
        digest=decoder.digest(body),
        at=now,
    )


def _is_live(source: Source) -> bool:
    from agent.sources.mqtt import MqttSource

    return isinstance(source, MqttSource) or bool(getattr(source, "live", False))


def open_agent_state(loaded: LoadedConfig) -> sqlite3.Connection:
    return open_state(loaded.state_dir, SCHEMAS)


def load_secret(path: Path) -> bytes:
    """The site secret that keys pseudonyms. Refused when readable by others, like the signing key."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read site secret: {exc.strerror or exc}", path=str(path)) from exc
    if mode & 0o077:
        raise ConfigError(f"site secret is readable by others (mode {mode:o}); chmod 600 it", path=str(path))
    if len(data) < 32:
        raise ConfigError("site secret must hold at least 32 bytes", path=str(path))
    return data


class Agent:
    """One agent process: built from a loaded config, run once (``run_once``) or as a daemon (``serve``)."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        clock: Callable[[], float] = time.time,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.loaded = loaded
        self.cfg = loaded.config
        self.clock = clock
        self.policy: Policy = load_policy(loaded.policy_path)
        self.digest = policy_digest(self.policy)
        self.key: nacl.signing.SigningKey = load_signing_key(loaded.key_path)
        # Redact with the minimised policy: allowed attributes no metric uses are dropped first.
        secret = load_secret(loaded.secret_path)
        self.redactor = Redactor(minimised(self.policy), secret, backend=self.cfg.limits.scanner)
        # Dead letters carry a digest keyed from the site secret, never an unkeyed hash of raw input.
        self._letter_key = deadletter.digest_key(secret)
        self.decoder = Decoder(self.cfg.limits, digest_key=self._letter_key)
        self.metrics = metrics or AgentMetrics()
        self.report = RunReport()
        # Redaction counts stay on this site (run report, status, metrics): never in a batch.
        self._redactions_total: Counter[str] = Counter()
        self._last_input = time.monotonic()  # when process() last took input (monotonic clock)
        self._processing = 0  # process() calls in flight: input is being handled, not idle
        self._waiting: ByteQueue[Chunk] | None = None  # the daemon's input queue
        self.budget = budget(self.cfg.limits.max_memory_bytes)
        self.limiter = MemoryLimiter(self.cfg.limits.max_memory_bytes)
        self._held_warned = False
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hush-state")
        self.integrity = integrity.check_state(loaded.state_dir)
        if not self.integrity.ok or self.integrity.blocked:
            log.error("state integrity: %s", self.integrity.message())
        self.conn = open_agent_state(loaded)
        # Public times only: the batch's `created` is max(window end + lateness, this).
        self.session_start = float(clock())
        self.aggregator = WindowAggregator(self.policy, next_start=self._stored_position())
        self._stop: int | None = None  # run --once: windows from here on wait for a later run
        self.sender: Sender | None = None
        if self.cfg.collector.endpoints:
            from agent.sender import Sender  # gRPC (about 20 MiB) only where a collector is configured

            self.sender = Sender(
                self.conn,
                self.cfg.collector,
                executor=self._db,
                clock=clock,
                base_dir=loaded.base,
                on_result=self.metrics.sent_or_failed,
            )

    # -- lifetime -------------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self.sender is not None:
            await self.sender.aclose()
        self._db.shutdown(wait=True)
        self.conn.close()

    async def _on_db(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn)

    def _stored_position(self) -> int | None:
        """The persisted schedule position, on a window boundary of the current policy (rounded up,
        should the window size have changed); for state from before it was stored, the window after
        the last released one."""
        position = journal.schedule_position(self.conn)
        size = self.policy.window_seconds
        if position is None:
            released = journal.released_windows(self.conn)
            if not released:
                return None
            position = max(released) + size
        return window_start(self.policy, position - 1) + size

    def _start_schedule(self, start: float, *, persist: bool) -> int:
        """Move the schedule to the window containing ``start``; with ``persist``, store it and drop
        journaled events before it (they can never be released)."""
        position = self.aggregator.start_schedule(start)
        if persist:
            with transaction(self.conn):
                journal.set_schedule_position(self.conn, position)
                journal.purge_before(self.conn, position)
        return position

    async def recover(self) -> int:
        """Rebuild open windows from the journal after a restart; returns the events replayed."""
        position = self.aggregator.next_start
        if position is not None:  # events of windows already released (or skipped) can never leave
            await self._on_db(partial(self._purge, position))
            if periods.has_period_bounds(self.policy):
                # Before any event is admitted again: what units already contributed to the
                # current period's released windows still counts against their period bounds.
                await self._on_db(partial(self._restore_period_usage, position))
        replayed = 0
        chunks = journal.replay(self.conn)  # a generator: each step runs on the state thread
        # One chunk in memory at a time, however large the journal grew during an outage.
        while (events := await self._on_db(lambda: next(chunks, None))) is not None:
            self.aggregator.add(events)
            replayed += len(events)
        if replayed:
            log.info("recovered open windows from the journal", extra={"fields": {"events": replayed}})
        return replayed

    def _restore_period_usage(self, position: int) -> None:
        period = period_key(self.policy, position)
        for metric in self.policy.metrics:
            if metric.bound == "period":
                used = periods.usage(self.conn, self.digest, metric.name, period)
                self.aggregator.restore_period_usage(metric.name, period, used)

    def _purge(self, position: int) -> None:
        with transaction(self.conn):
            journal.purge_before(self.conn, position)

    # -- ingest ---------------------------------------------------------------------------------

    async def _pump(
        self, source: Source, queue: ByteQueue[Chunk], *, idle: float | None = None
    ) -> None:
        """Move a source's chunks onto the queue. With ``idle``, stop once the source has been quiet
        that long: how ``run --once`` drains a live source (MQTT) that never ends by itself."""
        chunks = source.chunks()
        try:
            while True:
                try:
                    if idle is None:
                        chunk = await anext(chunks)
                    else:
                        # A deadline on this task, not wait_for: that wraps every message in a new
                        # task (a third of the MQTT source's time when draining a backlog).
                        async with asyncio.timeout(idle):
                            chunk = await anext(chunks)
                except (StopAsyncIteration, TimeoutError):
                    return
                await queue.put(chunk, len(chunk.data))
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _ingest(self, queue: ByteQueue[Chunk], *, stop_at_end: bool) -> None:
        """Group commit: take whatever chunks are waiting (up to a size cap) and commit them together.

        ``None`` on the queue marks the end of finite input (``run --once``). Over the memory limit,
        one chunk per group and one chunk queued: the sources slow down to the pipeline's pace.
        """
        ended = False
        while not ended:
            first = await queue.get()
            if first is None:
                return
            throttled = self.limiter.check()
            queue.set_capacity(1 if throttled else self.budget.queue_bytes)
            group_bytes = 1 if throttled else self.budget.group_bytes
            chunks = [first]
            size = len(first.data)
            while size < group_bytes:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    ended = stop_at_end
                    break
                chunks.append(item)
                size += len(item.data)
            await self._wait_for_outbox_room()
            await self.process(chunks)

    async def process(self, chunks: Sequence[Chunk]) -> None:
        """Decode, redact, journal (one transaction), acknowledge, aggregate, release what is ready."""
        self._processing += 1
        try:
            await self._process(chunks)
        finally:
            self._processing -= 1
            self._last_input = time.monotonic()

    def _idle(self) -> bool:
        """No input for a while: nothing in flight, nothing queued, nothing taken for some seconds.
        (A group commit of a large backlog can take longer than the idle delay: it is not idleness.)"""
        queued = self._waiting is not None and not self._waiting.empty()
        return (
            not self._processing
            and not queued
            and time.monotonic() - self._last_input >= IDLE_BEFORE_WALL_CLOCK
        )

    async def _process(self, chunks: Sequence[Chunk]) -> None:
        self._last_input = time.monotonic()
        now = self.clock()
        kept: list[Event] = []
        letters: list[DeadLetter] = []
        offsets: dict[str, int] = {}
        for chunk in chunks:
            events, bad = self.decoder.decode(chunk.data, chunk.source, now=now)
            letters.extend(chunk.letters)
            letters.extend(bad)
            for event in self.redactor.redact_many(events):
                if event.ts > now + MAX_FUTURE_SKEW:
                    letters.append(_future(event, chunk.source, now, self.decoder))
                elif self.aggregator.is_late(event.ts):
                    self.report.late += 1
                else:
                    kept.append(event)
            if chunk.offset_key is not None and chunk.offset is not None:
                offsets[chunk.offset_key] = chunk.offset
        max_rows = self.cfg.limits.dead_letter_max
        counts = self.redactor.take_counts()

        def commit() -> None:
            with transaction(self.conn):
                journal.append(self.conn, kept)
                for key, offset in offsets.items():
                    journal.set_offset(self.conn, key, offset)
                if letters:
                    deadletter.add(self.conn, letters, max_rows=max_rows)
                if counts:
                    attest.add_redactions(self.conn, counts)

        await self._on_db(commit)
        # Durable now: only from here on may the source forget these inputs.
        for chunk in chunks:
            if chunk.ack is not None:
                chunk.ack()
        self._redactions_total.update(counts)
        self.metrics.redacted(counts)
        self.report.events += len(kept)
        self.report.dead_letters += len(letters)
        self.metrics.ingested(len(kept), letters)
        self.aggregator.add(kept)
        # Input is flowing: close what the clock has closed and the watermark has passed.
        await self.release(self.aggregator.ready(self.clock(), idle=False, stop=self._stop))

    # -- release --------------------------------------------------------------------------------

    async def release(self, states: Sequence[WindowState]) -> None:
        if states and integrity.is_blocked(self.loaded.state_dir):
            # The ledger could not be verified at start: nothing is released (the windows stay in
            # the journal) until an operator acknowledges. Said once per run, loudly.
            self.report.windows_held += len(states)
            if not self._held_warned:
                self._held_warned = True
                log.error(
                    "releases blocked: the privacy ledger could not be verified; windows are kept in "
                    "the journal. Run `hush-agent ledger --acknowledge-reset --note TEXT`, then restart."
                )
            return
        for state in states:
            try:
                sealed = await self._on_db(partial(self._release_one, state))
            except Exception as exc:  # a bug or a contract check must not stop the daemon
                # Nothing was committed: the window's events stay in the journal and the release is
                # tried again at the next start. Logged with the error only, never event content.
                self.report.windows_failed += 1
                log.error(
                    "window release failed; its events stay in the journal",
                    extra={"fields": {"window_start": state.start, "error": f"{type(exc).__name__}: {exc}"}},
                )
                continue
            if sealed is None:
                self.report.windows_refused += 1
                self.metrics.window_refused()
                continue
            self.report.windows_released += 1
            self.report.rows_released += sealed.rows
            self.metrics.window_released(sealed.rows)
            if self.sender is not None:
                self.sender.notify()

    def _release_one(self, state: WindowState) -> Sealed | None:
        """Runs on the state thread. Returns the sealed batch, or None when the budget refused it.

        Never called while releases are blocked: :meth:`release` checks that once per batch of windows.
        """
        period = ledger.period_of(self.policy, state.start)
        cost, delta = window_cost(self.policy)
        # Period-bounded metrics are charged for the whole period with the first window of the
        # period this agent releases — which window that is follows from the schedule and the
        # ledger, never from the data — and before any of their noise is drawn.
        first = periods.has_period_bounds(self.policy) and not ledger.period_charged(
            self.conn, period, self.digest
        )
        if first:
            cost += period_cost(self.policy)
        if not ledger.affordable(self.conn, self.policy, period, cost, delta):
            # Cheap early answer that draws no noise; the check that decides is the one inside
            # the charging transaction (commit_release).
            self._refuse(state, period)
            return None
        released = release_window(state, self.policy, period_charge=first)
        return self.commit_release(state, released, period, first_in_period=first)

    def _seal(self, state: WindowState, released: Release, seq: int, prev: str) -> Sealed:
        """The signed batch of a release (a window's, or a period total closing with ``state``)."""
        return seal(
            tenant=self.cfg.tenant,
            agent=self.cfg.agent,
            seq=seq,
            prev=prev,
            created=self.created_for(state),
            window=(released.start, released.end),
            policy_digest=self.digest,
            privacy=Privacy(self.policy.unit, released.epsilon, released.delta, released.rho),
            rows=released.rows,
            key=self.key,
        )

    def commit_release(
        self, state: WindowState, released: Release, period: str, *, first_in_period: bool = False
    ) -> Sealed | None:
        """Charge, seal, queue and forget the window's events in ONE transaction.

        ``ledger.charge`` re-checks affordability (ρ/ε and δ) with the policy inside the transaction:
        whatever was checked before, a charge that no longer fits raises ``BudgetExhausted``, the
        transaction rolls back (no batch, no charge) and the refusal is recorded instead.
        With period bounds the same transaction records the window's contributions in the period's
        state (:mod:`agent.periods`), marks the period charge paid (``first_in_period``) and, for
        the period's last window, seals the period-total batch too.
        """
        try:
            with transaction(self.conn):
                seq, prev = outbox.next_seq(self.conn)
                sealed = self._seal(state, released, seq, prev)
                ledger.charge(self.conn, period=period, release=released, seq=seq, policy=self.policy)
                if first_in_period:
                    ledger.mark_period_charged(self.conn, period, self.digest, seq)
                outbox.put(self.conn, sealed)
                if periods.has_period_bounds(self.policy):
                    periods.record_window(self.conn, self.policy, self.digest, state)
                total = self._seal_period_total(state, period)
                journal.release(self.conn, state.start, state.end)
                journal.mark_released(self.conn, state.start)
                journal.set_schedule_position(self.conn, state.end)
        except ledger.BudgetExhausted:
            self._refuse(state, period)
            return None
        self.report.totals_released += total
        integrity.record_head(self.loaded.state_dir, self.conn)
        left = ledger.remaining(self.conn, self.policy, period)
        self.metrics.budget(spent=ledger.cap_of(self.policy) - left, left=left)
        log.info(
            "window released",
            extra={"fields": {"seq": seq, "window_start": state.start, "rows": sealed.rows}},
        )
        return sealed

    def created_for(self, state: WindowState) -> float:
        """The batch's ``created``: ``max(end + lateness, session start)``, both public, so the batch
        bytes do not reveal when data arrived or how long a release waited for it."""
        return max(float(state.end + self.policy.lateness_seconds), self.session_start)

    def _seal_period_total(self, state: WindowState, period: str) -> bool:
        """At the close of a period (its last window, released or refused) whose period charge was
        paid: seal the period totals as one more batch, in the caller's transaction. It covers the
        period's windows from the first one this agent released under this policy (public)."""
        if not periods.has_totals(self.policy) or period_key(self.policy, state.end) == period:
            return False
        if not ledger.period_charged(self.conn, period, self.digest):
            return False
        begin = periods.first_start(self.conn, self.digest, period)
        if begin is None:
            return False
        totals = periods.totals(self.conn, self.policy, self.digest, period)
        released = release_period_total(totals, self.policy, start=begin, end=state.end)
        seq, prev = outbox.next_seq(self.conn)
        sealed = self._seal(state, released, seq, prev)
        # Nothing to spend (paid with the period's first window); the zero charge ties the seq.
        ledger.charge(self.conn, period=period, release=released, seq=seq)
        outbox.put(self.conn, sealed)
        return True

    def _refuse(self, state: WindowState, period: str) -> None:
        with transaction(self.conn):
            ledger.refuse(self.conn, period=period, window_start=state.start, reason="budget_exhausted")
            total = self._seal_period_total(state, period)
            journal.release(self.conn, state.start, state.end)
            journal.mark_released(self.conn, state.start)
            journal.set_schedule_position(self.conn, state.end)
        self.report.totals_released += total
        log.error(
            "privacy budget exhausted: window discarded, nothing released",
            extra={"fields": {"period": period, "window_start": state.start}},
        )

    async def _wait_for_outbox_room(self) -> None:
        """Backpressure: while the outbox is full, stop taking input (sources block on the queue)."""
        warned = False
        while await self._on_db(partial(outbox.is_full, self.conn, self.cfg.outbox)):
            # Input held back is not idle input: the wall clock must not close windows whose events
            # are still waiting in the sources (they would all turn late once the outbox drains).
            self._last_input = time.monotonic()
            if self.sender is None:
                raise HushError(
                    "outbox is full and no collector is configured: run `hush-agent export` to drain it",
                    code="outbox_full",
                )
            if not warned:
                log.warning("outbox full: holding input until batches are delivered")
                warned = True
            self.sender.notify()
            await asyncio.sleep(TICK_SECONDS)

    # -- entry points ---------------------------------------------------------------------------

    def _sources(self, *, once: bool, input_path: str | None) -> list[Source]:
        if input_path is None:
            return build_sources(self.loaded, once=once, conn=self.conn, digest_key=self._letter_key)
        spec: FileSource | StdinSource = (
            StdinSource() if input_path == "-" else FileSource(path=input_path, follow=False)
        )
        return build_sources(
            self.loaded, once=True, conn=self.conn, override=[spec], digest_key=self._letter_key
        )

    def _demo_range(self, input_path: str | None) -> tuple[float, float] | None:
        """The demo generator's declared [start, start + days) when it is the only source."""
        sources = self.cfg.sources
        if input_path is not None or len(sources) != 1 or not isinstance(sources[0], DemoSource):
            return None
        demo = sources[0]
        try:
            begin = parse_rfc3339(demo.start)
        except ValueError as exc:
            raise ConfigError(
                f"bad demo start: {exc}", path=str(self.loaded.path), key="sources[0].start"
            ) from exc
        return begin, begin + demo.days * 86400.0

    def plan_range(
        self, *, input_path: str | None, start: float | None, stop: float | None
    ) -> tuple[int, int, bool]:
        """``run --once``'s range of windows [from, to) on window boundaries, and whether ``from``
        defaulted to the window containing now (historical events are then late).

        Public inputs only: the flags, the stored schedule position, the demo source's declared
        span, the clock. See docs/privacy.md, "Window schedule and budget periods".
        """
        now = self.clock()
        stored = self.aggregator.next_start
        demo = self._demo_range(input_path)
        closed = self.aggregator.closed_before(now)
        at_now = False
        if start is None:
            if stored is not None:
                begin = stored
            elif demo is not None:
                begin = self.aggregator.window_start(demo[0])
            else:
                begin, at_now = self.aggregator.window_start(now), True
        else:
            begin = self.aggregator.window_start(start)
            if stored is not None and begin < stored:
                raise ConfigError(
                    f"{format_rfc3339(begin)} is before windows already released: this state's "
                    f"schedule continues at {format_rfc3339(stored)} (pass that or later, or omit --from)",
                    key="--from",
                )
        if stop is None:
            end = self.aggregator.window_start(demo[1]) if demo is not None else closed
        else:
            # A declared --to may lie past what the clock has closed: the range is the operator's
            # (public) choice, and events that arrive later for its windows are late.
            end = self.aggregator.window_start(stop)
            if end < begin:
                raise ConfigError(
                    f"{format_rfc3339(end)} is before --from {format_rfc3339(begin)}", key="--to"
                )
        return begin, max(begin, end), at_now

    async def run_once(
        self, *, input_path: str | None = None, start: float | None = None, stop: float | None = None
    ) -> RunReport:
        """Release every window of the range [start, stop) (see :meth:`plan_range`), empty ones
        included, from what is journaled and what the finite sources deliver; deliver what can be
        delivered. Events after the range stay in the journal for the next run."""
        begin, end, at_now = self.plan_range(input_path=input_path, start=start, stop=stop)
        stored = self.aggregator.next_start
        # A --from the operator declared is stored (a later run cannot go back before it, and the
        # daemon continues from it); a defaulted start is stored by the releases themselves.
        self._start_schedule(begin, persist=start is not None and (stored is None or begin > stored))
        self._stop = end
        self.report.range_from = format_rfc3339(begin)
        self.report.range_to = format_rfc3339(end)
        self.report.range_from_now = at_now
        await self.recover()
        queue: ByteQueue[Chunk] = ByteQueue(self.budget.queue_bytes)
        sources = self._sources(once=True, input_path=input_path)
        async with asyncio.TaskGroup() as tg:
            ingest = tg.create_task(self._ingest(queue, stop_at_end=True), name="ingest")
            pumps = [
                tg.create_task(
                    self._pump(s, queue, idle=ONCE_IDLE_SECONDS if _is_live(s) else None),
                    name=f"source:{s.name}",
                )
                for s in sources
            ]
            await asyncio.gather(*pumps)
            await queue.put(None)
            await ingest
        await self.release(self.aggregator.take_until(end))
        if self.sender is not None:
            sent = await self.sender.drain_once()
            self.report.batches_sent = sent.sent
            self.report.delivery_error = sent.error
        self.report.redactions = dict(self._redactions_total)
        self.report.outbox_depth = (await self._on_db(partial(outbox.depth, self.conn))).count
        return self.report

    async def serve(self, stop: asyncio.Event) -> None:
        """Run as a daemon until ``stop`` is set: sources, ingest, a release tick, and the sender.

        The first start of a state directory starts the schedule at the window containing now (the
        demo generator alone: at its declared start, like ``run --once``); from then on every window
        is released in order, including those missed while the daemon was down.
        """
        if self.aggregator.next_start is None:
            demo = self._demo_range(None)
            self._start_schedule(self.clock() if demo is None else demo[0], persist=True)
        await self.recover()
        queue: ByteQueue[Chunk] = ByteQueue(self.budget.queue_bytes)
        self._waiting = queue
        sources = self._sources(once=False, input_path=None)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._pump(s, queue), name=f"source:{s.name}") for s in sources]
            tasks.append(tg.create_task(self._ingest(queue, stop_at_end=False), name="ingest"))
            tasks.append(tg.create_task(self._tick(stop), name="release-tick"))
            if self.sender is not None:
                tasks.append(tg.create_task(self.sender.run(stop), name="sender"))
            await stop.wait()
            log.info("shutting down: cancelling sources, keeping what is durable")
            for task in tasks:
                if task.get_name() != "sender":
                    task.cancel()

    async def _tick(self, stop: asyncio.Event) -> None:
        """Close windows by wall clock too, so an idle source does not hold a window open forever.

        Only while input is idle: a source that is busy (draining a backlog after an outage, say)
        closes windows through the event-time watermark as its events arrive. Closing them by wall
        clock then would turn the rest of the backlog — already acknowledged — into late events.
        """
        while not stop.is_set():
            await asyncio.sleep(TICK_SECONDS)
            self.metrics.outbox(await self._on_db(partial(outbox.depth, self.conn)), now=self.clock())
            if self._idle():
                await self.release(self.aggregator.ready(self.clock(), idle=True))


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
