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
    """Why an input was refused. Holds no raw content: only where it came from and a keyed digest.

    ``source`` names the configured input (the MQTT subscription filter the message matched, the
    file, ``stdin``), never the concrete topic: topics often carry user ids or email addresses.
    ``digest`` is an HMAC-SHA256 under a key derived from the site secret
    (:func:`agent.deadletter.digest_key`): an unkeyed hash of a short input could be reversed by
    trying candidates, a keyed one only by someone who holds the site secret. The same input gives
    the same digest on one site, so an operator can still match it against the sender's own logs
    (``hush-agent dead-letter --digest-of FILE``).
    """

    reason: str  # machine-readable: "json", "type", "missing", "too_large", "too_many_attrs", ...
    detail: str  # one line for a human; never contains raw input values
    source: str  # e.g. "mqtt:sensors/#", "file:/var/log/app.jsonl", "stdin"
    size: int  # bytes of the refused input
    digest: str  # hex HMAC-SHA256 of the refused input under the site's dead-letter key
    at: float  # epoch seconds when refused
