"""Syslog receiver: RFC 5424/3164 parsing, TCP framing (octet-counted and newline), UDP, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import Limits
from agent.decode import Decoder
from agent.model import Event
from agent.sources import Chunk, SyslogSource
from agent.sources.syslog import Framer, ParseError, SyslogFields, parse_message, to_chunk_parts

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()

RFC5424 = (
    b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
    b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][meta user="u\\"1\\]"] '
    b"\xef\xbb\xbfAn application event log entry"
)
RFC3164 = b"<34>Oct 11 22:14:15 mymachine su[42]: 'su root' failed for lonvick on /dev/pts/8"


def test_rfc5424_fields_structured_data_and_message() -> None:
    msg = parse_message(RFC5424, now=NOW)
    assert msg.ts == pytest.approx(datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC).timestamp())
    assert msg.fields == {
        "facility": 20,
        "severity": 5,
        "hostname": "mymachine.example.com",
        "app_name": "evntslog",
        "msgid": "ID47",
        "exampleSDID@32473.iut": "3",
        "exampleSDID@32473.eventSource": "Application",
        "exampleSDID@32473.eventID": "1011",
        "meta.user": 'u"1]',
    }
    assert msg.text == "An application event log entry"


def test_rfc3164_year_less_stamp_host_tag_and_pid() -> None:
    msg = parse_message(RFC3164, now=NOW)
    # No year in RFC 3164: October is in the future on 10 March 2026, so it was October 2025.
    assert msg.ts == datetime(2025, 10, 11, 22, 14, 15, tzinfo=UTC).timestamp()
    assert msg.fields == {
        "facility": 4,
        "severity": 2,
        "hostname": "mymachine",
        "app_name": "su",
        "procid": "42",
    }
    assert msg.text == "'su root' failed for lonvick on /dev/pts/8"


def test_lenient_forms_and_clear_refusals() -> None:
    assert parse_message(b"just text", now=NOW).text == "just text"  # no PRI: user.notice
    assert parse_message(b"<13>1 - - - - - -", now=NOW).ts is None
    for bad in (b"<999>hi", b"<x>hi", b"<13>1 yesterday h a p m - x", b'<13>1 - h a p m [id k="v'):
        with pytest.raises(ParseError):
            parse_message(bad, now=NOW)


def test_events_name_and_unit_from_configured_fields_message_as_free_text() -> None:
    fields = SyslogFields(name_field="msgid", unit_field="meta.user", message_attribute="text")
    data, letters = to_chunk_parts([RFC5424, RFC3164, 9000], fields, source="syslog:tcp", now=NOW, limit=8192)
    events, bad = Decoder(Limits()).decode(data, "syslog:tcp", now=NOW)
    assert not bad
    [event] = events
    assert (event.name, event.unit) == ("ID47", 'u"1]')
    assert event.attrs["text"] == "An application event log entry"
    assert "msgid" not in event.attrs
    assert "meta.user" not in event.attrs
    assert [(x.reason, x.size) for x in letters] == [("missing", len(RFC3164)), ("too_large", 9000)]
    assert "lonvick" not in repr(letters)


def test_framer_octet_counting_and_newlines_across_reads() -> None:
    stream = b"11 <13>hello a" + b"<13>line one\n" + b"9 <13>x\ny z" + b"\r\n<13>last"
    for cut in range(len(stream) + 1):
        framer = Framer(64)
        frames = framer.feed(stream[:cut]) + framer.feed(stream[cut:]) + framer.close()
        assert frames == [b"<13>hello a", b"<13>line one", b"<13>x\ny z", b"<13>last"], cut


def test_framer_skips_oversized_frames_without_holding_them() -> None:
    framer = Framer(16)
    assert framer.feed(b"100 " + b"a" * 40) == [100]
    assert framer.feed(b"a" * 60 + b"<1>ok\n") == [b"<1>ok"]
    assert framer.feed(b"b" * 40) == [40]
    assert len(framer._buf) == 0
    assert framer.feed(b"bbb\n<1>next\n") == [b"<1>next"]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.binary(max_size=40), max_size=12), st.data())
def test_framer_roundtrip_any_cut(messages: list[bytes], data: st.DataObject) -> None:
    """Octet-counted frames come back byte for byte, however the stream is cut into reads."""
    stream = b"".join(b"%d %s" % (len(m), m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    framer = Framer(64)
    out: list[bytes | int] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += framer.feed(stream[a:b])
    assert out == messages


# -- over real sockets --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(src: SyslogSource, *, ack: bool = True) -> AsyncIterator[list[Chunk]]:
    got: list[Chunk] = []

    async def pipeline() -> None:
        async for chunk in src.chunks():
            got.append(chunk)
            if ack and chunk.ack is not None:
                chunk.ack()

    task = asyncio.create_task(pipeline())
    await asyncio.wait_for(src.ready.wait(), 10)
    try:
        yield got
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def make(**kw: object) -> SyslogSource:
    kw.setdefault("fields", SyslogFields())
    return SyslogSource(clock=time.time, tcp_port=0, udp_port=0, **kw)  # type: ignore[arg-type]


def events_of(chunks: list[Chunk]) -> list[Event]:
    out: list[Event] = []
    for chunk in chunks:
        events, letters = Decoder(Limits()).decode(chunk.data, chunk.source, now=NOW)
        assert not letters
        out.extend(events)
    return out


async def until(condition: object, what: str = "condition") -> None:
    deadline = time.monotonic() + 20
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def test_tcp_both_framings_and_udp() -> None:
    src = make()
    async with running(src) as got:
        assert src.tcp_bound
        assert src.udp_bound
        _, writer = await asyncio.open_connection("127.0.0.1", src.tcp_bound)
        framed = b"<13>1 - host-a app - - - octet counted"
        writer.write(b"%d %s" % (len(framed), framed) + b"<13>Mar 10 11:00:00 host-b app: newline framed\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"<13>1 - host-c app - - - over udp\n", ("127.0.0.1", src.udp_bound))
        await until(lambda: len(events_of(got)) == 3)
    events = sorted(events_of(got), key=lambda e: e.unit)
    assert [(e.unit, e.attrs["message"]) for e in events] == [
        ("host-a", "octet counted"),
        ("host-b", "newline framed"),
        ("host-c", "over udp"),
    ]
    assert {chunk.source for chunk in got} == {"syslog:tcp", "syslog:udp"}


async def test_tcp_reads_no_further_before_the_commit() -> None:
    """TCP backpressure: the next bytes of a connection wait until its previous chunk was acked."""
    src = make()
    async with running(src, ack=False) as got:
        assert src.tcp_bound
        _, writer = await asyncio.open_connection("127.0.0.1", src.tcp_bound)
        writer.write(b"<13>1 - h1 app - - - first\n")
        await writer.drain()
        await until(lambda: len(got) == 1)
        writer.write(b"<13>1 - h2 app - - - second\n")
        await writer.drain()
        # The pipeline has not committed the first chunk: the receiver reads nothing more.
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(got) == 1
        ack = got[0].ack
        assert ack is not None
        ack()
        await until(lambda: len(got) == 2)
        writer.close()
        await writer.wait_closed()
    assert [e.unit for e in events_of(got)] == ["h1", "h2"]


async def test_hostile_tcp_input_never_stops_the_receiver() -> None:
    src = make(max_message_bytes=512)
    async with running(src) as got:
        assert src.tcp_bound
        for payload in (
            b"99999999999 " + b"x" * 4000,
            b"\x00\xff" * 3000 + b"\n",
            b"<999>bad pri\n<13>1 zz h a p m - bad stamp\n",
            b'<13>1 - h a p m [id k="unterminated\n',
            b"\n" * 1000,
            b"1" * 50 + b"\n",
        ):
            _, writer = await asyncio.open_connection("127.0.0.1", src.tcp_bound)
            writer.write(payload)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        _, writer = await asyncio.open_connection("127.0.0.1", src.tcp_bound)
        writer.write(b"<13>1 - survivor app - - - still here\n")
        await writer.drain()
        writer.close()
        await until(lambda: any(e.unit == "survivor" for e in events_of(got)))
    reasons = sorted({letter.reason for chunk in got for letter in chunk.letters})
    assert reasons == ["missing", "syslog", "too_large"]


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger is not installed")
@pytest.mark.parametrize("framing", ["octet-count", "newline", "udp"])
async def test_util_linux_logger(framing: str) -> None:
    src = make()
    async with running(src) as got:
        assert src.tcp_bound
        assert src.udp_bound
        port = src.udp_bound if framing == "udp" else src.tcp_bound
        args = [
            "logger",
            "--rfc5424",
            "-n",
            "127.0.0.1",
            "-P",
            str(port),
            "-t",
            "shop",
            "--msgid",
            "checkout",
        ]
        # without --octet-count, logger frames TCP messages with a newline (RFC 6587 non-transparent)
        args += {"udp": ["-d"], "newline": ["-T"], "octet-count": ["-T", "--octet-count"]}[framing]
        args += ["--sd-id", "user@32473", "--sd-param", 'id="u-77"', "order paid by canary@example.org"]
        proc = await asyncio.create_subprocess_exec(*args, stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 0, err
        await until(lambda: len(events_of(got)) == 1)
    [event] = events_of(got)
    assert event.name == "shop"
    assert event.attrs["msgid"] == "checkout"
    assert event.attrs["user@32473.id"] == "u-77"
    assert event.attrs["message"] == "order paid by canary@example.org"


def test_config_builds_and_refuses_a_receiver_without_listeners(tmp_path: Path) -> None:
    from agent.config import load_config
    from agent.sources import build_sources
    from hushmetric.errors import ConfigError

    path = tmp_path / "agent.toml"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path.write_text(
        f'tenant = "a"\nagent = "b"\n[[sources]]\ntype = "syslog"\nunit_field = "meta.user"\ntcp_port = {port}\n'
    )
    [src] = build_sources(load_config(path), once=False)
    assert isinstance(src, SyslogSource)
    assert src._fields.unit_field == "meta.user"
    assert src._tcp_port == port
    path.write_text('tenant = "a"\nagent = "b"\n[[sources]]\ntype = "syslog"\ntcp_port = 0\n')
    with pytest.raises(ConfigError, match=r"sources\[0\]\.tcp_port: expected tcp_port or udp_port"):
        build_sources(load_config(path), once=False)


async def test_agent_end_to_end_canaries_in_messages_never_reach_the_outbox(tmp_path: Path) -> None:
    from agent.config import load_config
    from agent.runtime import Agent
    from tests.integration.agentkit import canary_text, exact_policy, init_agent, leaked

    agent_dir = init_agent(tmp_path / "agent")
    agent_dir.set_policy(exact_policy())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent_dir.edit_config(
        '[[sources]]\ntype = "demo"\nseed = 7',
        f'[[sources]]\ntype = "syslog"\ntcp_port = {port}\nname_field = "msgid"\nunit_field = "meta.user"',
    )
    agent = Agent(load_config(agent_dir.config))
    # `run --once` drains a live receiver until it has been idle for a while, then releases everything
    # Events of the last whole hour, and that hour declared as the run's range (the fixed schedule
    # releases exactly the windows of the declared range).
    hour = (int(time.time()) // 3600 - 1) * 3600
    once = asyncio.create_task(agent.run_once(start=hour, stop=hour + 3600))
    stamp = datetime.fromtimestamp(hour + 60, UTC).isoformat()
    lines = b"".join(
        f'<13>1 {stamp} web-1 shop - signup [meta user="u{i}" plan="team"] {canary_text()}\n'.encode()
        for i in range(30)
    )
    lines += b"<13>1 - web-1 shop - signup - no unit here\n"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                assert time.monotonic() < deadline, "the syslog receiver never listened"
                await asyncio.sleep(0.05)
        writer.write(lines)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        report = await asyncio.wait_for(once, 60)
    finally:
        once.cancel()
        await asyncio.gather(once, return_exceptions=True)
        await agent.aclose()
    assert report.events == 30
    assert report.dead_letters == 1
    assert report.windows_released == 1
    assert leaked([agent_dir.state_db]) == []


def test_a_refused_frame_is_digested_under_the_site_key_never_a_plain_hash() -> None:
    """Dead letters keep no raw content: the digest of a refused frame is keyed (issue 9, point 9)."""
    import hashlib

    from agent import deadletter

    frame = b"<13>1 - web-1 shop - signup - mail jane.doe@example.com, no unit here"
    key = deadletter.digest_key(b"s" * 32)
    _, letters = to_chunk_parts(
        [frame], SyslogFields(unit_field="meta.user", digest_key=key), source="syslog:tcp", now=0, limit=8192
    )
    assert [d.reason for d in letters] == ["missing"]
    assert letters[0].digest == deadletter.digest(key, frame) != hashlib.sha256(frame).hexdigest()
    assert "jane.doe" not in repr(letters[0])
