"""Time helpers shared by both sides: RFC 3339 UTC stamps and human durations ("90d", "1h30m")."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["format_rfc3339", "parse_duration", "parse_rfc3339"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)([smhdw])")
# A fraction of a second with more than six digits: the microseconds, then the rest.
_SUBMICRO = re.compile(r"\.(\d{6})(\d+)")


def format_rfc3339(epoch: float) -> str:
    """``2026-01-02T03:04:05Z`` (whole seconds, UTC): the form used on the wire."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 stamp with an explicit offset; ValueError otherwise.

    Fractions finer than a microsecond are rounded half up to the microsecond, as msgspec's C parser
    does (``datetime.fromisoformat`` would truncate them): the agent's fast and per-line decode paths
    must agree to the bit on the same input.
    """
    text = text.replace("Z", "+00:00").replace("z", "+00:00")
    fine = _SUBMICRO.search(text)
    round_up = fine is not None and fine.group(2)[0] >= "5"
    if fine is not None:
        text = text[: fine.start()] + "." + fine.group(1) + text[fine.end() :]
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    if round_up:
        stamp += timedelta(microseconds=1)
    return stamp.timestamp()


def parse_duration(text: str) -> int:
    """Seconds in ``"90d"``, ``"1h30m"``, ``"45s"`` or a bare number of seconds; ValueError otherwise."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    pos, total = 0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"{text!r} is not a duration like 90d, 12h, 30m or 45s")
    return total
