"""What every ``hush-agent`` command shares: the context (arguments, environment, streams, clock), the
config it loads, the state database it opens (and locks), and how a command is registered.

Commands import their stage modules inside the function: ``hush-agent status`` must not pay for gRPC
or OpenDP, which only some commands need.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import msgspec

from agent.config import LoadedConfig, load_config
from hushmetric.errors import ConfigError
from hushmetric.exitcodes import ExitCode

if TYPE_CHECKING:
    import sqlite3
    from typing import TextIO

__all__ = ["Command", "Context", "Subcommands", "run_async", "write_output"]

T = TypeVar("T")
Command = Callable[["Context"], ExitCode]
_json = msgspec.json.Encoder()


@dataclass
class Context:
    """One invocation: parsed arguments, environment, streams and clock, injected so that tests (and
    callers embedding the CLI) can run a command in-process. ``stdin`` is read as bytes; None means
    the process's own."""

    args: argparse.Namespace
    env: Mapping[str, str]
    out: TextIO
    err: TextIO
    stdin: IO[bytes] | None = None
    clock: Callable[[], float] = time.time
    _loaded: LoadedConfig | None = field(default=None, init=False, repr=False)  # see `config`

    # -- output ---------------------------------------------------------------------------------

    def say(self, line: str = "") -> None:
        """A line of the command's result on stdout."""
        self.out.write(line + "\n")

    def say_lines(self, lines: list[str]) -> None:
        for line in lines:
            self.say(line)

    def json(self, obj: Any) -> None:
        self.out.write(_json.encode(obj).decode() + "\n")

    def warn(self, line: str) -> None:
        """A one-line problem on stderr, prefixed with the program name."""
        self.err.write(f"hush-agent: {line}\n")

    def note(self, text: str) -> None:
        """Guidance for the operator on stderr (not part of the result scripts read)."""
        self.err.write(text)

    # -- input ----------------------------------------------------------------------------------

    @property
    def config(self) -> LoadedConfig:
        """The agent config named by ``--config``, loaded once."""
        if self._loaded is None:
            self._loaded = load_config(Path(self.args.config))
        return self._loaded

    def read_input(self, name: str) -> IO[bytes]:
        """``-`` for stdin, else the file; a ConfigError naming it when it cannot be opened."""
        if name == "-":
            return self.stdin if self.stdin is not None else sys.stdin.buffer
        try:
            return Path(name).open("rb")
        except OSError as exc:
            raise ConfigError(f"cannot read input: {exc.strerror or exc}", path=name) from exc

    # -- state ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def state_lock(self) -> Iterator[None]:
        """Hold the state directory's lock (one writer per state directory) for the block.

        Commands that release, charge or drain take it: ``run``, ``export``, ``ledger
        --acknowledge-reset``. ``egress stop|resume`` deliberately does not: the kill switch must work
        while the daemon runs, and it is one SQLite transaction the sender re-reads before every
        delivery. Read-only commands never lock. :class:`agent.state.StateLocked` (exit 5) when
        another process holds it."""
        from agent.state import lock_state

        with lock_state(self.config.state_dir):
            yield

    @contextlib.contextmanager
    def state(self, *, lock: bool = False) -> Iterator[sqlite3.Connection]:
        """The agent's state database (schemas applied), closed after the block; with ``lock``, the
        state lock is taken first and held until the connection is closed."""
        from agent.runtime import open_agent_state

        with self.state_lock() if lock else contextlib.nullcontext():
            conn = open_agent_state(self.config)
            try:
                yield conn
            finally:
                conn.close()


def write_output(path: str, data: bytes) -> None:
    """Write a file named by ``--out``; a ConfigError naming it (one line, exit 2) when it cannot be
    written, never a traceback."""
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", path=path) from exc


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop  # optional: faster event loop when installed

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)


class Subcommands:
    """Where a command module adds its commands: ``add(name, fn, help)`` returns the command's parser
    (``--config`` accepted after the command too) with ``fn`` as its handler."""

    def __init__(self, sub: argparse._SubParsersAction[argparse.ArgumentParser], config_help: str) -> None:
        # --config is accepted before and after the command; the copy on each command must not
        # overwrite a value given before it with its default, hence SUPPRESS there.
        self._sub = sub
        self._common = argparse.ArgumentParser(add_help=False)
        self._common.add_argument("--config", default=argparse.SUPPRESS, help=config_help)

    def add(self, name: str, fn: Command, help_: str) -> argparse.ArgumentParser:
        p = self._sub.add_parser(name, parents=[self._common], help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p
