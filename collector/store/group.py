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
    """Submissions in, results out; at most one group is written at a time."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R | BaseException]]],
        *,
        max_group: int = MAX_GROUP,
    ) -> None:
        self._run = run
        self._max = max_group
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.groups = 0  # groups committed (or failed): submissions / groups is the mean group size

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain(), name="group-commit")
        # shield: cancelling the caller must not cancel the future the writer resolves
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Wait for the groups in flight (a store closes its database after this)."""
        if self._writer is not None:
            await asyncio.shield(self._writer)

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
            self._writer = None
            if self._pending:  # cancelled with submissions left: they must not wait forever
                for _, future in self._pending:
                    if not future.done():
                        future.set_exception(RuntimeError("the store is closing"))
                self._pending = []
