"""hushmetric.timefmt: RFC 3339 stamps on the wire and human durations in configs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hushmetric.timefmt import format_rfc3339, parse_duration, parse_rfc3339


@given(st.integers(0, 253_402_300_799))  # up to 9999-12-31T23:59:59Z
def test_stamps_round_trip_in_whole_seconds(epoch: int) -> None:
    text = format_rfc3339(epoch + 0.9)  # fractions are cut, never rounded up into the next second
    assert text.endswith("Z")
    assert len(text) == 20
    assert parse_rfc3339(text) == epoch


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2026-01-02T03:04:05Z", 1767323045.0),
        ("2026-01-02T03:04:05z", 1767323045.0),
        ("2026-01-02T04:04:05+01:00", 1767323045.0),
        ("2026-01-02T03:04:05.5Z", 1767323045.5),
    ],
)
def test_any_offset_is_accepted(text: str, epoch: float) -> None:
    assert parse_rfc3339(text) == epoch


@pytest.mark.parametrize("text", ["2026-01-02T03:04:05", "2026-01-02", "yesterday", ""])
def test_a_stamp_without_offset_is_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - fromisoformat's message varies by version
        parse_rfc3339(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45", 45),
        ("45s", 45),
        ("30m", 1800),
        ("1h30m", 5400),
        ("90d", 7_776_000),
        ("2w", 1_209_600),
        (" 5m ", 300),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "5 m", "1.5h", "-5s", "5y", "5m5", "h1"])
def test_malformed_durations_name_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@given(st.lists(st.tuples(st.integers(0, 999), st.sampled_from("smhdw")), min_size=1, max_size=5))
def test_parts_add_up(parts: list[tuple[int, str]]) -> None:
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_duration(text) == sum(n * unit[u] for n, u in parts)
