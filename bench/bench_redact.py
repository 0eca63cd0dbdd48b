"""Micro-benchmark of the redaction stage: ``Redactor.redact_many`` against ``msgspec.json.decode``.

Both run over the same events in the same process, interleaved, best of ``repeat`` rounds each, timed
in process CPU time (so other load on a shared machine inflates neither side); the ratio (redact
events/s divided by decode events/s) is comparable across machines.

Run: ``python -m bench.bench_redact [N]``, ``make bench`` or call ``bench_redact()``. The agent's
whole-pipeline target is a ratio of at least 0.10; redaction is one stage of it.
"""

from __future__ import annotations

import os
import random
import sys
import time

import msgspec

from agent.model import Event
from agent.policy import AttrRule, Policy, Redaction
from agent.redact import Redactor

__all__ = ["bench_redact", "main", "make_events"]

_ROUTES = ["/api/v1/orders", "/api/v1/users/me", "/health", "/api/v1/cart/items", "/login", "/search"]
_METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
_REGIONS = ["eu-west-1", "eu-central-1", "us-east-1"]
_MESSAGES = [
    "request completed in {ms} ms",
    "cache miss for key product:{n}",
    "user signed in",
    "retrying upstream call (attempt {a}/3)",
    "payment authorised for order ORD-{n}",
    "slow query took {ms} ms on orders table",
]
_PII_MESSAGES = [
    "password reset requested by alice.{n}@example.com",
    "callback failed for client 10.1.{a}.{a} after {ms} ms",
    "customer called from +44 20 7946 {n4}",
    "card 4111 1111 1111 1111 declined",
]


def make_events(n: int, *, pii_share: float = 0.05, seed: int = 7) -> list[bytes]:
    """Encoded JSON events of a realistic mix: labels that repeat, free text, a few disallowed keys."""
    rng = random.Random(seed)
    enc = msgspec.json.Encoder()
    out = []
    for i in range(n):
        pool = _PII_MESSAGES if rng.random() < pii_share else _MESSAGES
        msg = rng.choice(pool).format(
            ms=rng.randint(1, 900),
            n=rng.randint(1000, 99999),
            a=rng.randint(1, 3),
            n4=rng.randint(1000, 9999),
        )
        out.append(
            enc.encode(
                {
                    "name": "http.request",
                    "ts": 1_732_600_000 + i * 0.01,
                    "unit": f"user-{rng.randint(1, 50_000)}",
                    "value": rng.random() * 500,
                    "attrs": {
                        "route": rng.choice(_ROUTES),
                        "method": rng.choice(_METHODS),
                        "status": rng.choice(["200", "200", "200", "404", "500"]),
                        "region": rng.choice(_REGIONS),
                        "msg": msg,
                        "client_ip": f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                    },
                }
            )
        )
    return out


def _policy() -> Policy:
    return Policy(
        version=1,
        name="bench",
        redaction=Redaction(default="mask", detectors={"email": "hash", "ipv4": "generalize"}),
        attrs={
            "route": AttrRule(),
            "method": AttrRule(),
            "status": AttrRule(),
            "region": AttrRule(),
            "msg": AttrRule(kind="text", max_length=512),
        },
    )


def bench_redact(n: int = 200_000, repeat: int = 5) -> dict[str, float]:
    lines = make_events(n)
    payload = b"[" + b",".join(lines) + b"]"
    decoder = msgspec.json.Decoder(list[Event])
    redactor = Redactor(_policy(), b"bench-site-secret-0123456789")
    best_decode = best_redact = float("inf")
    events: list[Event] = []
    for _ in range(repeat):
        t0 = time.process_time()
        events = decoder.decode(payload)
        best_decode = min(best_decode, time.process_time() - t0)
        redactor = Redactor(_policy(), b"bench-site-secret-0123456789")  # cold cache each round
        t0 = time.process_time()
        redactor.redact_many(events)
        best_redact = min(best_redact, time.process_time() - t0)
    counts = redactor.take_counts()
    result = {
        "events": float(n),
        "decode_eps": n / best_decode,
        "redact_eps": n / best_redact,
        "ratio": best_decode / best_redact,
        "findings": float(sum(v for k, v in counts.items() if not k.startswith("dropped"))),
    }
    return result


def main(argv: list[str] | None = None) -> None:
    """Print the figures; N from ``argv``, else ``HUSH_BENCH_EVENTS`` (default 200,000)."""
    args = argv or []
    n = int(args[0]) if args else int(os.environ.get("HUSH_BENCH_EVENTS", "200000"))
    r = bench_redact(n)
    print(
        f"redact_many: {r['redact_eps']:,.0f} events/s; "
        f"msgspec.json.decode: {r['decode_eps']:,.0f} events/s; "
        f"ratio {r['ratio']:.3f} ({int(r['events'])} events, {int(r['findings'])} findings)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
