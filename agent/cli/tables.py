"""The plain-text forms of what ``hush-agent`` prints: run reports, the ledger, error and bias tables.

Pure: records in, lines out (no trailing newline); the commands write them. ``--json`` output is the
records themselves and is not formatted here.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.epsilon import Guarantee
    from agent.ledger import PeriodSummary
    from agent.levels import Clipping, LevelComparison
    from agent.model import DeadLetter
    from agent.outbox import Quarantined
    from agent.release import ExpectedError
    from agent.runtime import RunReport
    from agent.tune import BudgetSuggestion

__all__ = [
    "clipping_table",
    "dead_letter_lines",
    "error_table",
    "fmt",
    "guarantee_line",
    "ledger_table",
    "levels_table",
    "quarantine_lines",
    "run_report",
    "suggestion_lines",
]


def fmt(x: float) -> str:
    return f"{x:.4g}"


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def guarantee_line(g: Guarantee) -> str:
    """One line: a full period of a policy in (epsilon, delta)-DP terms, by OpenDP's conversion."""
    head = (
        f"privacy per {g.period}: {g.measure} {fmt(g.cap)} gives "
        f"(epsilon {g.epsilon:.3g}, delta {g.delta_total:.2g})"
    )
    parts = []
    if g.measure == "rho":
        parts.append(f"{g.delta_conversion:.2g} to read rho as epsilon (OpenDP's conversion)")
    if g.delta_selection:
        parts.append(f"{g.windows} windows x {g.delta_selection_per_window:.2g} for partition selection")
    return head + (f"; delta = {' + '.join(parts)}" if parts else "")


def run_report(report: RunReport, counters: Collection[str]) -> list[str]:
    """``run --once``: what one run did. ``counters`` are the redaction counters that are not a
    detector's (attributes dropped as unused or not allowed)."""
    # Everything that is not one of the counters is a detector's, built-in or the policy's own.
    found = {k: v for k, v in report.redactions.items() if k not in counters}
    other = {k: v for k, v in report.redactions.items() if k in counters}
    lines = [f"events accepted   {report.events}", f"dead letters      {report.dead_letters}"]
    if report.late and report.range_from_now:
        lines.append(
            f"late (dropped)    {report.late} (before this run's range, which started at the current "
            "window: pass --from TIME to release historical data)"
        )
    else:
        lines.append(f"late (dropped)    {report.late}")
    if other:  # dropped_key: not allowed, or allowed but used by no metric (data minimisation)
        lines.append(
            "attrs dropped     "
            + ", ".join(f"{k} {v}" for k, v in sorted(other.items()))
            + " (unused or not allowed)"
        )
    lines.append(
        "pii in kept attrs " + (", ".join(f"{k} {v}" for k, v in sorted(found.items())) or "none found")
    )
    lines.append(
        f"windows released  {report.windows_released} ({report.rows_released} rows)"
        + (f", range {report.range_from} .. {report.range_to}" if report.range_from else "")
    )
    if report.totals_released:
        lines.append(f"period totals     {report.totals_released} (one batch at each period's close)")
    if report.windows_refused:
        lines.append(f"windows refused   {report.windows_refused} (privacy budget exhausted)")
    if report.windows_held:
        held = report.windows_held
        lines.append(
            f"windows held      {held} (ledger unverified: see `hush-agent ledger --acknowledge-reset`)"
        )
    if report.windows_failed:
        failed = report.windows_failed
        lines.append(f"windows failed    {failed} (see the log; kept in the journal for the next start)")
    lines.append(f"batches delivered {report.batches_sent}")
    lines.append(f"left in outbox    {report.outbox_depth}")
    if report.delivery_error:
        lines.append(f"delivery          {report.delivery_error}")
    return lines


def ledger_table(rows: Sequence[PeriodSummary], spent_as: Sequence[Guarantee], unit: str) -> list[str]:
    """``ledger``: spend per period, with each period's spend read as (epsilon, delta)."""
    lines = [
        f"{'period':<12} {unit + ' spent':>12} {'cap':>10} {'left':>10} {'releases':>9} {'refused':>8}"
        f" {'epsilon':>8} {'at delta':>9}"
    ]
    lines += [
        f"{r.period:<12} {r.spent:>12.4f} {r.cap:>10.4f} {r.left:>10.4f} {r.releases:>9} {r.refusals:>8}"
        f" {g.epsilon:>8.3g} {g.delta_total:>9.2g}"
        for r, g in zip(rows, spent_as, strict=True)
    ]
    if not rows:
        lines.append("(nothing released yet)")
    return lines


def dead_letter_lines(counts: Mapping[str, int], letters: Sequence[DeadLetter]) -> list[str]:
    """``dead-letter``: refusals by reason, then the recent ones, newest first."""
    by_reason = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    return [f"refused inputs by reason: {by_reason}"] + [
        f"{_utc(d.at)} {d.reason:<16} {d.source} {d.size}B hmac:{d.digest[:16]} {d.detail}" for d in letters
    ]


def quarantine_lines(held: Sequence[Quarantined]) -> list[str]:
    """``outbox quarantine``: the batches the collector refused for good."""
    return [f"{len(held)} quarantined batches" + (":" if held else "")] + [
        f"{q.seq:>8}  {_utc(q.at)}  {q.rows} rows  {q.nbytes} bytes  {q.code}: {q.reason}" for q in held
    ]


def error_table(rows: Sequence[ExpectedError], measure: str, per_window: float) -> list[str]:
    """``tune``: expected error per released entry, per window."""
    head = ("metric", "stat", "noised", "mechanism", "std", "95% ±", "threshold")
    lines = [
        f"expected error per released entry, per window, at {measure} {fmt(per_window)}",
        "{:<22} {:<14} {:<16} {:<9} {:>10} {:>10} {:>9}".format(*head),
    ]
    for r in rows:
        threshold = "-" if r.threshold is None else f"{r.threshold:.0f}"
        lines.append(
            f"{r.metric:<22} {r.stat:<14} {r.basis:<16} {r.mechanism:<9} "
            f"{fmt(r.std):>10} {fmt(r.half_width_95):>10} {threshold:>9}"
        )
    return lines


def levels_table(rows: Sequence[LevelComparison], period: str) -> list[str]:
    """``tune``: 95 % half-widths under window bounds, period bounds, and period bounds with a total."""
    if not rows:
        return []
    head = ("metric", "bound", "window bounds", "period bounds", "with total", "total share")
    lines = [
        "",
        f"95% ± of a window value / of a {period} total (normal approx.): window bounds, "
        "period bounds, period bounds with a period total (least squares at the collector)",
        "{:<22} {:<7} {:>21} {:>21} {:>21} {:>11}".format(*head),
    ]
    for r in rows:
        levels = "-" if r.levels_window is None else f"{fmt(r.levels_window)} / {fmt(r.levels_total or 0)}"
        share = "-" if r.total_share is None else f"{r.total_share:g}"
        window = f"{fmt(r.window_bound_window)} / {fmt(r.window_bound_total)}"
        by_period = f"{fmt(r.period_bound_window)} / {fmt(r.period_bound_total)}"
        lines.append(f"{r.metric:<22} {r.bound:<7} {window:>21} {by_period:>21} {levels:>21} {share:>11}")
    lines.append(
        f"period bounds cap what a unit adds over the whole {period} (max_partitions, "
        "max_contributions): more is dropped and counted as contributions_dropped"
    )
    return lines


def clipping_table(rows: Sequence[Clipping], path: str) -> list[str]:
    """``tune --input``: the bias side: what the caps drop from a sample, per window and per period."""
    if not rows:
        return []
    lines = [
        "",
        f"bias on the sample {path}: contributions the caps drop (missing from released values)",
        "{:<22} {:<7} {:>13} {:>9} {:>8} {:>14}".format(
            "metric", "bound", "contributions", "dropped", "units", "units clipped"
        ),
    ]
    for r in rows:
        share = f"{r.dropped / r.contributions:.1%}" if r.contributions else "-"
        lines.append(
            f"{r.metric:<22} {r.bound:<7} {r.contributions:>13} {share:>9} {r.units:>8} {r.units_clipped:>14}"
        )
    return lines


def suggestion_lines(s: BudgetSuggestion, epsilon: float | None, delta: float) -> list[str]:
    """``tune --target``: the budget that reaches the target (``epsilon``: the suggested period ρ read
    as ε at ``delta``, for zCDP policies). Unreachable targets are the caller's (exit 1)."""
    lines = [
        "",
        f"for ±{fmt(s.target)} on {', '.join(s.metrics)}: "
        f"{s.measure} {fmt(s.needed_per_window)} per window, i.e. "
        f"[budget] {s.measure} = {fmt(s.needed_per_period)} per {s.period} "
        f"(now {fmt(s.current_per_window)} per window)",
    ]
    if epsilon is not None:
        lines.append(
            f"  that is epsilon {epsilon:.3g} per {s.period} at delta {delta:.2g} "
            "(OpenDP), plus the delta of partition selection"
        )
    if s.missing_now:
        lines.append(f"over the target at the current budget: {', '.join(s.missing_now)}")
    else:
        lines.append("every one of them already meets the target at the current budget")
    return lines
