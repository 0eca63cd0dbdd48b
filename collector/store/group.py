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
    """Submissions in, results out; at most ``writers`` groups are written at a time.

    One writer suits SQLite (one connection, one writer at a time anyway). A server database is
    bound by round trips rather than by the flush: a few writers, each a group on its own pooled
    connection, keep it busy while each group still shares one commit."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R | BaseException]]],
        *,
        max_group: int = MAX_GROUP,
        writers: int = 1,
    ) -> None:
        self._run = run
        self._max = max_group
        self._max_writers = max(1, writers)
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writers: set[asyncio.Task[None]] = set()
        self.groups = 0  # groups committed (or failed): submissions / groups is the mean group size

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._writers) < self._max_writers:
            writer = asyncio.create_task(self._drain(), name="group-commit")
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)  # also when cancelled before it ran
        # shield: cancelling the caller must not cancel the future the writer resolves
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Wait for the groups in flight (a store closes its database after this)."""
        while self._writers:
            await asyncio.shield(asyncio.gather(*self._writers, return_exceptions=True))

    async def _drain(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending[: self._max], self._pending[self._max :]
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
            # Leave the set in the same step as the last look at the queue (no await between): a
            # submission either was seen above or finds room for a new writer.
            me = asyncio.current_task()
            if me is not None:
                self._writers.discard(me)
            if not self._writers and self._pending:  # cancelled with submissions left: never wait forever
                for _, future in self._pending:
                    if not future.done():
                        future.set_exception(RuntimeError("the store is closing"))
                self._pending = []
