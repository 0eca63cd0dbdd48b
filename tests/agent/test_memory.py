"""The memory model's pieces: sizes, the input budget, the byte-bounded queue and the limiter, and
the runtime's backpressure when the process is over ``limits.max_memory``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.config import load_config
from agent.memory import MIB, Budget, ByteQueue, MemoryLimiter, budget, parse_size, rss_bytes
from agent.runtime import Agent
from agent.sources.base import Chunk
from hushmetric.errors import ConfigError
from tests.agent.test_runtime import T, file_source, make_dir, signup


@pytest.mark.parametrize(
    ("text", "size"),
    [("65536", 65536), ("64k", 64 << 10), ("256MiB", 256 << 20), ("512M", 512 << 20), ("1GiB", 1 << 30),
     (" 2 gb ", 2 << 30), ("100B", 100)],
)  # fmt: skip
def test_sizes_parse_in_binary_multiples(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "1.5GiB", "-1M", "10 parsecs"])
def test_a_bad_size_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_the_input_budget_is_a_share_of_the_limit_within_bounds() -> None:
    assert budget(None) == Budget(4 * MIB, 2 * MIB)
    assert budget(64 * MIB) == Budget(4 * MIB, 2 * MIB)
    assert budget(16 * MIB) == Budget(MIB, MIB)  # never below one MiB: only throughput would suffer
    assert budget(1 << 40) == budget(None)  # a large limit does not grow the input in flight


def test_rss_is_read_from_the_process() -> None:
    assert 1 * MIB < rss_bytes() < 1 << 40


async def test_the_queue_blocks_producers_by_bytes_and_lets_one_oversize_item_in() -> None:
    queue: ByteQueue[str] = ByteQueue(10)
    await queue.put("a", 6)
    blocked = asyncio.create_task(queue.put("b", 6))  # 12 > 10: waits for room
    await asyncio.sleep(0)
    assert not blocked.done() and queue.qsize() == 1
    assert await queue.get() == "a"
    await blocked
    assert queue.queued_bytes == 6
    assert queue.get_nowait() == "b"
    await queue.put("huge", 1000)  # larger than the capacity, into an empty queue: passes alone
    assert queue.queued_bytes == 1000 and queue.get_nowait() == "huge"
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


async def test_a_shrunk_capacity_holds_producers_and_a_grown_one_wakes_them() -> None:
    queue: ByteQueue[int] = ByteQueue(100)
    queue.set_capacity(1)
    await queue.put(1, 10)
    waiting = asyncio.create_task(queue.put(2, 10))
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.set_capacity(100)
    await asyncio.wait_for(waiting, 5)
    assert queue.qsize() == 2


def test_the_limiter_throttles_only_past_the_soft_limit() -> None:
    rss = [50 * MIB]
    limiter = MemoryLimiter(100 * MIB, rss=lambda: rss[0])
    assert not limiter.check()
    rss[0] = 95 * MIB  # past 90 %
    assert limiter.check() and limiter.throttled and limiter.throttles == 1
    rss[0] = 80 * MIB
    assert not limiter.check() and not limiter.throttled
    assert not MemoryLimiter(None, rss=lambda: 1 << 50).check()  # no limit, no limiter


def test_a_bad_max_memory_names_the_key(tmp_path: Path) -> None:
    config = make_dir(tmp_path / "site")
    for value in ("lots", "1MiB"):  # not a size; below what the interpreter alone takes
        config.write_text(config.read_text().split("[limits]")[0] + f'[limits]\nmax_memory = "{value}"\n')
        with pytest.raises(ConfigError) as err:
            load_config(config)
        assert err.value.key == "limits.max_memory" and str(config) in str(err.value)
    config.write_text(config.read_text().split("[limits]")[0] + '[limits]\nmax_memory = "200MiB"\n')
    assert load_config(config).config.limits.max_memory_bytes == 200 << 20


class _Recording(Agent):
    groups: list[int]

    async def process(self, chunks: Sequence[Chunk]) -> None:
        self.groups.append(len(chunks))
        await super().process(chunks)


def test_over_the_memory_limit_input_flows_one_chunk_at_a_time_and_nothing_is_lost(tmp_path: Path) -> None:
    """Backpressure, not loss: with RSS held over the soft limit every group commit takes one chunk
    (the sources wait), and every event still reaches the journal and the release."""
    feed = tmp_path / "feed.jsonl"
    events = [signup(T + i % 3000, f"u{i % 500}", pad="x" * 300) for i in range(12_000)]  # ~4 MiB
    feed.write_text("".join(json.dumps(e) + "\n" for e in events))
    config = make_dir(tmp_path / "site", source=file_source(feed))

    def run(limit: str | None, rss: int) -> tuple[int, list[int], int]:
        text = config.read_text().split("[limits]")[0]
        config.write_text(text + (f'[limits]\nmax_memory = "{limit}"\n' if limit else ""))
        for old in (tmp_path / "site" / "state").glob("*"):
            old.unlink()
        agent = _Recording(load_config(config), clock=lambda: T + 10 * 3600)
        agent.groups = []
        agent.limiter = MemoryLimiter(agent.cfg.limits.max_memory_bytes, rss=lambda: rss)

        async def go() -> int:
            try:
                return (await agent.run_once(start=T, stop=T + 3600)).events
            finally:
                await agent.aclose()

        return asyncio.run(go()), agent.groups, agent.limiter.throttles

    free_events, free_groups, _ = run(None, 1 << 40)
    held_events, held_groups, throttles = run("64MiB", 1 << 40)
    assert free_events == held_events == len(events)
    assert max(free_groups) > 1  # without pressure, chunks are committed in groups
    assert set(held_groups) == {1} and throttles == len(held_groups)
