"""Demo source: a seeded, deterministic generator of realistic telemetry (JSON lines).

Same ``(seed, users, days, start)`` → byte-identical output, on any machine. Lines come out in
timestamp order. Every user gets a privacy unit ``unit = "usr_<12 hex>"`` (unique per user).

Evaluator journey (funnel)
--------------------------
Stages, in order; a user reaches a stage only after the previous one, so stage counts never increase
along the funnel (drop-off is monotone)::

    signup → eval_requested → sandbox_provisioned → run_started → run_completed
           → kpi_viewed → shared_exported → tuning_applied

- ``ts``: epoch seconds (number, millisecond precision). Signups are spread uniformly over
  ``[start, start + days)``; later stages follow after log-normal delays; events after
  ``start + days`` are not emitted (journeys still in progress at the end are cut, as in real data).
- ``value``: time to value — seconds since the user's previous stage (float). ``signup`` has no
  ``value``.
- ``attrs`` on every journey event: ``plan`` (``free`` | ``team`` | ``enterprise``), ``region``
  (``eu`` | ``us`` | ``apac``), ``source`` (``docs`` | ``referral`` | ``ads`` | ``event``).
  ``signup`` also carries ``email`` and ``company`` — personal data that a policy must drop or
  pseudonymise (deny by default drops them).
- Step conversion (before plan/source lift): eval_requested 0.82, sandbox_provisioned 0.93,
  run_started 0.78, run_completed 0.90, kpi_viewed 0.72, shared_exported 0.55, tuning_applied 0.48;
  ``team`` and ``enterprise`` convert better, ``ads`` worse. Median delays: 15 min, 90 s, 25 min,
  7 min, 20 min, 3 h, 10 h.

Operational telemetry
---------------------
- ``api_request``: 0–3 per journey stage after signup, near that stage. ``ts``: RFC 3339 string
  with milliseconds and ``Z`` (as log shippers send it). ``value``: latency in milliseconds
  (log-normal, median ≈ 120 ms, with a slow tail). ``attrs``: ``endpoint`` (one of
  :data:`ENDPOINTS`), ``status`` (HTTP status as a string: ``"200"``, ``"201"``, ``"400"``,
  ``"401"``, ``"404"``, ``"429"``, ``"500"``, ``"503"``), ``method`` (``GET``/``POST``),
  ``client_ip`` (IPv4 or IPv6 — personal data), ``message`` (free text; about two thirds contain
  PII: emails, phone numbers, IPv4/IPv6, MAC addresses, Luhn-valid card numbers, mod-97-valid
  IBANs, US SSNs, JWTs, API keys, URLs with credentials).
- ``error``: after about 15 % of ``run_started``, before the run completes. ``ts``: RFC 3339 string.
  No ``value``. ``attrs``: ``component`` (``runner`` | ``sandbox`` | ``scheduler`` | ``exporter``),
  ``kind`` (exception class name), ``message`` (a multi-line, stack-trace-like text containing PII).

:func:`generate_lines` yields the lines; :func:`write_dataset` writes them to a file (the dataset
``hush-agent demo-data --out FILE`` ships); :class:`DemoSource` feeds them to the pipeline.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import math
import random
import string
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from agent.sources.base import Chunk
from hushmetric.timefmt import parse_rfc3339

__all__ = ["ENDPOINTS", "STAGES", "DemoSource", "generate_lines", "write_dataset"]

STAGES = (
    "signup",
    "eval_requested",
    "sandbox_provisioned",
    "run_started",
    "run_completed",
    "kpi_viewed",
    "shared_exported",
    "tuning_applied",
)
# stage → (step conversion, median delay in seconds, log-normal sigma)
_STEPS = {
    "eval_requested": (0.82, 15 * 60, 1.0),
    "sandbox_provisioned": (0.93, 90, 0.6),
    "run_started": (0.78, 25 * 60, 1.1),
    "run_completed": (0.90, 7 * 60, 0.7),
    "kpi_viewed": (0.72, 20 * 60, 1.0),
    "shared_exported": (0.55, 3 * 3600, 1.2),
    "tuning_applied": (0.48, 10 * 3600, 1.0),
}
_STAGE_ENDPOINT = {
    "eval_requested": ("POST", "/v1/evals"),
    "sandbox_provisioned": ("POST", "/v1/sandboxes"),
    "run_started": ("POST", "/v1/runs"),
    "run_completed": ("GET", "/v1/runs/{id}"),
    "kpi_viewed": ("GET", "/v1/kpis"),
    "shared_exported": ("POST", "/v1/exports"),
    "tuning_applied": ("POST", "/v1/tuning"),
}
ENDPOINTS = tuple(sorted({endpoint for _, endpoint in _STAGE_ENDPOINT.values()}))
_PLANS = (("free", 0.6, 1.0), ("team", 0.3, 1.08), ("enterprise", 0.1, 1.15))
_REGIONS = (("eu", 0.4), ("us", 0.4), ("apac", 0.2))
_SOURCES = (("docs", 0.35, 1.05), ("referral", 0.2, 1.08), ("ads", 0.3, 0.9), ("event", 0.15, 1.0))
_STATUSES = (("200", 0.86), ("201", 0.04), ("400", 0.02), ("401", 0.01), ("404", 0.02), ("429", 0.02),
             ("500", 0.02), ("503", 0.01))  # fmt: skip
_FIRST = ("jane", "li", "omar", "sofia", "arjun", "mette", "kenji", "chloe", "diego", "amara", "priya")
_LAST = ("doe", "wang", "haddad", "rossi", "patel", "jensen", "sato", "martin", "garcia", "okafor", "weber")
_DOMAINS = ("gmail.com", "outlook.com", "acme-corp.com", "globex.io", "initech.de", "umbrella.co.uk")
_COMPANIES = ("Acme Corp", "Globex", "Initech GmbH", "Umbrella Ltd", "Hooli", "Stark Industries")
_ALNUM = string.ascii_letters + string.digits


class DemoSource:
    """The demo dataset as a finite source, ``lines_per_chunk`` lines per :class:`Chunk`."""

    name = "demo"

    def __init__(self, *, seed: int, users: int, days: int, start: str | float, lines_per_chunk: int = 4096):
        self._args = (seed, users, days, start)
        self._per_chunk = lines_per_chunk

    async def chunks(self) -> AsyncIterator[Chunk]:
        batch: list[bytes] = []
        for line in generate_lines(*self._args):
            batch.append(line)
            if len(batch) >= self._per_chunk:
                yield Chunk(self.name, b"".join(batch))
                batch = []
                await asyncio.sleep(0)
        if batch:
            yield Chunk(self.name, b"".join(batch))


def write_dataset(
    path: Path,
    *,
    seed: int = 7,
    users: int = 400,
    days: int = 2,
    start: str | float = "2026-01-05T00:00:00Z",
    pii_rate: float | None = None,
) -> int:
    """Write the dataset as JSON lines to ``path``; returns the number of lines."""
    n = 0
    with path.open("wb") as out:
        for line in generate_lines(seed, users, days, start, pii_rate=pii_rate):
            out.write(line)
            n += 1
    return n


def generate_lines(
    seed: int, users: int, days: int, start: str | float, *, pii_rate: float | None = None
) -> Iterator[bytes]:
    """Every event of the dataset as one JSON line (ending in ``\\n``), in timestamp order.

    ``pii_rate``: the share of API request messages that carry personal data. Default (None): the
    demo's own mix, two in three — dense on purpose, to show redaction at work. Benchmarks also use
    a production-like rate such as 0.05.
    """
    t0 = parse_rfc3339(start) if isinstance(start, str) else float(start)
    end = t0 + days * 86400
    rng = random.Random(seed)
    signups = sorted(round(t0 + rng.random() * (end - t0), 3) for _ in range(users))
    encode = msgspec.json.Encoder().encode
    heap: list[tuple[float, int, bytes]] = []
    seq = 0
    for index, signup in enumerate(signups):
        while heap and heap[0][0] <= signup:
            yield heapq.heappop(heap)[2]
        for ts, event in _user(rng, index, signup, pii_rate):
            if ts < end:
                seq += 1
                heapq.heappush(heap, (ts, seq, encode(event) + b"\n"))
    while heap:
        yield heapq.heappop(heap)[2]


def _user(
    rng: random.Random, index: int, signup: float, pii_rate: float | None
) -> Iterator[tuple[float, dict[str, Any]]]:
    unit = f"usr_{index:06x}{rng.getrandbits(24):06x}"
    plan, plan_lift = _pick3(rng, _PLANS)
    region = _pick(rng, _REGIONS)
    source, source_lift = _pick3(rng, _SOURCES)
    attrs = {"plan": plan, "region": region, "source": source}
    email = _email(rng)
    yield signup, {"name": "signup", "ts": signup, "unit": unit,
                   "attrs": {**attrs, "email": email, "company": rng.choice(_COMPANIES)}}  # fmt: skip
    previous = signup
    for stage in STAGES[1:]:
        rate, median, sigma = _STEPS[stage]
        if rng.random() >= min(0.99, rate * plan_lift * source_lift):
            break
        ts = round(previous + median * math.exp(rng.gauss(0.0, sigma)), 3)
        yield ts, {"name": stage, "ts": ts, "unit": unit, "value": round(ts - previous, 3), "attrs": attrs}
        for _ in range(rng.choice((0, 1, 1, 2, 2, 3))):
            at = round(ts + rng.uniform(-min(60.0, ts - previous), 120.0), 3)
            yield at, _api_request(rng, unit, at, stage, email, pii_rate)
        if stage == "run_started" and rng.random() < 0.15:
            at = round(ts + rng.uniform(5.0, 300.0), 3)
            yield at, _error(rng, unit, at, email)
        previous = ts


def _api_request(
    rng: random.Random, unit: str, at: float, stage: str, email: str, pii_rate: float | None
) -> dict[str, Any]:
    method, endpoint = _STAGE_ENDPOINT[stage]
    status = _pick(rng, _STATUSES)
    latency = 120.0 * math.exp(rng.gauss(0.0, 0.7)) * (8.0 if rng.random() < 0.03 else 1.0)
    ip = _ipv6(rng) if rng.random() < 0.2 else _ipv4(rng)
    return {
        "name": "api_request",
        "ts": _rfc3339(at),
        "unit": unit,
        "value": round(latency, 2),
        "attrs": {
            "endpoint": endpoint,
            "method": method,
            "status": status,
            "client_ip": ip,
            "message": _message(rng, f"{method} {endpoint}", status, email, ip, pii_rate),
        },
    }


def _message(
    rng: random.Random, request: str, status: str, email: str, ip: str, pii_rate: float | None
) -> str:
    choice = _template(rng, pii_rate)
    if choice < 4:
        return f"{request} {status} in handler"
    return (
        f"{request} {status} for {email} from {ip}",
        f"rate limit: {email} exceeded 100 req/min, retry later",
        f"payment method updated for {email}: card {_card(rng)}",
        f"webhook delivery to {_url_with_credentials(rng)} failed: connection reset",
        f"auth ok: bearer {_jwt(rng, email)}",
        f"api key {_api_key(rng)} used from {ip}",
        f"invoice sent to {email}, IBAN {_iban(rng)}, call back {_phone(rng)}",
        f"support callback at {_phone(rng)}, SSN on file {_ssn(rng)}, device {_mac(rng)}",
    )[choice - 4]


def _template(rng: random.Random, pii_rate: float | None) -> int:
    """Index of a message template: 0-3 are clean, 4-11 carry personal data."""
    if pii_rate is None:
        return rng.randrange(12)  # the demo's own mix: 8 in 12 carry personal data
    return rng.randrange(4, 12) if rng.random() < pii_rate else 0


def _error(rng: random.Random, unit: str, at: float, email: str) -> dict[str, Any]:
    component, kind, func, detail = rng.choice(
        (
            ("runner", "TimeoutError", "wait_ready", f"sandbox for {email} silent at {_ipv4(rng)}:8443"),
            ("sandbox", "PermissionError", "mount", f"token {_api_key(rng)} lacks scope sandbox:write"),
            ("scheduler", "ConnectionError", "connect", f"DSN {_url_with_credentials(rng)} refused"),
            ("exporter", "ValueError", "charge", f"could not charge card {_card(rng)} for {email}"),
        )
    )
    line = rng.randrange(40, 900)
    message = (
        "Traceback (most recent call last):\n"
        f'  File "/srv/eval/{component}/core.py", line {line}, in {func}\n'
        f"    result = self._{func}(ctx, deadline=30)\n"
        f'  File "/srv/eval/{component}/client.py", line {line // 3 + 7}, in _{func}\n'
        "    raise exc\n"
        f"{kind}: {detail}"
    )
    return {
        "name": "error",
        "ts": _rfc3339(at),
        "unit": unit,
        "attrs": {"component": component, "kind": kind, "message": message},
    }


# -- realistic fake personal data (valid checksums, so detectors fire as on real data) -------------


def _pick(rng: random.Random, options: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([o[0] for o in options], weights=[o[1] for o in options])[0]


def _pick3(rng: random.Random, options: tuple[tuple[str, float, float], ...]) -> tuple[str, float]:
    name, _, lift = rng.choices(options, weights=[o[1] for o in options])[0]
    return name, lift


def _rfc3339(ts: float) -> str:
    ms = round(ts * 1000)
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def _email(rng: random.Random) -> str:
    sep = rng.choice((".", "_", ""))
    return f"{rng.choice(_FIRST)}{sep}{rng.choice(_LAST)}{rng.randrange(100)}@{rng.choice(_DOMAINS)}"


def _phone(rng: random.Random) -> str:
    return rng.choice(
        (
            f"+1 415 555 {rng.randrange(10000):04d}",
            f"+44 20 7946 {rng.randrange(10000):04d}",
            f"+49 30 {rng.randrange(1000000, 9999999)}",
            f"({rng.randrange(201, 989)}) 555-{rng.randrange(10000):04d}",
        )
    )


def _ipv4(rng: random.Random) -> str:
    first = rng.choice((23, 46, 81, 103, 151, 185, 203))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _ipv6(rng: random.Random) -> str:
    return "2a02:" + ":".join(f"{rng.getrandbits(16):x}" for _ in range(7))


def _mac(rng: random.Random) -> str:
    return ":".join(f"{rng.getrandbits(8):02x}" for _ in range(6))


def _luhn_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return str((10 - total % 10) % 10)


def _card(rng: random.Random) -> str:
    body = rng.choice(("4", "51", "55")) + "".join(str(rng.randrange(10)) for _ in range(14))
    number = body[:15] + _luhn_digit(body[:15])
    sep = rng.choice((" ", "-", ""))
    return sep.join(number[i : i + 4] for i in range(0, 16, 4))


def _iban(rng: random.Random) -> str:
    country, bban = rng.choice(
        (
            ("DE", "".join(str(rng.randrange(10)) for _ in range(18))),
            ("FR", "".join(str(rng.randrange(10)) for _ in range(23))),
            ("NL", "ABNA" + "".join(str(rng.randrange(10)) for _ in range(10))),
        )
    )
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    iban = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban


def _ssn(rng: random.Random) -> str:
    return f"{rng.randrange(1, 666):03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(rng: random.Random, email: str) -> str:
    header = _b64(b'{"alg":"HS256","typ":"JWT"}')
    payload = _b64(msgspec.json.encode({"sub": email, "iat": 1767571200 + rng.randrange(10**6)}))
    return f"{header}.{payload}.{_b64(rng.randbytes(32))}"


def _api_key(rng: random.Random) -> str:
    def token(n: int, alphabet: str = _ALNUM) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    return rng.choice(
        (
            f"sk_live_{token(24)}",
            f"AKIA{token(16, string.ascii_uppercase + string.digits)}",
            f"ghp_{token(36)}",
        )
    )


def _url_with_credentials(rng: random.Random) -> str:
    password = "".join(rng.choice(_ALNUM) for _ in range(12))
    return rng.choice(
        (
            f"https://deploy:{password}@hooks.acme-corp.com/ci/notify",
            f"postgres://app:{password}@db.internal.globex.io:5432/prod",
            f"ftp://backup:{password}@files.initech.de/nightly/",
        )
    )
