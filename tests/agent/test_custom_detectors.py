"""User-defined detectors (agent/detectors/custom.py): checksums, context words, the cost bound that
keeps hostile text cheap, the policy's errors, and findings redacted and counted like built-in ones."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import msgspec
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agent.detectors.custom import (
    MAX_STEPS,
    CustomDetectorError,
    CustomScanner,
    compile_detector,
    luhn_valid,
    mod11_valid,
    mod97_valid,
    worst_steps,
)
from agent.model import Event
from agent.policy import Policy, load_policy, policy_digest
from agent.redact import Redactor
from hushmetric.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "policy.toml"
SECRET = b"s" * 32
digits = st.text(alphabet="0123456789", min_size=1, max_size=30)


# --- checksums: reference check digits computed here, independently of the module ---------------------


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def mod11_digit(body: str) -> str:
    # weights 2, 3, … from the right of the body (the check digit has weight 1), cycling 1..10
    total = sum((i % 10 + 1) * int(ch) for i, ch in enumerate(reversed(body), start=1))
    check = (-total) % 11
    return "X" if check == 10 else str(check)


def mod97_digits(body: str) -> str:
    return f"{98 - int(body + '00') % 97:02d}"


def substitute(number: str, data: st.DataObject) -> str:
    i = data.draw(st.integers(0, len(number) - 1))
    new = data.draw(st.sampled_from([d for d in "0123456789" if d != number[i]]))
    return number[:i] + new + number[i + 1 :]


@given(digits, st.data())
def test_luhn_accepts_its_check_digit_and_catches_any_single_digit_error(
    body: str, data: st.DataObject
) -> None:
    number = body + luhn_digit(body)
    assert luhn_valid(number)
    assert luhn_valid("-".join(number))
    assert not luhn_valid(substitute(number, data))


@given(digits, st.data())
def test_mod11_accepts_its_check_digit_and_catches_substitutions_and_swaps(
    body: str, data: st.DataObject
) -> None:
    number = body + mod11_digit(body)
    assert mod11_valid(number)
    assert mod11_valid(number.lower())
    assert not mod11_valid(substitute(number[:-1], data) + number[-1])
    i = data.draw(st.integers(0, len(number) - 2))
    assume(number[i] != number[i + 1])
    assert not mod11_valid(number[:i] + number[i + 1] + number[i] + number[i + 2 :])


def test_mod11_known_numbers_and_x_only_last() -> None:
    assert mod11_valid("0-306-40615-2")  # ISBN-10
    assert mod11_valid("080442957X")  # ISBN-10 with X
    assert mod11_valid("943 476 5919")  # NHS number
    assert not mod11_valid("X804429570")
    assert not mod11_valid("7")


@given(st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=30), st.data())
def test_mod97_accepts_its_check_digits_and_catches_any_single_digit_error(
    body: str, data: st.DataObject
) -> None:
    numeric = "".join(str(int(ch, 36)) for ch in body)
    number = body + mod97_digits(numeric)
    assert mod97_valid(number)
    assert mod97_valid(number.lower())
    i = data.draw(st.integers(len(number) - 2, len(number) - 1))  # a check digit changed
    assert not mod97_valid(number[:i] + str((int(number[i]) + 1) % 10) + number[i + 1 :])


def test_mod97_known_iban() -> None:
    assert mod97_valid("370400440532013000DE89")  # DE89 3704 0044 0532 0130 00, check digits moved last
    assert not mod97_valid("370400440532013000DE88")


# --- context words ---------------------------------------------------------------------------------------

RECORD = compile_detector("record_number", r"(?<![0-9])[0-9]{8}(?![0-9])", context=["mrn", "patient record"])
filler = st.text(alphabet="abcdefghijklopqstuvwxyz ,.;:-", max_size=60)


@given(
    filler,
    filler,
    st.text(alphabet="0123456789", min_size=8, max_size=8),
    st.sampled_from(["MRN", "patient record", "mrn:"]),
    st.booleans(),
)
def test_a_planted_id_with_its_context_word_is_found_and_without_it_is_not(
    left: str, right: str, number: str, word: str, after: bool
) -> None:
    with_word = f"{left} {number} {word} {right}" if after else f"{left} {word} {number} {right}"
    start = with_word.index(number)
    assert RECORD.find(with_word) == [(start, start + 8)]
    bare = f"{left} {number} {right}"  # the filler has no "m", "n" or "r": no context word by chance
    assert RECORD.find(bare) == []


def test_context_word_must_be_a_whole_word_within_the_window() -> None:
    assert RECORD.find("mrn 12345678") == [(4, 12)]
    assert RECORD.find("mrnx 12345678") == []  # not the word
    assert RECORD.find("mrn " + "." * 40 + " 12345678") == []  # too far before
    assert RECORD.find("12345678 " + "." * 36 + "mrn") == [(0, 8)]  # ends 40 characters after
    assert RECORD.find("12345678 " + "." * 40 + "mrn") == []


def test_a_failed_candidate_does_not_hide_a_valid_one_inside_it() -> None:
    det = compile_detector("emp", r"[0-9]{7}", checksum="mod-11")
    text = "9" + "123456" + mod11_digit("123456")
    assert not mod11_valid(text[:7])  # the first candidate fails its check digit
    assert det.find(text) == [(1, 8)]


# --- validation and the cost bound -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("regex", "field", "expect"),
    [
        ("EMP-([0-9]{6}", "regex", "not a valid regular expression"),
        ("[0-9]{0,8}", "regex", "empty string"),
        ("(?:x)?|y", "regex", "empty string"),
        ("[0-9]+", "regex", "more than 64 characters"),
        ("(a+)+b", "regex", "more than 64 characters"),
        ("(a|aa){1,30}b", "regex", "backtrack"),
        ("([0-9]{1,5}){1,9}", "regex", "backtrack"),
        ("(?:[0-9]{1,3}[0-9]{1,3}){1,3}x", "regex", "backtrack"),
        (r"(a)\1", "regex", "back-references"),
    ],
)
def test_unsafe_or_broken_patterns_are_refused(regex: str, field: str, expect: str) -> None:
    with pytest.raises(CustomDetectorError) as info:
        compile_detector("x", regex)
    assert info.value.field == field
    assert expect in str(info.value)


@pytest.mark.parametrize(
    "regex",
    [
        r"EMP-([0-9]{6}[0-9X])",
        r"(?:[0-9]{3}-){2}[0-9]{4}",
        r"MRN[: ]?[0-9]{6,10}",
        r"[A-Z]{2}[0-9]{6,8}",
        r"\b[0-9]{8}\b",
        r"[A-Za-z]{1,20}-[0-9]{1,10}",
        r"(?i)(?:emp|staff)[ _-]?[0-9]{5}",
    ],
)
def test_typical_id_patterns_are_cheap(regex: str) -> None:
    assert worst_steps(regex) <= MAX_STEPS
    compile_detector("x", regex)


def test_worst_case_at_the_limit_still_finishes_on_hostile_text() -> None:
    # Patterns just under the limit on the text that makes them backtrack most: each start position
    # is tried once, so the scan ends (the bound: (len + 1) × MAX_STEPS steps per detector).
    hostile = "1" * 20_000
    for regex in (r"[0-9]{1,20}[0-9]{1,20}x", r"(?:[0-9]|[0-9]{2}){1,7}x", r"(?:[0-9]{1,3}){1,5}x"):
        assert worst_steps(regex) <= MAX_STEPS
        assert compile_detector("x", regex).find(hostile) == []


def test_unknown_checksum_and_reserved_names() -> None:
    with pytest.raises(CustomDetectorError, match="unknown checksum 'crc'") as info:
        compile_detector("x", "[0-9]{8}", checksum="crc")
    assert info.value.field == "checksum"
    for name in ("email", "card", "secret", "dropped_key", "truncated", "unit"):
        with pytest.raises(CustomDetectorError) as info:
            compile_detector(name, "[0-9]{8}")
        assert info.value.field == "name"


MINIMAL = """
version = 1
name = "t"
[budget]
rho = 1.0
[redaction]
default = "mask"
{custom}
[attrs.note]
kind = "text"
[[metrics]]
name = "signups"
events = ["signup"]
stat = "count"
dims = {{ note = "open" }}
"""


def write(tmp_path: Path, custom: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(MINIMAL.format(custom=custom))
    return path


@pytest.mark.parametrize(
    ("custom", "key", "expect"),
    [
        (
            "[[redaction.custom]]\nname = 'emp'\nregex = 'EMP-([0-9]{6}'",
            "redaction.custom[0].regex",
            "not a valid",
        ),
        ("[[redaction.custom]]\nname = 'emp'\nregex = '[0-9]*'", "redaction.custom[0].regex", "empty string"),
        (
            "[[redaction.custom]]\nname = 'emp'\nregex = '([0-9]{1,5}){1,9}'",
            "redaction.custom[0].regex",
            "backtrack",
        ),
        (
            "[[redaction.custom]]\nname = 'emp'\nregex = '[0-9]{8}'\nchecksum = 'crc32'",
            "redaction.custom[0].checksum",
            "Invalid enum value 'crc32'",
        ),
        ("[[redaction.custom]]\nname = 'email'\nregex = '[0-9]{8}'", "redaction.custom[0].name", "built-in"),
        (
            "[[redaction.custom]]\nname = 'a'\nregex = '[0-9]{8}'\n[[redaction.custom]]\nname = 'a'\nregex = 'x{2}'",
            "redaction.custom[1].name",
            "duplicate",
        ),
        (
            "[[redaction.custom]]\nname = 'a'\nregex = '[0-9]{8}'\ncontext = ['']",
            "redaction.custom[0].context[0]",
            "length",
        ),
        (
            "[[redaction.custom]]\nname = 'a'\nregex = '[0-9]{8}'\naction = 'shred'",
            "redaction.custom[0].action",
            "enum",
        ),
    ],
)
def test_policy_errors_name_file_and_key(tmp_path: Path, custom: str, key: str, expect: str) -> None:
    path = write(tmp_path, custom)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert expect in message
    assert "\n" not in message


def test_shipped_example_uncommented_loads_and_finds_both_ids(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    start = text.index("# [[redaction.custom]]")
    end = text.index("# Allowed attributes.")
    example = re.sub(r"(?m)^# ?", "", text[start:end])
    path = tmp_path / "policy.toml"
    path.write_text(text[:start] + example + text[end:])
    policy = load_policy(path)
    assert [r.name for r in policy.redaction.custom] == ["employee_id", "record_number"]
    assert policy_digest(policy) != policy_digest(load_policy(EXAMPLE))  # the digest covers them
    red = Redactor(policy, SECRET)
    out = red.redact_text("by EMP-1234560 for MRN 12345678")
    assert "1234560" not in out
    assert "12345678" not in out
    assert "[record_number]" in out
    assert "employee_id:" in out  # hashed: a stable pseudonym
    kept = "EMP-1234561 and 87654321 stay"  # a wrong check digit; no context word
    assert red.redact_text(kept) == kept
    assert red.take_counts() == {"employee_id": 1, "record_number": 1}


def test_policies_without_custom_detectors_keep_their_digest() -> None:
    policy = load_policy(EXAMPLE)
    tree = msgspec.to_builtins(policy, order="sorted")
    del tree["redaction"]["custom"]
    for metric in tree["metrics"]:  # the metric keys of issue 15 are left out at their defaults too
        for name, default in (("bound", "window"), ("period_total", 0.0)):
            if metric.get(name) == default:
                del metric[name]
    import hashlib

    assert policy_digest(policy) == hashlib.sha256(msgspec.msgpack.encode(tree)).hexdigest()


# --- redaction ------------------------------------------------------------------------------------------


def policy_with(*rules: dict[str, object], default: str = "mask") -> Policy:
    return msgspec.convert(
        {
            "version": 1,
            "name": "t",
            "redaction": {"default": default, "custom": list(rules)},
            "attrs": {"note": {"kind": "text", "max_length": 64}},
            "metrics": [{"name": "m", "events": ["e"], "stat": "count", "dims": {"note": "open"}}],
        },
        Policy,
    )


@pytest.mark.parametrize(
    ("action", "expect"),
    [("mask", "id [staff] ok"), ("drop", "id  ok"), ("generalize", "id [staff] ok"), (None, "id [staff] ok")],
)
def test_actions_apply_to_custom_findings(action: str | None, expect: str) -> None:
    rule: dict[str, object] = {"name": "staff", "regex": "S-[0-9]{5}"}
    if action is not None:
        rule["action"] = action
    red = Redactor(policy_with(rule), SECRET)
    ev = Event("e", 1.0, "u", 1.0, {"note": "id S-12345 ok"})
    out = red.redact(ev)
    assert out is not None
    assert out.attrs["note"] == expect
    assert red.take_counts() == {"staff": 1}


def test_hash_is_a_stable_site_pseudonym() -> None:
    red = Redactor(policy_with({"name": "staff", "regex": "S-[0-9]{5}", "action": "hash"}), SECRET)
    a, b = red.redact_text("S-12345"), red.redact_text("x S-12345")
    assert a.startswith("staff:")
    assert b == "x " + a
    assert a != red.redact_text("S-54321")
    other = Redactor(policy_with({"name": "staff", "regex": "S-[0-9]{5}", "action": "hash"}), b"t" * 32)
    assert other.redact_text("S-12345") != a


def test_custom_detectors_come_first_when_findings_overlap() -> None:
    # A phone-shaped employee number: the site's own name wins and its action applies.
    red = Redactor(policy_with({"name": "staff", "regex": r"\+44[0-9]{10}", "action": "drop"}), SECRET)
    assert red.redact_text("call +447700900123 now") == "call  now"
    assert red.redact_text("mail a@example.com") == "mail [email]"  # built-ins still run
    assert red.take_counts() == {"staff": 1, "email": 1}


def test_custom_findings_in_event_names_drop_the_event_and_in_units_are_pseudonymised() -> None:
    red = Redactor(policy_with({"name": "staff", "regex": "S-[0-9]{5}"}), SECRET)
    assert red.redact(Event("login S-12345", 1.0, "u", 1.0, {})) is None
    out = red.redact(Event("e", 1.0, "S-12345", 1.0, {}))
    assert out is not None
    assert out.unit.startswith("unit:")
    assert red.take_counts() == {"staff": 2, "dropped_event": 1, "pseudonymized_unit": 1}


def test_scanner_without_custom_findings_returns_the_builtin_ones_unchanged() -> None:
    scanner = CustomScanner([compile_detector("staff", "S-[0-9]{5}")])
    assert scanner.names[0] == "staff"
    assert "email" in scanner.names
    assert [f.detector for f in scanner.scan("a@example.com and S-12345")] == ["email", "staff"]
    assert scanner.scan("plain") == []


@given(st.text(alphabet="ab01()[]{}|*+?.,-\\^$:=!<>dwsbB", max_size=24))
def test_any_pattern_is_either_refused_cleanly_or_bounded(regex: str) -> None:
    try:
        det = compile_detector("x", regex)
    except CustomDetectorError as exc:
        refused = exc
    else:
        refused = None
    if refused is not None:
        assert refused.field == "regex"
        assert "\n" not in str(refused)
        return
    assert worst_steps(regex) <= MAX_STEPS
    assert det.min_len >= 1
    for text in ("a" * 300, "ab01" * 80, "0" * 300):
        spans = det.find(text)
        assert spans == sorted(spans)
        assert all(0 <= s < e <= len(text) for s, e in spans)
        assert all(e1 <= s2 for (_, e1), (s2, _) in pairwise(spans))


EMPLOYEE = compile_detector("employee_id", r"EMP-([0-9]{6}[0-9X])(?![0-9A-Za-z])", checksum="mod-11")


@given(filler, filler, st.text(alphabet="0123456789", min_size=6, max_size=6), st.data())
def test_a_planted_id_with_a_valid_check_digit_is_found_and_with_a_wrong_one_is_not(
    left: str, right: str, body: str, data: st.DataObject
) -> None:
    good = f"EMP-{body}{mod11_digit(body)}"
    text = f"{left} {good} {right}"
    start = text.index(good)
    assert EMPLOYEE.find(text) == [(start, start + len(good))]
    bad = f"EMP-{substitute(body, data)}{mod11_digit(body)}"
    assert EMPLOYEE.find(f"{left} {bad} {right}") == []
