"""Kit of the agent-side proof families: real ``hush-agent`` processes, a private Mosquitto, event
feeds with known windows, canary PII, and the bookkeeping that accounts for every event.

Nothing is mocked: the agent is ``hush-agent run`` (daemon) or ``run --once`` in a subprocess over its
own SQLite state, the collector is :class:`tests.proof.proofkit.Collector`, the broker is the shared
Mosquitto or a private ``mosquitto`` subprocess on a free loopback port.

How events are accounted for without being fooled by DP noise
-------------------------------------------------------------
The proof policy (:func:`write_policy`) gives the budget an absurdly large ρ, so the discrete
Gaussian that OpenDP draws for each count has σ ≈ 0.001: ``P(noise ≠ 0) < exp(-10⁵)``, so a released
count *is* the true count. The rows carry the σ they were noised with, and :func:`window_counts`
refuses rows with σ ≥ 0.05, so the argument is checked, not assumed. This measures the plumbing
(journal, offsets, acks, ledger, outbox, sender, collector) — the noise itself is family 8c's job.
Every event has its own privacy unit, so two counts per window tell apart the two things we want:

- ``ev_count`` (``max_contributions = 1``): distinct events of the window. An event redelivered by
  the broker after a crash (at-least-once) is bounded away, so this must equal what was published.
- ``ev_raw`` (``max_contributions = 100``): every journaled copy; ``ev_raw - ev_count`` is the number
  of redelivered duplicates that reached a release (0 for the file source: its offset is committed
  in the event's transaction).

Events are stamped by a :class:`Stamper`: event time starts at the wall clock and runs ``rate``
times faster, capped at 4 minutes ahead (the agent refuses timestamps more than 5 minutes ahead as
``future_ts``). The window schedule never depends on the data (issue 9): the daemon closes a window
only once the wall clock has passed its end + lateness (30 s) and the input is idle or the watermark
has passed it too, so the daemon's tick never closes a window that still gets events, and whether an
event is "late" never depends on when a kill happened. What the clock has not closed yet is released
at the end by ``run --once`` over a declared range (``--to`` after the last event's window).

Families that need windows to close *during* a run (the collector outage fills the outbox) stamp in
the past instead (``Stamper(lag=SWEEP)``: event time sweeps from 4 minutes behind the clock up to
it) and declare the schedule's start first (:meth:`AgentDir.begin_schedule`): the daemon's own first
start would begin at the current window.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import string
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import journal, ledger, outbox
from agent.scaffold import init_dir
from hushmetric.batch import decode_batch
from hushmetric.keys import load_signing_key, public_key_b64
from tests.proof.proofkit import Collector

__all__ = [
    "WINDOW",
    "AgentDir",
    "Canaries",
    "Mosquitto",
    "Stamper",
    "accounting",
    "event_lines",
    "free_port",
    "scan_files",
    "window_counts",
    "window_start",
]

WINDOW = 60
LEAD_CAP = 240.0  # event time at most this far ahead of the wall clock (the agent allows 300 s)
SWEEP = 240.0  # or: event time starting this far behind the clock, catching up (Stamper.lag)
MAX_SIGMA = 0.05  # above this a released count is no longer the exact count (see the module doc)

BIN = Path(sys.executable).parent


def _argv(tool: str, module: str) -> list[str]:
    script = BIN / tool
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Stamper:
    """Monotonic event times: ``rate`` times faster than the wall clock, at most ``LEAD_CAP`` ahead.
    Remembers how many events each window got (``per_window``) and the last time handed out."""

    rate: float = 8.0
    start: float = field(default_factory=time.time)
    # With a lag, event time starts this far behind the clock and catches up with it (never ahead):
    # windows then close by clock and watermark as fast as event time sweeps past them.
    lag: float = 0.0
    last: float = 0.0
    per_window: Counter[int] = field(default_factory=Counter)

    def next(self) -> float:
        now = time.time()
        cap = now if self.lag else now + LEAD_CAP
        ts = round(min(self.start - self.lag + (now - self.start) * self.rate, cap), 3)
        ts = max(ts, self.last)
        self.last = ts
        return ts

    def commit(self, stamps: Iterable[float]) -> None:
        """Count ``stamps`` as handed over for good (PUBACKed by the broker, or written)."""
        for ts in stamps:
            self.per_window[window_start(ts)] += 1

    @property
    def published(self) -> int:
        return sum(self.per_window.values())


def window_start(ts: float) -> int:
    return int(ts // WINDOW) * WINDOW


# -- canaries ---------------------------------------------------------------------------------------


def _luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randint(0, 9) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        x = d * 2 if i % 2 == 0 else d
        total += x - 9 if x > 9 else x
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return f"{s[:4]} {s[4:8]} {s[8:12]} {s[12:]}"


def _iban(rng: random.Random) -> str:
    bban = "".join(str(rng.randint(0, 9)) for _ in range(18))  # DE: 8-digit bank code + 10-digit account
    numeric = int(bban + "131400")  # "DE00" moved to the end, letters as numbers (D=13, E=14)
    check = 98 - numeric % 97
    s = f"DE{check:02d}{bban}"
    return " ".join(s[i : i + 4] for i in range(0, len(s), 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Canaries:
    """Unique PII values of one run; none of them may appear in any file the scan reads."""

    email: str
    card: str
    iban: str
    phone: str
    jwt: str
    api_key: str

    @classmethod
    def make(cls, rng: random.Random) -> Canaries:
        tag = "".join(rng.choices(string.ascii_lowercase + string.digits, k=10))
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps({"sub": f"canary-{tag}", "iat": rng.randint(1, 1 << 30)}).encode())
        sig = _b64(rng.randbytes(32))
        key = "sk_live_" + "".join(rng.choices(string.ascii_letters + string.digits, k=32))
        return cls(
            email=f"canary.{tag}@example.org",
            card=_luhn_card(rng),
            iban=_iban(rng),
            phone=f"+1 415 555 {rng.randint(1000, 9999)}",
            jwt=f"{header}.{body}.{sig}",
            api_key=key,
        )

    def values(self) -> dict[str, str]:
        return {
            "email": self.email,
            "card": self.card,
            "iban": self.iban,
            "phone": self.phone,
            "jwt": self.jwt,
            "api_key": self.api_key,
        }

    def needles(self) -> dict[str, bytes]:
        """What the scan looks for: each value as is, and its most distinctive part alone (digits of
        a card without spaces, the JWT's body, the key's secret part)."""
        out = {k: v.encode() for k, v in self.values().items()}
        out["card_digits"] = self.card.replace(" ", "").encode()
        out["iban_compact"] = self.iban.replace(" ", "").encode()
        out["jwt_body"] = self.jwt.split(".")[1].encode()
        out["api_key_secret"] = self.api_key[len("sk_live_") :].encode()
        out["email_local"] = self.email.split("@")[0].encode()
        return out

    def sentence(self, i: int) -> str:
        """A free-text value carrying the canaries (round-robin, two per line)."""
        vals = list(self.values().values())
        a, b = vals[i % len(vals)], vals[(i + 1) % len(vals)]
        return f"user wrote: contact {a} or use {b} for ticket {i}"


def scan_files(paths: Iterable[Path], canaries: Canaries) -> tuple[list[tuple[str, str]], int, int]:
    """Raw-byte scan of ``paths`` (every file under a directory; SQLite ``-wal``/``-shm`` included).

    Returns (hits as (file, canary kind), files scanned, bytes scanned).
    """
    needles = canaries.needles()
    hits: list[tuple[str, str]] = []
    files = nbytes = 0
    for path in paths:
        todo = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in todo:
            if not f.exists():
                continue
            data = f.read_bytes()
            files += 1
            nbytes += len(data)
            hits.extend((str(f.name), kind) for kind, needle in needles.items() if needle in data)
    return hits, files, nbytes


# -- events -----------------------------------------------------------------------------------------


def event(i: int, ts: float, canaries: Canaries | None, tag: str) -> dict[str, Any]:
    """Event ``i`` of a feed: its own privacy unit; canaries in its free text."""
    ev: dict[str, Any] = {"name": "ev", "ts": ts, "unit": f"{tag}-u{i}"}
    if canaries is not None:
        ev["attrs"] = {"msg": canaries.sentence(i)}
        if i % 7 == 0:
            ev["attrs"]["secret_note"] = canaries.email  # not an allowed key: dropped whole
        if i % 11 == 0:
            ev["unit"] = f"{tag}-{i}-{canaries.email}"  # a unit holding PII is pseudonymised
    return ev


def event_lines(start: int, stamps: Sequence[float], canaries: Canaries | None, tag: str) -> bytes:
    return b"".join(
        json.dumps(event(start + k, ts, canaries, tag)).encode() + b"\n" for k, ts in enumerate(stamps)
    )


def bad_lines(canaries: Canaries) -> bytes:
    """Malformed input carrying canaries: it must be dead-lettered without keeping the raw bytes."""
    return (
        f'{{"name": "ev", "ts": "not a number {canaries.email}", "unit": "x"}}\n'
        f'{{"name": "ev", "unit": "{canaries.card}" this is not json\n'
        f'{{"name": "{canaries.iban}", "ts": 1, "unit": 5}}\n'
    ).encode()


# -- config -----------------------------------------------------------------------------------------

POLICY = """\
# Proof policy: an absurd budget so the counts are exact (see tests/proof/agentkit.py).
version = 1
name = "proof"
unit = "user"

[budget]
mechanism = "zcdp"
period = "day"
rho = 1e13

[window]
size = "1m"
lateness = "30s"

[attrs.msg]
kind = "text"
max_length = 4096

[[metrics]]
name = "ev_count"
events = ["ev"]
stat = "count"
max_contributions = 1

[[metrics]]
name = "ev_raw"
events = ["ev"]
stat = "count"
max_contributions = 100
"""


def write_policy(path: Path, text: str = POLICY) -> None:
    path.write_text(text, encoding="utf-8")


def _range(start: float | None, stop: float | None) -> list[str]:
    return [
        *(["--from", f"{start:.3f}"] if start is not None else []),
        *(["--to", f"{stop:.3f}"] if stop is not None else []),
    ]


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class AgentDir:
    """One agent: its config directory, its daemon process (start / kill -9 / SIGTERM) and its CLI."""

    root: Path
    tenant: str = "proof"
    agent: str = "agent-1"
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.root / "agent.toml"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def db(self) -> Path:
        return self.state / "agent.db"

    def init(
        self,
        *,
        sources: str,
        endpoint: str | None,
        policy: str = POLICY,
        extra: str = "",
    ) -> None:
        init_dir(self.root, tenant=self.tenant, collector=endpoint, agent=self.agent, force=True)
        write_policy(self.root / "policy.toml", policy)
        self.write_config(sources=sources, endpoint=endpoint, extra=extra)

    def write_config(self, *, sources: str, endpoint: str | None, extra: str = "") -> None:
        endpoints = f'["{endpoint}"]' if endpoint else "[]"
        self.config.write_text(
            f'tenant = "{self.tenant}"\nagent = "{self.agent}"\npolicy = "policy.toml"\n'
            'state_dir = "state"\nkey_file = "agent.key"\nsecret_file = "site.secret"\n'
            f"{extra}\n"
            f'[collector]\nendpoints = {endpoints}\ntimeout = "5s"\nretry_initial = "1s"\n'
            'retry_max = "1s"\nrefused_retry_max = "2s"\n\n'
            '[log]\nlevel = "info"\n\n'
            f"{sources}\n",
            encoding="utf-8",
        )

    def public_b64(self) -> str:
        return public_key_b64(bytes(load_signing_key(self.root / "agent.key").verify_key))

    def register(self, collector: Collector) -> None:
        collector.ok("key", "add", self.tenant, "--agent", self.agent, "--public-key", self.public_b64())

    # -- processes -----------------------------------------------------------------------------

    def start(
        self, once_input: Path | None = None, *, start: float | None = None, stop: float | None = None
    ) -> None:
        """The daemon (``run``), or with ``once_input`` a ``run --once --input FILE`` to kill
        (``start``/``stop``: its declared range, see :meth:`run_once`)."""
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        err = self.root / f"run-{self.starts}.err"
        self.logs.append(err)
        once = [] if once_input is None else ["--once", "--input", str(once_input), *_range(start, stop)]
        with err.open("wb") as fe:
            self.proc = subprocess.Popen(
                [*_argv("hush-agent", "agent.cli"), "run", *once, "--config", str(self.config)],
                cwd=self.root,
                stdout=subprocess.DEVNULL,
                stderr=fe,
                env=_env(),
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> bool:
        """SIGKILL; True if the process was still running (a crash injected, not a corpse shot)."""
        assert self.proc is not None
        running = self.proc.poll() is None
        if running:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        return running

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait for the graceful exit; returns its status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return int(self.proc.returncode)

    def cli(self, *args: str, stdin: bytes | None = None, timeout: float = 120) -> Result:
        proc = subprocess.run(
            [*_argv("hush-agent", "agent.cli"), *args, "--config", str(self.config)],
            cwd=self.root,
            input=stdin,
            capture_output=True,
            timeout=timeout,
            env=_env(),
        )
        return Result(
            proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        )

    def run_once(
        self, input_path: Path | None = None, *, start: float | None = None, stop: float | None = None
    ) -> Result:
        """``run --once``; ``start``/``stop`` declare the range of windows (``--from``/``--to``): the
        window schedule is never derived from the data, so a run over past events must declare it."""
        args = ["run", "--once", "--json"]
        if input_path is not None:
            args += ["--input", str(input_path)]
        return self.cli(*args, *_range(start, stop))

    def schedule_position(self) -> int | None:
        """Where the agent's window schedule stands (None before it started)."""
        try:
            with self.read() as conn:
                return journal.schedule_position(conn)
        except sqlite3.Error:
            return None

    def begin_schedule(self, start: float) -> None:
        """Start the window schedule at ``start`` (``run --once --from``, an empty range), as if the
        agent had been running since then: a daemon's own first start would begin at the current
        window, and a feed stamped in the past would be late."""
        empty = self.root / "schedule-start.jsonl"
        empty.write_bytes(b"")
        res = self.run_once(empty, start=start, stop=start)
        assert res.code == 0, res.err

    def first_from(self, start: float) -> float | None:
        """``start`` if the schedule has not started yet, else None (a run continues where it stands;
        a ``--from`` before released windows would be refused)."""
        return start if self.schedule_position() is None else None

    def tracebacks(self) -> list[str]:
        return [p.name for p in self.logs if p.exists() and "Traceback" in p.read_text(errors="replace")]

    # -- reading the state (read-only, as an auditor would) --------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            yield conn
        finally:
            conn.close()

    def journal_units(self) -> Counter[int]:
        """Journaled (unreleased) events per window start."""
        out: Counter[int] = Counter()
        with self.read() as conn:
            for events in journal.replay(conn):
                for ev in events:
                    out[int(ev.ts // WINDOW) * WINDOW] += 1
        return out

    def released_starts(self) -> set[int]:
        try:
            with self.read() as conn:
                return journal.released_windows(conn)
        except sqlite3.Error:
            return set()

    def journal_max_ts(self) -> float | None:
        try:
            with self.read() as conn:
                row = conn.execute("SELECT MAX(max_ts) FROM journal_blocks").fetchone()
        except sqlite3.Error:
            return None
        return None if row is None or row[0] is None else float(row[0])


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HUSH_AGENT")}


# -- accounting -------------------------------------------------------------------------------------


@dataclass
class Released:
    """Batches of one agent that exist (collector, outbox, quarantine), keyed by seq."""

    by_seq: dict[int, tuple[int, float, dict[str, float]]] = field(default_factory=dict)  # start, rho, counts
    where: dict[int, str] = field(default_factory=dict)
    twice: int = 0  # window starts held by two different seqs
    max_sigma: float = 0.0


def window_counts(collector: Collector | None, agent: AgentDir) -> Released:
    """Every batch of ``agent`` that exists anywhere, with its window, ρ and counts per metric."""
    rel = Released()

    def take(seq: int, start: int, rho: float, rows: Sequence[tuple[str, float, float]], where: str) -> None:
        counts: dict[str, float] = {}
        for metric, value, sigma in rows:
            counts[metric] = counts.get(metric, 0.0) + value
            rel.max_sigma = max(rel.max_sigma, sigma)
        if seq in rel.by_seq:
            return  # the same batch in two places (delivered, and still in the outbox): one batch
        rel.by_seq[seq] = (start, rho, counts)
        rel.where[seq] = where

    if collector is not None and collector.db.exists():
        batches = collector.query(
            "SELECT id, seq, window_start_epoch, COALESCE(rho, 0) FROM batches WHERE tenant = ? AND agent = ?",
            (agent.tenant, agent.agent),
        )
        rows = collector.query(
            "SELECT r.batch_id, r.metric, r.value, r.scale FROM batch_rows r JOIN batches b ON b.id = r.batch_id"
            " WHERE b.tenant = ? AND b.agent = ?",
            (agent.tenant, agent.agent),
        )
        by_batch: dict[int, list[tuple[str, float, float]]] = {}
        for bid, metric, value, scale in rows:
            by_batch.setdefault(bid, []).append((metric, float(value), float(scale)))
        for bid, seq, start, rho in batches:
            take(int(seq), int(start), float(rho), by_batch.get(bid, []), "collector")
    if agent.db.exists():
        with agent.read() as conn:
            blobs = [
                (seq, env, "outbox") for seq, env in conn.execute("SELECT seq, envelope FROM outbox")
            ] + [
                (seq, env, "quarantine")
                for seq, env in conn.execute("SELECT seq, envelope FROM outbox_quarantine")
            ]
        for seq, blob, where in blobs:
            env = outbox._envelope_decoder.decode(blob)
            batch = decode_batch(env.payload)
            start = int(_epoch(batch.window.start))
            take(
                int(seq),
                start,
                float(batch.privacy.rho or 0.0),
                [(r.metric, float(r.value), float(r.noise.scale)) for r in batch.rows],
                where,
            )
    starts = Counter(start for start, _, _ in rel.by_seq.values())
    rel.twice = sum(n - 1 for n in starts.values() if n > 1)
    return rel


def _epoch(text: str) -> float:
    from hushmetric.timefmt import parse_rfc3339

    return parse_rfc3339(text)


@dataclass
class Accounting:
    published: int
    accounted: int  # distinct events in released counts + journaled events
    lost: int
    extra: int  # accounted beyond what was published (double counting)
    redelivered: int  # copies counted by ev_raw beyond ev_count (at-least-once redelivery)
    in_journal: int
    windows: int
    batches: int
    twice: int
    ledger_rho: float
    batches_rho: float
    ledger_ok: bool
    charges_without_batch: int  # charged, but the batch exists nowhere (over-count: allowed, reported)
    uncharged: int  # a batch without a charge (under-count: must be 0)
    max_sigma: float
    problems: list[str]


def accounting(
    published_per_window: Counter[int], collector: Collector | None, agent: AgentDir
) -> Accounting:
    """Compare what was published (per window) with what the agent's state and the collector hold."""
    rel = window_counts(collector, agent)
    in_journal = agent.journal_units()
    problems: list[str] = []
    released_count: Counter[int] = Counter()
    released_raw: Counter[int] = Counter()
    for start, _rho, counts in rel.by_seq.values():
        released_count[start] += round(counts.get("ev_count", 0.0))
        released_raw[start] += round(counts.get("ev_raw", 0.0))
    lost = extra = redelivered = accounted = 0
    for start in sorted(set(published_per_window) | set(released_count) | set(in_journal)):
        want = published_per_window.get(start, 0)
        got = released_count.get(start, 0) + in_journal.get(start, 0)
        if released_count.get(start, 0) and in_journal.get(start, 0):
            problems.append(f"window {start} both released and still journaled")
        accounted += min(got, want)
        lost += max(want - got, 0)
        extra += max(got - want, 0)
        if got != want:
            problems.append(f"window {start}: published {want}, accounted {got}")
        redelivered += released_raw.get(start, 0) - released_count.get(start, 0)
    with agent.read() as conn:
        total = ledger.total(conn)
        check = ledger.verify(conn)
        charged_seqs = {int(r[0]) for r in conn.execute("SELECT seq FROM privacy_charge")}
    batches_rho = sum(rho for _, rho, _ in rel.by_seq.values())
    if total.rho < batches_rho * (1 - 1e-9):
        problems.append(f"ledger total ρ {total.rho} < ρ of existing batches {batches_rho}")
    missing_charge = set(rel.by_seq) - charged_seqs
    if missing_charge:
        problems.append(f"batches without a ledger charge: {sorted(missing_charge)[:10]}")
    if rel.max_sigma >= MAX_SIGMA:
        problems.append(f"noise σ {rel.max_sigma} too large for exact accounting")
    if rel.twice:
        problems.append(f"{rel.twice} windows released under two seqs")
    if not check.ok:
        problems.extend(check.problems)
    return Accounting(
        published=sum(published_per_window.values()),
        accounted=accounted,
        lost=lost,
        extra=extra,
        redelivered=redelivered,
        in_journal=sum(in_journal.values()),
        windows=len(set(released_count)),
        batches=len(rel.by_seq),
        twice=rel.twice,
        ledger_rho=total.rho,
        batches_rho=batches_rho,
        ledger_ok=check.ok,
        charges_without_batch=len(charged_seqs - set(rel.by_seq)),
        uncharged=len(missing_charge),
        max_sigma=rel.max_sigma,
        problems=problems,
    )


# -- a private Mosquitto ----------------------------------------------------------------------------


@dataclass
class Mosquitto:
    """``mosquitto`` on a free loopback port with persistence in ``workdir``; restartable."""

    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.workdir}/\nautosave_interval 1\nmax_queued_messages 0\n"
            f"log_dest file {self.workdir}/mosquitto.log\n" + ("user root\n" if os.geteuid() == 0 else ""),
            # as root, mosquitto drops to user "mosquitto", which cannot write the 0700 tmp dir:
            # no persistence file, and a restart would silently forget every queued message
            encoding="utf-8",
        )
        self.starts += 1
        self.proc = subprocess.Popen(
            ["/usr/sbin/mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited with {self.proc.returncode}")
            time.sleep(0.05)
        raise AssertionError("mosquitto did not listen within 15 s")

    def stop(self) -> None:
        """SIGTERM: Mosquitto writes its persistence file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def restart(self) -> None:
        self.stop()
        self.start()
