"""The agent's memory model: what its memory is a function of, and the limiter behind ``limits.max_memory``.

Peak memory of the agent process is, by construction, a sum of terms set by configuration — never by
how much input arrives (measured with ``tracemalloc`` and peak RSS, see ``bench/bench_memory.py``):

- **code**: the interpreter and the modules the running mode imports (about 37 MiB for the idle
  daemon with an MQTT source; OpenDP's native library about 30 MiB more from the first window
  released; gRPC and protobuf about 20 MiB more, only with a collector or an OTLP source; Hyperscan
  about 13 MiB with ``limits.scanner = "hyperscan"``);
- **input in flight**: raw chunks waiting between the sources and the ingest loop, at most
  :attr:`Budget.queue_bytes` (one chunk more when a single chunk is larger), plus one group commit of
  at most :attr:`Budget.group_bytes` of input, decoded and redacted (Python objects take about five
  times the JSON they came from);
- **bounding state**: per open window and metric, at most units × ``max_partitions`` (unit,
  partition) entries, about 250 bytes each (docs/privacy.md), plus the period's bounder for metrics
  bounded per period. Unit ids are interned and partition keys shared, so an entry holds no copy of
  either. It grows with the unit population of a window, not with the number of events; there is
  no global cap, since a cap would let the first units to arrive decide which values survive (the
  privacy issue forbids that).

``limits.max_memory`` works like the OpenTelemetry Collector's memory limiter: the ingest loop reads
the process's resident set size before each group commit; past the soft limit (90 % of
``max_memory``) it collects garbage, and if that is not enough it shrinks the input in flight to a
single chunk — sources block on the queue (MQTT leaves messages with the broker, files stop reading)
— until RSS is back under the soft limit. Input is never dropped and never refused: the pipeline keeps
moving one chunk at a time, because the bounding state only shrinks when windows close, and windows
close as input moves the watermark on. A limit below what the bounding state needs is reported (one
warning) rather than turned into a stall.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import resource
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Generic, NamedTuple, TypeVar

__all__ = ["Budget", "ByteQueue", "MemoryLimiter", "budget", "parse_size", "rss_bytes"]

log = logging.getLogger("hush.agent")
T = TypeVar("T")

MIB = 1 << 20
QUEUE_BYTES = 4 * MIB  # raw input waiting for the ingest loop, without a limit
GROUP_BYTES = 2 * MIB  # input per group commit (one journal transaction), without a limit
SOFT_SHARE = 0.9  # the limiter acts past this share of max_memory

_SIZE = re.compile(r"\s*([0-9]+)\s*([KMGT]i?B?|B)?\s*", re.IGNORECASE)
_FACTORS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes in ``"256MiB"``, ``"1GiB"``, ``"512M"``, ``"64k"`` or a bare number of bytes.

    Binary multiples throughout (``M`` = ``MiB``): memory is counted in pages, not in decimal units.
    """
    m = _SIZE.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a size like 256MiB, 1GiB or 65536")
    unit = (m.group(2) or "").lower()[:1]
    return int(m.group(1)) * _FACTORS[unit]


class Budget(NamedTuple):
    queue_bytes: int  # raw input queued between sources and the ingest loop
    group_bytes: int  # raw input taken into one group commit


def budget(max_memory: int | None) -> Budget:
    """The input-in-flight budget for a memory limit: a small share of it, within fixed bounds.

    Without a limit, the fixed defaults. With one, 1/16 of it queued and 1/32 per group (decoded
    objects take about five times their input), but never below 1 MiB each: smaller groups only cost
    throughput (one transaction each) without saving memory that matters.
    """
    if max_memory is None:
        return Budget(QUEUE_BYTES, GROUP_BYTES)
    return Budget(
        max(MIB, min(QUEUE_BYTES, max_memory // 16)),
        max(MIB, min(GROUP_BYTES, max_memory // 32)),
    )


_STATM = Path("/proc/self/statm")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """The resident set size of this process now (Linux ``/proc``); elsewhere its peak so far."""
    try:
        return int(_STATM.read_bytes().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if os.uname().sysname == "Darwin" else peak * 1024


class MemoryLimiter:
    """Decides, before each group commit, whether input must be throttled to one chunk at a time.

    ``rss`` is passed in (default :func:`rss_bytes`) so tests can drive it without allocating.
    """

    def __init__(self, max_memory: int | None, *, rss: Callable[[], int] = rss_bytes) -> None:
        self.limit = max_memory
        self.soft = None if max_memory is None else int(max_memory * SOFT_SHARE)
        self._rss = rss
        self.throttled = False  # the last check throttled input
        self.throttles = 0  # checks that throttled, since start (status, metrics, tests)
        self._warned = False

    def check(self) -> bool:
        """True when input must be throttled: RSS past the soft limit even after a garbage collection."""
        if self.soft is None:
            return False
        if self._rss() > self.soft:
            gc.collect()  # cycles among released windows' objects are freed by the cyclic GC only
            if self._rss() > self.soft:
                self.throttles += 1
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "memory over the soft limit: taking input one chunk at a time",
                        extra={"fields": {"rss_mib": self._rss() // MIB, "limit_mib": self.soft // MIB}},
                    )
                self.throttled = True
                return True
        if self.throttled:
            log.info("memory back under the soft limit: input flows again")
        self.throttled = False
        return False


class ByteQueue(Generic[T]):
    """An asyncio queue bounded by the bytes of its items rather than their number.

    ``put`` waits while the queued bytes plus the new item's would exceed ``capacity``, except into an
    empty queue: one item larger than the capacity (an MQTT payload up to ``max_payload_bytes``) still
    passes, alone. ``capacity`` may change at any time (the memory limiter shrinks it); waiting
    producers are woken when it grows. ``None`` marks the end of input and takes no room.
    """

    def __init__(self, capacity: int) -> None:
        self._items: deque[tuple[T | None, int]] = deque()
        self._bytes = 0
        self._capacity = max(1, capacity)
        self._room = asyncio.Event()  # set when an item left or the capacity changed
        self._ready = asyncio.Event()  # set when an item arrived

    @property
    def capacity(self) -> int:
        return self._capacity

    def set_capacity(self, capacity: int) -> None:
        self._capacity = max(1, capacity)
        self._room.set()

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def put(self, item: T | None, size: int = 0) -> None:
        while self._items and self._bytes + size > self._capacity:
            self._room.clear()
            await self._room.wait()
        self._items.append((item, size))
        self._bytes += size
        self._ready.set()

    async def get(self) -> T | None:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self.get_nowait()

    def get_nowait(self) -> T | None:
        """The next item; ``asyncio.QueueEmpty`` when there is none."""
        if not self._items:
            raise asyncio.QueueEmpty
        item, size = self._items.popleft()
        self._bytes -= size
        self._room.set()
        return item
