"""Renderers for the KPI and funnel reports: terminal table, JSON, CSV and a self-contained HTML file.

Public API (pure)::

    render(report, fmt) -> str | bytes     # report: KpiReport | FunnelReport
                                           # fmt: "table" | "json" | "csv" | "html"

``json`` returns ``bytes`` (UTF-8, msgspec; decode with ``msgspec.json.decode(data, type=KpiReport)``
or ``type=Report`` for either kind — the ``kind`` tag tells them apart); the other formats return
``str``. Write ``str`` as UTF-8 (CSV with ``newline=""``).

* ``table``: aligned plain text for a terminal. Counts are clipped at 0 **for display only**; names
  coming from agents are stripped of control characters (no terminal escape sequences) and shortened.
* ``json``: the report Struct as is — raw, unclipped, unbiased values (a negative noisy count stays
  negative so that sums and ratios computed from the export stay unbiased).
* ``csv``: one row per metric/window (``row = window``) plus one per series total (``row = total``);
  for a funnel, one row per stage, step, overall conversion and time-to-value quantile. Raw values,
  full float precision. Text cells that a spreadsheet would read as a formula (leading ``= + - @``
  or a tab/CR) are prefixed with ``'`` (see :func:`collector.report.fmt.csv_text`).
* ``html``: see :mod:`collector.report.html`.

Table and CSV live in :mod:`collector.report.text`, HTML in :mod:`collector.report.html`; shared
formatting in :mod:`collector.report.fmt`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from collector.report.funnel import FunnelReport
from collector.report.html import render_html
from collector.report.kpi import KpiReport
from collector.report.text import funnel_csv, funnel_table, kpi_csv, kpi_table

__all__ = ["Format", "Report", "render"]

Format = Literal["table", "json", "csv", "html"]
Report = KpiReport | FunnelReport


def render(report: Report, fmt: Format, *, windows: bool = True) -> str | bytes:
    """Render a report; ``json`` gives bytes, the rest str. ValueError for an unknown format.

    ``windows=False`` leaves the per-window rows out of the KPI table (totals, quota and privacy
    only): the compact view for a terminal. Other formats always carry everything.
    """
    if fmt == "json":
        return msgspec.json.encode(report)
    if fmt == "csv":
        return kpi_csv(report) if isinstance(report, KpiReport) else funnel_csv(report)
    if fmt == "table":
        return kpi_table(report, windows=windows) if isinstance(report, KpiReport) else funnel_table(report)
    if fmt == "html":
        return render_html(report)
    raise ValueError(f"unknown report format {fmt!r}; use table, json, csv or html")
