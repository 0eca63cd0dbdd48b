"""hushmetric.exitcodes: one list of exit statuses for both command lines, stable for scripts."""

from __future__ import annotations

from types import ModuleType

import pytest

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


@pytest.mark.parametrize(
    ("cli", "codes"),
    [
        (agent.cli, (ExitCode.FAILED, ExitCode.USAGE, ExitCode.UNAVAILABLE, ExitCode.CONFLICT)),
        (
            collector.cli,
            (ExitCode.FAILED, ExitCode.USAGE, ExitCode.NOT_FOUND, ExitCode.UNAVAILABLE, ExitCode.CONFLICT),
        ),
    ],
)
def test_the_help_lists_every_status_it_uses(cli: ModuleType, codes: tuple[ExitCode, ...]) -> None:
    epilog = cli.build_parser().epilog or ""
    for code in codes:
        assert f"{int(code)} " in epilog
