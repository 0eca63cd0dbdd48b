"""Remote-write into a REAL Prometheus (the Debian ``prometheus`` package; ``make services`` installs it
when root): the released value and its interval bounds are found through Prometheus's HTTP query API,
pushed by the pusher as batches are stored and by ``hush-collector push`` on demand."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from collector.ingest import ingest
from collector.outputs.push import Pusher
from collector.outputs.remote_write import post
from collector.outputs.series import Sample
from collector.report.intervals import Z95
from collector.store.sqlite.store import SqliteStore
from hushmetric.timefmt import format_rfc3339
from tests.collector.collector_testkit import Agent

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the Debian prometheus package is not installed (`make services` installs it as root)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 - loopback test server
        return json.load(reply)


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as reply:  # noqa: S310 - loopback
            return reply.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def _prometheus(home: Path, port: int) -> Iterator[str]:
    """A Prometheus with the remote-write receiver on 127.0.0.1:``port``, its TSDB under ``home``."""
    assert PROMETHEUS is not None
    home.mkdir(parents=True, exist_ok=True)
    (home / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n")
    log = (home / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # ready: a condition, not a time (at most ~60 s of polling)
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited: {(home / 'prometheus.log').read_text()[-2000:]}")
            if _ready(base):
                break
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _prometheus(tmp_path_factory.mktemp("prometheus"), _free_port()) as base:
        yield base


def _query(base: str, promql: str, at: float) -> dict[str, float]:
    """Instant query; {sorted label items as text: value}."""
    q = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
    data = _get(f"{base}/api/v1/query?{q}")
    assert data["status"] == "success", data
    return {
        ",".join(f"{k}={v}" for k, v in sorted(r["metric"].items()) if k != "__name__"): float(r["value"][1])
        for r in data["data"]["result"]
    }


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "c.db", signing_key=nacl.signing.SigningKey.generate(), create=True)
    try:
        yield s
    finally:
        await s.close()


async def test_released_values_and_their_bounds_reach_prometheus(prometheus: str, store: SqliteStore) -> None:
    now = time.time()
    agent = Agent("acme", "edge-1", created=now - 120)  # windows end two minutes ago: in the TSDB head
    await store.create_tenant("acme", now=now)
    await store.add_key("acme", "edge-1", agent.public_key, now=now)
    await ingest(store, agent.next(rows=2), now=now)

    async def deliver(samples: list[Sample]) -> None:
        await post(f"{prometheus}/api/v1/write", samples)

    pusher = Pusher(store, "remote-write", deliver)
    assert await pusher.push_once()
    assert pusher.delivered == 1
    at = agent.created
    values = _query(prometheus, 'hush_released{tenant="acme"}', at)
    assert values == {
        "agent=edge-1,dim_region=r0,metric=metric0,stat=count,tenant=acme": 10.0,
        "agent=edge-1,dim_region=r1,metric=metric1,stat=count,tenant=acme": 11.0,
    }
    low = _query(prometheus, 'hush_released_ci95_lower{tenant="acme",metric="metric0"}', at)
    high = _query(prometheus, 'hush_released_ci95_upper{tenant="acme",metric="metric0"}', at)
    std = _query(prometheus, 'hush_released_noise_std{tenant="acme",metric="metric0"}', at)
    [(key, lo)] = low.items()
    assert std[key] == 1.5
    assert lo == pytest.approx(10.0 - Z95 * 1.5)
    assert high[key] == pytest.approx(10.0 + Z95 * 1.5)
    spent = _query(prometheus, 'hush_batch_rho{tenant="acme"}', at)
    assert spent == {"agent=edge-1,tenant=acme,unit=user": 0.01}

    # the same page again (a crash between delivery and the cursor update): Prometheus takes it
    await deliver([s for r in (await store.output_rows_after(0, 10)).rows for s in _samples(r.row)])


def _samples(row: Any) -> list[Sample]:
    from collector.outputs.series import samples

    return samples([row])


def test_push_on_demand_from_the_cli(prometheus: str, tmp_path: Path) -> None:
    """``hush-collector push --remote-write`` delivers a tenant's range; an unreachable one is one error line."""

    db = tmp_path / "c.db"
    now = time.time()
    agent = Agent("beta", "edge-2", created=now - 60)

    async def seed() -> None:
        s = await SqliteStore.open(db, signing_key=nacl.signing.SigningKey.generate(), create=True)
        try:
            await s.create_tenant("beta", now=now)
            await s.add_key("beta", "edge-2", agent.public_key, now=now)
            await ingest(s, agent.next(rows=3), now=now)
        finally:
            await s.close()

    asyncio.run(seed())
    cli = [sys.executable, "-m", "collector.cli", "push", "--db", str(db), "--tenant", "beta"]
    since = format_rfc3339(now - 3600)
    r = subprocess.run(
        [*cli, "--from", since, "--remote-write", f"{prometheus}/api/v1/write"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"
    got = _query(prometheus, 'count(hush_released_ci95_upper{tenant="beta"})', agent.created)
    assert list(got.values()) == [3.0]
    r = subprocess.run(
        [*cli, "--remote-write", "http://127.0.0.1:9/api/v1/write"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "push failed" in r.stderr


def test_serve_pushes_batches_as_they_are_stored(prometheus: str, tmp_path: Path) -> None:
    """``serve --remote-write``: a batch submitted over gRPC shows up in Prometheus with no further step."""
    import base64

    import grpc

    from hushmetric.v1 import ingest_pb2_grpc
    from hushmetric.wire import envelope_to_proto
    from tests.collector.collector_testkit import Hush, serving

    hush = Hush(tmp_path)
    hush.ok("init")
    hush.ok("tenant", "create", "gamma")
    agent = Agent("gamma", "edge-3", created=float(int(time.time())))
    hush.ok(
        "key",
        "add",
        "gamma",
        "--agent",
        "edge-3",
        "--public-key",
        base64.b64encode(agent.public_key).decode(),
    )
    with (
        serving(hush, "--remote-write", f"{prometheus}/api/v1/write") as served,
        grpc.insecure_channel(served.address) as channel,
    ):
        stub = ingest_pb2_grpc.IngestStub(channel)
        assert stub.Submit(envelope_to_proto(agent.next(rows=2)), timeout=10).seq == 1
        for _ in range(600):  # until Prometheus has it: a condition, polled
            got = _query(prometheus, 'hush_released{tenant="gamma"}', agent.created)
            if len(got) == 2:
                break
            time.sleep(0.1)
        assert sorted(got.values()) == [10.0, 11.0]


DASHBOARD = Path(__file__).resolve().parents[2] / "packaging" / "grafana" / "hushmetric.json"


def test_every_dashboard_query_runs_on_the_remote_written_series(prometheus: str, tmp_path: Path) -> None:
    """packaging/grafana/hushmetric.json: each panel's PromQL (variables filled in as Grafana would) is
    valid, and the usage, KPI band, noise and privacy panels find the series remote-write produced."""

    now = time.time()
    agent = Agent("delta", "edge-4", created=now - 30)

    async def seed() -> None:
        async with contextlib.AsyncExitStack() as stack:
            s = await SqliteStore.open(
                tmp_path / "d.db", signing_key=nacl.signing.SigningKey.generate(), create=True
            )
            stack.push_async_callback(s.close)
            await s.create_tenant("delta", now=now)
            await s.add_key("delta", "edge-4", agent.public_key, now=now)
            await ingest(s, agent.next(rows=3), now=now)

            async def deliver(samples: list[Sample]) -> None:
                await post(f"{prometheus}/api/v1/write", samples)

            assert await Pusher(s, "remote-write", deliver).push_once()

    asyncio.run(seed())
    dashboard = json.loads(DASHBOARD.read_text())
    fill = {
        "$tenant": "delta", "$agent": ".*", "$metric": ".*", "$stat": ".*", "$stages": "metric0|metric1",
        "$rows_per_day": "1000", "$__range": "1h",
    }  # fmt: skip
    must_find = {"Released rows per tenant (range)", "KPI with its 95 % noise interval", "Noise standard deviation",
                 "Privacy budget spent per day", "Quota use per tenant (rows per day)", "Funnel: stage counts in the range"}  # fmt: skip
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for var, value in fill.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, expr
            got = _query(prometheus, expr, now)  # fails on a PromQL error
            if panel["title"] in must_find and target["refId"] == "A":
                assert got, (panel["title"], expr)


async def test_an_outage_of_prometheus_loses_nothing(store: SqliteStore, tmp_path: Path) -> None:
    """The pusher runs while no Prometheus listens (connection refused, retried with backoff); once one
    starts on that address, every stored batch arrives."""
    now = time.time()
    agent = Agent("omega", "edge-9", created=now - 90)
    await store.create_tenant("omega", now=now)
    await store.add_key("omega", "edge-9", agent.public_key, now=now)
    for _ in range(2):
        await ingest(store, agent.next(rows=2), now=now)
        agent.created += 30
    port = _free_port()

    async def deliver(samples: list[Sample]) -> None:
        await post(f"http://127.0.0.1:{port}/api/v1/write", samples)

    pusher = Pusher(store, "remote-write", deliver, backoff_base=0.05, backoff_cap=0.2, poll_seconds=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(pusher.run(stop))
    try:
        while pusher.failures < 3:  # down: nothing delivered, the cursor stays
            await asyncio.sleep(0.02)
        assert await store.output_cursor("remote-write") == 0
        with _prometheus(tmp_path / "late", port) as base:
            while pusher.delivered < 2:
                await asyncio.sleep(0.05)
            got = _query(base, 'count(hush_released{tenant="omega"})', now)
            assert list(got.values()) == [2.0]  # two series (r0, r1) ...
            got = _query(base, 'count_over_time(hush_released{tenant="omega", dim_region="r0"}[5m])', now)
            assert list(got.values()) == [2.0]  # ... each with both windows' samples
    finally:
        stop.set()
        await task


async def test_an_out_of_order_batch_is_refused_alone(prometheus: str, store: SqliteStore) -> None:
    """Prometheus refuses a whole request for one out-of-order sample (HTTP 400): the pusher sends the
    page again batch by batch, so only the late batch is lost to it and the next one still arrives."""
    now = time.time()
    agent = Agent("late", "edge-5", created=now - 40)
    await store.create_tenant("late", now=now)
    await store.add_key("late", "edge-5", agent.public_key, now=now)

    async def deliver(samples: list[Sample]) -> None:
        await post(f"{prometheus}/api/v1/write", samples)

    pusher = Pusher(store, "remote-write", deliver)
    await ingest(store, agent.next(rows=1), now=now)
    assert await pusher.push_once()
    agent.created = now - 100  # older than what Prometheus holds for this series: out of order
    await ingest(store, agent.next(rows=1), now=now)
    agent.created = now - 20
    await ingest(store, agent.next(rows=1), now=now)
    assert await pusher.push_once()
    assert (pusher.delivered, pusher.refused) == (2, 1)
    got = _query(prometheus, 'count_over_time(hush_released{tenant="late"}[5m])', now)
    assert list(got.values()) == [2.0]  # the first and the third window
