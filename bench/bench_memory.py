"""Peak RSS of the real CLI (`hush-agent run --once`) at 100k and 1M events, and the daemon's idle RSS.

Memory must be a function of configuration, not of input size (issue 12, point 2). The datasets are
the demo's PII-dense mix with its units folded onto a fixed population (20,000 units), so 100k and
1M events differ in volume only; a third run keeps the demo's own units (they grow with the events,
~72k at 863k events), the shape the issue's 744 MiB was measured on. Peak RSS is the CLI process's own
(VmHWM at its exit), not the harness's. The idle daemon runs with an MQTT source on a private Mosquitto, no
collector configured and nothing flowing; its RSS is read from /proc after it has connected.
Environment: HUSH_BENCH_MEMORY_EVENTS (default "100000,1000000").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import msgspec

from agent.sources.demo import generate_lines, write_dataset
from bench.report import Report
from tests.proof.brokerkit import BURST_SETTINGS, have_mosquitto, mosquitto

UNITS = 20_000
MIB = 1 << 20
GOAL_MIB = 150
CLI = [sys.executable, "-m", "agent.cli"]
RANGE = ["--from", "2026-01-05T00:00:00Z", "--to", "2026-01-07T00:00:00Z"]


def fixed_units(path: Path, events: int, units: int) -> int:
    """The demo's PII-dense mix (two days, ~``events`` events) with units folded onto ``units``."""
    decode = msgspec.json.Decoder().decode
    encode = msgspec.json.Encoder().encode
    n = 0
    with path.open("wb") as out:
        for line in generate_lines(7, max(10, events // 12), 2, "2026-01-05T00:00:00Z"):
            ev = decode(line)
            ev["unit"] = f"usr_{zlib.crc32(ev['unit'].encode()) % units:06d}"
            out.write(encode(ev) + b"\n")
            n += 1
    return n


def init_site(root: Path, extra: str = "") -> Path:
    subprocess.run([*CLI, "init", "--dir", str(root), "--tenant", "bench"], check=True, capture_output=True)
    config = root / "agent.toml"
    if extra:
        text = config.read_text()
        config.write_text(text.replace('[[sources]]\ntype = "demo"\nseed = 7\n', extra))
    return config


# The CLI's own peak, read from /proc at its exit (VmHWM: the high-water mark of the process image
# exec'd, its own memory only). Not wait4's ru_maxrss: Linux keeps in it the RSS the child had between
# fork and exec, i.e. the harness's own — which, after bench_pipeline has loaded its datasets, is
# hundreds of MiB and hides the figure.
_REPORT_PEAK = """\
import sys
from pathlib import Path
from agent.cli import main
rc = main(sys.argv[1:])
hwm = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
print("peak_kib", int(hwm.split()[1]), file=sys.stderr)
sys.exit(rc)
"""


def peak_rss(args: Sequence[str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one ``hush-agent`` run (``args`` after the program name)."""
    started = time.perf_counter()
    argv = [sys.executable, "-c", _REPORT_PEAK, *args]
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"hush-agent {args[0]} exited with {proc.returncode}: {err.strip()[-300:]}")
    kib = int(err.rsplit("peak_kib", 1)[1].split()[0])
    return kib / 1024, time.perf_counter() - started


def run_once(tmp: Path, data: Path, name: str) -> tuple[float, float]:
    config = init_site(tmp / f"site-{name}")
    return peak_rss(["run", "--once", "--input", str(data), *RANGE, "--config", str(config)])


def idle_daemon(tmp: Path, settle: float = 5.0) -> float | None:
    """RSS (MiB) of `hush-agent run` with an MQTT source, connected, nothing flowing."""
    if not have_mosquitto():
        return None
    with mosquitto(tmp / "broker", BURST_SETTINGS) as port:
        config = init_site(tmp / "site-daemon", f'[[sources]]\ntype = "mqtt"\nport = {port}\n')
        proc = subprocess.Popen(
            [*CLI, "--config", str(config), "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            time.sleep(settle)  # imports done, schedule started, connected and subscribed
            samples = []
            for _ in range(5):
                status = Path(f"/proc/{proc.pid}/status").read_text()
                rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
                samples.append(int(rss.split()[1]) / 1024)
                time.sleep(0.2)
            return max(samples)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(report: Report | None = None) -> None:
    report = report or Report()
    sizes = [int(x) for x in os.environ.get("HUSH_BENCH_MEMORY_EVENTS", "100000,1000000").split(",")]
    with tempfile.TemporaryDirectory(prefix="hush-bench-mem-") as name:
        tmp = Path(name)
        peaks: dict[int, float] = {}
        for size in sizes:
            data = tmp / f"fixed-{size}.jsonl"
            count = fixed_units(data, size, UNITS)
            peak, wall = run_once(tmp, data, f"fixed-{size}")
            peaks[size] = peak
            data.unlink()
            print(
                f"run --once, {count:,} PII-dense events, {UNITS:,} units: "
                f"peak RSS {peak:.0f} MiB ({wall:.1f} s)"
            )
            report.add(
                "agent",
                f"run --once peak RSS, {count // 1000}k events, {UNITS // 1000}k units",
                peak,
                "MiB",
                goal=f"<= {GOAL_MIB} MiB",
                met=peak <= GOAL_MIB,
            )
        if len(sizes) > 1:
            small, large = peaks[min(sizes)], peaks[max(sizes)]
            report.add(
                "agent",
                f"peak RSS flatness, {max(sizes) // 1000}k vs {min(sizes) // 1000}k events",
                large,
                "MiB",
                baseline=small,
                baseline_name=f"{min(sizes) // 1000}k events",
                goal="<= 1.2",
                met=large / small <= 1.2,
            )
        data = tmp / "demo.jsonl"
        count = write_dataset(data, seed=7, users=max(sizes) // 12, days=2)
        peak, wall = run_once(tmp, data, "demo")
        data.unlink()
        print(
            f"run --once, {count:,} demo events (units grow with events): "
            f"peak RSS {peak:.0f} MiB ({wall:.1f} s)"
        )
        report.add(
            "agent",
            f"run --once peak RSS, {count // 1000}k demo events, ~{count // 12 // 1000}k units",
            peak,
            "MiB",
            goal=f"<= {GOAL_MIB} MiB",
            met=peak <= GOAL_MIB,
        )
        idle = idle_daemon(tmp)
        if idle is None:
            print("daemon idle RSS: skipped (no mosquitto on PATH)")
        else:
            print(f"daemon idle RSS (MQTT source, no collector, nothing flowing): {idle:.0f} MiB")
            report.add(
                "agent",
                "daemon idle RSS (MQTT, nothing flowing)",
                idle,
                "MiB",
                goal="<= 50 MiB",
                met=idle <= 50,
            )


if __name__ == "__main__":
    main()
