"""collector.cli.tables: what the admin CLI lists, as pure text (table, JSON, CSV)."""

from __future__ import annotations

import csv
import io

import msgspec

from collector.cli.tables import USAGE_FIELDS, format_usage, keys_table, table, tenants_table
from collector.store import KeyRecord, Tenant
from collector.store.records import UsageDay

DAYS = [
    UsageDay("acme", "2026-01-01", 3, 30, 3000, 1, {"too_old": 2, "rate_limited": 1}, 0),
    UsageDay("beta", "2026-01-01", 0, 0, 0, 0, {}, 1),
]


def test_columns_are_aligned_two_spaces_apart_without_trailing_blanks() -> None:
    out = table(("a", "bb"), [["xxx", "y"], ["z", ""]])
    assert out == "a    bb\nxxx  y\nz\n"
    assert table(("name",), []) == "name\n"


def test_usage_as_a_table_shows_refusals_by_reason() -> None:
    lines = format_usage(DAYS, "table").splitlines()
    assert lines[0].split() == list(USAGE_FIELDS)
    assert lines[1].split() == ["acme", "2026-01-01", "3", "30", "3000", "1", "too_old=2;rate_limited=1", "0"]
    assert lines[2].split()[-2:] == ["-", "1"]


def test_usage_as_csv_and_json_round_trip() -> None:
    rows = list(csv.DictReader(io.StringIO(format_usage(DAYS, "csv"))))
    assert [r["tenant"] for r in rows] == ["acme", "beta"]
    assert rows[0]["refused"] == "too_old=2;rate_limited=1"
    assert rows[1]["refused"] == ""
    assert msgspec.json.decode(format_usage(DAYS, "json"), type=list[UsageDay]) == DAYS


def test_tenants_and_keys_tables() -> None:
    assert tenants_table([Tenant("acme", "suspended", 0.0, 5.0)]).splitlines()[1].split() == [
        "acme",
        "suspended",
        "1970-01-01T00:00:00Z",
    ]
    keys = [
        KeyRecord("k1", "acme", "edge-1", b"", "active", 0.0),
        KeyRecord("k2", "acme", "edge-1", b"", "retired", 0.0, retired_at=60.0),
    ]
    lines = keys_table(keys).splitlines()
    assert lines[0].split() == ["key_id", "tenant", "agent", "state", "added", "retired"]
    assert lines[1].split()[-1] == "-"
    assert lines[2].split()[-1] == "1970-01-01T00:01:00Z"
