"""The output cursor in the Store contract (migration v3), on SQLite and PostgreSQL."""

from __future__ import annotations

from collector.ingest import ingest
from collector.store import Store
from tests.collector.collector_testkit import Agent, Clock


async def test_pages_follow_batch_ids_and_cover_empty_batches(
    store: Store, clock: Clock, acme: Agent
) -> None:
    for rows in (2, 0, 3):  # an empty window is a stored batch with no rows: the cursor still passes it
        await ingest(store, acme.next(rows=rows), now=clock())
    assert await store.output_cursor("prom") == 0
    first = await store.output_rows_after(0, 2)
    assert [r.row.seq for r in first.rows] == [1, 1]
    second = await store.output_rows_after(first.upto, 2)
    assert second.upto > first.upto
    assert [(r.row.seq, r.row.value) for r in second.rows] == [(3, 10.0), (3, 11.0), (3, 12.0)]
    assert [(b.seq, b.rho) for b in first.batches + second.batches] == [(1, 0.01), (2, 0.01), (3, 0.01)]
    assert first.nrows + second.nrows == [2, 0, 3]
    assert first.ids[-1] == first.upto
    assert second.ids[-1] == second.upto
    assert await store.output_rows_after(second.upto, 2) == type(second)(second.upto, [])


async def test_advance_is_a_compare_and_set_per_output(store: Store, clock: Clock, acme: Agent) -> None:
    await ingest(store, acme.next(rows=1), now=clock())
    page = await store.output_rows_after(0, 10)
    assert await store.advance_output_cursor("prom", 0, page.upto, now=clock())
    assert not await store.advance_output_cursor("prom", 0, page.upto + 5, now=clock())  # stale pusher
    assert await store.output_cursor("prom") == page.upto
    assert await store.output_cursor("otlp") == 0  # each output keeps its own cursor
    assert (await store.output_rows_after(page.upto, 10)).rows == []
