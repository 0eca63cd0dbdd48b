"""Syslog receiver: RFC 5424 and RFC 3164 messages over TCP (octet-counted or newline-framed) and UDP.

Each message becomes one event:
- fields ``hostname``, ``app_name``, ``procid``, ``msgid``, ``facility``, ``severity`` and, for every
  RFC 5424 structured-data parameter, ``SDID.PARAM`` (e.g. ``origin.ip``, ``meta@32473.user``);
- ``name`` is the field named by ``name_field`` (default ``app_name``), else ``default_name``;
  ``unit`` is the field named by ``unit_field`` (default ``hostname``). A message without its unit
  field (or without a name) is dead-lettered (``missing``): no privacy unit, no bound;
- ``ts``: the RFC 5424 timestamp; RFC 3164 stamps carry no year or zone: they are read as UTC in the
  current year (the previous year if that lands more than a day ahead);  ``-`` or none: receive time;
- ``attrs``: the other fields, plus the free text as ``message_attribute`` — all of them still go
  through the policy's redaction (undeclared attributes dropped, text scanned for PII).

Durability: syslog has no acknowledgement, so TCP uses the only lever it has — a connection's next
bytes are not read before the chunk holding its previous ones is committed (the ``ack``), so a busy
agent pushes back through TCP flow control instead of buffering. What the kernel buffers when the
agent dies is lost, as with any syslog receiver; senders that need more use RELP or a disk queue.
UDP is fire-and-forget: datagrams arriving while ``max_pending`` chunks wait are dropped and counted
(``dropped``). A frame over ``max_message_bytes`` is dead-lettered (``too_large``) and skipped
without buffering it.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from agent import deadletter
from agent.model import AttrValue, DeadLetter
from agent.sources.base import Chunk
from hushmetric.timefmt import parse_rfc3339

__all__ = ["Framer", "ParseError", "SyslogFields", "SyslogSource", "parse_message", "to_chunk_parts"]

log = logging.getLogger(__name__)

READ_SIZE = 64 << 10
MAX_PENDING = 64  # chunks waiting for the pipeline
_DIGITS = b"0123456789"
_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}
_RFC3164_TS = re.compile(r"^([A-Z][a-z]{2}) ([ 0-3]?\d) (\d\d):(\d\d):(\d\d) ")
_SD_NAME = re.compile(r"[^= \]\"]{1,32}")


@dataclass(frozen=True, slots=True)
class SyslogFields:
    """Which fields name an event and its privacy unit; built from :class:`agent.config.SyslogSource`."""

    name_field: str = "app_name"
    unit_field: str = "hostname"
    default_name: str | None = None
    message_attribute: str = "message"
    # Keys the dead letters' digests (agent.deadletter.digest_key of the site secret); a random
    # per-process key when none is given, so a digest is never an unkeyed hash of the input.
    digest_key: bytes = field(default_factory=lambda: os.urandom(32), repr=False)


class ParseError(Exception):
    """A frame that is not syslog at all; the message names the problem, never the content."""


@dataclass(slots=True)
class Message:
    ts: float | None
    fields: dict[str, AttrValue]
    text: str


# -- framing (TCP) ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Framer:
    """Cuts a TCP byte stream into frames: RFC 6587 octet counting (``LEN SP MSG``) when a frame starts
    with a digit, else non-transparent framing (one message per line). Bounded: a frame over ``limit``
    is reported as its size (an ``int``) and skipped without being held in memory."""

    limit: int
    _buf: bytearray = field(default_factory=bytearray)
    _skip: int = 0  # bytes of an oversized octet-counted frame still to drop
    _skip_line: bool = False  # inside an oversized line, dropping up to its newline

    def feed(self, data: bytes) -> list[bytes | int]:
        buf = self._buf
        buf += data
        out: list[bytes | int] = []
        pos, end = 0, len(buf)
        while pos < end:
            if self._skip:
                n = min(self._skip, end - pos)
                pos += n
                self._skip -= n
                continue
            if self._skip_line:
                cut = buf.find(b"\n", pos)
                if cut < 0:
                    pos = end
                    break
                pos = cut + 1
                self._skip_line = False
                continue
            if buf[pos] in b"\r\n\x00":
                pos += 1
                continue
            if buf[pos] in _DIGITS:
                sp = buf.find(b" ", pos, pos + 11)
                head = buf[pos : sp if sp >= 0 else min(end, pos + 11)]
                if head.isdigit():
                    if sp < 0:
                        if len(head) < 10 and pos + len(head) == end:
                            break  # the length prefix is not complete yet
                    else:
                        n = int(head)
                        start = sp + 1
                        if n > self.limit:
                            out.append(n)
                            pos = start
                            self._skip = n
                            continue
                        if end - start < n:
                            break
                        out.append(bytes(buf[start : start + n]))
                        pos = start + n
                        continue
            cut = buf.find(b"\n", pos)
            if cut < 0:
                if end - pos > self.limit:
                    out.append(end - pos)
                    pos = end
                    self._skip_line = True
                break
            frame = bytes(buf[pos:cut]).rstrip(b"\r")
            out.append(frame if len(frame) <= self.limit else len(frame))
            pos = cut + 1
        del buf[:pos]
        return out

    def close(self) -> list[bytes | int]:
        """The last frame of a stream that ended without its newline."""
        rest = bytes(self._buf).strip(b"\r\n\x00")
        self._buf.clear()
        if not rest or self._skip or self._skip_line:
            return []
        return [rest if len(rest) <= self.limit else len(rest)]


# -- parsing ------------------------------------------------------------------------------------------


def _pri(text: str) -> tuple[int, str]:
    if not text.startswith("<"):
        return 13, text  # RFC 3164 4.3.3: no PRI means user.notice
    close = text.find(">", 1, 5)
    digits = text[1:close] if close > 0 else ""
    if not digits.isdigit() or int(digits) > 191:
        raise ParseError("bad PRI")
    return int(digits), text[close + 1 :]


def _word(text: str) -> tuple[str, str]:
    head, _, rest = text.partition(" ")
    return head, rest


def _structured(text: str) -> tuple[dict[str, AttrValue], str]:
    """RFC 5424 STRUCTURED-DATA at the start of ``text`` → (``SDID.PARAM`` fields, the rest)."""
    if text.startswith("-"):
        return {}, text[2:] if text.startswith("- ") else text[1:]
    fields: dict[str, AttrValue] = {}
    pos = 0
    if not text.startswith("["):
        raise ParseError("bad STRUCTURED-DATA")
    while pos < len(text) and text[pos] == "[":
        m = _SD_NAME.match(text, pos + 1)
        if m is None:
            raise ParseError("bad SD-ID")
        sdid = m.group()
        pos = m.end()
        while True:
            if pos >= len(text):
                raise ParseError("unterminated SD-ELEMENT")
            if text[pos] == "]":
                pos += 1
                break
            if text[pos] != " ":
                raise ParseError("bad SD-PARAM")
            m = _SD_NAME.match(text, pos + 1)
            if m is None or text[m.end() : m.end() + 2] != '="':
                raise ParseError("bad SD-PARAM")
            name = m.group()
            pos = m.end() + 2
            value: list[str] = []
            while True:
                if pos >= len(text):
                    raise ParseError("unterminated SD-PARAM value")
                ch = text[pos]
                if ch == "\\" and pos + 1 < len(text) and text[pos + 1] in '"\\]':
                    value.append(text[pos + 1])
                    pos += 2
                elif ch == '"':
                    pos += 1
                    break
                else:
                    value.append(ch)
                    pos += 1
            fields[f"{sdid}.{name}"] = "".join(value)
    rest = text[pos:]
    return fields, rest[1:] if rest.startswith(" ") else rest


def _nil(value: str) -> str | None:
    return None if value in ("-", "") else value


def _rfc3164_ts(match: re.Match[str], now: float) -> float | None:
    month = _MONTHS.get(match.group(1))
    if month is None:
        return None
    year = datetime.fromtimestamp(now, UTC).year
    try:
        day, hour, minute, second = (int(match.group(i)) for i in range(2, 6))
        ts = datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()
        if ts > now + 86400:  # "Dec 31" received on Jan 1st
            ts = datetime(year - 1, month, day, hour, minute, second, tzinfo=UTC).timestamp()
    except ValueError:  # Feb 30, 25:00:00 — or Feb 29 of the previous year
        return None
    return ts


def parse_message(frame: bytes, *, now: float) -> Message:
    """One syslog frame → :class:`Message`. Raises :class:`ParseError` only for a bad PRI or SD."""
    text = frame.decode("utf-8", errors="replace")
    pri, rest = _pri(text)
    fields: dict[str, AttrValue] = {"facility": pri >> 3, "severity": pri & 7}
    if rest.startswith("1 "):  # RFC 5424
        stamp, rest = _word(rest[2:])
        try:
            ts: float | None = None if stamp == "-" else parse_rfc3339(stamp)
        except ValueError:
            raise ParseError("bad RFC 5424 TIMESTAMP") from None
        for name in ("hostname", "app_name", "procid", "msgid"):
            word, rest = _word(rest)
            if (value := _nil(word)) is not None:
                fields[name] = value
        sd, rest = _structured(rest)
        fields.update(sd)
        return Message(ts, fields, rest.removeprefix("\ufeff"))
    # RFC 3164, as lenient as the RFC asks: "TIMESTAMP HOSTNAME TAG[PID]: MSG", each part optional.
    ts = None
    if (match := _RFC3164_TS.match(rest)) is not None and (ts := _rfc3164_ts(match, now)) is not None:
        rest = rest[match.end() :]
        host, after = _word(rest)
        if host and ":" not in host and "[" not in host:
            fields["hostname"] = host
            rest = after
    tag = re.match(r"([^\s:\[\]]{1,48})(?:\[([^\]\s]{1,32})\])?: ?", rest)
    if tag is not None:
        fields["app_name"] = tag.group(1)
        if tag.group(2):
            fields["procid"] = tag.group(2)
        rest = rest[tag.end() :]
    return Message(ts, fields, rest)


class _Line(msgspec.Struct, gc=False):
    name: str
    ts: float
    unit: str
    attrs: dict[str, AttrValue]


_encoder = msgspec.json.Encoder()


def _letter(reason: str, detail: str, frame: bytes | int, source: str, now: float, key: bytes) -> DeadLetter:
    # An oversized frame was skipped unread (only its size is known): the digest is of nothing.
    size = frame if isinstance(frame, int) else len(frame)
    digest = deadletter.digest(key, b"" if isinstance(frame, int) else frame)
    return DeadLetter(reason=reason, detail=detail, source=source, size=size, digest=digest, at=now)


def to_chunk_parts(
    frames: list[bytes | int], fields: SyslogFields, *, source: str, now: float, limit: int
) -> tuple[bytes, list[DeadLetter]]:
    """Frames → (JSON event lines for the decoder, dead letters). Pure; never raises."""
    lines: list[_Line] = []
    letters: list[DeadLetter] = []
    for frame in frames:
        if isinstance(frame, int) or len(frame) > limit:
            letters.append(
                _letter(
                    "too_large", f"syslog frame over {limit} bytes", frame, source, now, fields.digest_key
                )
            )
            continue
        try:
            msg = parse_message(frame, now=now)
        except ParseError as exc:
            letters.append(
                _letter("syslog", f"not a syslog message: {exc}", frame, source, now, fields.digest_key)
            )
            continue
        attrs = msg.fields
        unit = attrs.pop(fields.unit_field, None)
        name = attrs.pop(fields.name_field, None) or fields.default_name
        if unit is None or unit == "":
            letters.append(
                _letter(
                    "missing",
                    f"syslog message without {fields.unit_field}",
                    frame,
                    source,
                    now,
                    fields.digest_key,
                )
            )
            continue
        if name is None or name == "":
            letters.append(
                _letter(
                    "missing",
                    f"syslog message without {fields.name_field}",
                    frame,
                    source,
                    now,
                    fields.digest_key,
                )
            )
            continue
        if msg.text:
            attrs[fields.message_attribute] = msg.text
        lines.append(_Line(str(name), now if msg.ts is None else msg.ts, str(unit), attrs))
    return (_encoder.encode_lines(lines) if lines else b""), letters


# -- the source ---------------------------------------------------------------------------------------


class SyslogSource:
    live = True  # `run --once` drains it until idle

    def __init__(
        self,
        *,
        fields: SyslogFields,
        clock: Callable[[], float],
        host: str = "127.0.0.1",
        tcp_port: int | None = 5140,
        udp_port: int | None = None,
        max_message_bytes: int = 8192,
        max_connections: int = 256,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.name = f"syslog:{host}"
        self._fields = fields
        self._clock = clock
        self._host = host
        self._tcp_port = tcp_port
        self._udp_port = udp_port
        self._limit = max_message_bytes
        self._max_connections = max_connections
        self._connections = 0
        self._queue: asyncio.Queue[Chunk] = asyncio.Queue(max_pending)
        self.tcp_bound: int | None = None
        self.udp_bound: int | None = None
        self.dropped = 0  # UDP datagrams dropped while the pipeline was behind
        self.ready = asyncio.Event()

    async def chunks(self) -> AsyncIterator[Chunk]:
        tcp: asyncio.Server | None = None
        udp: asyncio.DatagramTransport | None = None
        if self._tcp_port is not None:
            tcp = await asyncio.start_server(self._connection, self._host, self._tcp_port)
            self.tcp_bound = tcp.sockets[0].getsockname()[1]
            log.info("syslog tcp listening on %s:%d", self._host, self.tcp_bound)
        if self._udp_port is not None:
            loop = asyncio.get_running_loop()
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(self._host, self._udp_port)
            )
            self.udp_bound = udp.get_extra_info("sockname")[1]
            log.info("syslog udp listening on %s:%d", self._host, self.udp_bound)
        self.ready.set()
        try:
            while True:
                yield await self._queue.get()
        finally:
            self.ready.clear()
            if udp is not None:
                udp.close()
            if tcp is not None:
                tcp.close()

    def _chunk(
        self, frames: list[bytes | int], transport: str, ack: Callable[[], None] | None
    ) -> Chunk | None:
        source = f"syslog:{transport}"
        data, letters = to_chunk_parts(
            frames, self._fields, source=source, now=self._clock(), limit=self._limit
        )
        if not data and not letters:
            return None
        return Chunk(source, data, ack=ack, letters=tuple(letters))

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= self._max_connections:
            writer.close()
            return
        self._connections += 1
        loop = asyncio.get_running_loop()
        framer = Framer(self._limit)
        try:
            while True:
                data = await reader.read(READ_SIZE)
                frames = framer.feed(data) if data else framer.close()
                if frames:
                    done: asyncio.Future[None] = loop.create_future()

                    def ack(done: asyncio.Future[None] = done) -> None:
                        with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                            loop.call_soon_threadsafe(_settle, done)

                    chunk = self._chunk(frames, "tcp", ack)
                    if chunk is not None:
                        await self._queue.put(chunk)
                        await done  # TCP backpressure: read no more until these are durable
                if not data:
                    return
        except (ConnectionError, OSError):
            pass
        except Exception:  # hostile input must never take the daemon down; never log its content
            log.exception("syslog tcp: unexpected error; connection closed")
        finally:
            self._connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def datagram(self, data: bytes) -> None:
        try:
            frame = data.rstrip(b"\r\n\x00")  # one message per datagram (RFC 5426), newlines and all
            frames: list[bytes | int] = [frame if len(frame) <= self._limit else len(frame)] if frame else []
            chunk = self._chunk(frames, "udp", None)
        except Exception:  # never let one datagram stop the endpoint
            log.exception("syslog udp: unexpected error; datagram dropped")
            return
        if chunk is None:
            return
        try:
            self._queue.put_nowait(chunk)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("syslog udp: agent behind, %d datagrams dropped so far", self.dropped)


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, source: SyslogSource) -> None:
        self._source = source

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._source.datagram(data)
