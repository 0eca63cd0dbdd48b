"""``make demo``: a collector and an agent end to end on the embedded defaults, then the reports.

Everything runs through the two CLIs, exactly as an evaluator would type them, in a throw-away
folder that is removed at the end. ``--keep`` keeps the folder and leaves the collector with its
dashboard running until Ctrl-C, printing the dashboard's URL and a viewer token to sign in with.
Deterministic input (seeded demo source); the DP noise differs from run to run by design.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
TENANT = "acme"
STAGES = ",".join(
    [
        "signup",
        "eval_requested",
        "sandbox_provisioned",
        "run_started",
        "run_completed",
        "kpi_viewed",
        "shared_exported",
        "tuning_applied",
    ]
)


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def run(*argv: str, capture: bool = False, check: bool = True) -> str:
    proc = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        check=False,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr or "").strip() if capture else ""
        raise SystemExit(f"demo: `{' '.join(argv)}` failed with exit {proc.returncode}: {detail}")
    return proc.stdout or ""


def start_collector(db: str, log_path: Path) -> tuple[subprocess.Popen[str], str, str]:
    """The collector on free loopback ports: gRPC (its address is the first line it prints) and the
    HTTP API and dashboard (the URL on the second)."""
    log = log_path.open("w")
    argv = ["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", db]
    proc = subprocess.Popen(
        [str(BIN / "hush-collector"), *argv],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    if not first:
        proc.wait(timeout=10)
        raise SystemExit(f"demo: the collector did not start; see {log_path}:\n{log_path.read_text()}")
    address = first.split()[-1]
    url = proc.stdout.readline().strip()
    return proc, address, url


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the demo folder, and keep the collector and its dashboard running until Ctrl-C "
        "(prints the dashboard URL and a viewer token)",
    )
    parser.add_argument("--users", type=int, default=3000, help="simulated evaluators (default 3000)")
    args = parser.parse_args()

    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="hushmetric-demo-"))
    db = str(root / "collector.db")
    agent_dir = root / "agent"
    cfg = str(agent_dir / "agent.toml")
    collector: subprocess.Popen[str] | None = None
    try:
        say("collector: init and serve on a free loopback port (SQLite, embedded)")
        run("hush-collector", "init", "--db", db)
        collector, address, url = start_collector(db, root / "collector.log")
        print(f"collector listening on {address}; read-only API and dashboard on {url}")

        say(f"tenant {TENANT!r} with quotas, and a one-time enrollment token")
        run("hush-collector", "tenant", "create", TENANT, "--db", db)
        run(
            "hush-collector",
            "quota",
            "set",
            TENANT,
            "--batches-per-second",
            "50",
            "--burst",
            "200",
            "--rows-per-day",
            "1000000",
            "--max-batch-bytes",
            "1048576",
            "--db",
            db,
        )
        token = run(
            "hush-collector", "enroll-token", TENANT, "--ttl", "10m", "--db", db, capture=True
        ).strip()
        print("token issued (single use, 10 minutes)")

        say("agent: init, enroll, validate")
        agent_id = run(
            "hush-agent",
            "init",
            "--dir",
            str(agent_dir),
            "--tenant",
            TENANT,
            "--collector",
            address,
            capture=True,
        ).strip()
        print(f"agent id {agent_id}")
        text = Path(cfg).read_text()
        Path(cfg).write_text(text.replace("seed = 7\n", f"seed = 7\nusers = {args.users}\n"))
        # The funnel's stages are bounded per user-day in the shipped policy; the demo also releases
        # each day's total, which the collector combines with the windows (consistent estimates).
        policy = agent_dir / "policy.toml"
        policy.write_text(
            re.sub(r'^(bound = "period".*)$', r"\1\nperiod_total = 0.3", policy.read_text(), flags=re.M)
        )
        print('funnel stages: bound = "period" (per user-day) with period_total = 0.3 (a daily total too)')
        key_id = run("hush-agent", "enroll", "--token", token, "--config", cfg, capture=True).strip()
        print(f"enrolled key {key_id[:16]}…")
        validated = run("hush-agent", "validate", "--config", cfg, capture=True)
        print(validated, end="")

        say("central governance: approve the agent's policy digest (batches under others are refused)")
        digest = re.search(r"--digest ([0-9a-f]{64})", validated)
        if digest is None:
            raise SystemExit("demo: `hush-agent validate` printed no policy digest to approve")
        run(
            "hush-collector", "policy", "approve", TENANT, "--digest", digest.group(1),
            "--note", "demo policy", "--db", db,
        )  # fmt: skip

        say("redaction at the edge: three raw log lines through the agent's detectors (dry run)")
        samples = "\n".join(
            [
                "payment method updated for dana.reyes@example.com: card 4111 1111 1111 1111",
                "invoice to ops@example.org, IBAN DE89 3704 0044 0532 0130 00, call +1 415 555 0142",
                "webhook to postgres://app:s3cr3tPass@db.internal:5432/prod failed from 203.0.113.7",
            ]
        )
        redacted = subprocess.run(
            [str(BIN / "hush-agent"), "redact", "--text", "--config", cfg],
            input=samples, text=True, capture_output=True, check=True,
        )  # fmt: skip
        for before, after in zip(samples.splitlines(), redacted.stdout.splitlines(), strict=True):
            print(f"  raw:  {before}\n  kept: {after}")

        say("agent: run --once over the seeded demo dataset (evaluator journey + operational logs with PII)")
        run("hush-agent", "run", "--once", "--config", cfg)

        say("certified agent: sign a certificate for the on-prem profile and send it to the collector")
        run("hush-agent", "certify", "--profile", "on-prem", "--send", "--config", cfg)
        for cert in json.loads(
            run("hush-collector", "certify", "list", TENANT, "--json", "--db", db, capture=True)
        ):
            print(
                f"badge: agent {cert['agent']}: {cert['status']} ({cert['profile']}, "
                f"until {cert['expires']}); shown in the HTML report's governance section"
            )

        say("KPI report (values with 95 % intervals from the recorded noise scale)")
        run("hush-collector", "report", TENANT, "--totals", "--db", db)
        html = root / "report.html"
        run("hush-collector", "report", TENANT, "--format", "html", "--out", str(html), "--db", db)

        say("funnel report")
        run(
            "hush-collector",
            "funnel",
            TENANT,
            "--stages",
            STAGES,
            "--time-metric",
            "time_to_value",
            "--db",
            db,
        )

        say("outputs: released rows with their noise interval, as an analyst's CSV")
        exported = root / "released.csv"
        run("hush-collector", "export", "--tenant", TENANT, "--out", str(exported), "--db", db)
        lines = exported.read_text().splitlines()
        print("\n".join(lines[:4]) + f"\n  … {len(lines) - 1} rows in {exported.name}")
        print(
            "  the same rows go to Prometheus as they are stored with `serve --remote-write URL`\n"
            "  (hush_released + noise std + 95 % bounds; Grafana: packaging/grafana/hushmetric.json),\n"
            "  to any OTLP endpoint with `--otlp-export HOST:PORT`, or as Parquet (`export --format parquet`)"
        )

        say("privacy budget spent (agent ledger)")
        run("hush-agent", "ledger", "--config", cfg)

        say("egress ledger (what left the site)")
        run("hush-agent", "egress", "--limit", "3", "--config", cfg)
        run("hush-agent", "egress", "--verify", "--config", cfg)

        say("usage metered by the collector")
        run("hush-collector", "usage", "--db", db)

        say("audit log: export and verify offline with the collector's public key")
        audit = root / "audit.jsonl"
        run("hush-collector", "audit", "export", "--out", str(audit), "--db", db)
        pub = run("hush-collector", "pubkey", "--db", db, capture=True).strip()
        run("hush-collector", "audit", "verify", str(audit), "--public-key", pub)

        say("dashboard and read-only API (viewer token for one tenant; operators see every tenant)")
        viewer = run(
            "hush-collector", "api-token", "create", "--role", "viewer", "--tenant", TENANT,
            "--ttl", "1d", "--note", "demo viewer", "--db", db, capture=True,
        ).strip()  # fmt: skip
        dashboard = f"{url}t/{TENANT}?stages={STAGES}"
        if args.keep:
            print(
                f"dashboard:    {dashboard}\n"
                f"viewer token: {viewer}\n"
                f"  (sign in at {url}login; API: curl -H 'Authorization: Bearer <token>' "
                f"{url}api/v1/tenants/{TENANT}/kpi)\n"
                "the collector keeps running; Ctrl-C stops it",
                flush=True,
            )
            signal.signal(signal.SIGTERM, _interrupt)  # stopped by a supervisor: clean up the same way
            try:
                collector.wait()
            except KeyboardInterrupt:
                print()
        else:
            print(
                f"while the collector runs, the dashboard is at {dashboard}\n"
                "(sign in with `hush-collector api-token create --role viewer --tenant acme`); "
                "make demo ARGS=--keep leaves it running with a token"
            )
    finally:
        if collector is not None:
            collector.send_signal(signal.SIGTERM)
            try:
                collector.wait(timeout=15)
            except subprocess.TimeoutExpired:
                collector.kill()
            if collector.stdout is not None:
                collector.stdout.close()
        if args.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    elapsed = time.monotonic() - started
    say(f"done in {elapsed:.0f} s")
    keep_hint = "" if args.keep else "  (make demo ARGS=--keep keeps the folder, with report.html)\n"
    print(
        "Try next:\n"
        "  hush-agent init --dir mysite --tenant acme --collector 127.0.0.1:7443\n"
        "  hush-agent --config mysite/agent.toml redact --text < some-log-lines.txt\n"
        "  hush-agent --config mysite/agent.toml tune\n"
        '  inputs: [[sources]] type = "otlp" (4317/4318) or "syslog" (5140) in agent.toml — README\n'
        "  outputs: hush-collector serve --remote-write http://127.0.0.1:9090/api/v1/write\n"
        "           hush-collector push|export --tenant acme   (docs/operations.md, Outputs)\n"
        "  hush-collector --help   ·   hush-agent --help   ·   docs/operations.md\n" + keep_hint
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
