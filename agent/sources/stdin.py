"""Standard input as a source: binary reads of up to 1 MiB, cut at the last newline.

A dedicated daemon thread does the blocking reads (stdin may be a pipe, a terminal or a regular
file, and a blocked read cannot be cancelled), handing chunks over through a small bounded queue so
a slow pipeline slows the reader down. No offsets, no acks: what is read and not yet committed is
lost on a crash, as with any pipe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
import threading
from collections.abc import AsyncIterator
from typing import BinaryIO

from agent.sources.base import Chunk

__all__ = ["StdinSource"]

READ_SIZE = 1 << 20
_EOF = b""


class StdinSource:
    name = "stdin"

    def __init__(
        self, stream: BinaryIO | None = None, *, max_line_bytes: int, read_size: int = READ_SIZE
    ) -> None:
        self._stream = stream
        self._max_line = max_line_bytes
        self._read_size = read_size

    async def chunks(self) -> AsyncIterator[Chunk]:
        stream = self._stream if self._stream is not None else sys.stdin.buffer
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue(maxsize=4)
        stop = threading.Event()
        thread = threading.Thread(
            target=self._reader, args=(stream, loop, queue, stop), name="hush-stdin", daemon=True
        )
        thread.start()
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                if item is _EOF:
                    return
                yield Chunk(self.name, item)
        finally:
            stop.set()
            while not queue.empty():  # unblock a reader waiting for room, so it sees ``stop`` and ends
                queue.get_nowait()

    def _reader(
        self,
        stream: BinaryIO,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[bytes | BaseException],
        stop: threading.Event,
    ) -> None:
        def put(item: bytes | BaseException) -> bool:
            if stop.is_set():
                return False
            try:
                asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
            except (RuntimeError, asyncio.CancelledError, concurrent.futures.CancelledError):
                return False  # the loop is gone or the consumer stopped
            return True

        read = getattr(stream, "read1", stream.read)
        pending = b""
        skipping = False
        try:
            while not stop.is_set():
                block = read(self._read_size)
                if not block:
                    break
                if skipping:
                    cut = block.find(b"\n")
                    if cut < 0:
                        continue
                    block, skipping = block[cut + 1 :], False
                data = pending + block
                cut = data.rfind(b"\n")
                if cut >= 0:
                    pending = data[cut + 1 :]
                    if not put(data[: cut + 1]):
                        return
                else:
                    pending = data
                if len(pending) > self._max_line:
                    if not put(pending[: self._max_line + 1] + b"\n"):
                        return
                    pending, skipping = b"", True
            if pending and not skipping and not put(pending + b"\n"):
                return
        except Exception as exc:  # handed to the consumer, which re-raises it
            put(exc)
            return
        with contextlib.suppress(Exception):
            put(_EOF)
