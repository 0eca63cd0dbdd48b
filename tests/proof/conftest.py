"""Proof suite fixtures: the session-wide figures recorder and its table at the end of the run.

Every family records rows through the ``figures`` fixture; ``pytest_terminal_summary`` prints them as
one table and writes them as JSON to ``$HUSH_PROOF_OUT`` (default: ``proof-figures.json`` in the
session's pytest temporary directory). ``HUSH_PROOF=long`` selects the long variants (same code,
same assertions, more iterations); see :mod:`tests.proof.proofkit`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.proof.proofkit import LONG, Figures

_FIGURES = pytest.StashKey[Figures]()


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Figures:
    stash = request.config.stash
    if _FIGURES not in stash:
        out = os.environ.get("HUSH_PROOF_OUT")
        path = Path(out) if out else tmp_path_factory.getbasetemp() / "proof-figures.json"
        stash[_FIGURES] = Figures(path=path, mode="long" if LONG else "short")
    return stash[_FIGURES]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    figs = config.stash.get(_FIGURES, None)
    if figs is None or not figs.rows:
        return
    terminalreporter.section(f"proof figures ({figs.mode})")
    for line in figs.table().splitlines():
        terminalreporter.write_line(line)
    try:
        figs.path.parent.mkdir(parents=True, exist_ok=True)
        figs.path.write_text(json.dumps(figs.as_json(), indent=2) + "\n")
    except OSError as exc:
        terminalreporter.write_line(f"could not write {figs.path}: {exc}")
    else:
        terminalreporter.write_line(f"figures written to {figs.path}")
