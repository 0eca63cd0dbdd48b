"""End to end with real components: Mosquitto → agent daemon → collector over gRPC; and the air gap.

The policies here spend a huge budget so that noise is negligible and released counts can be
compared with what was published; production policies never look like this.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import aiomqtt
import pytest

from tests.collector.collector_testkit import Hush, serving
from tests.integration.agentkit import AgentDir, canary_text, events_jsonl, exact_policy, init_agent, leaked

pytestmark = pytest.mark.mqtt
HOST, PORT = "127.0.0.1", 1883


def agent_id(agent: AgentDir) -> str:
    return str(tomllib.loads(agent.config.read_text())["agent"])


def register(hush: Hush, agent: AgentDir, tenant: str = "acme") -> None:
    public = agent.ok("key", "show").split()[0]
    hush.ok("key", "add", tenant, "--agent", agent_id(agent), "--public-key", public)


def use_mqtt(agent: AgentDir, topic: str, client_id: str) -> None:
    agent.edit_config(
        '[[sources]]\ntype = "demo"\nseed = 7\n',
        f'[[sources]]\ntype = "mqtt"\nhost = "{HOST}"\nport = {PORT}\ntopics = ["{topic}/#"]\n'
        f'client_id = "{client_id}"\n',
    )


def total(report: dict[str, object], metric: str) -> float:
    """Sum of a metric's released values over every window in a KPI report (JSON form)."""
    text = json.dumps(report)
    assert metric in text
    values = [
        point["estimate"]["value"]
        for series in report["series"]  # type: ignore[union-attr]
        if series["metric"] == metric  # type: ignore[index]
        for point in series["points"]  # type: ignore[index]
    ]
    return float(sum(values))


def wait_for(predicate: object, *, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.3)
    return False


async def test_mqtt_to_agent_to_collector_with_canaries(tmp_path: Path) -> None:
    hush = Hush(tmp_path / "collector")
    hush.cwd.mkdir()
    hush.ok("init")
    topic, client_id = f"e2e/{uuid.uuid4().hex[:8]}", f"hush-e2e-{uuid.uuid4().hex[:8]}"
    with serving(hush) as served:
        hush.ok("tenant", "create", "acme")
        agent = init_agent(tmp_path / "agent", collector=served.address)
        register(hush, agent)
        use_mqtt(agent, topic, client_id)
        # One 1-minute window that ended a little while ago; lateness chosen so the agent's
        # wall-clock tick closes it ~8 s from now: enough time to ingest everything queued.
        now = time.time()
        window_end = math.floor(now / 60) * 60 - 60
        lateness = int(now + 8 - window_end)
        agent.set_policy(exact_policy(window="1m", lateness=f"{lateness}s"))
        agent.ok("validate")
        # create the persistent session (subscribe) once, then publish while the agent is offline;
        # --from starts the window schedule at the test's window (the daemon continues from there)
        agent.ok("run", "--once", "--from", str(window_end - 60))
        base = window_end - 50
        clicks = [
            {"name": "click", "ts": base + i, "unit": f"u{i % 7}", "attrs": {"message": canary_text()}}
            for i in range(20)
        ]
        signups = [
            {"name": "signup", "ts": base + i, "unit": f"s{i}", "attrs": {"plan": "team"}} for i in range(9)
        ]
        async with aiomqtt.Client(HOST, PORT, identifier=f"pub-{uuid.uuid4().hex[:8]}") as pub:
            await pub.publish(f"{topic}/one", json.dumps(clicks[0]).encode(), qos=1)  # a single object
            await pub.publish(f"{topic}/array", json.dumps(clicks[1:10]).encode(), qos=1)  # an array
            await pub.publish(f"{topic}/lines", events_jsonl(clicks[10:]).encode(), qos=1)  # JSON lines
            await pub.publish(f"{topic}/lines", events_jsonl(signups).encode(), qos=1)
            await pub.publish(f"{topic}/bad", b'{"name": "click", "ts": "yesterday"}', qos=1)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(agent.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:

            def delivered() -> bool:
                usage = json.loads(hush.ok("usage", "--tenant", "acme", "--format", "json"))
                return sum(day["batches"] for day in usage) >= 1

            assert wait_for(delivered, seconds=60), "nothing delivered within 60 s"
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, err = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, err
        assert "Traceback" not in err
        report = json.loads(hush.ok("report", "acme", "--format", "json"))
        # clicks: sensitivity 5 (max_contributions) at rho 25 → sigma ≈ 0.71; signup: sigma ≈ 0.14
        assert total(report, "clicks") == pytest.approx(20, abs=3.5)
        assert total(report, "signup") == pytest.approx(9, abs=0.7)
        dead = agent.json("dead-letter")
        assert sum(dead["counts"].values()) == 1
        assert agent.ok("egress", "--verify").startswith("ok: ")
    assert leaked([hush.db, agent.state_db]) == []


def test_air_gap_export_import_is_idempotent_and_tamper_evident(tmp_path: Path) -> None:
    hush = Hush(tmp_path / "collector")
    hush.cwd.mkdir()
    hush.ok("init")
    hush.ok("tenant", "create", "acme")
    agent = init_agent(tmp_path / "agent")  # no collector: air-gapped
    agent.set_policy(exact_policy())
    register(hush, agent)
    t = 1767571200
    events = [
        {"name": "click", "ts": t + 3600 * h + i, "unit": f"u{i}", "attrs": {"message": canary_text()}}
        for h in range(3)
        for i in range(5)
    ]
    src = tmp_path / "events.jsonl"
    src.write_text(events_jsonl(events))
    agent.ok("run", "--once", "--input", str(src), "--from", str(t), "--to", str(t + 3 * 3600))
    bundle = tmp_path / "bundle.tar"
    agent.ok("export", "--out", str(bundle))
    assert agent.json("status")["outbox_batches"] == 0
    assert leaked([bundle]) == []

    first = hush("import", str(bundle))
    assert first.code == 0, first
    assert "accepted 3, duplicate 0, refused 0" in first.out, first.out
    again = hush("import", str(bundle))
    assert again.code == 0, again
    assert "accepted 0, duplicate 3, refused 0" in again.out, again
    usage = json.loads(hush.ok("usage", "--tenant", "acme", "--format", "json"))
    assert sum(d["batches"] for d in usage) == 3
    assert sum(d["duplicates"] for d in usage) == 3

    data = bundle.read_bytes()
    for where in (data.index(b"manifest.json") + 700, data.index(b"batches/2.dsse.json") + 700):
        tampered = tmp_path / f"tampered-{where}.tar"
        tampered.write_bytes(data[:where] + bytes([data[where] ^ 0x01]) + data[where + 1 :])
        ran = hush("import", str(tampered))
        assert ran.code != 0, ran
        assert "Traceback" not in ran.err, ran
    usage = json.loads(hush.ok("usage", "--tenant", "acme", "--format", "json"))
    assert sum(d["batches"] for d in usage) == 3  # nothing tampered was stored
