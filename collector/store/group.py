"""Group commit: concurrent ingest commits share one transaction and one durable flush.

A commit costs one fsync of the WAL (SQLite ``synchronous = FULL``, PostgreSQL's default
``synchronous_commit = on``), and that flush, not the checks, bounds a store that commits batch by
batch. :class:`GroupCommit` queues the submissions that arrive while a group is being written and
hands them to the store's ``run`` as the next group: one transaction, each batch decided in its own
savepoint in the order given (quotas, rate limits, duplicates and seq conflicts exactly as if
alone, each seeing the batches before it), one ``COMMIT``. A submission's future is resolved only
after that ``COMMIT`` returned, so a reply never acknowledges a batch that could still be lost; a
batch that is refused, or fails, rolls back to its savepoint and leaves its neighbours alone; a
failure of the group as a whole (the commit itself) fails every batch in it, none acknowledged.

Nothing here knows SQL: ``run`` takes the group and returns one result per item (an outcome, or the
exception that batch raised). The writer is a task of its own, so a caller that goes away (a client
cancelled) does not interrupt a transaction shared with others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["MAX_GROUP", "GroupCommit", "group_order"]

T = TypeVar("T")
R = TypeVar("R")

#: The most batches in one transaction: bounds how long one group holds the writer (and, on
#: PostgreSQL, its tenants' meter rows) and how much one failed commit takes down with it.
MAX_GROUP = 128


def group_order(keys: Sequence[tuple[str, str, int]]) -> list[int]:
    """The order to decide a group in: by (tenant, agent, seq). Every writer then takes its
    tenants' rows in the same order, so two replicas' groups wait for each other instead of
    deadlocking, and an agent's batches that arrived together are chained in seq order."""
    return sorted(range(len(keys)), key=keys.__getitem__)


class GroupCommit(Generic[T, R]):
    """Submissions in, results out, in ``lanes`` queues with one writer each.

    One lane suits SQLite (one connection: one writer at a time anyway). A server database is bound
    by round trips rather than by the flush, so several lanes, each writing its groups on its own
    pooled connection, keep it busy. ``lane`` picks an item's queue: by tenant, a tenant's batches
    meet in one group instead of waiting for each other's row locks across parallel transactions,
    and different tenants are written side by side."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R | BaseException]]],
        *,
        max_group: int = MAX_GROUP,
        lanes: int = 1,
        lane: Callable[[T], int] | None = None,
    ) -> None:
        self._run = run
        self._max = max_group
        self._lanes = max(1, lanes)
        self._lane = lane
        self._pending: dict[int, list[tuple[T, asyncio.Future[R]]]] = {}
        self._writers: dict[int, asyncio.Task[None]] = {}
        self.groups = 0  # groups committed (or failed): submissions / groups is the mean group size

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        n = self._lane(item) % self._lanes if self._lane is not None else 0
        self._pending.setdefault(n, []).append((item, future))
        if n not in self._writers:
            writer = asyncio.create_task(self._drain(n), name=f"group-commit-{n}")
            self._writers[n] = writer
            writer.add_done_callback(lambda t: self._forget(n, t))  # also when cancelled before it ran
        # shield: cancelling the caller must not cancel the future the writer resolves
        return await asyncio.shield(future)

    def _forget(self, n: int, writer: asyncio.Task[None]) -> None:
        if self._writers.get(n) is writer:
            del self._writers[n]

    async def close(self) -> None:
        """Wait for the groups in flight (a store closes its database after this)."""
        while self._writers:
            await asyncio.shield(asyncio.gather(*self._writers.values(), return_exceptions=True))

    async def _drain(self, n: int) -> None:
        queue = self._pending.setdefault(n, [])
        try:
            while queue:
                group = queue[: self._max]
                del queue[: self._max]
                self.groups += 1
                try:
                    results = await self._run([item for item, _ in group])
                except BaseException as exc:  # the group as a whole failed: no batch in it committed
                    for _, future in group:
                        if future.done():
                            continue
                        if isinstance(exc, asyncio.CancelledError):
                            future.cancel()
                        else:
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(group, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            # Leave in the same step as the last look at the queue (no await between): a
            # submission either was seen above or starts a new writer for its lane.
            current = asyncio.current_task()
            if current is not None:
                self._forget(n, current)
            if n not in self._writers and queue:  # cancelled with submissions left: never wait forever
                for _, future in queue:
                    if not future.done():
                        future.set_exception(RuntimeError("the store is closing"))
                queue.clear()
