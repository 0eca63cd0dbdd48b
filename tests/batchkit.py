"""One factory for the signed-batch payloads the collector tests, the replicas test and the proof
families send (they had a copy each).

A module next to ``tests/pg.py`` rather than a conftest: the proof kit and test helpers import it
by name, which pytest does not support for conftest files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hushmetric.batch import Batch, Noise, Privacy, Row, Window, encode_batch
from hushmetric.timefmt import format_rfc3339

__all__ = ["POLICY", "payload", "rows"]

POLICY = "ab" * 32  # a policy digest


def rows(
    n: int,
    *,
    metric: str | None = None,
    dim: str = "region",
    label: str = "r",
    base: float = 0.0,
    scale: float = 1.5,
) -> list[Row]:
    """``n`` count rows: metric ``metric`` (default ``metric0..2`` in turn), one dimension
    ``dim = label + i``, values ``base + i``, Gaussian noise of ``scale``."""
    return [
        Row(
            metric or f"metric{i % 3}",
            "count",
            {dim: f"{label}{i}"},
            float(base + i),
            Noise("gaussian", scale),
        )
        for i in range(n)
    ]


def payload(
    *,
    tenant: str,
    agent: str,
    seq: int,
    prev: str,
    created: float,
    released: list[Row],
    redactions: dict[str, int] | None = None,
    over: Mapping[str, Any] | None = None,
) -> bytes:
    """The encoded batch ``seq`` of ``agent``, created at ``created`` for the minute before it;
    ``over`` replaces any field afterwards, as the wire carries it (``tenant``, ``created`` as a
    stamp, ``window``, ``privacy``…)."""
    fields: dict[str, Any] = {
        "v": 1,
        "tenant": tenant,
        "agent": agent,
        "seq": seq,
        "prev": prev,
        "created": format_rfc3339(created),
        "window": Window(format_rfc3339(created - 60), format_rfc3339(created)),
        "policy": POLICY,
        "privacy": Privacy("user", None, None, 0.01),
        "redactions": {} if redactions is None else redactions,
        "rows": released,
    }
    fields.update(over or {})
    return encode_batch(Batch(**fields))
