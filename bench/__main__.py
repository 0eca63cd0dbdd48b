"""``make bench``: run every ``bench/bench_*.py`` (or those named on the command line) in turn.

Machines here are small and noisy; absolute numbers are printed for context, ratios are what to
compare between runs.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import time
from pathlib import Path

from bench.report import Report


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    names = argv or sorted(p.stem for p in here.glob("bench_*.py"))
    report = Report()
    failed = 0
    for name in names:
        module = importlib.import_module(f"bench.{name.removesuffix('.py')}")
        print(f"\n### {module.__name__}: {(module.__doc__ or '').strip().splitlines()[0]}", flush=True)
        started = time.perf_counter()
        try:
            if "report" in inspect.signature(module.main).parameters:
                module.main(report=report)  # a bench that adds rows to the summary table
            else:
                module.main()
        except Exception as exc:  # one broken benchmark must not hide the others
            failed += 1
            print(f"FAILED: {type(exc).__name__}: {exc}")
        print(f"({time.perf_counter() - started:.1f} s)", flush=True)
    print("\n### summary: every ratio against its baseline measured in this run\n")
    print(report.table())
    out = here.parent / "build" / "bench.json"
    report.write_json(out)
    print(f"\nwritten to {out.relative_to(here.parent)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
