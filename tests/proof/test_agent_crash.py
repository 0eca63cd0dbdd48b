"""Proof family 1 — crash consistency of the agent: ``kill -9`` at random points, restart, account.

A real ``hush-agent run`` daemon is fed (a) over the real Mosquitto by a QoS 1 publisher and (b) by a
JSON-lines file that a writer keeps appending to, and is killed with SIGKILL at random moments — right
after start-up (recovery, connect), and mid-stream (group commits, releases, deliveries) — and
restarted on the same state each time, while a real collector keeps receiving its batches.

What "acknowledged" means here. The publisher counts an event once the broker PUBACKed its message:
from then on the broker holds it in the agent's persistent session (clean_session=False, stable
client id) until the *agent* PUBACKs it, which the agent does only after the journal commit. So every
published event is either journaled/released by the agent, or still queued at the broker for the
agent's client id and delivered after a restart. At the end the publisher stops, the agent runs until
the last published event is journaled, and ``run --once`` releases the last window. Then every
published event must be accounted for — which is stronger than "every event the agent acknowledged".
For the file, the acknowledgement is the committed offset, written in the events' own transaction.

Figures (accounting explained in :mod:`tests.proof.agentkit`): events published vs accounted for in
released counts (+ still journaled), lost (0), counted twice (0), windows released under two seqs
(0), the ledger's total ρ vs the ρ of the batches that exist (never less), batches without a charge
(0), and the redelivered copies the bounding absorbed (MQTT is at-least-once between the journal
commit and the PUBACK; 0 for the file).
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import aiomqtt
import pytest

from tests.proof.agentkit import (
    LEAD_CAP,
    AgentDir,
    Canaries,
    Stamper,
    accounting,
    bad_lines,
    event,
    event_lines,
    scan_files,
    window_start,
)
from tests.proof.proofkit import Collector, Figures, pick

pytestmark = pytest.mark.timeout(pick(240, 1500))

FAMILY = "1 agent crash"
BROKER = ("127.0.0.1", 1883)
MQTT_KILLS, MQTT_SECONDS = pick(14, 150), pick(25.0, 600.0)
FILE_KILLS, FILE_SECONDS = pick(8, 60), pick(14.0, 240.0)
RELEASE_KILLS = pick(10, 60)  # run --once over many windows, killed mid-release / mid-delivery
WINDOWS_PER_FILE = pick(40, 60)


@dataclass
class Feed:
    """What was handed over for good: events PUBACKed by the broker, or written to the file."""

    budget: float
    stamps: Stamper = field(init=False)
    done: bool = False
    last_ts: float = 0.0

    def __post_init__(self) -> None:
        # event time reaches the lead cap when the kill loop ends: as many windows close as possible
        self.stamps = Stamper(rate=1 + LEAD_CAP / self.budget)

    @property
    def published(self) -> int:
        return self.stamps.published

    def per_window(self) -> Counter[int]:
        return self.stamps.per_window


async def _wait_for(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def _log_has(agent: AgentDir, text: str) -> bool:
    return bool(agent.logs) and text in agent.logs[-1].read_text(errors="replace")


async def _kill_loop(
    agent: AgentDir, rng: random.Random, kills: int, budget: float, feed: Feed
) -> tuple[int, int]:
    """Start, wait a random while, SIGKILL; until ``kills`` crashes or the time budget is spent.

    Returns (crashes injected, processes that had already died by themselves).
    """
    started = time.monotonic()
    injected = dead = 0
    while injected < kills and time.monotonic() - started < budget:
        agent.start()
        r = rng.random()
        # a quarter during start-up (imports, recovery, connect), the rest mid-stream
        await asyncio.sleep(rng.uniform(0.0, 0.5) if r < 0.25 else rng.uniform(0.5, 2.5))
        if agent.kill9():
            injected += 1
        else:
            dead += 1
    return injected, dead


async def _finish(agent: AgentDir, feed: Feed, empty: Path) -> None:
    """Run the daemon until the last handed-over event is journaled, stop it, release the rest."""
    agent.start()
    # let it get past start-up: a SIGTERM before its handlers are installed ends it like a kill
    await asyncio.sleep(3)
    await _wait_for(
        lambda: (
            (agent.journal_max_ts() or 0) >= feed.last_ts
            or window_start(feed.last_ts) in agent.released_starts()
        ),
        90,
        "the last event in the journal",
    )
    assert agent.stop() == 0, agent.logs[-1].read_text()
    # Event time runs ahead of the clock: declare the range up to the last event's window (the
    # daemon releases a window only once the clock has passed it).
    once = agent.run_once(empty, stop=window_start(feed.last_ts) + 60)
    assert once.code == 0, once.err
    report = json.loads(once.out)
    assert report["outbox_depth"] == 0, report


def _record(
    figures: Figures,
    check: str,
    feed: Feed,
    collector: Collector,
    agent: AgentDir,
    canaries: Canaries,
    injected: int,
    dead: int,
    seconds: float,
) -> None:
    acc = accounting(feed.per_window(), collector, agent)
    hits, files, nbytes = scan_files(
        [collector.workdir, agent.state, *agent.logs, agent.root / "bundles"], canaries
    )
    figures.record(
        FAMILY,
        check,
        runs=agent.starts + 1,
        faults=injected,
        lost=acc.lost,
        duplicated=acc.extra + acc.twice,
        crashes=len(agent.tracebacks()) + dead,
        seconds=seconds,
        published=acc.published,
        accounted=acc.accounted,
        batches=acc.batches,
        twice_under_two_seqs=acc.twice,
        ledger_rho=f"{acc.ledger_rho:.6g}",
        batches_rho=f"{acc.batches_rho:.6g}",
        uncharged=acc.uncharged,
        charged_without_batch=acc.charges_without_batch,
        redelivered_absorbed=acc.redelivered,
    )
    figures.record(
        "8b egress scan",
        f"after {check}",
        runs=1,
        faults=injected,
        lost=len(hits),
        files=files,
        bytes=nbytes,
        canaries=len(canaries.needles()),
    )
    assert not hits, hits
    assert not acc.problems, acc.problems[:20]
    assert acc.lost == 0
    assert acc.extra == 0
    assert acc.twice == 0
    assert acc.ledger_rho >= acc.batches_rho * (1 - 1e-9)
    # every window with events was released (the fixed schedule may add empty ones around them)
    assert acc.in_journal == 0
    assert acc.windows >= len(feed.per_window())
    assert not agent.tracebacks(), agent.tracebacks()


@pytest.fixture
def collector(tmp_path: Path) -> Collector:
    c = Collector(tmp_path / "collector")
    c.init()
    c.ok("tenant", "create", "proof")
    return c


async def test_kill9_agent_fed_over_mqtt(tmp_path: Path, figures: Figures, collector: Collector) -> None:
    started = time.monotonic()
    rng = random.Random(101)
    canaries = Canaries.make(rng)
    uid = uuid.uuid4().hex[:12]
    topic = f"hushproof/{uid}/events"
    address = await collector.start()
    agent = AgentDir(tmp_path / "agent", agent=f"agent-{uid}")
    agent.init(
        sources=(
            f'[[sources]]\ntype = "mqtt"\nhost = "{BROKER[0]}"\nport = {BROKER[1]}\n'
            f'topics = ["hushproof/{uid}/#"]\nclient_id = "hushproof-agent-{uid}"\n'
        ),
        endpoint=address,
    )
    agent.register(collector)
    feed = Feed(MQTT_SECONDS)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    try:
        # The persistent session must exist before anything is published to it.
        agent.start()
        await _wait_for(lambda: _log_has(agent, "connected as"), 30, "the agent's first MQTT session")
        agent.kill9()

        async def publish() -> None:
            async with aiomqtt.Client(BROKER[0], BROKER[1], identifier=f"hushproof-pub-{uid}") as client:
                await client.publish(topic, bad_lines(canaries), qos=1)
                i = 0
                while not feed.done:
                    stamps = [feed.stamps.next() for _ in range(rng.randint(1, 20))]
                    body = json.dumps([event(i + k, ts, canaries, uid) for k, ts in enumerate(stamps)])
                    await client.publish(topic, body.encode(), qos=1)  # returns on the broker's PUBACK
                    feed.stamps.commit(stamps)
                    feed.last_ts = stamps[-1]
                    i += len(stamps)
                    await asyncio.sleep(0.01)

        task = asyncio.create_task(publish(), name="publisher")
        injected, dead = await _kill_loop(agent, rng, MQTT_KILLS, feed.budget, feed)
        feed.done = True
        await task
        await _finish(agent, feed, empty)
        _record(
            figures,
            "mqtt (QoS 1, shared broker)",
            feed,
            collector,
            agent,
            canaries,
            injected,
            dead,
            time.monotonic() - started,
        )
        assert len(feed.per_window()) >= 3
    finally:
        if agent.alive():
            agent.kill9()
        await collector.stop()


async def test_kill9_agent_fed_from_a_file(tmp_path: Path, figures: Figures, collector: Collector) -> None:
    started = time.monotonic()
    rng = random.Random(102)
    canaries = Canaries.make(rng)
    address = await collector.start()
    agent = AgentDir(tmp_path / "agent", agent="agent-file")
    source = tmp_path / "events.jsonl"
    source.write_bytes(bad_lines(canaries))
    agent.init(sources=f'[[sources]]\ntype = "file"\npath = "{source}"\nfollow = true\n', endpoint=address)
    agent.register(collector)
    feed = Feed(FILE_SECONDS)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")

    async def write() -> None:
        i = 0
        with source.open("ab") as out:
            while not feed.done:
                stamps = [feed.stamps.next() for _ in range(rng.randint(1, 40))]
                out.write(event_lines(i, stamps, canaries, "file"))
                out.flush()
                feed.stamps.commit(stamps)
                feed.last_ts = stamps[-1]
                i += len(stamps)
                await asyncio.sleep(0.01)

    try:
        task = asyncio.create_task(write(), name="writer")
        injected, dead = await _kill_loop(agent, rng, FILE_KILLS, feed.budget, feed)
        feed.done = True
        await task
        await _finish(agent, feed, empty)
        _record(
            figures,
            "file (committed offset)",
            feed,
            collector,
            agent,
            canaries,
            injected,
            dead,
            time.monotonic() - started,
        )
        acc = accounting(feed.per_window(), collector, agent)
        assert acc.redelivered == 0  # the offset commits with the events: exactly once
    finally:
        if agent.alive():
            agent.kill9()
        await collector.stop()


def _above(count: Callable[[AgentDir], int], before: int, agent: AgentDir) -> bool:
    return count(agent) > before


def _charges(agent: AgentDir) -> int:
    try:
        with agent.read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM privacy_charge").fetchone()[0])
    except sqlite3.Error:
        return -1


def _stored(collector: Collector, agent: AgentDir) -> int:
    return int(collector.query("SELECT COUNT(*) FROM batches WHERE agent = ?", (agent.agent,))[0][0])


async def test_kill9_agent_mid_release_and_delivery(
    tmp_path: Path, figures: Figures, collector: Collector
) -> None:
    """Many releases under fire: ``run --once`` over inputs of 40–60 one-minute windows (event times in
    the past: no wall-clock tick in ``run --once``) is killed at random moments — while it releases
    (charge + seal + outbox + journal in one transaction) and while it delivers. A killed input is
    run again (its offset was committed with its events) until it completes, then the next one."""
    started = time.monotonic()
    rng = random.Random(103)
    canaries = Canaries.make(rng)
    address = await collector.start()
    agent = AgentDir(tmp_path / "agent", agent="agent-release")
    agent.init(sources="", endpoint=address)
    agent.register(collector)
    per_window: Counter[int] = Counter()
    base = (int(time.time()) // 60) * 60 - (4 * RELEASE_KILLS + 4) * WINDOWS_PER_FILE * 60
    injected = completed = files = i = rounds = 0
    path: Path | None = None
    try:
        while injected < RELEASE_KILLS:
            if path is None:  # the next input: 8 events per window
                first = base + files * WINDOWS_PER_FILE * 60
                stamps = [first + k * 60 / 8 for k in range(WINDOWS_PER_FILE * 8)]
                path = tmp_path / f"in{files}.jsonl"
                path.write_bytes(event_lines(i, stamps, canaries, "rel"))
                per_window.update(window_start(ts) for ts in stamps)
                i += len(stamps)
                files += 1
            rounds += 1
            assert rounds <= 4 * RELEASE_KILLS, "the kills keep missing the runs"
            charges, stored = _charges(agent), _stored(collector, agent)
            last = base + files * WINDOWS_PER_FILE * 60  # the declared range ends with this input
            agent.start(once_input=path, start=agent.first_from(base), stop=last)
            mode = rounds % 3
            if mode == 0:  # anywhere: start-up, reading, releasing, delivering
                await asyncio.sleep(rng.uniform(0.1, 1.0))
            else:  # once releases (1) or deliveries (2) of this run have begun
                if mode == 1:
                    probe = partial(_above, _charges, charges, agent)
                else:
                    probe = partial(_above, partial(_stored, collector), stored, agent)
                deadline = time.monotonic() + 20
                while not probe() and agent.alive() and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                await asyncio.sleep(rng.uniform(0.0, 0.15))
            if agent.kill9():
                injected += 1
            else:
                assert agent.proc is not None, agent.logs[-1].read_text()
                assert agent.proc.returncode == 0, agent.logs[-1].read_text()
                completed += 1
                path = None
        last = base + files * WINDOWS_PER_FILE * 60
        if path is not None:  # finish the input that was killed last
            done = agent.run_once(path, start=agent.first_from(base), stop=last)
            assert done.code == 0, done.err
        empty = tmp_path / "empty.jsonl"
        empty.write_bytes(b"")
        final = agent.run_once(empty, stop=last)
        assert final.code == 0, final
        assert json.loads(final.out)["outbox_depth"] == 0, final
        acc = accounting(per_window, collector, agent)
        hits, nfiles, nbytes = scan_files([collector.workdir, agent.state, *agent.logs], canaries)
    finally:
        if agent.alive():
            agent.kill9()
        await collector.stop()
    figures.record(
        FAMILY,
        "run --once killed mid-release/delivery",
        runs=agent.starts + 2,
        faults=injected,
        lost=acc.lost,
        duplicated=acc.extra + acc.twice,
        crashes=len(agent.tracebacks()),
        seconds=time.monotonic() - started,
        published=acc.published,
        accounted=acc.accounted,
        batches=acc.batches,
        inputs=files,
        completed_runs=completed,
        twice_under_two_seqs=acc.twice,
        ledger_rho=f"{acc.ledger_rho:.6g}",
        batches_rho=f"{acc.batches_rho:.6g}",
        uncharged=acc.uncharged,
        charged_without_batch=acc.charges_without_batch,
    )
    figures.record(
        "8b egress scan",
        "after run --once kills",
        runs=1,
        faults=injected,
        lost=len(hits),
        files=nfiles,
        bytes=nbytes,
    )
    assert not hits, hits
    assert not acc.problems, acc.problems[:20]
    assert acc.lost == 0
    assert acc.extra == 0
    assert acc.twice == 0
    assert acc.uncharged == 0
    assert acc.ledger_rho >= acc.batches_rho * (1 - 1e-9)
    assert acc.redelivered == 0  # offsets commit with the events
    assert not agent.tracebacks(), agent.tracebacks()
