"""Core value types that flow between the agent's stages."""

from __future__ import annotations

import msgspec

__all__ = ["AttrValue", "DeadLetter", "Event"]

AttrValue = str | int | float | bool


class Event(msgspec.Struct, frozen=True, gc=False):
    """One decoded, validated event. ``ts`` is epoch seconds (UTC); ``unit`` is the privacy unit id.

    After the redact stage, ``attrs`` holds only keys the policy allows, with findings already
    dropped, masked, pseudonymised or generalised.
    """

    name: str
    ts: float
    unit: str
    value: float | None = None
    attrs: dict[str, AttrValue] = {}


class DeadLetter(msgspec.Struct, frozen=True):
    """Why an input was refused. Holds no raw content: only where it came from and a digest."""

    reason: str  # machine-readable: "json", "type", "missing", "too_large", "too_many_attrs", ...
    detail: str  # one line for a human; never contains raw input values
    source: str  # e.g. "mqtt:sensors/#", "file:/var/log/app.jsonl", "stdin"
    size: int  # bytes of the refused input
    sha256: str  # hex digest of the refused input, to correlate with the source's own logs
    at: float  # epoch seconds when refused
