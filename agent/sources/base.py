"""What every source yields, and the interface every source implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from agent.model import DeadLetter

__all__ = ["Chunk", "OffsetGetter", "Source"]

OffsetGetter = Callable[[str], "int | None"]
"""Committed offset of a source key (``journal.get_offset`` bound to the state connection)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Raw bytes from one source, plus how to make them durable at the source.

    - ``offset_key``/``offset``: for resumable sources (files), the position just past the last
      complete line in ``data``; the pipeline stores it with ``journal.set_offset`` in the same
      transaction as the events decoded from ``data``.
    - ``ack``: for sources that redeliver until told otherwise (MQTT QoS 1); the pipeline calls it
      from the event loop thread only after that transaction committed. It is idempotent and never
      raises; calling it late (after a reconnect) is harmless — the broker redelivers instead.
    - ``letters``: inputs the source itself refused (an OTLP data point without a privacy unit, an
      unparseable syslog frame); committed with the chunk's events like the decoder's dead letters,
      before ``ack``.
    """

    source: str
    data: bytes
    offset_key: str | None = None
    offset: int | None = None
    ack: Callable[[], None] | None = None
    letters: tuple[DeadLetter, ...] = ()


class Source(Protocol):
    """A stream of :class:`Chunk`. Finite sources end; live ones run until cancelled."""

    name: str

    def chunks(self) -> AsyncIterator[Chunk]: ...
