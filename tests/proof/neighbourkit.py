"""Kit of the neighbouring-input family (10): datasets D and D' = D plus one privacy unit, the real
``hush-agent`` run on each, and a field-by-field comparison of everything that leaves the site.

What leaves a site is read back exactly as an observer gets it: the batches and the signed manifest of
the bundle ``hush-agent export`` writes, the statement ``hush-agent attest`` signs and the certificate
``hush-agent certify`` signs (issue 14: public but for its issue and expiry times, the clock's, and
its egress head, post-processing). Every field is
put in one of three classes (docs/privacy.md, "What leaves a site, field by field"):

- **public**: a function of the policy, the configuration, the declared range and the clock only;
  it must be byte-identical between D and D' (window set, seqs, row keys, privacy and noise
  parameters, redactions, manifest entries, attestation spend);
- **noise**: a DP release charged to the ledger (a row's value); it may differ, by at most
  ``L + t`` where ``L`` is the most one unit can move that entry (the policy's bounds: the
  l∞ sensitivity, in value units) and ``t`` bounds the difference of two independent noises of the
  row's declared scale except with probability ≤ 5·10⁻¹¹ (:func:`noise_bound`: ``7·√2·σ`` for the
  discrete Gaussian, whose differences are sub-Gaussian with variance ≤ 2σ²; ``2b·ln(2/5·10⁻¹¹)``
  for the discrete Laplace). No false alarm in practice, while a leak (a counter, a missing
  window, a lost value) is off by far more;
- **post-processing**: bytes computed from released noisy values (``prev`` hashes, DSSE payloads and
  signatures, manifest digests, the egress head, a derived row's value and its approximate scale);
  checked for what they must be (a valid chain, digests that match, values inside the clamp range),
  not compared.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import itertools
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.bound import Bounds
from agent.policy import Policy, load_policy
from agent.scaffold import init_dir
from hushmetric import dsse
from hushmetric.batch import Batch, decode_batch, payload_digest
from hushmetric.bundle import decode_manifest, read_bundle
from hushmetric.timefmt import parse_rfc3339

__all__ = [
    "DAY",
    "KINDS",
    "POLICY",
    "T0",
    "WINDOW",
    "Outcome",
    "Site",
    "base_events",
    "compare",
    "extra_events",
    "neighbour",
    "pii_needles",
    "policy_text",
]

Z = 7.0  # noise bound in standard deviations of the difference (see the module doc)
TAIL = 2 * math.exp(-Z * Z / 2)  # ≈ 4.6e-11: chance that one row's noise difference passes its bound
DAY = 86400
WINDOW = 6 * 3600
T0 = calendar.timegm((2026, 1, 5, 0, 0, 0))  # a Monday; the declared range is [T0, T0 + 2 days)
RANGE = (T0, T0 + 2 * DAY)
DATA_WINDOWS = (0, 1, 2, 5, 6)  # D has data in these; 3 and 4 are a gap, 7 is after its last window
POPULAR = ("/home", "/search")
KINDS = ("flood", "spread", "open_values", "pii", "gaps", "straddle", "out_of_order")
OPEN_VALUES_CAP = 4  # see Site: one unit takes three slots, two popular values need two
_AGENT = [sys.executable, "-m", "agent.cli"]

POLICY = """\
# Neighbouring-input proof policy: real noise (moderate rho), every statistic, an open dimension.
version = 1
name = "neighbours"
unit = "user"

[budget]
{budget}
period = "day"
delta = 1e-7

[window]
size = "6h"
lateness = "10m"

[attrs.plan]
kind = "label"
max_length = 16

[attrs.endpoint]
kind = "label"
max_length = 64

[attrs.msg]
kind = "text"                 # used by no metric: dropped at the edge
max_length = 256

[[metrics]]
name = "logins"
events = ["login"]
stat = "count"
dims = { plan = ["free", "team"] }
max_contributions = 2

[[metrics]]
name = "api"
events = ["api"]
stat = "count"
dims = { endpoint = "open" }
max_partitions = 3
max_contributions = 2

[[metrics]]
name = "latency"
events = ["api"]
stat = "histogram"
lower = 0.0
upper = 1000.0
buckets = [0, 100, 500, 1000]
max_contributions = 3

[[metrics]]
name = "spend"
events = ["buy"]
stat = "sum"
lower = 0.0
upper = 100.0
max_contributions = 2

[[metrics]]
name = "basket"
events = ["buy"]
stat = "mean"
lower = 0.0
upper = 100.0
max_contributions = 2

[[metrics]]
name = "visitors"
events = ["login", "api"]
stat = "distinct_units"

[[metrics]]
name = "logins_day"           # per-period bounds (issue 15): caps over the day, a day total too
events = ["login"]
stat = "count"
dims = { plan = ["free", "team"] }
max_contributions = 2
bound = "period"
period_total = 0.3
"""


# -- datasets ---------------------------------------------------------------------------------------


BUDGETS = {
    # Per day; 6 metrics share a window's quarter. Large enough that the popular endpoints clear the
    # selection threshold by far more than the noise bound, small enough that the noise is real.
    "zcdp": 'mechanism = "zcdp"\nrho = 100.0',
    "pure": 'mechanism = "pure"\nepsilon = 400.0',
}


def policy_text(mechanism: str = "zcdp") -> str:
    return POLICY.replace("{budget}", BUDGETS[mechanism])


def noise_bound(mechanism: str, scale: float) -> float:
    """t with P(|n_D − n_D'| > t) ≤ TAIL for two independent noises of the declared law.

    Discrete Gaussian σ: the difference is sub-Gaussian with variance ≤ 2σ², t = Z·√2·σ.
    Discrete Laplace b: P(|X − Y| > t) ≤ P(|X| > t/2) + P(|Y| > t/2) ≤ 2·exp(−t/(2b)), so
    t = 2b·ln(2/TAIL).
    """
    if mechanism == "laplace":
        return 2 * scale * math.log(2 / TAIL)
    return Z * math.sqrt(2.0) * scale


def _ev(name: str, ts: float, unit: str, value: float | None = None, **attrs: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"name": name, "ts": round(ts, 3), "unit": unit}
    if value is not None:
        ev["value"] = value
    if attrs:
        ev["attrs"] = attrs
    return ev


def base_events(seed: int, units: int = 14) -> list[dict[str, Any]]:
    """D: ``units`` regular units active in :data:`DATA_WINDOWS`; popular endpoints far above the
    selection threshold, one rare endpoint per unit far below it, free text that is dropped."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for w in DATA_WINDOWS:
        start = T0 + w * WINDOW
        for u in range(units):
            unit = f"u{u:03d}"

            def ts(start: int = start) -> float:
                return start + rng.uniform(60, WINDOW - 60)

            plan = "team" if u % 3 == 0 else "free"
            out += [_ev("login", ts(), unit, plan=plan) for _ in range(rng.randint(1, 3))]
            for path in POPULAR:
                out += [_ev("api", ts(), unit, rng.uniform(0, 1200), endpoint=path) for _ in range(2)]
            if rng.random() < 0.3:
                out.append(_ev("api", ts(), unit, rng.uniform(0, 900), endpoint=f"/rare-{u}"))
            out += [_ev("buy", ts(), unit, rng.uniform(-5, 130)) for _ in range(rng.randint(0, 2))]
            if rng.random() < 0.2:
                out.append(_ev("login", ts(), unit, plan=plan, msg=f"hello from {unit}"))
    out.sort(key=lambda e: e["ts"])
    return out


def _anything(rng: random.Random, ts: float, unit: str) -> dict[str, Any]:
    kind = rng.randrange(4)
    if kind == 0:
        return _ev("login", ts, unit, plan=rng.choice(["free", "team", "gold"]))
    if kind == 1:
        return _ev("api", ts, unit, rng.uniform(-100, 5000), endpoint=rng.choice([*POPULAR, "/x"]))
    if kind == 2:
        return _ev("buy", ts, unit, rng.choice([0.0, 100.0, 1e9, -1e9, rng.uniform(0, 100)]))
    return _ev("unused_event", ts, unit)


def extra_events(kind: str, seed: int, size: int) -> tuple[list[dict[str, Any]], bool]:
    """The extra unit's events for one adversarial ``kind``; True when they go before D's events."""
    rng = random.Random(seed)
    unit = "x-extra"
    if kind == "flood":  # far past every cap, in one window (maybe one D has no data in)
        w = rng.randrange(8)
        start = T0 + w * WINDOW
        return [_anything(rng, start + rng.uniform(0, WINDOW - 1), unit) for _ in range(size)], False
    if kind == "spread":  # active in every window of a whole day
        day = rng.randrange(2)
        return [
            _anything(rng, T0 + day * DAY + rng.uniform(0, DAY - 1), unit) for _ in range(max(size, 8))
        ], False
    if kind == "open_values":  # first in its window, with many distinct values of the open dimension
        w = rng.choice(DATA_WINDOWS)
        start = T0 + w * WINDOW + 1  # D's events of the window start a minute in
        evs = [_ev("api", start + i * 1e-3, unit, 10.0, endpoint=f"/v{i}-{seed}") for i in range(size)]
        return evs, False
    if kind == "pii":  # personal data everywhere: unit id, free text, an open value, keys not allowed
        email, card = _pii(seed)
        w = rng.choice(DATA_WINDOWS)
        start = T0 + w * WINDOW + 30
        evs = [
            _ev("login", start, email, plan="free", msg=f"call me at +1 415 555 0{seed % 1000:03d}"),
            _ev("api", start + 1, email, 50.0, endpoint=f"/users/{email}"),
            _ev("api", start + 2, email, 50.0, endpoint=f"/pay/{card}"),
            _ev("buy", start + 3, email, 42.0, card=card, ssn="078-05-1120"),
            _ev(f"signup {email}", start + 4, email),
        ]
        return evs * max(1, size // 50), False
    if kind == "gaps":  # only where D has nothing: the gap, after its last window, past the range
        when = [T0 + 3 * WINDOW, T0 + 4 * WINDOW, T0 + 7 * WINDOW, RANGE[1] + 3600, RANGE[1] + 3 * DAY]
        return [
            _anything(rng, rng.choice(when) + rng.uniform(0, WINDOW - 1), unit) for _ in range(size)
        ], False
    if kind == "straddle":  # around the period boundary at midnight, both sides
        mid = T0 + DAY
        return [_anything(rng, mid + rng.uniform(-900, 900), unit) for _ in range(size)], False
    if kind == "out_of_order":  # first in the input, dated late in the range: nobody else turns late
        return [_anything(rng, RANGE[1] - rng.uniform(1, WINDOW), unit) for _ in range(size)], True
    raise ValueError(kind)


def _pii(seed: int) -> tuple[str, str]:
    return f"jane.{seed}@example.com", "4539 1488 0343 6467"


def pii_needles(seed: int) -> list[bytes]:
    """What must never appear in anything that left the site after the ``pii`` neighbour."""
    email, card = _pii(seed)
    return [email.encode(), email.split("@")[0].encode(), card.encode(), card.replace(" ", "").encode()]


def neighbour(base: list[dict[str, Any]], extra: list[dict[str, Any]], first: bool) -> list[dict[str, Any]]:
    """D' in input order: the extra unit's events first (``first``) or merged by time."""
    if first:
        return [*extra, *base]
    return sorted([*base, *extra], key=lambda e: e["ts"])


def jsonl(events: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


# -- one site, run as a black box -------------------------------------------------------------------


@dataclass
class Outcome:
    """What left the site in one run, decoded; plus the wall-clock bracket of the run."""

    batches: list[Batch]
    envelopes: list[dsse.Envelope]
    files: dict[str, bytes]
    manifest_env: dsse.Envelope
    manifest: Any
    attestation: dict[str, Any]
    attestation_env: dict[str, Any]
    clock: tuple[float, float]
    report: dict[str, Any] = field(default_factory=dict)
    raw: list[bytes] = field(default_factory=list)  # the bundle, attestation and certificate files
    certificate: dict[str, Any] = field(default_factory=dict)  # ``certify`` statement (issue 14)
    certificate_env: dict[str, Any] = field(default_factory=dict)

    def bytes_out(self) -> bytes:
        """Every byte that left, and every signed payload decoded (base64 would hide a needle)."""
        payloads = [e.payload for e in self.envelopes] + [self.manifest_env.payload]
        payloads.append(base64.b64decode(self.attestation_env["payload"]))
        if self.certificate_env:
            payloads.append(base64.b64decode(self.certificate_env["payload"]))
        return b"\n".join([*self.raw, *payloads])


class Site:
    """A config directory made once (same agent id, key and site secret for D and D'), copied per run."""

    def __init__(self, root: Path, policy: str | None = None) -> None:
        policy = policy_text() if policy is None else policy
        self.template = root / "template"
        init_dir(self.template, tenant="proof", collector=None, agent="agent-n", force=True)
        (self.template / "policy.toml").write_text(policy, encoding="utf-8")
        cfg = self.template / "agent.toml"
        text = cfg.read_text()
        # No sources (the input file is the source); and the old global cap on open values set low,
        # which agents since issue 9 ignore: with it, one unit arriving first in a window took
        # max_partitions of the few slots and a popular value arriving later was refused for everyone.
        text = text[: text.index("[[sources]]")] if "[[sources]]" in text else text
        cfg.write_text(text + f"\n[limits]\nmax_open_values = {OPEN_VALUES_CAP}\n")
        self.policy: Policy = load_policy(self.template / "policy.toml")
        self.root = root
        self.runs = 0

    @staticmethod
    def cli_help(command: str) -> str:
        return subprocess.run(
            [*_AGENT, command, "--help"],
            cwd=tempfile.gettempdir(),  # like the runs: the agent installed, not the current directory
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout

    def _cli(self, where: Path, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*_AGENT, *args, "--config", str(where / "agent.toml")],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def run(self, events: Sequence[dict[str, Any]], *, declared_range: bool) -> Outcome:
        """``run --once`` over ``events`` (with the declared range when the agent supports it), then
        ``export`` and ``attest``: what an observer of this site would get."""
        self.runs += 1
        where = self.root / f"run-{self.runs}"
        shutil.copytree(self.template, where)
        data = where / "input.jsonl"
        data.write_bytes(jsonl(events))
        args = ["run", "--once", "--json", "--input", str(data)]
        if declared_range:
            args += ["--from", _rfc(RANGE[0]), "--to", _rfc(RANGE[1])]
        before = time.time()
        ran = self._cli(where, *args)
        assert ran.returncode == 0, (ran.returncode, ran.stdout[-2000:], ran.stderr[-2000:])
        bundle = where / "out.tar"
        exported = self._cli(where, "export", "--out", str(bundle))
        assert exported.returncode == 0, exported
        attested = self._cli(where, "attest", "--out", str(where / "attestation.json"))
        assert attested.returncode == 0, attested
        certified = self._cli(where, "certify", "--profile", "air-gap", "--out", str(where / "cert.json"))
        assert certified.returncode == 0, certified
        after = time.time()
        parsed = read_bundle(bundle.read_bytes())
        envelopes = [
            dsse.from_json(parsed.files[name])
            for name in sorted(parsed.files, key=lambda n: int(n.split("/")[1].split(".")[0]))
        ]
        att_env = json.loads((where / "attestation.json").read_text())
        statement = json.loads(base64.b64decode(att_env["payload"]))
        cert_env = json.loads((where / "cert.json").read_text())
        return Outcome(
            batches=[decode_batch(e.payload) for e in envelopes],
            envelopes=envelopes,
            files=parsed.files,
            manifest_env=parsed.manifest_envelope,
            manifest=decode_manifest(parsed.manifest_envelope.payload),
            attestation=statement,
            attestation_env=att_env,
            clock=(before, after),
            report=json.loads(ran.stdout),
            raw=[
                bundle.read_bytes(),
                (where / "attestation.json").read_bytes(),
                (where / "cert.json").read_bytes(),
            ],
            certificate=json.loads(base64.b64decode(cert_env["payload"])),
            certificate_env=cert_env,
        )


def _rfc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# -- comparison -------------------------------------------------------------------------------------


@dataclass
class Comparison:
    differences: list[str] = field(default_factory=list)
    batches: int = 0
    rows: int = 0
    noisy_rows: int = 0
    worst: float = 0.0  # largest |v_D - v_D'| / bound over noised rows
    open_rows: int = 0

    def differ(self, what: str) -> None:
        if len(self.differences) < 40:
            self.differences.append(what)


def _influence(policy: Policy) -> dict[str, float]:
    """Per metric: the most one unit can move one released entry, in value units (l∞ sensitivity)."""
    out: dict[str, float] = {}
    for m in policy.metrics:
        b = Bounds.of(m)
        linf = b.sensitivity(m.stat).linf
        out[m.name] = linf * b.quantum if m.stat in ("sum", "mean") else linf
    return out


def _row_key(row: Any) -> tuple[str, str, str]:
    return row.metric, row.stat, json.dumps(row.dims, sort_keys=True)


def _created_rule(batches: Sequence[Batch], lateness: int, clock: tuple[float, float]) -> list[str]:
    """``created`` is public: window end + lateness, or the session's start when that is later."""
    problems: list[str] = []
    session: float | None = None
    for b in batches:
        created = parse_rfc3339(b.created)
        closes = parse_rfc3339(b.window.end) + lateness
        if abs(created - closes) < 1e-6:
            continue
        if created < closes or not clock[0] - 1 <= created <= clock[1] + 1:
            problems.append(f"seq {b.seq}: created {b.created} is neither window end + lateness nor the run")
        elif session is None:
            session = created
        elif abs(created - session) > 1e-6:
            problems.append(f"seq {b.seq}: created {b.created} differs from the session start")
    return problems


def _check_stream(o: Outcome, name: str, lateness: int, cmp: Comparison) -> None:
    """What each stream must be on its own: a valid chain, digests that match, created by the rule."""
    prev = ""
    if len(o.batches) != len(o.envelopes):
        cmp.differ(f"{name}: {len(o.batches)} batches but {len(o.envelopes)} envelopes")
    for b, env in zip(o.batches, o.envelopes, strict=False):
        if b.prev != prev:
            cmp.differ(f"{name}: seq {b.seq} prev does not chain")
        prev = payload_digest(env.payload)
    for entry in o.manifest.batches:
        if hashlib.sha256(o.files[entry.file]).hexdigest() != entry.sha256:
            cmp.differ(f"{name}: manifest digest of {entry.file} does not match")
    for p in _created_rule(o.batches, lateness, o.clock):
        cmp.differ(f"{name}: {p}")


def compare(policy: Policy, d: Outcome, dp: Outcome) -> Comparison:
    """Every field of every batch, manifest and attestation of D against D' (see the module doc)."""
    cmp = Comparison()
    lateness = policy.lateness_seconds
    _check_stream(d, "D", lateness, cmp)
    _check_stream(dp, "D'", lateness, cmp)
    influence = _influence(policy)
    stats = {m.name: m for m in policy.metrics}
    windows_d = [(b.seq, b.window.start, b.window.end) for b in d.batches]
    windows_dp = [(b.seq, b.window.start, b.window.end) for b in dp.batches]
    if windows_d != windows_dp:
        first = next((x, y) for x, y in itertools.zip_longest(windows_d, windows_dp) if x != y)
        cmp.differ(
            f"window schedule: D {len(windows_d)} batches, D' {len(windows_dp)}; first difference {first}"
        )
    for a, b in zip(d.batches, dp.batches, strict=False):
        cmp.batches += 1
        created_a, created_b = parse_rfc3339(a.created), parse_rfc3339(b.created)
        closes = parse_rfc3339(a.window.end) + lateness
        if (created_a == closes) != (created_b == closes):
            cmp.differ(f"seq {a.seq}: created {a.created} vs {b.created}")
        for f in ("v", "tenant", "agent", "seq", "window", "policy", "privacy", "redactions"):
            if getattr(a, f) != getattr(b, f):
                cmp.differ(f"seq {a.seq}: {f} {getattr(a, f)!r} vs {getattr(b, f)!r}")
        rows_a = {_row_key(r): r for r in a.rows}
        rows_b = {_row_key(r): r for r in b.rows}
        if [_row_key(r) for r in a.rows] != [_row_key(r) for r in b.rows]:
            only_a = sorted(set(rows_a) - set(rows_b))[:3]
            only_b = sorted(set(rows_b) - set(rows_a))[:3]
            cmp.differ(f"seq {a.seq}: row keys differ (only in D {only_a}, only in D' {only_b})")
        for key in rows_a.keys() & rows_b.keys():
            ra, rb = rows_a[key], rows_b[key]
            cmp.rows += 1
            metric = stats[ra.metric]
            cmp.open_rows += "open" in metric.dims.values()
            if ra.noise.mechanism != rb.noise.mechanism:
                cmp.differ(f"seq {a.seq} {key}: mechanism {ra.noise.mechanism} vs {rb.noise.mechanism}")
                continue
            if ra.noise.mechanism == "derived":  # post-processing: inside the clamp range
                lo = min(metric.lower, metric.buckets[0] if metric.buckets else metric.lower)
                hi = max(metric.upper, metric.buckets[-1] if metric.buckets else metric.upper)
                if not (lo <= ra.value <= hi and lo <= rb.value <= hi):
                    cmp.differ(f"seq {a.seq} {key}: derived value outside [{lo}, {hi}]")
                continue
            if ra.noise.scale != rb.noise.scale:
                cmp.differ(f"seq {a.seq} {key}: noise scale {ra.noise.scale} vs {rb.noise.scale}")
            bound = influence[ra.metric] + noise_bound(ra.noise.mechanism, ra.noise.scale)
            cmp.noisy_rows += 1
            ratio = abs(ra.value - rb.value) / bound
            cmp.worst = max(cmp.worst, ratio)
            if ratio > 1:
                cmp.differ(f"seq {a.seq} {key}: |{ra.value} - {rb.value}| over the bound {bound:.3g}")
    # the bundle manifest: public except its creation time (the export's clock) and the digests
    ma, mb = d.manifest, dp.manifest
    if (ma.v, ma.tenant, ma.agent) != (mb.v, mb.tenant, mb.agent):
        cmp.differ("manifest header differs")
    if [(e.file, e.seq) for e in ma.batches] != [(e.file, e.seq) for e in mb.batches]:
        cmp.differ("manifest entries differ")
    for what, o in (("D", d), ("D'", dp)):
        created = parse_rfc3339(o.manifest.created)
        if not o.clock[0] - 1 <= created <= o.clock[1] + 1:
            cmp.differ(f"{what}: manifest created {o.manifest.created} is not the export's clock")
    if d.manifest_env.payload_type != dp.manifest_env.payload_type or [
        s.keyid for s in d.manifest_env.signatures
    ] != [s.keyid for s in dp.manifest_env.signatures]:
        cmp.differ("manifest envelope type or key ids differ")
    if [e.payload_type for e in d.envelopes] != [e.payload_type for e in dp.envelopes]:
        cmp.differ("batch envelope payload types differ")
    # the attestation: everything but its creation time and the egress head (a hash of noisy bytes)
    sa, sb = dict(d.attestation), dict(dp.attestation)
    for s in (sa, sb):
        s.pop("created", None)
        s["egress"] = {k: v for k, v in s["egress"].items() if k != "head"}
    if sa != sb:
        keys = sorted(k for k in sa.keys() | sb.keys() if sa.get(k) != sb.get(k))
        cmp.differ(
            f"attestation differs in {keys}: {[sa.get(k) for k in keys]} vs {[sb.get(k) for k in keys]}"
        )
    # the certificate (issue 14): everything but its issue and expiry times and the egress head
    ca, cb = dict(d.certificate), dict(dp.certificate)
    for c in (ca, cb):
        for k in ("issued", "valid_until"):
            c.pop(k, None)
        if "egress" in c:
            c["egress"] = {k: v for k, v in c["egress"].items() if k != "head"}
    if ca != cb:
        keys = sorted(k for k in ca.keys() | cb.keys() if ca.get(k) != cb.get(k))
        cmp.differ(
            f"certificate differs in {keys}: {[ca.get(k) for k in keys]} vs {[cb.get(k) for k in keys]}"
        )
    return cmp
