from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from agent.sources import Chunk, StdinSource


def line(i: int) -> bytes:
    return b'{"name":"e","ts":%d,"unit":"u"}\n' % i


async def test_reads_a_pipe_in_chunks_cut_at_newlines() -> None:
    r, w = os.pipe()
    payload = b"".join(line(i) for i in range(5000)) + b'{"name":"last","ts":1,"unit":"u"}'

    def writer() -> None:
        with os.fdopen(w, "wb") as out:
            for i in range(0, len(payload), 7777):
                out.write(payload[i : i + 7777])
                out.flush()

    thread = threading.Thread(target=writer)
    thread.start()
    with os.fdopen(r, "rb") as stream:
        src = StdinSource(stream, max_line_bytes=1000, read_size=8192)
        chunks = await asyncio.wait_for(_collect(src), 10)
    thread.join(5)
    assert all(c.data.endswith(b"\n") and c.source == "stdin" and c.ack is None for c in chunks)
    assert b"".join(chunks_data := [c.data for c in chunks]) == payload + b"\n"
    assert len(chunks_data) > 1


async def test_stops_cleanly_when_consumer_stops() -> None:
    r, w = os.pipe()
    os.write(w, line(1) * 10)
    with os.fdopen(r, "rb") as stream:
        it = StdinSource(stream, max_line_bytes=1000).chunks()
        first = await asyncio.wait_for(anext(it), 5)
        assert first.data.startswith(line(1))
        await it.aclose()
        os.close(w)  # lets the reader thread see EOF and end


async def _collect(src: StdinSource) -> list[Chunk]:
    return [c async for c in src.chunks()]


async def test_reader_thread_ends_when_consumer_stops_early(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    big.write_bytes(line(1) * 100_000)
    with big.open("rb") as stream:
        it = StdinSource(stream, max_line_bytes=1000, read_size=8192).chunks()
        await asyncio.wait_for(anext(it), 5)
        await asyncio.sleep(0.1)  # the reader fills the queue and waits for room
        await it.aclose()
        deadline = asyncio.get_running_loop().time() + 5
        while any(t.name == "hush-stdin" for t in threading.enumerate()):
            assert asyncio.get_running_loop().time() < deadline, "reader thread still running"
            await asyncio.sleep(0.02)
