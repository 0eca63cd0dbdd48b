from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from agent.sources import Chunk, FileSource


def line(i: int) -> bytes:
    return b'{"name":"e","ts":%d,"unit":"u"}\n' % i


def source(path: Path, *, follow: bool, offsets: dict[str, int] | None = None, **kw: int) -> FileSource:
    committed = offsets if offsets is not None else {}
    return FileSource(
        path,
        follow=follow,
        offsets=committed.get,
        max_line_bytes=kw.pop("max_line", 1000),
        poll_interval=0.02,
        **kw,
    )


async def take(it: AsyncIterator[Chunk]) -> Chunk:
    return await asyncio.wait_for(anext(it), 5)


async def drain(src: FileSource) -> list[Chunk]:
    return [c async for c in src.chunks()]


async def test_reads_to_end_and_resumes_from_committed_offset(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(line(i) for i in range(1000)))
    src = source(path, follow=False, read_size=4096)
    chunks = await drain(src)
    assert b"".join(c.data for c in chunks) == path.read_bytes()
    assert all(c.data.endswith(b"\n") and c.offset_key == src.key for c in chunks)
    assert chunks[-1].offset == path.stat().st_size
    st = path.stat()
    assert src.key == f"file:{path.absolute()}@{st.st_dev}:{st.st_ino}"

    # Only the first chunks were committed before a crash: resume right after them.
    committed = {src.key: chunks[2].offset or 0}
    with path.open("ab") as f:
        f.write(line(1000))
    again = await drain(source(path, follow=False, offsets=committed, read_size=4096))
    assert b"".join(c.data for c in chunks[:3] + again) == path.read_bytes()


async def test_partial_last_line_waits_while_following(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(line(1) + line(2)[:10])
    it = source(path, follow=True).chunks()
    first = await take(it)
    assert first.data == line(1)
    assert first.offset == len(line(1))
    with path.open("ab") as f:
        f.write(line(2)[10:] + line(3))
    second = await take(it)
    assert second.data == line(2) + line(3)
    assert second.offset == path.stat().st_size
    await it.aclose()


async def test_without_follow_a_final_unterminated_line_is_emitted(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(line(1) + line(2).rstrip())
    chunks = await drain(source(path, follow=False))
    assert b"".join(c.data for c in chunks) == line(1) + line(2)
    assert chunks[-1].offset == path.stat().st_size


async def test_follows_appends_truncation_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(line(1) + line(2))
    it = source(path, follow=True).chunks()
    assert (await take(it)).data == line(1) + line(2)
    with path.open("ab") as f:
        f.write(line(3))
    assert (await take(it)).data == line(3)

    path.write_bytes(line(4))  # truncated in place (copytruncate)
    chunk = await take(it)
    assert chunk.data == line(4)
    assert chunk.offset == len(line(4))

    with path.open("ab") as f:
        f.write(line(5))
    os.replace(path, tmp_path / "in.jsonl.1")  # rotated: the old file's rest is read first
    path.write_bytes(line(6))
    assert (await take(it)).data == line(5)
    chunk = await take(it)
    assert chunk.data == line(6)
    assert chunk.offset == len(line(6))
    assert chunk.offset_key == f"file:{path.absolute()}@{path.stat().st_dev}:{path.stat().st_ino}"
    await it.aclose()


async def test_waits_for_a_missing_file_when_following(tmp_path: Path) -> None:
    path = tmp_path / "later.jsonl"
    assert await drain(source(path, follow=False)) == []
    it = source(path, follow=True).chunks()
    task = asyncio.ensure_future(take(it))
    await asyncio.sleep(0.1)
    path.write_bytes(line(1))
    assert (await task).data == line(1)
    await it.aclose()


async def test_committed_offset_past_the_end_restarts(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(line(1))
    st = path.stat()
    key = f"file:{path.absolute()}@{st.st_dev}:{st.st_ino}"
    chunks = await drain(source(path, follow=False, offsets={key: 10_000}))
    assert [c.data for c in chunks] == [line(1)]


async def test_file_replaced_while_down_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(line(1) + line(2))
    first = await drain(source(path, follow=False))
    committed = {first[-1].offset_key or "": first[-1].offset or 0}
    os.replace(path, tmp_path / "in.jsonl.1")
    path.write_bytes(line(3) + line(4) + line(5))  # longer than what was read of the old file
    again = await drain(source(path, follow=False, offsets=committed))
    assert b"".join(c.data for c in again) == line(3) + line(4) + line(5)


async def test_over_long_line_is_cut_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(line(1) + b"x" * 5000 + b"\n" + line(2))
    chunks = await drain(source(path, follow=False, max_line=100, read_size=64))
    data = b"".join(c.data for c in chunks)
    assert data.count(b"\n") == 3
    assert data.startswith(line(1))
    assert data.endswith(line(2))
    assert b"x" * 101 + b"\n" in data
    assert b"x" * 102 not in data
    assert chunks[-1].offset == path.stat().st_size
