"""Pushing released rows to an output as batches are stored, from a durable cursor.

A :class:`Pusher` reads the rows of the next stored batches after its cursor
(:meth:`Store.output_rows_after`), delivers them, and only then moves the cursor with a
compare-and-set (:meth:`Store.advance_output_cursor`). So:

* an outage of the receiver loses nothing: a retryable failure leaves the cursor where it was and
  the same page is sent again after a capped, jittered backoff (``base·2^(n-1)``, at most ``cap``);
* a crash between delivery and the cursor update resends one page, which the receivers absorb
  (Prometheus ignores an identical sample, an OTLP gauge point is idempotent by time);
* a refusal for good (HTTP 4xx) is narrowed down to the batches refused (the page is sent again
  batch by batch: Prometheus refuses a whole request for one out-of-order sample); those are counted
  and logged, and the cursor moves on: retrying samples the receiver will never accept would stop
  every later batch behind them.

``push_range`` delivers the rows of one tenant and window range on demand, without a cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from collector.errors import Unavailable
from collector.outputs.remote_write import RefusedError, RetryableError
from collector.outputs.series import Sample, batch_samples, samples
from collector.store import OutputPage, Store
from collector.store.records import StoredRow

__all__ = ["Deliver", "Pusher", "backoff", "push_range"]

Deliver = Callable[[list[Sample]], Awaitable[None]]
_log = logging.getLogger("hushmetric.collector.outputs")


def backoff(attempt: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Full jitter on a capped exponential: uniform in [0.5, 1] of ``min(cap, base·2^(attempt-1))``."""
    return min(cap, math.ldexp(base, attempt - 1)) * (0.5 + 0.5 * rand())


class Pusher:
    """One output (``name`` keys its cursor) fed from the store; :meth:`run` until ``stop``."""

    def __init__(
        self,
        store: Store,
        name: str,
        deliver: Deliver,
        *,
        max_batches: int = 200,
        poll_seconds: float = 1.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 60.0,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._store, self.name, self._deliver = store, name, deliver
        self._max_batches, self._poll = max_batches, poll_seconds
        self._base, self._cap = backoff_base, backoff_cap
        self._clock, self._rand = clock, rand
        self.delivered = 0  # batches whose rows reached the receiver
        self.refused = 0  # batches the receiver refused for good
        self.failures = 0  # retryable failures so far

    async def push_once(self) -> bool:
        """Deliver the next page after the cursor; False when there was nothing new.

        Raises RetryableError (receiver) or Unavailable (store), leaving the cursor unchanged."""
        after = await self._store.output_cursor(self.name)
        page = await self._store.output_rows_after(after, self._max_batches)
        if page.upto == after:
            return False
        try:
            await self._deliver(samples(r.row for r in page.rows) + batch_samples(page.batches, page.nrows))
            self.delivered += len(page.batches)
        except RefusedError:
            # Prometheus refuses a whole request for one out-of-order sample: find the batches it
            # refuses one by one, so one late batch does not take the rest of the page with it
            await self._one_by_one(page)
        # False: another pusher on the same cursor moved it first; the next round starts from there
        await self._store.advance_output_cursor(self.name, after, page.upto, now=self._clock())
        return True

    async def _one_by_one(self, page: OutputPage) -> None:
        rows: dict[int, list[StoredRow]] = {}
        for r in page.rows:
            rows.setdefault(r.batch_id, []).append(r.row)
        for batch_id, batch, n in zip(page.ids, page.batches, page.nrows, strict=True):
            try:
                await self._deliver(samples(rows.get(batch_id, [])) + batch_samples([batch], [n]))
            except RefusedError as exc:
                self.refused += 1
                _log.error(
                    "output %s refused batch %s/%s seq %d for good: %s",
                    self.name, batch.tenant, batch.agent, batch.seq, exc,
                )  # fmt: skip
            else:
                self.delivered += 1

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                moved = await self.push_once()
            except Exception as exc:  # an output must outlive any one failure (logged below)
                attempt += 1
                self.failures += 1
                delay = backoff(attempt, base=self._base, cap=self._cap, rand=self._rand)
                if isinstance(exc, RetryableError | Unavailable):
                    _log.warning("output %s: %s; retrying in %.1fs", self.name, exc, delay)
                else:  # a defect, not an outage: keep the trace, keep retrying
                    _log.exception("output %s failed; retrying in %.1fs", self.name, delay)
                await _wait(stop, delay)
                continue
            attempt = 0
            if not moved:  # caught up: look again after the poll interval
                await _wait(stop, self._poll)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Until ``stop`` is set, at most ``seconds``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def push_range(
    store: Store, tenant: str, since: str | None, until: str | None, deliver: Deliver, *, chunk: int = 5000
) -> int:
    """Deliver one tenant's rows whose window starts in [since, until); returns the row count."""
    rows = await store.released_rows(tenant, since, until)
    batches = await store.batch_privacy(tenant, since, until)
    counts = Counter((r.agent, r.seq) for r in rows)
    await deliver(batch_samples(batches, [counts[(b.agent, b.seq)] for b in batches]))
    for i in range(0, len(rows), chunk):
        await deliver(samples(rows[i : i + chunk]))
    return len(rows)
