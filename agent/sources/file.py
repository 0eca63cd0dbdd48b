"""JSON-lines file source with a committed byte offset.

Reads large blocks (1 MiB) and cuts each at its last newline, so a chunk only ever holds complete
lines; a partial last line waits for the writer to finish it. The chunk's ``offset`` is the byte
position just past its last line; the pipeline commits it with the chunk's events, and the next
start resumes there. The ``offset_key`` names the file by path *and* identity,
``"file:<absolute path>@<device>:<inode>"``: a file rotated while the agent was down is a new file
with no committed offset and is read from its start (the alternative, a path-only key, would skip as
many bytes of the new file as were read of the old one — a silent loss).

- ``follow`` (and not ``once``): at the end of the file, poll for appends. A file that shrank below
  the read position was truncated: reading restarts at 0. A path that now names another file (new
  inode) was rotated: the old file is read to its end, then the new one from 0.
- Without follow: the file is read to its end once; a last line without a newline is emitted too,
  since nobody is going to finish it.
- A committed offset beyond the current size (the file was replaced while the agent was down)
  restarts at 0, with a warning.
- A line longer than ``max_line_bytes`` is not held in memory: its first ``max_line_bytes + 1`` bytes
  are emitted as one line (the decoder refuses it as ``too_large``) and the rest is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from agent.sources.base import Chunk, OffsetGetter

__all__ = ["FileSource"]

log = logging.getLogger(__name__)

READ_SIZE = 1 << 20


class FileSource:
    def __init__(
        self,
        path: Path,
        *,
        follow: bool,
        offsets: OffsetGetter,
        max_line_bytes: int,
        poll_interval: float = 0.25,
        read_size: int = READ_SIZE,
    ) -> None:
        self.path = path.absolute()
        self.name = f"file:{self.path}"
        self.key: str | None = None  # offset key of the file being read, once it is open
        self.follow = follow
        self._offsets = offsets
        self._max_line = max_line_bytes
        self._poll = poll_interval
        self._read_size = max(read_size, 1)

    async def chunks(self) -> AsyncIterator[Chunk]:
        while True:
            stream = await self._open()
            if stream is not None:
                break
            if not self.follow:
                log.warning("input file %s does not exist", self.path)
                return
            await asyncio.sleep(self._poll)
        try:
            key = self._key_of(stream)
            start = self._offsets(key) or 0
            size = os.fstat(stream.fileno()).st_size
            if start > size:
                log.warning("%s is shorter than its committed offset; reading it from the start", self.path)
                start = 0
            stream.seek(start)
            pos = start  # position just past the last emitted line
            pending = b""  # bytes read after pos, without a newline yet
            skipping = False  # inside an over-long line, dropping bytes until its newline
            while True:
                block = await asyncio.to_thread(stream.read, self._read_size)
                if block:
                    if skipping:
                        cut = block.find(b"\n")
                        if cut < 0:
                            pos += len(block)
                            continue
                        pos += cut + 1
                        block = block[cut + 1 :]
                        skipping = False
                    data = pending + block
                    cut = data.rfind(b"\n")
                    if cut >= 0:
                        pending = data[cut + 1 :]
                        pos += cut + 1
                        yield Chunk(self.name, data[: cut + 1], key, pos)
                    else:
                        pending = data
                    if len(pending) > self._max_line:
                        pos += len(pending)
                        yield Chunk(self.name, pending[: self._max_line + 1] + b"\n", key, pos)
                        pending = b""
                        skipping = True
                    continue
                # End of file.
                if not self.follow:
                    if pending and not skipping:
                        pos += len(pending)
                        yield Chunk(self.name, pending + b"\n", key, pos)
                    return
                replaced = await self._replaced(stream, pos + len(pending))
                if replaced is None:
                    await asyncio.sleep(self._poll)
                    continue
                stream.close()
                stream = replaced
                log.info("%s was truncated or rotated; reading it from the start", self.path)
                key = self._key_of(stream)
                pos, pending, skipping = 0, b"", False
        finally:
            stream.close()

    def _key_of(self, stream: BinaryIO) -> str:
        st = os.fstat(stream.fileno())
        self.key = f"{self.name}@{st.st_dev}:{st.st_ino}"
        return self.key

    async def _open(self) -> BinaryIO | None:
        try:
            return await asyncio.to_thread(self.path.open, "rb")
        except FileNotFoundError:
            return None

    async def _replaced(self, stream: BinaryIO, read_to: int) -> BinaryIO | None:
        """A fresh stream if the path was truncated below ``read_to`` or now names another file."""
        try:
            st = await asyncio.to_thread(os.stat, self.path)
        except FileNotFoundError:
            return None  # rotated away, the new file is not there yet
        mine = os.fstat(stream.fileno())
        if (st.st_ino, st.st_dev) != (mine.st_ino, mine.st_dev):
            if mine.st_size > read_to:
                return None  # the old file still has lines for us: drain it first
            return await self._open()
        if st.st_size < read_to:
            return await self._open()
        return None
