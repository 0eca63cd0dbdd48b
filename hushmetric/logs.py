"""Structured logging for both daemons: plain or JSON lines on stderr.

Log calls pass facts as ``extra={"fields": {...}}``; values are ids, counts and reasons — never raw
event content, keys or tokens.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec

__all__ = ["setup_logging"]

_encoder = msgspec.json.Encoder()


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            doc["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return _encoder.encode(doc).decode()


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info and record.exc_info[1] is not None:
            line += f" error={type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return line


def setup_logging(fmt: str = "plain", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # grpc and asyncio chatter is not ours to print at info level
    for noisy in ("grpc", "asyncio", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
