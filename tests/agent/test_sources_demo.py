from __future__ import annotations

import re
from collections import Counter
from itertools import pairwise
from pathlib import Path

import msgspec

from agent.config import Limits
from agent.decode import Decoder
from agent.model import Event
from agent.sources import DemoSource, generate_lines, write_dataset
from agent.sources.demo import ENDPOINTS, STAGES

START = "2026-01-05T00:00:00Z"
T0 = 1767571200.0


def events(seed: int = 7, users: int = 300, days: int = 2) -> list[Event]:
    data = b"".join(generate_lines(seed, users, days, START))
    good, bad = Decoder(Limits()).decode(data, "demo", now=0)
    assert bad == []
    return good


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    a = list(generate_lines(3, 50, 1, START))
    assert a == list(generate_lines(3, 50, 1, START))
    assert a != list(generate_lines(4, 50, 1, START))


def test_time_ordered_within_range_and_decodable() -> None:
    evs = events()
    assert all(x.ts <= y.ts for x, y in pairwise(evs))
    assert evs[0].ts >= T0
    assert evs[-1].ts < T0 + 2 * 86400
    names = Counter(e.name for e in evs)
    assert set(names) == {*STAGES, "api_request", "error"}
    assert names["signup"] == 300
    assert len({e.unit for e in evs}) == 300


def test_funnel_drop_off_is_monotone_and_values_are_time_to_value() -> None:
    evs = events(users=1000)
    counts = Counter(e.name for e in evs)
    stage_counts = [counts[s] for s in STAGES]
    assert all(a >= b for a, b in pairwise(stage_counts)), stage_counts
    assert stage_counts[0] > stage_counts[-1] > 0
    last: dict[str, float] = {}
    for e in sorted((e for e in evs if e.name in STAGES), key=lambda e: e.ts):
        if e.name == "signup":
            assert e.value is None
        else:
            assert e.value is not None
            assert abs(e.value - (e.ts - last[e.unit])) < 0.01
        last[e.unit] = e.ts
        assert e.attrs["plan"] in {"free", "team", "enterprise"}
        assert e.attrs["region"] in {"eu", "us", "apac"}
        assert e.attrs["source"] in {"docs", "referral", "ads", "event"}


def test_operational_telemetry_carries_pii_in_free_text() -> None:
    evs = events(users=500)
    api = [e for e in evs if e.name == "api_request"]
    assert api
    assert all(e.attrs["endpoint"] in ENDPOINTS and e.value and e.value > 0 for e in api)
    text = "\n".join(str(e.attrs["message"]) for e in evs if "message" in e.attrs)
    patterns = {
        "email": r"[\w.]+@[\w-]+\.[\w.]+",
        "card": r"\b(?:\d{4}[ -]?){3}\d{4}\b",
        "iban": r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,}",
        "jwt": r"eyJ[\w-]+\.[\w-]+\.[\w-]+",
        "url_credentials": r"://\w+:\w+@",
        "phone": r"\+\d{1,2} \d",
        "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
        "api_key": r"\b(?:sk_live_|AKIA|ghp_)\w+",
        "ipv4": r"\b\d{1,3}(?:\.\d{1,3}){3}\b",
    }
    for kind, pattern in patterns.items():
        assert re.search(pattern, text), kind
    assert any("Traceback" in str(e.attrs["message"]) for e in evs if e.name == "error")
    assert any("email" in e.attrs for e in evs if e.name == "signup")


async def test_source_yields_the_same_lines_in_chunks(tmp_path: Path) -> None:
    src = DemoSource(seed=7, users=100, days=1, start=START, lines_per_chunk=100)
    chunks = [c async for c in src.chunks()]
    assert len(chunks) > 1
    assert all(c.ack is None and c.offset_key is None for c in chunks)
    expected = b"".join(generate_lines(7, 100, 1, START))
    assert b"".join(c.data for c in chunks) == expected
    out = tmp_path / "demo.jsonl"
    assert write_dataset(out, seed=7, users=100, days=1, start=START) == expected.count(b"\n")
    assert out.read_bytes() == expected
    assert msgspec.json.decode(expected.split(b"\n")[0])["name"] == "signup"
