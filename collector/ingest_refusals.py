"""What the gRPC face keeps in memory so that junk costs no database write each. Pure, clock passed in.

:class:`RefusalBuffer` counts refusals that no verified key is behind (unknown keys, bad signatures,
requests that are not protobuf, failed ``Enroll`` calls) and writes them with one
:meth:`~collector.store.Store.record_refusal` per (day, reason) when flushed — the server flushes
every few seconds and at shutdown. Counts and the coalesced audit entry (once per reason per
minute) are the same as if each had been written at once; only their arrival is delayed.

:class:`FailureLimiter` is a token bucket per peer host for failed enrollments: a client that keeps
presenting bad tokens is told to wait, and is not even checked, until its bucket refills.

Both maps are bounded, so no stream of requests can grow them without limit.
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec

from collector.store import UNATTRIBUTED, Refusal, Store, day_of

__all__ = ["FailureLimiter", "RefusalBuffer", "peer_host"]


class _Pending(msgspec.Struct):
    first: float  # when the first of them was refused: the day and the audit minute come from it
    sample: Refusal  # the first of them, for the audit entry's details
    count: int = 1


class RefusalBuffer:
    """Unattributed refusals by (day, reason), at most ``max_entries`` of them pending. Reasons are
    the collector's own fixed vocabulary, so the bound is never reached in practice; if it were,
    further new (day, reason) pairs are counted in :attr:`dropped` rather than grow the map."""

    def __init__(self, *, max_entries: int = 256) -> None:
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._max = max_entries
        self.dropped = 0

    def add(self, refusal: Refusal, now: float) -> None:
        if refusal.tenant != UNATTRIBUTED:
            raise ValueError("only refusals no verified key is behind are buffered")
        key = (day_of(now), refusal.reason)
        pending = self._pending.get(key)
        if pending is not None:
            pending.count += 1
        elif len(self._pending) < self._max:
            self._pending[key] = _Pending(now, refusal)
        else:
            self.dropped += 1

    def pending(self) -> int:
        """How many refusals wait for the next flush."""
        return sum(p.count for p in self._pending.values())

    async def flush(self, store: Store) -> int:
        """Write what is pending, one store call per (day, reason); returns how many were written.
        Raises what the store raises (Unavailable) and keeps what was not written for next time."""
        written = 0
        for key in list(self._pending):
            pending = self._pending[key]
            await store.record_refusal(pending.sample, now=pending.first, count=pending.count)
            del self._pending[key]
            written += pending.count
        return written


def peer_host(peer: str) -> str:
    """The host of a gRPC peer string (``ipv4:1.2.3.4:5678``, ``ipv6:[::1]:5678``), without the port."""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


class FailureLimiter:
    """A token bucket per key (peer host): ``burst`` failures at once, then ``per_minute`` a minute.
    At most ``max_keys`` buckets are kept; the least recently used one is forgotten first."""

    def __init__(self, *, burst: int = 10, per_minute: float = 10.0, max_keys: int = 4096) -> None:
        self._burst = float(burst)
        self._rate = per_minute / 60.0
        self._max = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self._burst, now))
        return min(self._burst, tokens + max(0.0, now - at) * self._rate)

    def retry_after(self, key: str, now: float) -> float | None:
        """None when ``key`` may try now, else the seconds until it may."""
        level = self._level(key, now)
        return None if level >= 1.0 else (1.0 - level) / self._rate

    def failed(self, key: str, now: float) -> None:
        """Charge one failure to ``key``."""
        self._buckets[key] = (max(0.0, self._level(key, now) - 1.0), now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
