"""``hush-collector export`` (collector/outputs/files.py, collector/cli/outputs.py): CSV and Parquet with
the noise beside every value, the range bounds, and one-line errors."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
from pathlib import Path

import nacl.signing
import pyarrow.parquet as pq
import pytest

from collector.ingest import ingest
from collector.outputs.files import COLUMNS
from collector.report.intervals import Z95
from collector.store.sqlite.store import SqliteStore
from tests.collector.collector_testkit import T0, Agent, Hush, one_line_error


@pytest.fixture
def hush(tmp_path: Path) -> Hush:
    """Tenant acme with two batches: windows ending at T0 and T0 + 60 s."""
    h = Hush(tmp_path)
    agent = Agent("acme", "a1")

    async def seed() -> None:
        s = await SqliteStore.open(h.db, signing_key=nacl.signing.SigningKey.generate(), create=True)
        try:
            await s.create_tenant("acme", now=T0)
            await s.add_key("acme", "a1", agent.public_key, now=T0)
            await ingest(s, agent.next(rows=2), now=T0)
            agent.created = T0 + 60
            await ingest(s, agent.next(rows=1), now=T0 + 60)
        finally:
            await s.close()

    asyncio.run(seed())
    return h


def test_csv_has_every_row_with_its_interval(hush: Hush) -> None:
    rows = list(csv.DictReader(io.StringIO(hush.ok("export", "--tenant", "acme", "--format", "csv"))))
    assert [(r["seq"], r["metric"], float(r["value"])) for r in rows] == [
        ("1", "metric0", 10.0), ("1", "metric1", 11.0), ("2", "metric0", 10.0),
    ]  # fmt: skip
    first = rows[0]
    assert tuple(first) == COLUMNS
    assert json.loads(first["dims"]) == {"region": "r0"}
    assert float(first["noise_std"]) == 1.5
    assert math.isclose(float(first["ci95_lower"]), 10.0 - Z95 * 1.5)
    assert math.isclose(float(first["ci95_upper"]), 10.0 + Z95 * 1.5)


def test_range_bounds_select_windows_by_their_start(hush: Hush) -> None:
    later = hush.ok("export", "--tenant", "acme", "--from", "2026-03-10T12:00:00Z")
    assert [r["seq"] for r in csv.DictReader(io.StringIO(later))] == ["2"]
    earlier = hush.ok("export", "--tenant", "acme", "--until", "2026-03-10T12:00:00Z")
    assert [r["seq"] for r in csv.DictReader(io.StringIO(earlier))] == ["1", "1"]


def test_parquet_holds_the_same_table(hush: Hush, tmp_path: Path) -> None:
    out = tmp_path / "acme.parquet"
    hush.ok("export", "--tenant", "acme", "--format", "parquet", "--out", str(out))
    table = pq.read_table(out).to_pydict()
    assert tuple(table) == COLUMNS
    assert table["value"] == [10.0, 11.0, 10.0]
    assert table["seq"] == [1, 1, 2]


def test_errors_are_one_line(hush: Hush) -> None:
    one_line_error(hush("export", "--tenant", "nobody"), 3, "nobody")
    one_line_error(hush("export", "--tenant", "acme", "--format", "parquet"), 2, "--out")
    one_line_error(hush("export", "--tenant", "acme", "--from", "yesterday"), 2, "--from")
    one_line_error(hush("push", "--tenant", "acme"), 2, "--remote-write URL or --otlp-export")
    one_line_error(hush("push", "--tenant", "acme", "--remote-write", "ftp://x"), 2, "http")


def test_help_of_the_output_commands_renders(hush: Hush) -> None:
    """argparse %-formats help texts: a bare percent sign in one broke ``hush-collector --help``."""
    for argv in ((), ("export",), ("push",), ("serve",)):
        r = hush(*argv, "--help", db=False)
        assert r.code == 0, r.err
    assert "95-percent interval" in hush("export", "--help", db=False).out


def test_consistent_export_passes_plain_rows_through(hush: Hush) -> None:
    """Without period totals (every older agent) the consistent export is the export as released."""
    plain = hush.ok("export", "--tenant", "acme", "--format", "csv")
    assert hush.ok("export", "--tenant", "acme", "--format", "csv", "--consistent") == plain


def test_consistent_rows_add_up_to_the_period_total_and_leave_it_out() -> None:
    """Issue 15: with ``--consistent`` the windows are the least-squares estimates the reports show."""
    from collector.outputs.files import to_csv
    from collector.report.levels import level_view
    from collector.store.records import StoredRow

    starts = ["2026-01-05T00:00:00Z", "2026-01-05T06:00:00Z", "2026-01-05T12:00:00Z", "2026-01-05T18:00:00Z"]
    ends = [*starts[1:], "2026-01-06T00:00:00Z"]
    windows = [
        StoredRow("acme", "a1", i + 1, s, e, "signup", "count", {}, v, "gaussian", 2.0)
        for i, (s, e, v) in enumerate(zip(starts, ends, [10.0, 12.0, 9.0, 11.0], strict=True))
    ]
    total = StoredRow(
        "acme", "a1", 5, starts[0], ends[-1], "signup", "count", {}, 46.0, "gaussian", 3.0, "period"
    )
    rows = list(csv.DictReader(io.StringIO(to_csv(level_view([*windows, total]).rows))))
    assert [r["level"] for r in rows] == ["window"] * 4
    # windows sum to 42 with variance 4 x 2²; the total says 46 with variance 3²: the combined total
    # weighs them by their inverse variances, 42 + (46 - 42) x 16 / 25
    assert math.isclose(sum(float(r["value"]) for r in rows), 42.0 + (46.0 - 42.0) * 16 / 25)
    assert all(float(r["noise_std"]) < 2.0 for r in rows)  # every window gained from the total
