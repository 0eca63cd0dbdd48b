"""Proof family 8a — PII recall: per-detector recall and false-positive rate on seeded corpora.

A sample counts as *found* when one finding of the expected detector covers the injected value;
as *leaked* when the raw value (or, for cards, its digits) is still in the redacted line. The
false-positive rate is the share of clean lines with any finding. Short by default; set
``HUSH_PROOF=long`` for the large corpus.

Two families of corpora: ``tests.proof.pii_corpus`` (application lines; its figures were 100 %
recall and 0 false positives on the detectors before issue 9 and still are), and the real log
formats of ``tests.corpus`` (issue 9, point 10): the targets are asserted on the held-out corpus,
the tuning corpus is printed for comparison only.
"""

from __future__ import annotations

import re
import time

import pytest

from agent.detectors import Scanner
from agent.policy import AttrRule, Policy, Redaction
from agent.redact import Redactor
from tests.corpus._build import TYPES, Line
from tests.corpus.heldout import heldout_lines
from tests.corpus.score import Score, score
from tests.corpus.tuning import tuning_lines
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


# --- real log formats (issue 9, point 10) ---------------------------------------------------------------

LOG_RECALL = 0.995  # overall, and for IPv4
LOG_RECALL_PER_TYPE = 0.98
LOG_CHANGED = 0.01  # clean lines changed by mistake


def _leaks(redactor: Redactor, lines: list[Line]) -> dict[str, int]:
    """Planted values still in clear after redaction (for cards and IBANs: their digits)."""
    leaked = dict.fromkeys(TYPES, 0)
    for line in lines:
        if not line.planted:
            continue
        out = redactor.redact_text(line.text)
        digits_out = re.sub(r"[^0-9]", "", out)
        for kind, start, end in line.planted:
            raw = line.text[start:end]
            digits = re.sub(r"[^0-9]", "", raw) if kind in ("card", "iban") else ""
            if raw in out or (digits and digits in digits_out):
                leaked[kind] += 1
    return leaked


def _log_formats(figures: Figures, n: int, seed: int) -> None:
    started = time.perf_counter()
    scanner = Scanner()
    held = list(heldout_lines(n, seed=seed))
    result = score(held, scanner)
    leaked = _leaks(_redactor(), held)
    tuning: Score = score(tuning_lines(n, seed=seed + 1), scanner)
    elapsed = time.perf_counter() - started
    print(f"\nreal log formats, {n} lines per corpus ({elapsed:.1f} s)")
    print(result.table("held-out corpus (targets asserted)"))
    print("leaked: " + ", ".join(f"{t} {leaked[t]}" for t in TYPES))
    print(tuning.table("tuning corpus (for comparison)"))
    for t in TYPES:
        figures.record(
            "8b PII recall, real log formats",
            t,
            runs=result.total[t],
            lost=leaked[t],
            recall=f"{result.recall(t):.4f}",
        )
    figures.record(
        "8b PII recall, real log formats",
        "clean lines",
        runs=result.clean,
        seconds=elapsed,
        changed=result.changed,
        changed_rate=f"{result.fp_rate:.4f}",
        overall=f"{result.overall:.4f}",
    )
    assert result.overall >= LOG_RECALL, result.misses
    assert result.recall("ipv4") >= LOG_RECALL, result.misses["ipv4"]
    for t in TYPES:
        assert result.total[t] >= 50, t  # enough samples for the per-type figure to mean something
        assert result.recall(t) >= LOG_RECALL_PER_TYPE, (t, result.misses[t])
        assert leaked[t] <= (1 - LOG_RECALL_PER_TYPE) * result.total[t], (t, result.misses[t])
    assert result.fp_rate <= LOG_CHANGED, result.false_positives


def test_real_log_formats_held_out(figures: Figures) -> None:
    _log_formats(figures, 40_000 if LONG else 6_000, seed=21 if LONG else 9)


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="long form: HUSH_PROOF=long (make proof)")
def test_real_log_formats_held_out_other_seeds(figures: Figures) -> None:
    for seed in (101, 202, 303):
        _log_formats(figures, 40_000, seed=seed)
