"""MQTT source: QoS 1, persistent session, and a PUBACK only once the message is durable in the agent.

How the late acknowledgement works
----------------------------------
aiomqtt 2.x has no manual-ack API, but it drives a paho-mqtt 2.x client on the event loop thread:
paho's socket callbacks are registered with ``loop.add_reader``/``add_writer``, so every paho call
made from the loop thread is serialised with paho's own packet handling. paho 2.x supports manual
acknowledgement (``manual_ack``): with it on, a QoS 1 PUBLISH is handed to us *without* a PUBACK, and
``paho_client.ack(mid, qos)`` queues the PUBACK later. We switch it on through aiomqtt's underlying
client (``aiomqtt.Client._client``, checked at start-up so an aiomqtt upgrade that moves it fails
loudly instead of silently auto-acking), and every :class:`Chunk` carries an ``ack`` that sends the
PUBACK for its message. The pipeline calls it after the transaction holding the message's events
(or its dead letters) committed.

Why this and not a thread running paho on its own: one event loop owns the socket, no cross-thread
hand-off per message, and aiomqtt keeps doing connection handling, keepalive and TLS. (A journal
alone is not enough: with paho's default auto-ack the broker forgets a message before it is durable.)

Safety rules the ``ack`` closure enforces:
- Packet ids are per connection. An ``ack`` for a message received on an earlier connection is
  dropped: the broker redelivers that message on the new connection (persistent session), where it
  is decoded again — at-least-once, never a PUBACK for an id the broker has since reused for a
  message that is not durable yet.
- It runs on the loop thread (if called from another thread it hops there), at most once.
- QoS 0 deliveries have nothing to acknowledge (``ack`` is ``None``).

The session is persistent with a stable client id (default ``"hush-" + agent id``), so
subscriptions and unacknowledged or queued QoS 1 messages survive agent restarts (as far as the
broker's own limits allow: Mosquitto's ``max_queued_messages`` bounds what it keeps for a client).

In-flight window. Every PUBACK waits for a journal commit, so the number of unacknowledged messages
the broker lets out at once bounds throughput (at most that many messages per commit, per round trip).
With MQTT 3.1.1 (the default) the broker's ``max_inflight_messages`` sets it (Mosquitto: 20; the
documented broker settings raise it to 1,000). With ``protocol = "5"`` the source asks for its own
window with the CONNECT's *Receive Maximum* (``receive_maximum``, default 1,000), with
``clean_start=False`` and a session expiry of "never" — the MQTT 5 spelling of 3.1.1's
``clean_session=False``; a broker that refuses MQTT 5 ("unsupported protocol version") is then spoken
to in 3.1.1 for the rest of the source's life, said once. MQTT 5 is not the default because paho
parses its packets at about half the speed (measured on loopback, documented broker settings: 3.1.1
drains a backlog at ~14k msg/s, MQTT 5 at ~5.5k): it pays off only behind a slow link whose broker
settings cannot be changed. Broker settings that keep bursts whole are in docs/operations.md ("MQTT brokers").

The broker being down is normal: connect failures and drops are retried forever with capped, jittered
exponential backoff, logged once per change of state. Payload size is not checked here: the decoder
refuses a payload over ``limits.max_payload_bytes`` as one ``too_large`` dead letter, which is
committed and then acknowledged like any other input (the broker's ``message_size_limit`` is what
bounds memory before that).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.sources.base import Chunk
from agent.transport import Backoff

__all__ = ["NEVER_EXPIRE", "MqttSource"]

NEVER_EXPIRE = 0xFFFFFFFF  # MQTT 5 session expiry interval: keep the session like 3.1.1's clean_session=False
_UNSUPPORTED_PROTOCOL = (0x01, 0x84)  # CONNACK codes: 3.1.1 "unacceptable protocol version", MQTT 5's

log = logging.getLogger(__name__)


class MqttSource:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        topics: Sequence[str],
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        keepalive: int = 30,
        receive_maximum: int = 1000,
        protocol: str = "3.1.1",  # or "5": see "In-flight window" above
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.name = f"mqtt:{host}:{port}"
        self._host = host
        self._port = port
        self._topics = list(topics)
        self.client_id = client_id
        self._username = username
        self._password = password
        self._tls = tls_context
        self._keepalive = keepalive
        self._receive_maximum = receive_maximum
        self.protocol = protocol  # "5", or "3.1.1" (configured, or fallen back to)
        # The first retry waits up to 2·base (the delay after n failures is base·2ⁿ, capped).
        self._backoff = Backoff(2 * backoff_base, backoff_cap, rng or random.Random())
        self._live: int | None = None  # generation of the connection currently up
        self._generation = 0
        self.state = "starting"
        self.attempts = 0  # connection attempts so far (for status and tests)

    async def chunks(self) -> AsyncIterator[Chunk]:
        while True:
            self.attempts += 1
            client = self._client()
            paho = _manual_ack(client)
            try:
                async with client:
                    self._generation += 1
                    self._live = self._generation
                    granted = await client.subscribe([(topic, 1) for topic in self._topics])
                    self._set_state("connected", None)
                    self._check_grants(granted)
                    self._backoff.reset()
                    async for message in client.messages:
                        yield self._chunk(message, paho, self._generation)
            except aiomqtt.MqttError as exc:
                if self.protocol == "5" and _refused_protocol(exc):
                    self.protocol = "3.1.1"
                    log.warning(
                        "mqtt %s:%d does not speak MQTT 5: using 3.1.1, whose in-flight window is the "
                        "broker's max_inflight_messages (see docs/operations.md)",
                        self._host,
                        self._port,
                    )
                    continue
                self._set_state("down", exc)
            finally:
                self._live = None
            await asyncio.sleep(self._backoff.next())

    def _client(self) -> aiomqtt.Client:
        common: dict[str, Any] = {
            "identifier": self.client_id,
            "username": self._username,
            "password": self._password,
            "tls_context": self._tls,
            "keepalive": self._keepalive,
            "timeout": 10,
        }
        if self.protocol == "3.1.1":
            return aiomqtt.Client(
                self._host, self._port, clean_session=False, protocol=aiomqtt.ProtocolVersion.V311, **common
            )
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho ships no annotations here
        props.SessionExpiryInterval = NEVER_EXPIRE
        props.ReceiveMaximum = self._receive_maximum
        return aiomqtt.Client(
            self._host,
            self._port,
            clean_start=False,
            protocol=aiomqtt.ProtocolVersion.V5,
            properties=props,
            **common,
        )

    def _chunk(self, message: aiomqtt.Message, paho: Any, generation: int) -> Chunk:
        payload = message.payload
        data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
        ack = self._acker(paho, message.mid, message.qos, generation) if message.qos > 0 else None
        return Chunk(f"mqtt:{self._filter_of(message.topic)}", data, None, None, ack)

    def _filter_of(self, topic: aiomqtt.Topic) -> str:
        """The subscription filter ``topic`` came in by. A chunk's source names it, never the topic
        itself: topics often carry user ids or email addresses, and the source is stored with every
        dead letter."""
        for pattern in self._topics:
            if topic.matches(pattern):
                return pattern
        return "(no matching subscription)"  # a broker sending what we did not ask for

    def _acker(self, paho: Any, mid: int, qos: int, generation: int) -> Callable[[], None]:
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        sent = False

        def send() -> None:
            nonlocal sent
            if sent or self._live != generation:
                return  # done already, or stale: the broker redelivers on the new connection
            sent = True
            paho.ack(mid, qos)

        def ack() -> None:
            if threading.get_ident() == loop_thread:
                send()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(send)

        return ack

    def _check_grants(self, granted: Sequence[Any]) -> None:
        for topic, qos in zip(self._topics, granted, strict=False):
            code = int(getattr(qos, "value", qos))  # paho hands back ReasonCode objects or ints
            if code >= 0x80:
                log.error("mqtt broker refused the subscription to %r (not authorised?)", topic)
            elif code == 0:
                log.warning("mqtt broker granted only QoS 0 for %r: no redelivery for it", topic)

    def _set_state(self, state: str, exc: BaseException | None) -> None:
        if state == self.state:
            log.debug("mqtt %s:%d still %s: %s", self._host, self._port, state, exc)
            return
        self.state = state
        if state == "connected":
            log.info("mqtt %s:%d connected as %s", self._host, self._port, self.client_id)
        else:
            log.warning("mqtt %s:%d unreachable, retrying with backoff: %s", self._host, self._port, exc)


def _refused_protocol(exc: aiomqtt.MqttError) -> bool:
    rc = getattr(exc, "rc", None)
    code = getattr(rc, "value", rc)
    return isinstance(code, int) and code in _UNSUPPORTED_PROTOCOL


def _manual_ack(client: aiomqtt.Client) -> Any:
    paho = getattr(client, "_client", None)
    if paho is None or not hasattr(paho, "manual_ack_set") or not hasattr(paho, "ack"):
        raise RuntimeError("this aiomqtt has no paho client with manual ack; refusing to auto-acknowledge")
    paho.manual_ack_set(True)
    return paho
