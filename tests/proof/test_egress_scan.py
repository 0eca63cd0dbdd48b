"""Proof family 8b — canary PII injected into the input never appears in anything the agent keeps
or lets out: the collector's database, air-gap bundles, the egress ledger, the agent's own state.

Every fault run of families 1, 3 and 4 ends with the same raw-byte scan (its own ``8b`` rows); this
module adds the paths those runs do not take, in one air-gapped and one online flow:

- canaries (unique email, Luhn-valid card, mod-97-valid IBAN, phone, JWT, API key) in an allowed
  free-text attribute (inside sentences and as the whole value), in an attribute the policy does not
  allow, in the privacy unit, in the event name, and in malformed lines that are dead-lettered;
- an **open dimension** fed the canaries as values by 200 units each — if a detector missed one,
  partition selection would release it as a dimension label to the collector: the leak path that
  matters most is exercised, not just the journal;
- ``hush-agent export`` → bundle → ``hush-collector import``, and online delivery;
- scanned, raw bytes (SQLite main files, ``-wal`` and ``-shm``): the agent's state directory, the
  bundle, the collector's database, the egress ledger and dead-letter listings as printed by the
  CLI, and every line the agent printed.

A precondition is checked first: ``hush-agent redact --text`` removes each canary (otherwise the
scan would test nothing but the generator).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from tests.proof.agentkit import POLICY, AgentDir, Canaries, bad_lines, event, scan_files
from tests.proof.proofkit import Collector, Figures, pick

pytestmark = pytest.mark.timeout(pick(120, 600))

FAMILY = "8b egress scan"
UNITS_PER_VALUE = 200
RUNS = pick(2, 10)  # independent canary sets

SCAN_POLICY = (
    # 1,440 one-minute windows a day at δ 1e-7 each: the period's δ cap must allow it
    POLICY.replace("rho = 1e13", "rho = 1e13\nmax_delta = 1e-3")
    + """
[attrs.page]
kind = "label"

[[metrics]]
name = "by_page"
events = ["ev"]
stat = "count"
dims = { page = "open" }
"""
)


def _input(canaries: Canaries, tag: str, start: float) -> bytes:
    lines: list[bytes] = []
    values = list(canaries.values().values())
    i = 0
    for v in values:  # each canary as an open-dimension value, by many units, and as a whole text
        for u in range(UNITS_PER_VALUE):
            ev = event(i, start + i * 0.01, None, tag)
            ev["attrs"] = {"page": v, "msg": v if u % 2 else canaries.sentence(i)}
            lines.append(json.dumps(ev).encode())
            i += 1
    for k in range(200):  # the remaining positions: unit, disallowed key, event name
        ev = event(i, start + i * 0.01, canaries, tag)
        if k % 5 == 0:
            ev["name"] = f"ev {values[k % len(values)]}"
        lines.append(json.dumps(ev).encode())
        i += 1
    return b"\n".join(lines) + b"\n" + bad_lines(canaries)


def test_canaries_are_detected_by_the_redactor(tmp_path: Path) -> None:
    rng = random.Random(80)
    agent = AgentDir(tmp_path / "agent")
    agent.init(sources="", endpoint=None, policy=SCAN_POLICY)
    for _ in range(RUNS):
        canaries = Canaries.make(rng)
        text = "\n".join([*canaries.values().values(), *(canaries.sentence(i) for i in range(6))]) + "\n"
        out = agent.cli("redact", "--text", "--input", "-", stdin=text.encode())
        assert out.code == 0, out.err
        hits = [k for k, needle in canaries.needles().items() if needle in out.out.encode()]
        assert not hits, (hits, out.out)


async def test_no_canary_in_state_bundles_egress_ledger_or_collector(
    tmp_path: Path, figures: Figures
) -> None:
    started = time.monotonic()
    rng = random.Random(81)
    collector = Collector(tmp_path / "collector")
    collector.init()
    collector.ok("tenant", "create", "proof")
    address = await collector.start()
    files = nbytes = 0
    hits: list[tuple[str, str]] = []
    released_rows = 0
    try:
        for r in range(RUNS):
            canaries = Canaries.make(rng)
            start = time.time() - 3 * 3600 + r * 600
            data = _input(canaries, f"s{r}", start)
            # air gap: release, export a bundle, import it
            gap = AgentDir(tmp_path / f"gap{r}", agent=f"gap-{r}")
            gap.init(sources="", endpoint=None, policy=SCAN_POLICY)
            gap.register(collector)
            src = tmp_path / f"in{r}.jsonl"
            src.write_bytes(data)
            span = (start, start + 3 * 60)  # the declared range: the input's three minutes
            run = gap.run_once(src, start=span[0], stop=span[1])
            assert run.code == 0, run.err
            released_rows += json.loads(run.out)["rows_released"]
            bundle = tmp_path / f"bundle{r}.tar"
            exp = gap.cli("export", "--out", str(bundle), "--json")
            assert exp.code == 0, exp.err
            imp = collector.cli("import", str(bundle))
            assert imp.code == 0, imp.err + imp.out
            # online
            online = AgentDir(tmp_path / f"online{r}", agent=f"online-{r}")
            online.init(sources="", endpoint=address, policy=SCAN_POLICY)
            online.register(collector)
            run2 = online.run_once(src, start=span[0], stop=span[1])
            assert run2.code == 0, run2
            assert json.loads(run2.out)["outbox_depth"] == 0, run2
            printed = tmp_path / f"printed{r}.txt"
            with printed.open("w") as out:
                for who in (gap, online):
                    for args in (("egress", "--json", "--limit", "100000"), ("dead-letter", "--json")):
                        res = who.cli(*args)
                        assert res.code == 0, res.err
                        out.write(res.out + res.err)
                for res in (run, exp, run2):
                    out.write(res.out + res.err)
            h, f, n = scan_files(
                [gap.state, online.state, bundle, collector.workdir, printed, *gap.logs, *online.logs],
                canaries,
            )
            hits += h
            files += f
            nbytes += n
        by_page = collector.query("SELECT COUNT(*) FROM batch_rows WHERE metric = 'by_page'")[0][0]
    finally:
        await collector.stop()
    figures.record(
        FAMILY,
        "air gap + online, open dimension fed canaries",
        runs=RUNS,
        lost=len(hits),
        seconds=time.monotonic() - started,
        files=files,
        bytes=nbytes,
        canary_kinds=len(Canaries.make(rng).needles()),
        released_rows=released_rows,
        open_dim_rows=by_page,
    )
    assert not hits, hits
    assert by_page > 0  # masked values passed partition selection: the leak path was live
