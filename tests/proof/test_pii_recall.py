"""Proof family 8a — PII recall: per-detector recall and false-positive rate on a seeded corpus.

A sample counts as *found* when one finding of the expected detector covers the injected value;
as *leaked* when the raw value (or, for cards, its digits) is still in the redacted line. The
false-positive rate is the share of clean lines with any finding. Short by default; set
``HUSH_PROOF=long`` for the large corpus.
"""

from __future__ import annotations

import re
import time

from agent.detectors import Scanner
from agent.policy import AttrRule, Policy, Redaction
from agent.redact import Redactor
from tests.proof.pii_corpus import DETECTORS, clean_lines, pii_lines
from tests.proof.proofkit import LONG, Figures

FAMILY = "8a PII recall"
PER_DETECTOR = 20_000 if LONG else 800
CLEAN = 200_000 if LONG else 8_000
RECALL_TARGET = 0.995
FP_TARGET = 0.01


def _redactor() -> Redactor:
    policy = Policy(
        version=1, name="proof", redaction=Redaction(default="mask"), attrs={"msg": AttrRule(kind="text")}
    )
    return Redactor(policy, b"proof-site-secret-0123456789")


def test_pii_recall_and_false_positives(figures: Figures) -> None:
    scanner = Scanner()
    redactor = _redactor()
    started = time.perf_counter()
    found = dict.fromkeys(DETECTORS, 0)
    leaked = dict.fromkeys(DETECTORS, 0)
    total = dict.fromkeys(DETECTORS, 0)
    misses: dict[str, list[str]] = {d: [] for d in DETECTORS}
    for sample in pii_lines(PER_DETECTOR, seed=11 if LONG else 5):
        det, line, value = sample
        total[det] += 1
        start = line.find(value)
        assert start >= 0
        end = start + len(value)
        if any(f.detector == det and f.start <= start and f.end >= end for f in scanner.scan(line)):
            found[det] += 1
        elif len(misses[det]) < 5:
            misses[det].append(line)
        out = redactor.redact_text(line)
        digits = re.sub(r"[^0-9]", "", value) if det == "card" else None
        if value in out or (digits and digits in re.sub(r"[^0-9]", "", out)):
            leaked[det] += 1
    fp_lines = 0
    fp_by: dict[str, int] = {}
    fp_examples: list[str] = []
    n_clean = 0
    for line in clean_lines(CLEAN, seed=13 if LONG else 7):
        n_clean += 1
        hits = scanner.scan(line)
        if hits:
            fp_lines += 1
            for f in hits:
                fp_by[f.detector] = fp_by.get(f.detector, 0) + 1
            if len(fp_examples) < 10:
                fp_examples.append(f"{[(f.detector, line[f.start : f.end]) for f in hits]} in {line!r}")
    elapsed = time.perf_counter() - started

    print(f"\nPII recall ({'long' if LONG else 'short'} corpus, {elapsed:.1f} s)")
    print(f"{'detector':<16}{'samples':>9}{'found':>9}{'recall':>9}{'leaked':>8}{'fp hits':>9}")
    for det in DETECTORS:
        print(
            f"{det:<16}{total[det]:>9}{found[det]:>9}{found[det] / total[det]:>9.2%}{leaked[det]:>8}"
            f"{fp_by.get(det, 0):>9}"
        )
    fp_rate = fp_lines / n_clean
    print(f"clean lines {n_clean}, lines with a finding {fp_lines}, false-positive rate {fp_rate:.3%}")
    for det in DETECTORS:
        # lost: samples whose raw value survived redaction; recall counts the right detector only.
        figures.record(
            FAMILY, det, runs=total[det], lost=leaked[det], recall=f"{found[det] / total[det]:.4f}"
        )
    figures.record(
        FAMILY, "clean lines", runs=n_clean, seconds=elapsed, fp_lines=fp_lines, fp_rate=f"{fp_rate:.4f}"
    )

    for det in DETECTORS:
        assert found[det] / total[det] >= RECALL_TARGET, (det, misses[det])
        assert leaked[det] / total[det] <= 1 - RECALL_TARGET, (det, misses[det])
    assert fp_rate <= FP_TARGET, fp_examples
