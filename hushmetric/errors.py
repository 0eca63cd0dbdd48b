"""The shared error tree. Every error carries a machine-readable ``code``; CLIs map them to exit codes."""

from __future__ import annotations

__all__ = ["ConfigError", "ContractError", "HushError", "SignatureError"]


class HushError(Exception):
    """Base of every error hushmetric raises on purpose. ``str(err)`` is one line fit for a user."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class ConfigError(HushError):
    """A configuration or policy file is missing, unreadable, or does not fit its schema."""

    code = "config"

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        message, key = _one_line(message), _one_line(key) if key else key  # messages quote file contents
        where = ": ".join(p for p in (path, key) if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.key = key


def _one_line(text: str, limit: int = 300) -> str:
    """One short line whatever the input held: newlines escaped, long quotes cut."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ContractError(HushError):
    """Bytes that do not follow the wire contract (malformed, wrong type, wrong size)."""

    code = "invalid"


class SignatureError(HushError):
    """A DSSE envelope whose signature does not verify, or whose key is not known."""

    code = "signature"
