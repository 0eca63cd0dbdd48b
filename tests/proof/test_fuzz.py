"""Proof family 7 — fuzzing: malformed input never crashes anything and always gets a clear error.

Targets and what counts as a clear error:

- the event decoder (:class:`agent.decode.Decoder`): events or dead letters with a known reason,
  never an exception;
- the MQTT payload path: payloads published to the real Mosquitto on a unique topic, received by
  :class:`agent.sources.MqttSource` byte for byte, then decoded as above;
- config and policy loading (``load_config``, ``load_policy`` on mutated TOML): a value or a
  one-line :class:`~hushmetric.errors.ConfigError`;
- the bundle importer: ``read_bundle`` returns or raises ContractError; ``import_bundle`` always
  returns a report; ``hush-collector import`` exits 0 or 1 with one line per file, no traceback;
- the gRPC Submit path of a real collector: raw frames (random, truncated, bad UTF-8, oversized) and
  validly signed hostile payloads (deep nesting, huge strings, non-UTF-8, wrong types, NaN): a
  status code of the contract (INVALID_ARGUMENT and friends), never UNKNOWN/INTERNAL, and the
  server keeps serving without logging a traceback.
- the OTLP receiver (gRPC and HTTP on loopback): random, mutated and hypothesis-built export requests
  get OK, INVALID_ARGUMENT or RESOURCE_EXHAUSTED (HTTP 200/400/413/415), every chunk it hands on decodes
  to valid events or dead letters with known reasons, and it keeps serving;
- the syslog receiver: framing and parsing (pure) on a corpus, mutations and hypothesis bytes cut at
  any point, then the corpus over real TCP and UDP: events or dead letters, and it keeps serving.

Corpus inputs are hand-picked; hypothesis inputs are derandomized in short mode.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import random
import re
import tarfile
import time
import uuid
from pathlib import Path

import aiomqtt
import msgspec
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import Limits, load_config
from agent.decode import Decoder
from agent.model import DeadLetter, Event
from agent.policy import load_policy
from agent.sources import Chunk, MqttSource
from collector.importer import import_bundle
from collector.store.sqlite.store import SqliteStore
from hushmetric import bundle, dsse
from hushmetric.batch import decode_batch
from hushmetric.errors import ConfigError, ContractError
from hushmetric.v1 import ingest_pb2_grpc
from hushmetric.wire import envelope_to_proto
from tests.proof.fuzzkit import DEEP, Tally, chunks, decoder_corpus, msgpack_of, mutate, tar_of
from tests.proof.proofkit import LONG, Collector, Figures, Signer, now_s, pick, submit, submit_raw

pytestmark = pytest.mark.timeout(pick(300, 1500))

FAMILY = "7 fuzz"
REPO = Path(__file__).resolve().parents[2]
DEAD_LETTER_REASONS = {
    "json",
    "type",
    "missing",
    "ts",
    "too_large",
    "too_many_attrs",
    "value_too_long",
    "not_utf8",
}
HYPOTHESIS = settings(
    max_examples=pick(300, 6000),
    deadline=None,
    database=None,
    derandomize=not LONG,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def _record(figures: Figures, check: str, t: Tally, started: float, **extras: object) -> None:
    figures.record(
        FAMILY,
        check,
        runs=t.tried,
        faults=t.tried - t.accepted,
        crashes=t.crashes,
        seconds=time.monotonic() - started,
        accepted=t.accepted,
        clear_errors=t.clear,
        **extras,
    )


# -- the event decoder ---------------------------------------------------------------------------------

DECODERS = {
    "default limits": (Limits(), Decoder(Limits())),
    "tight limits": (
        tight := Limits(
            max_event_bytes=256, max_attrs=4, max_value_length=16, max_payload_bytes=4096, max_key_length=8
        ),
        Decoder(tight),
    ),
}


def _check_decoded(limits: Limits, events: list[Event], letters: list[DeadLetter]) -> None:
    for letter in letters:
        assert letter.reason in DEAD_LETTER_REASONS, letter
        assert "\n" not in letter.detail
        assert len(letter.digest) == 64
    for e in events:
        assert isinstance(e.name, str)
        assert 0 < len(e.name) <= limits.max_key_length
        assert isinstance(e.unit, str)
        assert 0 < len(e.unit) <= limits.max_key_length
        assert isinstance(e.ts, float)
        assert 0 <= e.ts < 253402300800.0
        assert e.value is None or (isinstance(e.value, float) and math.isfinite(e.value))
        assert len(e.attrs) <= limits.max_attrs
        for k, v in e.attrs.items():
            assert isinstance(k, str)
            assert 0 < len(k) <= limits.max_key_length
            assert isinstance(v, str | int | float | bool)
            assert not isinstance(v, str) or len(v) <= limits.max_value_length
            assert not isinstance(v, float) or math.isfinite(v)


def _decode_one(t: Tally, name: str, data: bytes) -> None:
    for label, (limits, decoder) in DECODERS.items():
        t.tried += 1
        try:
            events, letters = decoder.decode(data, "fuzz", now=1.0)
            _check_decoded(limits, events, letters)
        except Exception as exc:  # anything escaping the decoder is a crash
            t.crash(f"{label} / {name}: {type(exc).__name__}: {exc}")
            continue
        t.accepted += not letters
        t.clear += bool(letters)


def test_event_decoder(figures: Figures) -> None:
    started = time.monotonic()
    t = Tally()
    rng = random.Random(7)
    corpus = list(decoder_corpus())
    for name, data in corpus:
        _decode_one(t, name, data)
    base = b"\n".join(data for name, data in corpus if name == "valid") * 3
    for k in range(pick(300, 5000)):
        _decode_one(t, f"mutation {k}", mutate(base, rng))

    @HYPOTHESIS
    @given(chunks())
    def run(data: bytes) -> None:
        _decode_one(t, "hypothesis", data)

    run()
    assert t.crashes == 0, t.examples
    _record(figures, "event decoder", t, started, corpus=len(corpus))


# -- the MQTT payload path -----------------------------------------------------------------------------


ROUND = 200


@pytest.mark.mqtt
async def test_mqtt_payload_path(figures: Figures) -> None:
    started = time.monotonic()
    rng = random.Random(17)
    topic = f"hush-proof/{uuid.uuid4().hex}"
    client_id = f"hush-proof-{uuid.uuid4().hex[:12]}"
    payloads = [data for name, data in decoder_corpus() if len(data) < (4 << 20)]
    valid = next(data for name, data in decoder_corpus() if name == "valid")
    payloads += [mutate(valid * 4, rng) for _ in range(pick(60, 2000))]
    payloads += [bytes(rng.randrange(256) for _ in range(rng.randint(0, 512))) for _ in range(pick(20, 500))]
    limits, decoder = DECODERS["default limits"]
    source = MqttSource(
        host="127.0.0.1",
        port=1883,
        topics=[f"{topic}/#"],
        client_id=client_id,
        backoff_base=0.05,
        backoff_cap=0.5,
    )
    t = Tally()
    received: dict[str, bytes] = {}
    it = source.chunks()
    first = asyncio.ensure_future(anext(it))
    try:
        deadline = time.monotonic() + 10
        while source.state != "connected":
            assert time.monotonic() < deadline, "no connection to the broker"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        pending: asyncio.Future[Chunk] | None = first
        async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"pub-{uuid.uuid4().hex[:8]}") as pub:
            # rounds of at most ROUND messages, each consumed before the next: the broker queues at
            # most max_queued_messages (1000 by default) for a subscriber and drops the rest
            for start in range(0, len(payloads), ROUND):
                end = min(start + ROUND, len(payloads))
                for i in range(start, end):
                    await pub.publish(f"{topic}/{i}", payloads[i], qos=1)
                while len(received) < end:
                    chunk = await asyncio.wait_for(pending if pending is not None else anext(it), 20)
                    pending = None
                    # the source names the subscription filter, never the topic (which may carry
                    # personal data); one publisher at QoS 1: the broker keeps the order
                    assert chunk.source == f"mqtt:{topic}/#"
                    received[str(len(received))] = chunk.data
                    t.tried += 1
                    try:
                        events, letters = decoder.decode(chunk.data, chunk.source, now=1.0)
                        _check_decoded(limits, events, letters)
                    except Exception as exc:  # anything escaping the decoder is a crash
                        t.crash(f"{type(exc).__name__}: {exc}")
                    else:
                        t.accepted += not letters
                        t.clear += bool(letters)
                    if chunk.ack is not None:
                        chunk.ack()
    finally:
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await it.aclose()
        async with aiomqtt.Client("127.0.0.1", 1883, identifier=client_id, clean_session=True):
            pass  # forget the persistent session
    mangled = sum(received.get(str(i)) != p for i, p in enumerate(payloads))
    assert mangled == 0, t.examples
    assert t.crashes == 0, t.examples
    _record(
        figures,
        "mqtt payload path",
        t,
        started,
        delivered_intact=f"{len(payloads) - mangled}/{len(payloads)}",
    )


# -- config and policy loading -------------------------------------------------------------------------

_TOML_VALUES = [
    '"x"',
    "0",
    "-1",
    "1e309",
    "inf",
    "nan",
    "true",
    "[]",
    "{}",
    '[1, "a"]',
    '""',
    '"\\u0000"',
    "1979-05-27T07:32:00Z",
    "{ a = { b = 1 } }",
    '"' + "a" * 100_000 + '"',
    "9" * 40,
    "[" * 2000 + "]" * 2000,
    "{ a = " * 1000 + "1" + " }" * 1000,
    '"\\ud800"',
    "'''\nmulti\n'''",
]


def _toml_mutation(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    op = rng.randrange(6)
    if op == 0 and lines:  # replace a value
        idx = [i for i, line in enumerate(lines) if re.match(r"^\s*[\w.\"-]+\s*=", line)]
        if idx:
            i = rng.choice(idx)
            key = lines[i].split("=", 1)[0]
            lines[i] = f"{key}= {rng.choice(_TOML_VALUES)}"
    elif op == 1 and lines:  # rename a key
        idx = [i for i, line in enumerate(lines) if "=" in line]
        if idx:
            i = rng.choice(idx)
            key, rest = lines[i].split("=", 1)
            lines[i] = f"{key.strip()}{rng.choice(['x', '_', '-1', '.a', ' '])}={rest}"
    elif op == 2 and lines:  # delete, duplicate or swap lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        choice = rng.randrange(3)
        if choice == 0:
            del lines[i]
        elif choice == 1:
            lines.insert(j, lines[i])
        else:
            lines[i], lines[j] = lines[j], lines[i]
    elif op == 3:  # add a table or key
        lines.insert(
            rng.randrange(len(lines) + 1),
            rng.choice(["[x]", "[[sources]]", "[budget]", "version = 2", "a.b.c = 1"]),
        )
    else:
        return mutate(text.encode(), rng)
    return "\n".join(lines).encode("utf-8", "surrogatepass")


def _load(t: Tally, kind: str, path: Path) -> None:
    t.tried += 1
    try:
        (load_config if kind == "config" else load_policy)(path)
    except ConfigError as exc:
        t.clear += 1
        if "\n" in str(exc) or len(str(exc)) > 2000:
            t.crash(f"{kind}: error is not one short line: {str(exc)[:200]!r}")
    except Exception as exc:  # anything but ConfigError reaches the operator as a traceback
        t.crash(f"{kind} {path.name}: {type(exc).__name__}: {str(exc)[:120]}")
    else:
        t.accepted += 1


def test_config_and_policy_loading(tmp_path: Path, figures: Figures) -> None:
    started = time.monotonic()
    rng = random.Random(71)
    bases = [("policy", p) for p in (REPO / "configs/policy.toml", REPO / "agent/templates/policy.toml")]
    bases += [("config", p) for p in sorted((REPO / "configs/profiles").glob("*/agent.toml"))]
    assert len(bases) >= 4
    t = Tally()
    path = tmp_path / "fuzz.toml"
    for kind, base in bases:
        text = base.read_text()
        path.write_text(text)
        _load(t, kind, path)  # the originals load
        for value in _TOML_VALUES:
            path.write_text(f"{text}\nzz_fuzz = {value}\n")
            _load(t, kind, path)
        for _ in range(pick(80, 1500)):
            path.write_bytes(_toml_mutation(text, rng))
            _load(t, kind, path)
    for body in (b"", b"\xff\xfe", b"a = " + b"[" * DEEP, b"a" * (2 << 20), b"[[" * 10000):
        for kind in ("config", "policy"):
            path.write_bytes(body)
            _load(t, kind, path)

    @HYPOTHESIS
    @given(
        st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("latin-1")),
        st.sampled_from(["config", "policy"]),
    )
    def run(text: str, kind: str) -> None:
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        _load(t, kind, path)

    run()
    assert t.crashes == 0, t.examples
    _record(figures, "config + policy loading", t, started)


# -- the bundle importer -------------------------------------------------------------------------------


def _bundle_cases(signer: Signer, rng: random.Random) -> list[tuple[str, bytes]]:
    stamp = "2026-03-10T12:00:00Z"
    envs = [(seq, env) for seq, _, env in (signer.next(rows=2) for _ in range(3))]
    good = bundle.write_bundle(envs, tenant=signer.tenant, agent=signer.agent, created=stamp, key=signer.key)
    parsed = bundle.read_bundle(good)
    manifest = dsse.to_json(parsed.manifest_envelope)
    files = list(parsed.files.items())

    def signed_manifest(payload: bytes) -> bytes:
        return dsse.to_json(dsse.sign(payload, dsse.MANIFEST_PAYLOAD_TYPE, signer.key))

    def info(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        for k, v in kw.items():
            setattr(ti, k, v)
        return ti

    cases: list[tuple[str, bytes]] = [("good", good)]
    for k in range(pick(150, 3000)):
        cases.append((f"bytes {k}", mutate(good, rng)))
    for cut in sorted(
        {
            0,
            1,
            511,
            512,
            1024,
            len(good) // 2,
            len(good) - 1024,
            len(good) - 1,
            *rng.sample(range(len(good)), pick(10, 200)),
        }
    ):
        cases.append((f"truncated at {cut}", good[:cut]))
    m = ("manifest.json", manifest)
    structural: list[tuple[str, list[tuple[tarfile.TarInfo, bytes | None]]]] = [
        ("no manifest", [(info(n), b) for n, b in files]),
        ("manifest twice", [(info(m[0]), m[1]), (info(m[0]), m[1]), *[(info(n), b) for n, b in files]]),
        ("batch twice", [(info(m[0]), m[1]), *[(info(n), b) for n, b in files * 2]]),
        ("path traversal", [(info(m[0]), m[1]), (info("../../etc/passwd"), b"x")]),
        ("absolute path", [(info(m[0]), m[1]), (info("/etc/passwd"), b"x")]),
        ("batch name traversal", [(info(m[0]), m[1]), (info("batches/../../x.dsse.json"), b"x")]),
        ("20-digit seq", [(info(m[0]), m[1]), (info("batches/" + "9" * 20 + ".dsse.json"), b"x")]),
        (
            "symlink",
            [
                (info(m[0]), m[1]),
                (info("batches/1.dsse.json", tarfile.SYMTYPE, linkname="/etc/passwd"), None),
            ],
        ),
        (
            "hardlink",
            [
                (info(m[0]), m[1]),
                (info("batches/1.dsse.json", tarfile.LNKTYPE, linkname="manifest.json"), None),
            ],
        ),
        ("directory", [(info(m[0]), m[1]), (info("batches", tarfile.DIRTYPE), None)]),
        ("fifo", [(info(m[0]), m[1]), (info("batches/1.dsse.json", tarfile.FIFOTYPE), None)]),
        (
            "device",
            [
                (info(m[0]), m[1]),
                (info("batches/1.dsse.json", tarfile.CHRTYPE, devmajor=1, devminor=3), None),
            ],
        ),
        ("manifest symlink", [(info(m[0], tarfile.SYMTYPE, linkname="/etc/shadow"), None)]),
        (
            "unlisted extra batch",
            [
                (info(m[0]), m[1]),
                *[(info(n), b) for n, b in files],
                (info("batches/99.dsse.json"), files[0][1]),
            ],
        ),
        (
            "renamed batches",
            [
                (info(m[0]), m[1]),
                *[(info(f"batches/{i + 7}.dsse.json"), b) for i, (_, b) in enumerate(files)],
            ],
        ),
        ("batch not json", [(info(m[0]), m[1]), (info(files[0][0]), b"\xff" * 100)]),
        ("batch deep json", [(info(m[0]), m[1]), (info(files[0][0]), b'{"a":' + b"[" * DEEP)]),
        ("manifest not json", [(info(m[0]), b"\x00" * 64)]),
        ("manifest deep json", [(info(m[0]), b'{"payload":' + b"[" * DEEP)]),
        (
            "manifest deep unknown field",
            [(info(m[0]), b'{"zz":' + b"[" * DEEP + b"]" * DEEP + b"," + manifest[1:])],
        ),
        ("manifest huge", [(info(m[0]), b" " * ((32 << 20) + 1))]),
        ("manifest payload not manifest", [(info(m[0]), signed_manifest(b"[1,2,3]"))]),
        ("manifest payload deep", [(info(m[0]), signed_manifest(b"[" * DEEP + b"]" * DEEP))]),
        (
            "manifest payload deep field",
            [(info(m[0]), signed_manifest(b'{"zz":' + b"[" * DEEP + b"]" * DEEP + b"}"))],
        ),
        (
            "manifest huge seq",
            [
                (
                    info(m[0]),
                    signed_manifest(
                        b'{"v":1,"tenant":"acme","agent":"a1","created":"x","batches":[{"file":"batches/1.dsse.json","seq":'
                        + b"9" * 30
                        + b',"sha256":"'
                        + b"0" * 64
                        + b'"}]}'
                    ),
                )
            ],
        ),
        (
            "manifest with many missing entries",
            [
                (
                    info(m[0]),
                    signed_manifest(
                        msgspec.json.encode(
                            {
                                "v": 1,
                                "tenant": signer.tenant,
                                "agent": signer.agent,
                                "created": "x",
                                "batches": [
                                    {"file": f"batches/{i}.dsse.json", "seq": i, "sha256": "0" * 64}
                                    for i in range(1, pick(5_000, 100_001))
                                ],
                            }
                        )
                    ),
                )
            ],
        ),
        (
            "manifest wrong payloadType",
            [(info(m[0]), dsse.to_json(dsse.sign(b"{}", dsse.BATCH_PAYLOAD_TYPE, signer.key)))],
        ),
        (
            "manifest 9 signatures",
            [
                (
                    info(m[0]),
                    dsse.to_json(
                        dsse.Envelope(
                            b"{}", dsse.MANIFEST_PAYLOAD_TYPE, parsed.manifest_envelope.signatures * 9
                        )
                    ),
                )
            ],
        ),
        ("manifest bad base64", [(info(m[0]), manifest.replace(b'"payload":"', b'"payload":"!!'))]),
        ("gnu format", []),
        ("gzip", []),
    ]
    for name, members in structural:
        if name == "gnu format":
            cases.append((name, tar_of([(info(n), b) for n, b in [m, *files]], fmt=tarfile.GNU_FORMAT)))
        elif name == "gzip":
            out = io.BytesIO()
            with tarfile.open(fileobj=out, mode="w:gz") as tar:
                for n, b in [m, *files]:
                    ti = info(n)
                    ti.size = len(b)
                    tar.addfile(ti, io.BytesIO(b))
            cases.append((name, out.getvalue()))
        else:
            cases.append((name, tar_of(members)))
    # a header that claims more bytes than the archive holds
    lie = bytearray(good)
    lie[124:136] = b"%011o\x00" % (1 << 30)
    chksum = sum(lie[:148]) + 8 * 32 + sum(lie[156:512])
    lie[148:156] = b"%06o\x00 " % chksum
    cases.append(("size header lies", bytes(lie)))
    return cases


async def test_bundle_importer(tmp_path: Path, figures: Figures) -> None:
    started = time.monotonic()
    rng = random.Random(77)
    c = Collector(tmp_path / "collector")
    c.init()
    c.ok("tenant", "create", "acme")
    signer = Signer("acme", "a1")
    c.add_agent(signer)
    cases = _bundle_cases(signer, rng)
    read = Tally()
    imported = Tally()
    key = nacl.signing.SigningKey.generate()
    store = await SqliteStore.open(tmp_path / "inproc.db", signing_key=key, create=True)
    try:
        await store.create_tenant("acme", now=now_s())
        await store.add_key("acme", "a1", bytes(signer.key.verify_key), now=now_s())
        for name, data in cases:
            read.tried += 1
            try:
                bundle.read_bundle(data)
            except ContractError:
                read.clear += 1
            except Exception as exc:  # anything but ContractError is a crash of the reader
                read.crash(f"read_bundle {name}: {type(exc).__name__}: {str(exc)[:120]}")
            else:
                read.accepted += 1
            imported.tried += 1
            try:
                report = await import_bundle(store, data, now=now_s())
            except Exception as exc:  # the importer reports; it never raises for a bad bundle
                imported.crash(f"import_bundle {name}: {type(exc).__name__}: {str(exc)[:120]}")
            else:
                imported.accepted += not report.refused
                imported.clear += bool(report.refused)
    finally:
        await store.close()

    # the operator's path on a sample: `hush-collector import` on many files in one call
    sample = [cases[0], *rng.sample(cases[1:], min(len(cases) - 1, pick(40, 400)))]
    names = []
    for i, (_, data) in enumerate(sample):
        (c.workdir / f"f{i}.tar").write_bytes(data)
        names.append(f"f{i}.tar")
    r = await asyncio.to_thread(c.cli, "import", *names, timeout=600)
    cli = Tally(tried=len(names))
    if "Traceback" in r.err or r.code not in (0, 1):
        cli.crash(f"hush-collector import exited {r.code}: {r.err[-600:]}")
    lines = r.out.splitlines()
    if len(lines) != len(names):
        cli.crash(f"{len(lines)} report lines for {len(names)} files: {r.err[-600:]}")
    cli.accepted = sum(bool(re.search(r"refused 0$", line)) for line in lines)
    cli.clear = len(lines) - cli.accepted
    assert read.crashes == 0, (
        read.examples,
        imported.examples,
        cli.examples,
    )
    assert imported.crashes == 0, (
        read.examples,
        imported.examples,
        cli.examples,
    )
    assert cli.crashes == 0, (
        read.examples,
        imported.examples,
        cli.examples,
    )
    _record(figures, "bundle read_bundle", read, started)
    _record(figures, "bundle import_bundle", imported, started)
    _record(figures, "bundle `hush-collector import`", cli, started)


# -- the gRPC Submit path --------------------------------------------------------------------------------

CONTRACT_CODES = {
    "OK",
    "INVALID_ARGUMENT",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "FAILED_PRECONDITION",
    "ALREADY_EXISTS",
    "RESOURCE_EXHAUSTED",
}


def _hostile_payloads(signer: Signer, rng: random.Random) -> list[tuple[str, bytes]]:
    """Payloads that a holder of a registered key could sign: they reach the batch decoder."""
    base = msgspec.msgpack.decode(signer.payload(rows=2))
    assert isinstance(base, dict)
    out: list[tuple[str, bytes]] = []
    deep = b"\x91" * DEEP + b"\xc0"
    raw = msgpack_of(base)
    out.append(("deep array in unknown key", b"\x8c\xa3zzz" + deep + raw[1:]))
    out.append(("deep map in unknown key", b"\x8c\xa3zzz" + b"\x81\xa1a" * DEEP + b"\xc0" + raw[1:]))
    out.append(("deep top level", deep))
    out.append(("truncated deep", b"\x91" * DEEP))
    out.append(("empty", b""))
    out.append(("nil", b"\xc0"))
    out.append(("trailing bytes", raw + b"\x00"))
    for n in sorted({1, 2, len(raw) // 2, len(raw) - 1, *rng.sample(range(1, len(raw)), pick(6, 60))}):
        out.append((f"truncated to {n}", raw[:n]))
    huge = "x" * (3 << 20)
    wrong: dict[str, list[object]] = {
        "v": [2, 0, -1, "1", None, 2**64 - 1, -(2**63), 1.5],
        "tenant": [1, None, "", huge, "a/b", "ü", ["acme"]],
        "agent": [1, None, "", "a" * 129],
        "seq": [0, -1, "1", 2**63, 2**64 - 1, 1.5, None, True],
        "prev": [1, "zz", "A" * 64, "0" * 63],
        "created": [
            1,
            "",
            "x" * 41,
            "2026-13-01T00:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "2026-01-05T10:00:00",
            "9999-12-31T23:59:59Z",
        ],
        "window": [None, [], {"start": "x"}, {"start": 1, "end": 2}],
        "policy": ["", "x", 1],
        "privacy": [
            None,
            {},
            {"unit": ""},
            {"unit": "user", "epsilon": -1},
            {"unit": "user", "rho": float("nan")},
            {"unit": "user", "rho": float("inf")},
        ],
        "redactions": [[], {"email": "1"}, {f"d{i}": 1 for i in range(65)}, {"x" * 65: 1}],
        "rows": [
            None,
            {},
            [1],
            [{}],
            [{**base["rows"][0], "value": "1"}],
            [{**base["rows"][0], "value": float("nan")}],
            [{**base["rows"][0], "value": float("inf")}],
            [{**base["rows"][0], "value": -float("inf")}],
            [{**base["rows"][0], "dims": {f"k{i}": "v" for i in range(17)}}],
            [{**base["rows"][0], "dims": {"k": "v" * 257}}],
            [{**base["rows"][0], "noise": {"mechanism": "x", "scale": -1}}],
            [{**base["rows"][0], "noise": {"mechanism": "x", "scale": float("nan")}}],
            [{**base["rows"][0], "metric": huge}],
        ],
    }
    for key, values in wrong.items():
        for value in values:
            out.append((f"{key} = {str(value)[:30]}", msgpack_of({**base, key: value})))
        out.append((f"missing {key}", msgpack_of({k: v for k, v in base.items() if k != key})))
    # strings that are not UTF-8 (msgpack str type with invalid bytes), and bin where str belongs
    marker = msgpack_of({**base, "tenant": "ZZZZ"})
    out.append(("non-utf8 tenant", marker.replace(b"\xa4ZZZZ", b"\xa4\xff\xfe\xfd\xfc")))
    out.append(("overlong utf8 tenant", marker.replace(b"\xa4ZZZZ", b"\xa4\xc0\xaf\xc0\xaf")))
    out.append(("bin tenant", marker.replace(b"\xa4ZZZZ", b"\xc4\x04ZZZZ")))
    out.append(("ext tenant", marker.replace(b"\xa4ZZZZ", b"\xd6\x01ZZZZ")))
    out.append(("str32 length lie", marker.replace(b"\xa4ZZZZ", b"\xdb\xff\xff\xff\xffZZZZ")))
    out.append(("array32 length lie", b"\xdd\xff\xff\xff\xff"))
    out.append(("map32 length lie", b"\xdf\xff\xff\xff\xff"))
    out.append(("huge unknown string", msgpack_of({**base, "zzz": huge})))
    out.append(("many rows", msgpack_of({**base, "rows": base["rows"] * 20000})))
    for k in range(pick(60, 1500)):
        out.append((f"mutation {k}", mutate(raw, rng)))
    return out


def _raw_frames(signer: Signer, rng: random.Random) -> list[tuple[str, bytes]]:
    env = envelope_to_proto(signer.sign(signer.payload())).SerializeToString()
    frames = [
        ("empty frame", b""),
        ("random", bytes(rng.randrange(256) for _ in range(64))),
        ("bad utf8 payload_type", b"\x12\x02\xff\xfe"),
        ("bad utf8 keyid", b"\x1a\x04\x12\x02\xc3\x28"),
        ("wrong wire type", b"\x0d\x00\x00\x00\x00"),
        ("length past end", b"\x0a\xff\xff\xff\x0f"),
        ("varint overlong", b"\x08" + b"\xff" * 11),
        ("deep unknown groups", b"\x1b" * 10000),
        ("deep nested messages", b"\x1a\x7f" * 5000),
        ("1000 signatures", env + b"".join(b"\x1a\x44\x0a\x40" + bytes(64) for _ in range(1000))),
        ("huge keyid", b"\x1a\x84\x80\x40\x12\x80\x80\x40" + b"a" * (1 << 20)),
        ("unknown fields", env + b"\xa2\x06\x03abc"),
    ]
    for n in sorted({1, 2, len(env) // 2, len(env) - 1, *rng.sample(range(1, len(env)), pick(8, 120))}):
        frames.append((f"truncated frame {n}", env[:n]))
    for k in range(pick(40, 1000)):
        frames.append((f"mutated frame {k}", mutate(env, rng)))
    return frames


async def test_grpc_submit(tmp_path: Path, figures: Figures) -> None:
    started = time.monotonic()
    rng = random.Random(707)
    c = Collector(tmp_path / "collector")
    c.init()
    c.ok("tenant", "create", "acme")
    signer = Signer("acme", "a1")
    c.add_agent(signer)
    payloads = _hostile_payloads(signer, rng)
    frames = _raw_frames(signer, rng)
    signed = Tally()
    raw = Tally()
    codes: dict[str, int] = {}
    await c.start()
    try:
        async with c.channel() as ch:
            stub = ingest_pb2_grpc.IngestStub(ch)
            for name, payload in payloads:
                reply = await submit(stub, signer.sign(payload))
                signed.tried += 1
                codes[reply.code] = codes.get(reply.code, 0) + 1
                if reply.code not in CONTRACT_CODES:
                    signed.crash(f"{name}: {reply.code} {reply.detail[:160]}")
                elif reply.code == "OK":
                    signed.accepted += 1
                else:
                    signed.clear += 1
            for name, frame in [
                *frames,
                ("oversized frame", b"\x0a" + b"\x80\x80\x80\x03" + b"\x00" * (6 << 20)),
            ]:
                reply = await submit_raw(ch, frame)
                raw.tried += 1
                codes[reply.code] = codes.get(reply.code, 0) + 1
                if reply.code in CONTRACT_CODES:
                    raw.accepted += reply.code == "OK"
                    raw.clear += reply.code != "OK"
                else:
                    raw.crash(f"{name}: {reply.code} {reply.detail[:160]}")
            # still serving, and still accepting a good batch
            signer.seq = 10**6  # past every seq the hostile payloads used
            assert (await submit(stub, signer.next()[2])).code == "OK"
        assert c.alive()
    finally:
        await c.stop()
    logged = c.tracebacks()
    assert signed.crashes == 0, (signed.examples, raw.examples, logged)
    assert raw.crashes == 0, (signed.examples, raw.examples, logged)
    assert not logged, (signed.examples, raw.examples, logged)
    _record(figures, "grpc Submit: signed hostile payloads", signed, started, codes=len(codes))
    _record(figures, "grpc Submit: raw frames", raw, started)


async def test_undecodable_frames_are_invalid_argument(tmp_path: Path) -> None:
    """Bytes that are not a protobuf Envelope: INVALID_ARGUMENT with reason ``malformed``, counted."""
    c = Collector(tmp_path / "collector")
    c.init()
    await c.start()
    try:
        async with c.channel() as ch:
            replies = [
                await submit_raw(ch, frame) for frame in (b"\x12\x02\xff\xfe", b"\xff" * 10, b"\x0a\x05ab")
            ]
    finally:
        await c.stop()
    assert [r.code for r in replies] == ["INVALID_ARGUMENT"] * 3, replies
    assert sum(c.usage()[0]["refused"].values()) == 3


_MSGPACK_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=50)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)
_BATCH_KEYS = [
    "v",
    "tenant",
    "agent",
    "seq",
    "prev",
    "created",
    "window",
    "policy",
    "privacy",
    "redactions",
    "rows",
    "x",
]


def test_batch_decoder(figures: Figures) -> None:
    """The pure batch decoder on hypothesis input: a Batch without NaN values, or a ContractError."""
    started = time.monotonic()
    t = Tally()

    base = msgspec.msgpack.decode(Signer("acme", "a1").payload(rows=2))

    @HYPOTHESIS
    @given(
        st.binary(max_size=3000)
        | st.dictionaries(st.sampled_from(_BATCH_KEYS), _MSGPACK_VALUES, max_size=12).map(msgpack_of)
        | st.builds(  # a valid batch with one field replaced: reaches the deeper checks
            lambda key, value: msgpack_of({**base, key: value}), st.sampled_from(_BATCH_KEYS), _MSGPACK_VALUES
        )
        | st.builds(  # one row field replaced
            lambda key, value: msgpack_of({**base, "rows": [{**base["rows"][0], key: value}]}),
            st.sampled_from(["metric", "stat", "dims", "value", "noise", "zz"]),
            _MSGPACK_VALUES,
        )
    )
    def run(data: bytes) -> None:
        t.tried += 1
        try:
            batch = decode_batch(data)
        except ContractError:
            t.clear += 1
            return
        except Exception as exc:  # anything but ContractError is a crash of the decoder
            t.crash(f"{type(exc).__name__}: {exc}")
            return
        t.accepted += 1
        if any(math.isnan(r.value) for r in batch.rows):
            t.crash("a NaN row value was accepted")

    run()
    assert t.crashes == 0, t.examples
    _record(figures, "batch decoder (hypothesis)", t, started)


# -- the OTLP receiver ---------------------------------------------------------------------------------

OTLP_GRPC_CODES = {"OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"}
OTLP_HTTP_CODES = {200, 400, 413, 415}
SOURCE_LETTERS = DEAD_LETTER_REASONS | {"unsupported", "syslog"}


def _check_chunks(t: Tally, got: list[Chunk]) -> None:
    """Every chunk a receiver produced decodes to valid events or dead letters with known reasons."""
    limits, decoder = DECODERS["default limits"]
    for chunk in got:
        try:
            events, letters = decoder.decode(chunk.data, chunk.source, now=1.0)
            _check_decoded(limits, events, letters)
        except AssertionError as exc:
            t.crash(f"{chunk.source}: {exc}")
        for letter in chunk.letters:
            if letter.reason not in SOURCE_LETTERS:
                t.crash(f"{chunk.source}: unknown reason {letter.reason}")
    got.clear()


async def test_otlp_receiver(figures: Figures, caplog: pytest.LogCaptureFixture) -> None:
    """Raw gRPC frames and HTTP bodies (protobuf and JSON; random, mutated, hypothesis-built requests):
    a status of the contract, chunks the decoder takes, and the receiver keeps serving."""
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

    from agent.sources import OtlpSource
    from agent.sources.otlp_map import Mapping
    from tests.proof.fuzzkit import otlp_requests

    started = time.monotonic()
    rng = random.Random(4317)
    src = OtlpSource(
        decoder=Decoder(Limits()),
        mapping=Mapping(),
        clock=time.time,
        grpc_port=0,
        http_port=0,
        max_request_bytes=1 << 20,
    )
    got: list[Chunk] = []

    async def pipeline() -> None:
        async for chunk in src.chunks():
            got.append(chunk)
            if chunk.ack is not None:
                chunk.ack()

    task = asyncio.create_task(pipeline())
    await asyncio.wait_for(src.ready.wait(), 10)
    valid = logs_service_pb2.ExportLogsServiceRequest()
    valid.resource_logs.add().scope_logs.add().log_records.add(
        time_unix_nano=10**18,
        attributes=[
            {"key": "enduser.id", "value": {"string_value": "u"}},
            {"key": "event.name", "value": {"string_value": "n"}},
        ],
    )
    good = valid.SerializeToString()
    bodies: list[tuple[str, bytes]] = [("valid", good), ("empty", b""), ("oversized", b"\x0a" * (2 << 20))]
    bodies += [("mutated", mutate(good, rng)) for _ in range(pick(150, 3000))]
    bodies += [
        ("random", bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))))
        for _ in range(pick(30, 500))
    ]

    @settings(HYPOTHESIS, max_examples=pick(100, 3000))
    @given(otlp_requests())
    def build(request: tuple[str, bytes]) -> None:
        bodies.append((request[0], request[1]))

    build()
    grpc_t, http_t = Tally(), Tally()
    import urllib.error
    import urllib.request

    import grpc as grpc_mod

    def post(path: str, body: bytes, media: str) -> int:
        req = urllib.request.Request(
            f"http://127.0.0.1:{src.http_bound}{path}",
            data=body,
            headers={"Content-Type": media},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310 - a fixed http URL
                return int(response.status)
        except urllib.error.HTTPError as err:
            return err.code

    try:
        async with grpc_mod.aio.insecure_channel(
            f"127.0.0.1:{src.grpc_bound}", options=[("grpc.max_send_message_length", 8 << 20)]
        ) as channel:
            calls = {
                kind: channel.unary_unary(
                    f"/opentelemetry.proto.collector.{kind}.v1.{kind.title()}Service/Export",
                    request_serializer=None,
                    response_deserializer=None,
                )
                for kind in ("logs", "metrics")
            }
            for i, (name, body) in enumerate(bodies):
                kind = name if name in calls else ("logs", "metrics")[i % 2]
                grpc_t.tried += 1
                try:
                    await calls[kind](body, timeout=30)
                    code = "OK"
                except grpc_mod.aio.AioRpcError as err:
                    code = err.code().name
                if code not in OTLP_GRPC_CODES:
                    grpc_t.crash(f"grpc {name}: {code}")
                grpc_t.accepted += code == "OK"
                grpc_t.clear += code != "OK"
                _check_chunks(grpc_t, got)
                if i % 8 == 0:  # HTTP: every eighth body as protobuf, and as mutated OTLP/JSON
                    path = f"/v1/{kind}"
                    as_json = mutate(
                        b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[]}]}]}]}', rng
                    )
                    for media, data in (("application/x-protobuf", body), ("application/json", as_json)):
                        http_t.tried += 1
                        status = await asyncio.to_thread(post, path, data, media)
                        if status not in OTLP_HTTP_CODES:
                            http_t.crash(f"http {name} {media}: {status}")
                        http_t.accepted += status == 200
                        http_t.clear += status != 200
                        _check_chunks(http_t, got)
            await calls["logs"](good, timeout=30)  # still serving
        assert await asyncio.to_thread(post, "/v1/logs", good, "application/x-protobuf") == 200
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert grpc_t.crashes == 0, grpc_t.examples
    assert http_t.crashes == 0, http_t.examples
    assert not logged, logged
    _record(figures, "otlp receiver: grpc", grpc_t, started)
    _record(figures, "otlp receiver: http", http_t, started)


# -- the syslog receiver -------------------------------------------------------------------------------


async def test_syslog_receiver(figures: Figures, caplog: pytest.LogCaptureFixture) -> None:
    """Framing + parsing on the corpus, mutations and hypothesis bytes (pure), then the corpus over
    real TCP and UDP sockets: events or dead letters with known reasons, and the receiver keeps serving."""
    from agent.sources import SyslogSource
    from agent.sources.syslog import Framer, SyslogFields, to_chunk_parts
    from tests.proof.fuzzkit import syslog_corpus

    started = time.monotonic()
    rng = random.Random(514)
    fields = SyslogFields()
    corpus = list(syslog_corpus())
    t = Tally()

    def one(name: str, data: bytes, cut: int) -> None:
        t.tried += 1
        try:
            framer = Framer(8192)
            frames = framer.feed(data[:cut]) + framer.feed(data[cut:]) + framer.close()
            lines, letters = to_chunk_parts(frames, fields, source="syslog:tcp", now=1.0, limit=8192)
            _check_chunks(t, [Chunk("syslog:tcp", lines, letters=tuple(letters))])
        except Exception as exc:
            t.crash(f"{name}: {type(exc).__name__}: {exc}")
            return
        t.accepted += not letters
        t.clear += bool(letters)

    for name, data in corpus:
        one(name, data, len(data) // 2)
    base = b"".join(data for name, data in corpus if name.startswith("valid"))
    for k in range(pick(300, 5000)):
        data = mutate(base, rng)
        one(f"mutation {k}", data, rng.randint(0, len(data)))

    @HYPOTHESIS
    @given(st.binary(max_size=2000), st.integers(0, 2000))
    def run(data: bytes, cut: int) -> None:
        one("hypothesis", data, cut)

    run()

    src = SyslogSource(fields=fields, clock=time.time, tcp_port=0, udp_port=0, max_message_bytes=8192)
    got: list[Chunk] = []

    async def pipeline() -> None:
        async for chunk in src.chunks():
            got.append(chunk)
            if chunk.ack is not None:
                chunk.ack()

    task = asyncio.create_task(pipeline())
    await asyncio.wait_for(src.ready.wait(), 10)
    sock_t = Tally()
    import socket

    try:
        assert src.tcp_bound
        assert src.udp_bound
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for _, data in corpus:
                sock_t.tried += 2
                _, writer = await asyncio.open_connection("127.0.0.1", src.tcp_bound)
                writer.write(data)
                await writer.drain()
                writer.close()
                await writer.wait_closed()
                udp.sendto(data[:60000], ("127.0.0.1", src.udp_bound))
        _, writer = await asyncio.open_connection("127.0.0.1", src.tcp_bound)
        writer.write(b"<13>1 - survivor app - - - still here\n")
        await writer.drain()
        writer.close()
        deadline = time.monotonic() + 20
        while not any(b"survivor" in c.data for c in got):
            assert time.monotonic() < deadline, "the receiver stopped serving"
            await asyncio.sleep(0.01)
        sock_t.accepted = sock_t.tried
        _check_chunks(sock_t, got)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert t.crashes == 0, t.examples
    assert sock_t.crashes == 0, sock_t.examples
    assert not logged, logged
    _record(figures, "syslog framing and parsing", t, started, corpus=len(corpus))
    _record(figures, "syslog receiver: tcp and udp", sock_t, started)
