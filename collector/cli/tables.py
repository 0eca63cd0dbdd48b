"""Plain-text, JSON and CSV forms of what the admin CLI lists. Pure: records in, text out."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import msgspec

from collector.store import KeyRecord, Tenant
from collector.store.records import UsageDay
from hushmetric.timefmt import format_rfc3339

__all__ = ["USAGE_FIELDS", "format_usage", "keys_table", "table", "tenants_table"]

USAGE_FIELDS = ("tenant", "day", "batches", "rows", "bytes", "duplicates", "refused", "gaps")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in [headers, *rows]
    ]
    return "\n".join(lines) + "\n"


def _refused(u: UsageDay) -> str:
    return ";".join(f"{reason}={n}" for reason, n in u.refused.items())


def format_usage(days: Sequence[UsageDay], fmt: str) -> str:
    if fmt == "json":
        return msgspec.json.encode(list(days)).decode() + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(USAGE_FIELDS)
        for u in days:
            writer.writerow([u.tenant, u.day, u.batches, u.rows, u.bytes, u.duplicates, _refused(u), u.gaps])
        return out.getvalue()
    rows = [
        [
            u.tenant,
            u.day,
            str(u.batches),
            str(u.rows),
            str(u.bytes),
            str(u.duplicates),
            _refused(u) or "-",
            str(u.gaps),
        ]
        for u in days
    ]
    return table(USAGE_FIELDS, rows)


def tenants_table(tenants: Sequence[Tenant]) -> str:
    return table(
        ("name", "state", "created"), [[t.name, t.state, format_rfc3339(t.created)] for t in tenants]
    )


def keys_table(keys: Sequence[KeyRecord]) -> str:
    rows = [
        [
            k.key_id,
            k.tenant,
            k.agent,
            k.state,
            format_rfc3339(k.added),
            format_rfc3339(k.retired_at) if k.retired_at else "-",
        ]
        for k in keys
    ]
    return table(("key_id", "tenant", "agent", "state", "added", "retired"), rows)
