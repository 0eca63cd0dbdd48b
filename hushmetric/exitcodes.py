"""The exit statuses of both command lines (``hush-agent``, ``hush-collector``): one list, stable for scripts.

A command uses the ones that apply to it (the agent has no ``NOT_FOUND`` or ``CONFLICT`` today); a
value never changes meaning between the two.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the operation ran but failed or was refused: verification, delivery, budget
    USAGE = 2  # bad flags, configuration, policy or input
    NOT_FOUND = 3  # a named tenant, key or token does not exist
    UNAVAILABLE = 4  # database, key file, address or collector cannot be used right now
    CONFLICT = 5  # the request conflicts with the current state
    INTERRUPTED = 130  # SIGINT (128 + 2), as shells report it
