"""Proof family 12a: the agent's peak memory is set by configuration, not by input size.

The real CLI (``hush-agent run --once``) over the demo's PII-dense mix with its units folded onto a
fixed population: peak RSS of the child process (``wait4``) must stay under the issue's ceiling of
150 MiB. Short: 100k events; long (``HUSH_PROOF=long``): 1M events too (the ratio of the two peaks is
recorded and held to 1.2: the bounding state fills towards units x max_partitions as windows get more
events per unit, which must stay small next to the rest).
A memory bound does not depend on the machine's speed, so it may be asserted; timings are not.
"""

from __future__ import annotations

from pathlib import Path

from bench.bench_memory import fixed_units, run_once
from tests.proof.proofkit import Figures, pick

FAMILY = "12a agent memory"
CEILING_MIB = 150
FLAT = 1.2  # issue 12: flat within 20 % from 100k to 1M events at the same unit population
UNITS = 20_000


def test_peak_rss_of_run_once_stays_under_the_ceiling_and_flat(tmp_path: Path, figures: Figures) -> None:
    peaks = {}
    for size in pick([100_000], [100_000, 1_000_000]):
        data = tmp_path / f"events-{size}.jsonl"
        count = fixed_units(data, size, UNITS)
        peak, _ = run_once(tmp_path, data, str(size))
        data.unlink()
        peaks[size] = peak
        figures.record(FAMILY, f"run --once, {count:,} events, {UNITS:,} units", runs=1, peak_rss_mib=round(peak))
        assert peak <= CEILING_MIB, f"{count:,} events: peak RSS {peak:.0f} MiB over {CEILING_MIB} MiB"
    if len(peaks) > 1:
        ratio = peaks[1_000_000] / peaks[100_000]
        figures.record(FAMILY, "peak at 1M / peak at 100k", runs=1, ratio=round(ratio, 2))
        assert ratio <= FLAT, f"peak RSS {ratio:.2f}x from 100k to 1M events at {UNITS:,} units (> {FLAT})"
