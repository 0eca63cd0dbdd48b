"""Dead letters keep no raw content, end to end with the real Mosquitto and the real CLI.

A refused MQTT message on a topic that carries an email address: the state database and
``hush-agent dead-letter`` (text and JSON) hold the subscription filter, never the topic, and a digest
keyed from the site secret — not the plain SHA-256 of the input — that is stable on the site.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from pathlib import Path

import aiomqtt
import pytest

from agent import deadletter
from tests.integration.agentkit import AgentDir, init_agent

pytestmark = pytest.mark.mqtt

HOST, PORT = "127.0.0.1", 1883
EMAIL = "jane.doe@example.com"


async def _publish(topic: str, *payloads: bytes) -> None:
    async with aiomqtt.Client(HOST, PORT, identifier=f"pub-{uuid.uuid4().hex[:8]}") as pub:
        for payload in payloads:
            await pub.publish(topic, payload, qos=1)


async def _forget(client_id: str) -> None:
    async with aiomqtt.Client(HOST, PORT, identifier=client_id, clean_session=True):
        pass


def _mqtt_agent(root: Path, prefix: str, client_id: str) -> AgentDir:
    agent = init_agent(root)
    text = agent.config.read_text()
    start = text.index('[[sources]]\ntype = "demo"')
    agent.config.write_text(
        text[:start]
        + f'[[sources]]\ntype = "mqtt"\nhost = "{HOST}"\nport = {PORT}\n'
        + f'topics = ["{prefix}/#"]\nclient_id = "{client_id}"\n'
    )
    return agent


def test_a_topic_with_an_email_never_reaches_state_or_dead_letter_output(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:10]
    prefix, client_id = f"hushtest-dl/{tag}", f"hush-dl-{tag}"
    agent = _mqtt_agent(tmp_path / "site", prefix, client_id)
    try:
        agent.ok("run", "--once")  # creates the persistent session: the broker queues from here on
        bad = b'{"name": "login", "ts": "yesterday", "unit": "u1"}'
        asyncio.run(_publish(f"{prefix}/users/{EMAIL}/events", bad, b"not json at all", bad))
        agent.ok("run", "--once")
    finally:
        asyncio.run(_forget(client_id))

    doc = agent.json("dead-letter")
    letters = doc["recent"]
    assert len(letters) == 3
    assert doc["counts"] == {"json": 1, "ts": 2}
    assert {d["source"] for d in letters} == {f"mqtt:{prefix}/#"}  # the filter it matched
    text = agent.ok("dead-letter")
    for out in (json.dumps(doc), text):
        assert EMAIL not in out
        assert "users/" not in out
    raw = agent.state_db.read_bytes() + b"".join(
        p.read_bytes() for p in agent.state_db.parent.glob("agent.db-*")
    )
    assert EMAIL.encode() not in raw
    assert b"/users/" not in raw

    digests = [d["digest"] for d in letters if d["reason"] == "ts"]
    assert digests[0] == digests[1]  # stable on the site: the same input, the same digest
    assert digests[0] != hashlib.sha256(bad).hexdigest()  # not the guessable unkeyed hash
    secret = (agent.root / "site.secret").read_bytes().strip()
    assert digests[0] == hmac.new(deadletter.digest_key(secret), bad, hashlib.sha256).hexdigest()
    assert hashlib.sha256(bad).hexdigest().encode() not in raw
    # The operator can match an input from the sender's own logs, with the site's key.
    assert agent.ok("dead-letter", "--digest-of", "-", stdin=bad.decode()).strip() == digests[0]
    other = init_agent(tmp_path / "other")
    assert other.ok("dead-letter", "--digest-of", "-", stdin=bad.decode()).strip() != digests[0]
