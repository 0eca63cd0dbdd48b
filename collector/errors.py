"""Errors the collector raises on purpose. Each carries a ``code``; the CLI maps codes to exit statuses."""

from __future__ import annotations

from hushmetric.errors import HushError

__all__ = ["AuditError", "CollectorError", "Conflict", "NotFound", "Unavailable"]


class CollectorError(HushError):
    """Base of the collector's own errors."""

    code = "collector"


class NotFound(CollectorError):
    """A tenant, key or token that does not exist."""

    code = "not_found"

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} {name!r} not found")
        self.kind = kind
        self.name = name


class Conflict(CollectorError):
    """The request contradicts the current state (tenant exists, key revoked, token used...)."""

    code = "conflict"


class Unavailable(CollectorError):
    """The database or the signing key cannot be used right now."""

    code = "unavailable"


class AuditError(CollectorError):
    """An audit log that does not verify. ``index`` is the 1-based line number of the first bad entry."""

    code = "audit"

    def __init__(self, message: str, *, line: int) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
