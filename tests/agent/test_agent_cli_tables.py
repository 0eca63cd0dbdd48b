"""agent.cli.tables: the plain-text forms the agent CLI prints, from records (pure)."""

from __future__ import annotations

from agent.cli import tables
from agent.epsilon import Guarantee
from agent.ledger import PeriodSummary
from agent.model import DeadLetter
from agent.outbox import Quarantined
from agent.runtime import RunReport

DAY = 1_767_571_200.0  # 2026-01-05T00:00:00Z


def g(measure: str = "rho", selection: float = 0.0) -> Guarantee:
    return Guarantee(
        measure=measure,
        period="day",
        cap=0.5,
        per_window=0.125,
        windows=4,
        epsilon=3.21,
        delta_conversion=1e-6 if measure == "rho" else 0.0,
        delta_selection_per_window=selection / 4,
        delta_selection=selection,
        delta_total=(1e-6 if measure == "rho" else 0.0) + selection,
    )


def test_guarantee_line_names_each_part_of_delta() -> None:
    assert tables.guarantee_line(g()) == (
        "privacy per day: rho 0.5 gives (epsilon 3.21, delta 1e-06); "
        "delta = 1e-06 to read rho as epsilon (OpenDP's conversion)"
    )
    line = tables.guarantee_line(g("epsilon", selection=4e-8))
    assert line == (
        "privacy per day: epsilon 0.5 gives (epsilon 3.21, delta 4e-08); "
        "delta = 4 windows x 1e-08 for partition selection"
    )
    assert tables.guarantee_line(g("epsilon")).endswith("(epsilon 3.21, delta 0)")


def test_run_report_splits_detector_findings_from_dropped_attributes() -> None:
    report = RunReport(events=10, redactions={"email": 2, "dropped_key": 5}, windows_released=1)
    lines = tables.run_report(report, counters={"dropped_key"})
    assert "attrs dropped     dropped_key 5 (unused or not allowed)" in lines
    assert "pii in kept attrs email 2" in lines
    assert lines[0] == "events accepted   10"
    assert not any(line.startswith("windows refused") for line in lines)  # only when there were some


def test_ledger_table_says_when_nothing_was_released() -> None:
    assert tables.ledger_table([], [], "rho")[1:] == ["(nothing released yet)"]
    row = PeriodSummary("2026-01-05", "rho", 0.25, 0.5, 0.25, 1e-7, 2, 1)
    head, line = tables.ledger_table([row], [g()], "rho")
    assert head.split()[:3] == ["period", "rho", "spent"]
    assert line.split() == ["2026-01-05", "0.2500", "0.5000", "0.2500", "2", "1", "3.21", "1e-06"]


def test_dead_letters_and_quarantine_print_utc_times_and_no_raw_input() -> None:
    letter = DeadLetter("json", "not JSON", "stdin", 9, "ab" * 32, DAY)
    assert tables.dead_letter_lines({"json": 1}, [letter]) == [
        "refused inputs by reason: json 1",
        f"2026-01-05T00:00:00Z json             stdin 9B hmac:{'ab' * 8} not JSON",
    ]
    assert tables.dead_letter_lines({}, []) == ["refused inputs by reason: none"]
    held = Quarantined(7, "cd" * 32, 100, 3, "INVALID_ARGUMENT", "malformed", DAY)
    assert tables.quarantine_lines([held]) == [
        "1 quarantined batches:",
        "       7  2026-01-05T00:00:00Z  3 rows  100 bytes  INVALID_ARGUMENT: malformed",
    ]
    assert tables.quarantine_lines([]) == ["0 quarantined batches"]


def test_empty_tables_print_nothing() -> None:
    assert tables.levels_table([], "day") == []
    assert tables.clipping_table([], "sample.jsonl") == []
