"""The table ``make bench`` ends with: one row per figure — value, baseline, ratio, goal — and
``build/bench.json`` with the same rows, so runs can be compared.

A benchmark whose ``main`` takes a parameter gets the run's :class:`Report` and adds rows to it;
every ratio is computed against a baseline measured in the same run. Rows belong to a section:
``agent`` rows come from the agent's benches (bench_pipeline, bench_memory, bench_mqtt);
``collector`` rows are for the collector's benches (bench_ingest and the scale bench add theirs the
same way: ``report.add("collector", ...)``).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["SECTIONS", "Figure", "Report"]

SECTIONS = ("agent", "collector")


@dataclass(frozen=True)
class Figure:
    section: str
    name: str
    value: float
    unit: str  # of value and baseline: "events/s", "MiB", "msg/s", …
    baseline: float | None = None  # the figure value is compared with, measured in the same run
    baseline_name: str = ""
    goal: str = ""  # the goal, e.g. ">= 0.25" (on the ratio) or "<= 150 MiB" (on the value)
    met: bool | None = None  # whether the goal is met (None: no goal, or not decidable here)

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)

    def add(
        self,
        section: str,
        name: str,
        value: float,
        unit: str,
        *,
        baseline: float | None = None,
        baseline_name: str = "",
        goal: str = "",
        met: bool | None = None,
    ) -> Figure:
        if section not in SECTIONS:
            raise ValueError(f"unknown section {section!r}")
        fig = Figure(section, name, value, unit, baseline, baseline_name, goal, met)
        self.figures.append(fig)
        return fig

    def table(self) -> str:
        head = ("figure", "value", "baseline", "ratio", "goal", "met")
        rows: list[tuple[str, ...]] = []
        for section in SECTIONS:
            mine = [f for f in self.figures if f.section == section]
            rows.append((f"[{section}]", "", "", "", "", ""))
            if not mine:
                rows.append(("  (no figures in this run)", "", "", "", "", ""))
            for f in mine:
                ratio = f.ratio
                rows.append(
                    (
                        f"  {f.name}",
                        f"{_num(f.value)} {f.unit}",
                        "" if f.baseline is None else f"{_num(f.baseline)} ({f.baseline_name})",
                        "" if ratio is None else f"{ratio:.3f}",
                        f.goal,
                        {None: "", True: "yes", False: "NO"}[f.met],
                    )
                )
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {
                "python": platform.python_version(),
                "cpus": _cpus(),
                "platform": platform.platform(),
            },
            "figures": [{**asdict(f), "ratio": f.ratio} for f in self.figures],
        }
        path.write_text(json.dumps(doc, indent=2) + "\n")


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
