"""Chain gaps and forks come out the same when an agent's batches share a group commit (every store
kind): on PostgreSQL the chain read of a tenant's later batches in a transaction goes with their insert."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from collector.ingest import Rejected, Stored, ingest
from collector.store import Store
from hushmetric import dsse
from hushmetric.batch import Noise, Row, payload_digest
from tests.collector.collector_testkit import Agent, Clock


def _chain(agent: Agent, n: int) -> list[tuple[dsse.Envelope, str]]:
    """Envelopes of seq 1..n, each naming the previous one's digest; with their digests."""
    out, prev = [], ""
    for seq in range(1, n + 1):
        payload = agent.payload(seq=seq, prev=prev)
        prev = payload_digest(payload)
        out.append((agent.sign(payload), prev))
    return out


async def test_gaps_in_a_group_are_found_and_closed(store: Store, acme: Agent, clock: Clock) -> None:
    """Whatever groups the batches fall into (no two of a round are neighbours, so each flag is
    decided whatever the order), the gaps found and closed are the same."""
    chain = _chain(acme, 5)
    first = [chain[i][0] for i in (0, 2, 4)]  # seq 1, 3, 5 together
    outcomes = await asyncio.gather(*(ingest(store, e, now=clock()) for e in first))
    assert [(o.seq, o.gap, o.fork) for o in outcomes if isinstance(o, Stored)] == [
        (1, False, False),
        (3, True, False),
        (5, True, False),
    ]
    [day] = await store.usage("acme")
    assert day.gaps == 2
    rest = [chain[i][0] for i in (1, 3)]  # seq 2 and 4 together close both gaps
    outcomes = await asyncio.gather(*(ingest(store, e, now=clock()) for e in rest))
    assert [(o.seq, o.gap, o.fork) for o in outcomes if isinstance(o, Stored)] == [
        (2, False, False),
        (4, False, False),
    ]
    [day] = await store.usage("acme")
    assert (day.batches, day.gaps) == (5, 0)


async def test_a_fork_in_a_group_is_found(store: Store, acme: Agent, clock: Clock) -> None:
    """Another agent's batch of the tenant sorts first in the group: on PostgreSQL the fork is then
    found by the chain read that goes with the insert."""
    other = Agent("acme", "a0")
    await store.add_key("acme", "a0", other.public_key, now=clock())
    for envelope, _ in _chain(acme, 2):
        assert isinstance(await ingest(store, envelope, now=clock()), Stored)
    acme.seq = 2
    forked = acme.sign(acme.payload(seq=3, prev="ab" * 32))
    outcomes = await asyncio.gather(*(ingest(store, e, now=clock()) for e in [other.next(), forked]))
    assert [(o.agent, o.seq, o.gap, o.fork) for o in outcomes if isinstance(o, Stored)] == [
        ("a0", 1, False, False),
        ("a1", 3, False, True),
    ]


@dataclass
class _NulAgent(Agent):
    def rows(self, n: int) -> list[Row]:
        return [Row("sign\0up", "count", {"plan": "pro\0"}, 1.0, Noise("gaussian", 1.5))]


async def test_a_nul_in_a_text_field_is_malformed_on_every_store(
    store: Store, acme: Agent, clock: Clock
) -> None:
    """PostgreSQL's text cannot hold U+0000: its error reached the client as UNKNOWN, with the
    database's message, for a batch SQLite stored. Now it is a refusal on both, and the batches it
    shares a group with are stored."""
    nul = _NulAgent("acme", "a9")
    await store.add_key("acme", "a9", nul.public_key, now=clock())
    outcomes = await asyncio.gather(
        *(ingest(store, e, now=clock()) for e in [acme.next(), nul.next(), acme.next()])
    )
    assert [type(o).__name__ for o in outcomes] == ["Stored", "Rejected", "Stored"]
    assert isinstance(outcomes[1], Rejected)
    assert outcomes[1].reason == "malformed"
