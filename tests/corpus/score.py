"""Scores a scanner on a corpus: per-type recall and the share of clean lines changed by mistake.

A planted value is *found* when one finding of its own type covers it, *covered* when any finding
does (it does not leave in clear, but under another name). A clean line is *changed* when the scanner
finds anything in it. Run ``python -m tests.corpus.score [tuning|heldout] [N]`` to print the figures
and the misses (only ever look at the misses of the tuning corpus while tuning).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.detectors import Scanner
from tests.corpus._build import TYPES, Line

__all__ = ["Score", "score"]


@dataclass
class Score:
    total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TYPES, 0))
    found: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TYPES, 0))
    covered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TYPES, 0))
    clean: int = 0
    changed: int = 0
    changed_by: dict[str, int] = field(default_factory=dict)
    misses: dict[str, list[str]] = field(default_factory=lambda: {t: [] for t in TYPES})
    false_positives: list[str] = field(default_factory=list)

    def recall(self, kind: str) -> float:
        return self.found[kind] / self.total[kind] if self.total[kind] else 1.0

    @property
    def overall(self) -> float:
        return sum(self.found.values()) / max(1, sum(self.total.values()))

    @property
    def fp_rate(self) -> float:
        return self.changed / max(1, self.clean)

    def table(self, title: str) -> str:
        rows = [f"{title}", f"{'type':<16}{'planted':>8}{'found':>8}{'recall':>9}{'covered':>9}"]
        for t in TYPES:
            rows.append(
                f"{t:<16}{self.total[t]:>8}{self.found[t]:>8}{self.recall(t):>9.2%}"
                f"{self.covered[t] / max(1, self.total[t]):>9.2%}"
            )
        rows.append(
            f"{'overall':<16}{sum(self.total.values()):>8}{sum(self.found.values()):>8}{self.overall:>9.2%}"
        )
        by = ", ".join(f"{k} {n}" for k, n in sorted(self.changed_by.items()))
        rows.append(f"clean lines {self.clean}, changed by mistake {self.changed} ({self.fp_rate:.2%}) {by}")
        return "\n".join(rows)


def score(lines: Iterable[Line], scanner: Scanner | None = None, keep: int = 8) -> Score:
    scan = (scanner or Scanner()).scan
    s = Score()
    for line in lines:
        found = scan(line.text)
        if not line.planted:
            s.clean += 1
            if found:
                s.changed += 1
                for f in found:
                    s.changed_by[f.detector] = s.changed_by.get(f.detector, 0) + 1
                if len(s.false_positives) < keep * 4:
                    hits = [(f.detector, line.text[f.start : f.end]) for f in found]
                    s.false_positives.append(f"{line.system}: {hits} in {line.text!r}")
            continue
        for kind, start, end in line.planted:
            s.total[kind] += 1
            over = [f for f in found if f.start <= start and f.end >= end]
            if any(f.detector == kind for f in over):
                s.found[kind] += 1
            elif len(s.misses[kind]) < keep:
                hits = [(f.detector, line.text[f.start : f.end]) for f in found]
                s.misses[kind].append(f"{line.system}: {line.text[start:end]!r} {hits} in {line.text!r}")
            if over:
                s.covered[kind] += 1
    return s


def main(argv: list[str]) -> None:  # pragma: no cover - a tuning aid
    which = argv[0] if argv else "tuning"
    n = int(argv[1]) if len(argv) > 1 else 20_000
    if which == "tuning":
        from tests.corpus.tuning import tuning_lines as make
    else:
        from tests.corpus.heldout import heldout_lines as make
    s = score(make(n))
    print(s.table(f"{which} corpus, {n} lines"))
    if which == "tuning" or "--misses" in argv:
        for t in TYPES:
            for m in s.misses[t]:
                print("MISS", t, m)
        for fp in s.false_positives:
            print("FP", fp)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
