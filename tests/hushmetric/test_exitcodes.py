"""hushmetric.exitcodes: one list of exit statuses for both command lines, stable for scripts."""

from __future__ import annotations

import agent.cli
import collector.cli
from hushmetric.exitcodes import ExitCode


def test_values_are_stable() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "FAILED": 1,
        "USAGE": 2,
        "NOT_FOUND": 3,
        "UNAVAILABLE": 4,
        "CONFLICT": 5,
        "INTERRUPTED": 130,
    }


def test_the_agent_constants_mean_the_same() -> None:
    # The agent CLI still has its own constants (its package split adopts ExitCode); they must agree.
    a = agent.cli
    assert (a.EXIT_OK, a.EXIT_FAILED, a.EXIT_USAGE, a.EXIT_UNAVAILABLE, a.EXIT_INTERRUPTED) == (
        ExitCode.OK,
        ExitCode.FAILED,
        ExitCode.USAGE,
        ExitCode.UNAVAILABLE,
        ExitCode.INTERRUPTED,
    )


def test_the_collector_help_lists_every_status_it_uses() -> None:
    epilog = collector.cli.build_parser().epilog or ""
    for code in (
        ExitCode.FAILED,
        ExitCode.USAGE,
        ExitCode.NOT_FOUND,
        ExitCode.UNAVAILABLE,
        ExitCode.CONFLICT,
    ):
        assert f"{int(code)} " in epilog
