"""Agent pipeline (decode → redact → bound → aggregate) vs bare msgspec decode of the same file.

Also runs the real CLI (`hush-agent run --once --input FILE`, journal and releases included) over the
same file and reports its events/s and peak RSS. Environment: HUSH_BENCH_EVENTS (default 1,000,000).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from agent.aggregate import WindowAggregator
from agent.config import Limits
from agent.decode import Decoder
from agent.policy import Policy, load_policy, minimised
from agent.redact import Redactor
from agent.sources.demo import write_dataset
from bench.report import Report

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 1 << 20


def chunks(path: Path) -> Iterator[bytes]:
    """1 MiB pieces cut at the last newline, as the file source reads them."""
    rest = b""
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut:
                yield data[:cut]
    if rest:
        yield rest


def best_of(runs: int, fn: object) -> float:
    """Least CPU time of this process over ``runs`` calls. CPU time, not wall time: both sides are
    single-threaded and CPU-bound, and on a shared machine the wall clock also counts the time other
    processes held the core (ratios swung 0.08–0.21 between back-to-back runs that way)."""
    times = []
    for _ in range(runs):
        started = time.process_time()
        fn()  # type: ignore[operator]
        times.append(time.process_time() - started)
    return min(times)


def measure(data: Path, count: int, policy: Policy, redact_with: Policy) -> tuple[float, float, float]:
    """(ratio, pipeline events/s, bare decode events/s) on one file, best of three interleaved runs
    (events/s here are per CPU second).

    ``redact_with`` is the policy the redactor gets: the agent uses ``minimised(policy)``.
    """
    pieces = list(chunks(data))
    bare = msgspec.json.Decoder()

    def baseline() -> None:
        for piece in pieces:
            bare.decode_lines(piece)

    def pipeline() -> None:
        decoder = Decoder(Limits())
        redactor = Redactor(redact_with, b"bench-secret-" * 4)
        aggregator = WindowAggregator(policy)
        for piece in pieces:
            events, _ = decoder.decode(piece, "bench", now=2e9)
            aggregator.add(redactor.redact_many(events))
        aggregator.flush()

    # interleave and keep the best of each: the machines are small and noisy
    base_s = best_of(1, baseline)
    pipe_s = best_of(1, pipeline)
    for _ in range(2):
        base_s = min(base_s, best_of(1, baseline))
        pipe_s = min(pipe_s, best_of(1, pipeline))
    print(f"  bare msgspec decode_lines : {count / base_s:>12,.0f} events/s")
    print(f"  pipeline (no DP, no I/O)  : {count / pipe_s:>12,.0f} events/s")
    return base_s / pipe_s, count / pipe_s, count / base_s


GOALS = {"prod": 0.25, "demo": 0.20, "free": 0.10}  # issue 12's goals for the three mixes


def main(report: Report | None = None) -> None:
    report = report or Report()
    target = int(os.environ.get("HUSH_BENCH_EVENTS", "1000000"))
    policy = load_policy(ROOT / "configs" / "policy.toml")
    users = max(10, target // 12)  # the demo emits ~12 events per simulated user over 2 days
    with tempfile.TemporaryDirectory(prefix="hush-bench-") as tmp:
        mixes = (
            ("production-like mix: 5 % of API messages carry personal data", 0.05, "prod"),
            ("demo mix: 2 in 3 API messages carry personal data (redaction stress)", None, "demo"),
        )
        for label, rate, name in mixes:
            data = Path(tmp) / f"{name}.jsonl"
            started = time.perf_counter()
            count = write_dataset(data, seed=7, users=users, days=2, pii_rate=rate)
            print(
                f"{label}\n  dataset: {count:,} events, {data.stat().st_size / 1e6:.0f} MB "
                f"(generated in {time.perf_counter() - started:.0f} s)"
            )
            ratio, eps, base = measure(data, count, policy, minimised(policy))
            print(f"  RATIO pipeline / bare decode = {ratio:.3f}   (goal >= {GOALS[name]})")
            label_of = {"prod": "production-like mix", "demo": "PII-dense mix"}
            report.add(
                "agent", f"pipeline / bare decode, {label_of[name]}", eps, "events/s", baseline=base,
                baseline_name="msgspec decode_lines", goal=f">= {GOALS[name]}", met=ratio >= GOALS[name],
            )  # fmt: skip
            if name == "demo":  # free-text dimensions: every allowed attribute scanned
                full, eps, base = measure(data, count, policy, policy)
                print(f"  scanning every allowed attribute (no minimisation): {full:.3f}")
                report.add(
                    "agent", "pipeline / bare decode, every attribute scanned (free text)", eps, "events/s",
                    baseline=base, baseline_name="msgspec decode_lines", goal=f">= {GOALS['free']}",
                    met=full >= GOALS["free"],
                )  # fmt: skip

        site = Path(tmp) / "site"
        cli = [sys.executable, "-m", "agent.cli"]
        subprocess.run(
            [*cli, "init", "--dir", str(site), "--tenant", "bench"], check=True, capture_output=True
        )
        started = time.perf_counter()
        proc = subprocess.Popen(
            # the declared range: the demo dataset's two days (the schedule never comes from the data)
            [*cli, "run", "--once", "--input", str(data), "--from", "2026-01-05T00:00:00Z",
             "--to", "2026-01-07T00:00:00Z", "--config", str(site / "agent.toml")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError("hush-agent run --once failed")
        wall = time.perf_counter() - started
        peak_kib = usage.ru_maxrss
        print(
            f"hush-agent run --once on the demo mix (journal, DP release, outbox): "
            f"{count / wall:,.0f} events/s, {wall:.1f} s, peak RSS {peak_kib / 1024:.0f} MiB"
        )


if __name__ == "__main__":
    main()
