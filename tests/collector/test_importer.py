"""Air-gap import at the store level: a bundle speaks for one agent, and nothing else gets in."""

from __future__ import annotations

from collector.importer import import_bundle
from collector.store import Store
from hushmetric import bundle
from hushmetric.timefmt import format_rfc3339
from tests.collector.collector_testkit import Agent, Clock


async def test_a_batch_of_another_agent_smuggled_into_a_bundle_is_refused(
    store: Store, clock: Clock, acme: Agent
) -> None:
    other = Agent("acme", "a2")
    await store.add_key("acme", "a2", other.public_key, now=clock.now)
    own, smuggled = acme.next(), other.next()
    data = bundle.write_bundle(
        [(1, own), (2, smuggled)],
        tenant="acme",
        agent=acme.agent,
        created=format_rfc3339(clock.now),
        key=acme.key,
    )
    report = await import_bundle(store, data, now=clock.now)
    assert report.accepted == 1 and report.refused == {"bundle_mismatch": 1}
    usage = await store.usage("acme", None, None)
    assert sum(day.batches for day in usage) == 1  # the other agent's batch was not stored
    assert all(row.agent == acme.agent for row in await store.released_rows("acme", None, None))


async def test_a_second_import_is_all_duplicates(store: Store, clock: Clock, acme: Agent) -> None:
    batches = [(i + 1, acme.next()) for i in range(3)]
    data = bundle.write_bundle(
        batches, tenant="acme", agent=acme.agent, created=format_rfc3339(clock.now), key=acme.key
    )
    first = await import_bundle(store, data, now=clock.now)
    again = await import_bundle(store, data, now=clock.now)
    assert (first.accepted, first.duplicate, first.refused) == (3, 0, {})
    assert (again.accepted, again.duplicate, again.refused) == (0, 3, {})
