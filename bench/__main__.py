"""``make bench``: run every ``bench/bench_*.py`` (or those named on the command line) in turn.

Machines here are small and noisy; absolute numbers are printed for context, ratios are what to
compare between runs.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    names = argv or sorted(p.stem for p in here.glob("bench_*.py"))
    failed = 0
    for name in names:
        module = importlib.import_module(f"bench.{name.removesuffix('.py')}")
        print(f"\n### {module.__name__}: {(module.__doc__ or '').strip().splitlines()[0]}", flush=True)
        started = time.perf_counter()
        try:
            module.main()
        except Exception as exc:  # one broken benchmark must not hide the others
            failed += 1
            print(f"FAILED: {type(exc).__name__}: {exc}")
        print(f"({time.perf_counter() - started:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
