"""Aggregation throughput: ``WindowAggregator.add`` against a typed msgspec JSON decode of the same events.

1 M synthetic, already redacted Events over 2,000 units and 6 hours, taken by a policy of five
metrics (a count by a declared dimension, a mean, a histogram, a count by an open dimension, distinct
units — each event feeds three to five of them). The baseline decodes the same events, JSON-encoded
as arrays of 10,000, into ``list[Event]`` with ``msgspec.json`` — the cheapest typed step the
pipeline has. Printed as a ratio (aggregate events/s divided by decode events/s); the release of the
resulting windows is timed too, for context. No assertions.
Run: ``python -m bench.bench_aggregate [N]``.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

import msgspec

from agent.aggregate import WindowAggregator
from agent.model import Event
from agent.policy import AttrRule, Budget, Metric, Policy
from agent.release import release_window

__all__ = ["bench_aggregate", "main"]

BATCH = 10_000
POLICY = Policy(
    version=1,
    name="bench",
    budget=Budget(rho=1.0),
    attrs={"os": AttrRule(), "page": AttrRule()},
    metrics=[
        Metric(name="views", events=["view"], stat="count", dims={"os": ["linux", "mac", "win"]},
               max_contributions=5),
        Metric(name="latency", events=["view", "click"], stat="mean", lower=0, upper=2000,
               max_contributions=5),
        Metric(name="latency_h", events=["view"], stat="histogram", lower=0, upper=2000,
               buckets=[0, 50, 100, 200, 500, 1000, 2000], max_contributions=5),
        Metric(name="pages", events=["view", "click"], stat="count", dims={"page": "open"}, max_partitions=3,
               max_contributions=3),
        Metric(name="active", events=["view", "click", "login"], stat="distinct_units"),
    ],
)  # fmt: skip


def synthetic(n: int, seed: int = 7) -> list[Event]:
    rnd = random.Random(seed)
    names = ["view"] * 6 + ["click"] * 3 + ["login", "other"]
    oses = ["linux", "mac", "win", "ios"]
    t0 = 1_767_571_200.0
    return [
        Event(
            rnd.choice(names),
            t0 + i * (6 * 3600 / n),
            f"user-{rnd.randrange(2000)}",
            value=rnd.expovariate(1 / 150),
            attrs={"os": rnd.choice(oses), "page": f"/p/{int(rnd.paretovariate(1.2)) % 500}"},
        )
        for i in range(n)
    ]


def _best(fn: Callable[[], None], repeat: int = 3) -> tuple[float, float]:
    """Best wall-clock and best CPU time of ``repeat`` runs (CPU time is steadier on a busy machine)."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - started_cpu)
    return wall, cpu


def bench_aggregate(n: int = 1_000_000) -> dict[str, float]:
    events = synthetic(n)
    batches = [events[i : i + BATCH] for i in range(0, n, BATCH)]
    encoded = [msgspec.json.encode(b) for b in batches]
    decoder = msgspec.json.Decoder(list[Event])

    def decode() -> None:
        for blob in encoded:
            decoder.decode(blob)

    aggregators: list[WindowAggregator] = []

    def aggregate() -> None:
        agg = WindowAggregator(POLICY)
        for batch in batches:
            agg.add(batch)
        aggregators.append(agg)

    t_decode, cpu_decode = _best(decode)
    t_add, cpu_add = _best(aggregate)
    agg = aggregators[-1]
    windows = agg.flush()
    started = time.perf_counter()
    rows = sum(len(release_window(w, POLICY).rows) for w in windows)
    t_release = time.perf_counter() - started
    return {
        "events": n,
        "decode_eps": n / t_decode,
        "add_eps": n / t_add,
        "ratio": t_decode / t_add,
        "cpu_ratio": cpu_decode / cpu_add,
        "windows": len(windows),
        "rows": rows,
        "release_ms_per_window": 1000 * t_release / max(1, len(windows)),
        "late": agg.stats.late,
        "contributions_dropped": agg.stats.contributions_dropped,
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    r = bench_aggregate(int(args[0]) if args else 1_000_000)
    print(f"events                      {r['events']:>12,.0f}")
    print(f"msgspec.json decode         {r['decode_eps']:>12,.0f} events/s (baseline)")
    print(f"WindowAggregator.add        {r['add_eps']:>12,.0f} events/s")
    print(f"ratio add / decode          {r['ratio']:>12.3f} (wall clock)")
    print(f"ratio add / decode          {r['cpu_ratio']:>12.3f} (CPU time)")
    print(f"release                     {r['release_ms_per_window']:>12.1f} ms per window "
          f"({r['windows']:.0f} windows, {r['rows']:.0f} rows)")  # fmt: skip
    print(f"contributions dropped       {r['contributions_dropped']:>12,.0f}")


if __name__ == "__main__":
    main()
