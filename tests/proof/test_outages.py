"""Proof family 3 — outages: the collector down for a long stretch, the network cut mid-delivery,
the MQTT broker restarted. Everything is delivered afterwards, in order, each batch once.

1. **Collector outage and cuts.** A ``hush-agent run`` daemon follows a JSON-lines file a writer keeps
   appending to (canaries in the text), and delivers to a collector on a fixed loopback port. The
   collector is killed (SIGKILL) for a long stretch while windows keep closing: the outbox fills up
   to its cap (``max_batches`` 2, 4 in the long run), the overflow policy "backpressure" holds the input (the file is
   simply not read further), nothing is dropped. The collector comes back on the same port and the
   outbox drains. Then the connection is cut again and again mid-stream — the collector process
   killed at random moments, restarted a moment later — while delivery goes on.
2. **Cuts mid-delivery, many batches.** ``run --once`` over inputs of 30–60 one-minute windows (event
   times in the past: ``run --once`` has no wall-clock tick) releases them all and delivers them in
   one go; the collector is killed at a random moment of that delivery and restarted a moment later,
   round after round. What was not acknowledged stays in the outbox and goes first next round.
3. **Agent outage with a backlog.** The agent was down while its file grew by minutes of events;
   on restart the backlog is older than the policy's lateness. Expected: every event accounted for
   (this family found a defect here: see CHANGELOG.md, 0.1.0).
4. **Broker restarts.** The daemon reads from a private ``mosquitto`` (persistence on, its own port;
   the shared broker is never touched), which is restarted (SIGTERM, as a service manager would)
   several times while a QoS 1 publisher keeps publishing and retries what was not PUBACKed.

Afterwards (accounting as in family 1, see :mod:`tests.proof.agentkit`): every event handed over is
in a released count, none twice; at the collector, seqs 1..N each exactly once, received in seq
order, no chain gap or fork; the egress ledger verifies and lists each seq once; the outbox is
empty. Each run ends with the canary scan of family 8b.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections import Counter
from functools import partial
from pathlib import Path

import aiomqtt
import pytest

from agent import egress
from tests.proof.agentkit import (
    LEAD_CAP,
    SWEEP,
    AgentDir,
    Canaries,
    Mosquitto,
    Stamper,
    accounting,
    event,
    event_lines,
    free_port,
    scan_files,
    window_start,
)
from tests.proof.proofkit import Collector, Figures, pick

pytestmark = pytest.mark.timeout(pick(240, 1500))

FAMILY = "3 outages"
OUTAGE_SECONDS = pick(12.0, 120.0)
CUTS = pick(6, 40)
OUTBOX_CAP = pick(2, 4)
ROUNDS = pick(6, 40)  # run --once rounds with a cut each
WINDOWS_PER_ROUND = pick(30, 60)
RESTARTS = pick(3, 15)


async def _wait_for(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def _outbox_depth(agent: AgentDir) -> int:
    try:
        with agent.read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except Exception:
        return -1


async def _finish(agent: AgentDir, last_ts: float, empty: Path, *, delivered: bool = True) -> None:
    """Run the daemon until the last event is journaled, stop it, release the last window."""
    if not agent.alive():
        agent.start()
        # let it get past start-up: a SIGTERM before its handlers are installed ends it like a kill
        await asyncio.sleep(3)
    await _wait_for(
        lambda: (agent.journal_max_ts() or 0) >= last_ts or window_start(last_ts) in agent.released_starts(),
        120,
        "the last event in the journal",
    )
    assert agent.stop() == 0, agent.logs[-1].read_text()
    # the declared range ends with the last event's window (event time may run ahead of the clock)
    once = agent.run_once(empty, stop=window_start(last_ts) + 60)
    assert once.code == 0, once.err
    if delivered:
        assert json.loads(once.out)["outbox_depth"] == 0, once.out


def _stored(collector: Collector, agent: AgentDir) -> int:
    return int(collector.query("SELECT COUNT(*) FROM batches WHERE agent = ?", (agent.agent,))[0][0])


def _delivery(collector: Collector, agent: AgentDir) -> dict[str, int]:
    """In order, each once: seqs contiguous from 1, received in seq order, no chain gap or fork."""
    rows = collector.query(
        "SELECT seq, received FROM batches WHERE tenant = ? AND agent = ? ORDER BY seq",
        (agent.tenant, agent.agent),
    )
    seqs = [int(r[0]) for r in rows]
    out_of_order = sum(1 for a, b in itertools.pairwise(rows) if b[1] < a[1])
    chain = collector.query(
        "SELECT COUNT(*) FROM chain_events WHERE tenant = ? AND agent = ?", (agent.tenant, agent.agent)
    )[0][0]
    with agent.read() as conn:
        entries = egress.entries(conn)
        verified = egress.verify(conn)
    sent = Counter(e.seq for e in entries if e.kind == "batch" and e.seq is not None)
    return {
        "batches": len(seqs),
        "gaps": (max(seqs) - len(seqs)) if seqs else 0,
        "out_of_order": out_of_order,
        "chain_events": int(chain),
        "egress_twice": sum(1 for n in sent.values() if n > 1),
        "egress_missing": len(set(seqs) - set(sent)),
        "egress_ok": int(verified.ok),
    }


async def test_collector_outage_and_cuts_deliver_everything_in_order_once(
    tmp_path: Path, figures: Figures
) -> None:
    started = time.monotonic()
    rng = random.Random(301)
    canaries = Canaries.make(rng)
    port = free_port()
    collector = Collector(tmp_path / "collector")
    collector.init()
    collector.ok("tenant", "create", "proof")
    await collector.start("--listen", f"127.0.0.1:{port}")
    agent = AgentDir(tmp_path / "agent", agent="agent-outage")
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"")
    agent.init(
        sources=f'[[sources]]\ntype = "file"\npath = "{source}"\nfollow = true\n',
        endpoint=f"127.0.0.1:{port}",
        extra=f"[outbox]\nmax_batches = {OUTBOX_CAP}\n",
    )
    agent.register(collector)
    # Event time starts SWEEP seconds in the past and catches up with the clock as the outage ends,
    # so windows close (clock and watermark both past them) every few seconds of the outage. The
    # schedule is declared to start there, as if the agent had been running.
    stamps = Stamper(rate=1 + SWEEP / (3 + OUTAGE_SECONDS), start=time.time(), lag=SWEEP)
    agent.begin_schedule(stamps.start - SWEEP)
    done = asyncio.Event()
    last_ts = 0.0
    max_depth = 0

    async def write() -> None:
        nonlocal last_ts
        i = 0
        with source.open("ab") as out:
            while not done.is_set():
                batch = [stamps.next() for _ in range(rng.randint(1, 30))]
                out.write(event_lines(i, batch, canaries, "o"))
                out.flush()
                stamps.commit(batch)
                last_ts = batch[-1]
                i += len(batch)
                await asyncio.sleep(0.02)

    cuts = 0
    try:
        writer = asyncio.create_task(write(), name="writer")
        await asyncio.sleep(0.2)  # input waiting when the daemon starts: it is never idle at first
        agent.start()
        await asyncio.sleep(3)
        # 1. a long outage: the outbox fills to its cap, backpressure holds the input
        collector.kill9()
        outage_end = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < outage_end:
            max_depth = max(max_depth, _outbox_depth(agent))
            await asyncio.sleep(0.25)
        backpressure = "outbox full" in agent.logs[-1].read_text(errors="replace")
        await collector.start("--listen", f"127.0.0.1:{port}")
        await _wait_for(lambda: _outbox_depth(agent) == 0, 60, "the outbox to drain after the outage")
        # 2. cuts mid-stream: kill the collector at random moments, bring it back a moment later
        for _ in range(CUTS):
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            collector.kill9()
            cuts += 1
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            await collector.start("--listen", f"127.0.0.1:{port}")
        done.set()
        await writer
        (tmp_path / "empty.jsonl").write_bytes(b"")
        await _finish(agent, last_ts, tmp_path / "empty.jsonl")
        acc = accounting(stamps.per_window, collector, agent)
        delivery = _delivery(collector, agent)
        hits, files, nbytes = scan_files([collector.workdir, agent.state, *agent.logs], canaries)
    finally:
        done.set()
        if agent.alive():
            agent.kill9()
        await collector.stop()
    figures.record(
        FAMILY,
        "collector down + cuts (file source)",
        runs=collector.starts,
        faults=1 + cuts,
        lost=acc.lost,
        duplicated=acc.extra + acc.twice + delivery["egress_twice"],
        crashes=len(agent.tracebacks()),
        seconds=time.monotonic() - started,
        outage_s=OUTAGE_SECONDS,
        published=acc.published,
        accounted=acc.accounted,
        max_outbox=max_depth,
        backpressure=backpressure,
        **delivery,
    )
    figures.record(
        "8b egress scan",
        "after collector outage + cuts",
        runs=1,
        faults=1 + cuts,
        lost=len(hits),
        files=files,
        bytes=nbytes,
    )
    assert not hits, hits
    assert not acc.problems, acc.problems[:10]
    assert acc.lost == 0
    assert acc.extra == 0
    assert acc.twice == 0
    assert delivery["gaps"] == 0, delivery
    assert delivery["out_of_order"] == 0, delivery
    assert delivery["chain_events"] == 0, delivery
    assert delivery["egress_twice"] == 0, delivery
    assert delivery["egress_missing"] == 0, delivery
    assert delivery["egress_ok"], delivery
    assert max_depth >= OUTBOX_CAP, (max_depth, backpressure)
    assert backpressure, (max_depth, backpressure)
    assert not agent.tracebacks(), agent.tracebacks()


async def test_cuts_mid_delivery_deliver_everything_in_order_once(tmp_path: Path, figures: Figures) -> None:
    started = time.monotonic()
    rng = random.Random(303)
    canaries = Canaries.make(rng)
    port = free_port()
    collector = Collector(tmp_path / "collector")
    collector.init()
    collector.ok("tenant", "create", "proof")
    await collector.start("--listen", f"127.0.0.1:{port}")
    agent = AgentDir(tmp_path / "agent", agent="agent-cuts")
    agent.init(sources="", endpoint=f"127.0.0.1:{port}")
    agent.register(collector)
    per_window: Counter[int] = Counter()
    base = (int(time.time()) // 60) * 60 - (ROUNDS + 2) * WINDOWS_PER_ROUND * 60
    cuts = interrupted = 0
    i = 0
    try:
        for r in range(ROUNDS):
            first = base + r * WINDOWS_PER_ROUND * 60
            stamps = [first + k * 60 / 8 for k in range(WINDOWS_PER_ROUND * 8)]  # 8 events per window
            path = tmp_path / f"round{r}.jsonl"
            path.write_bytes(event_lines(i, stamps, canaries, "cut"))
            i += len(stamps)
            for ts in stamps:
                per_window[window_start(ts)] += 1
            before = _stored(collector, agent)
            # the declared range: this round's windows (the first run also starts the schedule)
            declared = partial(
                agent.run_once, path, start=agent.first_from(base), stop=first + WINDOWS_PER_ROUND * 60
            )
            run = asyncio.create_task(asyncio.to_thread(declared), name=f"round-{r}")
            if r % 2:
                await asyncio.sleep(rng.uniform(0.2, 1.5))  # anywhere: start-up, release, delivery
            else:  # right after the collector stored this round's first batch: mid-delivery
                deadline = time.monotonic() + 20
                while _stored(collector, agent) == before and not run.done() and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(rng.uniform(0.0, 0.05))
            collector.kill9()
            cuts += 1
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            await collector.start("--listen", f"127.0.0.1:{port}")
            result = await run
            assert result.code == 0, result.err
            assert "Traceback" not in result.err, result.err
            interrupted += json.loads(result.out)["outbox_depth"] > 0
        empty = tmp_path / "empty.jsonl"
        empty.write_bytes(b"")
        final = agent.run_once(empty, stop=base + ROUNDS * WINDOWS_PER_ROUND * 60)
        assert final.code == 0, final
        assert json.loads(final.out)["outbox_depth"] == 0, final
        acc = accounting(per_window, collector, agent)
        delivery = _delivery(collector, agent)
        hits, files, nbytes = scan_files([collector.workdir, agent.state], canaries)
    finally:
        await collector.stop()
    figures.record(
        FAMILY,
        "cuts mid-delivery (run --once rounds)",
        runs=ROUNDS + 1,
        faults=cuts,
        lost=acc.lost,
        duplicated=acc.extra + acc.twice + delivery["egress_twice"],
        seconds=time.monotonic() - started,
        published=acc.published,
        accounted=acc.accounted,
        rounds_left_outbox=interrupted,
        **delivery,
    )
    figures.record(
        "8b egress scan",
        "after cuts mid-delivery",
        runs=1,
        faults=cuts,
        lost=len(hits),
        files=files,
        bytes=nbytes,
    )
    assert not hits, hits
    assert not acc.problems, acc.problems[:10]
    assert acc.lost == 0
    assert acc.extra == 0
    assert acc.twice == 0
    assert delivery["gaps"] == 0, delivery
    assert delivery["out_of_order"] == 0, delivery
    assert delivery["chain_events"] == 0, delivery
    assert delivery["egress_twice"] == 0, delivery
    assert delivery["egress_missing"] == 0, delivery
    assert delivery["egress_ok"], delivery
    assert delivery["batches"] >= ROUNDS * WINDOWS_PER_ROUND


BACKLOG_EVENTS = pick(1_500_000, 2_000_000)
BACKLOG_SECONDS = 600


async def test_backlog_after_agent_outage_is_not_dropped_as_late(tmp_path: Path, figures: Figures) -> None:
    """The agent restarts on a file that grew by ``BACKLOG_SECONDS`` of events while it was down:
    windows close by wall clock only while input is idle, so no backlog event is dropped as late
    after its offset was committed (the defect and its fix: CHANGELOG.md, 0.1.0)."""
    started = time.monotonic()
    agent = AgentDir(tmp_path / "agent", agent="agent-backlog")
    source = tmp_path / "events.jsonl"
    now = time.time()
    stamps = [now - BACKLOG_SECONDS + BACKLOG_SECONDS * k / BACKLOG_EVENTS for k in range(BACKLOG_EVENTS)]
    with source.open("wb") as out:
        for k in range(0, BACKLOG_EVENTS, 100_000):
            out.write(event_lines(k, stamps[k : k + 100_000], None, "b"))
    per_window = Counter(window_start(ts) for ts in stamps)
    agent.init(sources=f'[[sources]]\ntype = "file"\npath = "{source}"\nfollow = true\n', endpoint=None)
    agent.begin_schedule(now - BACKLOG_SECONDS)  # the agent ran before its outage: its schedule did
    (tmp_path / "empty.jsonl").write_bytes(b"")
    try:
        agent.start()
        await _finish(agent, stamps[-1], tmp_path / "empty.jsonl", delivered=False)
        acc = accounting(per_window, None, agent)
    finally:
        if agent.alive():
            agent.kill9()
    figures.record(
        FAMILY,
        "agent restarts on a backlog older than the lateness",
        runs=1,
        faults=1,
        lost=acc.lost,
        duplicated=acc.extra,
        seconds=time.monotonic() - started,
        published=acc.published,
        accounted=acc.accounted,
        status="lost" if acc.lost else "ok",
    )
    assert acc.lost == 0, acc.problems[:5]


async def test_broker_restarts_lose_nothing(tmp_path: Path, figures: Figures) -> None:
    started = time.monotonic()
    rng = random.Random(302)
    canaries = Canaries.make(rng)
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    uid = uuid.uuid4().hex[:10]
    agent = AgentDir(tmp_path / "agent", agent=f"agent-{uid}")
    agent.init(
        sources=(
            f'[[sources]]\ntype = "mqtt"\nhost = "127.0.0.1"\nport = {broker.port}\n'
            f'topics = ["hushproof/{uid}/#"]\nclient_id = "hushproof-agent-{uid}"\n'
        ),
        endpoint=None,
    )
    total_seconds = 4 + RESTARTS * 4.0
    stamps = Stamper(rate=1 + LEAD_CAP / total_seconds)
    done = asyncio.Event()
    last_ts = 0.0
    republished = 0

    async def publish() -> None:
        nonlocal last_ts, republished
        i = 0
        pending: list[float] = []
        while not done.is_set():
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", broker.port, identifier=f"hushproof-pub-{uid}"
                ) as client:
                    while not done.is_set():
                        if not pending:
                            pending = [stamps.next() for _ in range(rng.randint(1, 20))]
                        body = json.dumps([event(i + k, ts, canaries, uid) for k, ts in enumerate(pending)])
                        await client.publish(f"hushproof/{uid}/e", body.encode(), qos=1, timeout=5)
                        stamps.commit(pending)  # PUBACKed: the broker holds it for the agent now
                        last_ts = pending[-1]
                        i += len(pending)
                        pending = []
                        await asyncio.sleep(0.01)
            except aiomqtt.MqttError:
                republished += bool(pending)  # not PUBACKed: sent again (same events) after reconnect
                await asyncio.sleep(0.2)

    try:
        agent.start()
        await _wait_for(
            lambda: "connected as" in agent.logs[-1].read_text(errors="replace"), 30, "the agent's session"
        )
        publisher = asyncio.create_task(publish(), name="publisher")
        restarts = 0
        for _ in range(RESTARTS):
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            broker.stop()
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            broker.start()
            restarts += 1
        await asyncio.sleep(1.0)
        done.set()
        await publisher
        (tmp_path / "empty.jsonl").write_bytes(b"")
        await _finish(agent, last_ts, tmp_path / "empty.jsonl", delivered=False)
        acc = accounting(stamps.per_window, None, agent)
        hits, files, nbytes = scan_files([agent.state, *agent.logs], canaries)
    finally:
        done.set()
        if agent.alive():
            agent.kill9()
        broker.stop()
    figures.record(
        FAMILY,
        "broker restarted (private mosquitto)",
        runs=broker.starts,
        faults=restarts,
        lost=acc.lost,
        duplicated=acc.extra + acc.twice,
        crashes=len(agent.tracebacks()),
        seconds=time.monotonic() - started,
        published=acc.published,
        accounted=acc.accounted,
        batches=acc.batches,
        republished=republished,
        redelivered_absorbed=acc.redelivered,
    )
    figures.record(
        "8b egress scan",
        "after broker restarts",
        runs=1,
        faults=restarts,
        lost=len(hits),
        files=files,
        bytes=nbytes,
    )
    assert not hits, hits
    assert not acc.problems, acc.problems[:10]
    assert acc.lost == 0
    assert acc.extra == 0
    assert acc.twice == 0
    assert not agent.tracebacks(), agent.tracebacks()
