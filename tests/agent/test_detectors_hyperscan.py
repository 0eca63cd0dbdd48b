"""The Hyperscan single-pass prefilter finds exactly what the pure-Python scanner finds.

Differential: the same texts through ``Scanner(backend="python")`` and ``Scanner(backend="hyperscan")``
— Hypothesis texts built from the pieces detectors react to (digits and separators, ``@``, ``:``,
``=``, key words, Python-only whitespace such as ``\\x1c``, non-ASCII), and the PII corpora (planted
findings and clean lines, tuning and held-out).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.detectors import BUILTIN, RegexDetector, Scanner
from agent.detectors._hyperscan import _widen_spaces
from tests.corpus.heldout import heldout_lines
from tests.corpus.tuning import tuning_lines
from tests.proof.pii_corpus import clean_lines, pii_lines

pytest.importorskip("hyperscan")

PY = Scanner(backend="python")
HS = Scanner(backend="hyperscan")

PIECES = [
    "0", "1", "4", "5", "9", "00", "123", "4539", "1488", "0343", "6467", "555", "0199", "078-05-1120",
    " ", "  ", "-", ".", ":", "::", "(", ")", "+", "/", "_", "=", "@", "#", "%", "'", '"', ",", ";", "&",
    "\t", "\n", "\x1c", "\x1f", "\u00a0", "é", "ü", "\u2003",
    "a", "Z", "ab", "fe80", "db8", "example", "com", ".com", "alice", "ssn", "SSN is ", "tin=", "call ",
    "tel:", "card ", "order_id=", "password=", "token: ", "api_key=", "Bearer ", "Basic ", "eyJ",
    "eyJhbGciOiJIUzI1NiJ9", "sk_live_", "AKIA", "ghp_", "https://", "redis://:", "user:pw@",
    "-----BEGIN RSA PRIVATE KEY-----", "GB82WEST12345698765432", "DE89 3704 0044 0532 0130 00",
    "10.1.2.3", "192.168.0.1", "2001:db8::1", "00:1A:2B:3C:4D:5E", "HTTP/1.1\" ", "081109 ",
    "AppleThunderboltNHIType2", "Zx9QvL2mT8rW4kP7nB3cY6", "x", "ext. ",
]  # fmt: skip
TEXTS = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_hyperscan_and_python_find_the_same(text: str) -> None:
    assert HS.scan(text) == PY.scan(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_the_same_on_arbitrary_text(text: str) -> None:
    assert HS.scan(text) == PY.scan(text)


def test_the_same_on_the_pii_corpora() -> None:
    texts = [s.line for s in pii_lines(40)] + list(clean_lines(800))
    texts += [line.text for line in tuning_lines(1500)] + [line.text for line in heldout_lines(1500)]
    found = 0
    for text in texts:
        mine = HS.scan(text)
        assert mine == PY.scan(text), text
        found += bool(mine)
    assert found > 500  # the corpora did exercise the detectors


def test_the_backend_in_use_is_reported() -> None:
    assert (HS.backend, PY.backend) == ("hyperscan", "python")
    assert Scanner(backend="auto").backend == "hyperscan"  # "auto" picks it when it is installed
    assert Scanner().backend == "python"  # the default: no 13 MiB library for a small gain


def test_python_whitespace_is_kept_in_byte_patterns() -> None:
    assert _widen_spaces(r"a\s+b") == r"a[\s\x1c-\x1f]+b"
    assert _widen_spaces(r"[^\s:/]") == r"[^\s\x1c-\x1f:/]"
    assert _widen_spaces(r"[]\s]\\s") == r"[]\s\x1c-\x1f]\\s"  # a literal ']' first; an escaped backslash
    assert re.fullmatch(_widen_spaces(r"Bearer\s+x"), "Bearer\x1cx")
    # Python's str "\s" takes \x1c; PCRE's does not: without the widening, this finding is skipped.
    text = "auth Bearer\x1cab3defgh12 ok"
    assert HS.scan(text) == PY.scan(text) != []


def test_a_detector_hyperscan_cannot_take_still_runs() -> None:
    """A user-defined detector with flags the prefilter does not translate is never skipped."""
    caseless = RegexDetector("employee_id", re.compile(r"(?i)emp-[0-9]{6}"))
    hs = Scanner((*BUILTIN, caseless), backend="hyperscan")
    py = Scanner((*BUILTIN, caseless), backend="python")
    for text in ("badge EMP-123456 at gate", "emp-654321", "nothing"):
        assert hs.scan(text) == py.scan(text)
    assert [f.detector for f in hs.scan("badge EMP-123456 at gate")] == ["employee_id"]
