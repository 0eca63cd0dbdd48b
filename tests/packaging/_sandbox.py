"""Apply a unit's process restrictions to this process, then exec a command under them.

    python _sandbox.py [--syscalls FILE] -- COMMAND...

- ``NoNewPrivileges=yes``: ``prctl(PR_SET_NO_NEW_PRIVS)``.
- ``MemoryDenyWriteExecute=yes``: ``prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)``, the kernel feature
  systemd itself uses for it where available; kept across exec.
- ``SystemCallFilter=`` with ``SystemCallErrorNumber=EPERM``: with ``--syscalls FILE`` (one allowed system
  call name per line), a libseccomp allow-list whose default action is EPERM. Needs the ``seccomp``
  module (Debian: python3-seccomp), so this script then runs under the system Python; the filter stays
  in force across exec.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def seccomp_allow(names: list[str]) -> int:
    import seccomp  # type: ignore[import-not-found]  # Debian's python3-seccomp, untyped, system Python only

    filt = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    added = 0
    for name in names:
        try:
            filt.add_rule(seccomp.ALLOW, name)
            added += 1
        except (RuntimeError, ValueError):
            pass  # a call this architecture does not have (e.g. the 32-bit *_time64 variants)
    filt.load()
    return added


def main(argv: list[str]) -> None:
    syscalls: str | None = None
    if argv[:1] == ["--syscalls"]:
        syscalls, argv = argv[1], argv[2:]
    if argv[:1] != ["--"] or len(argv) < 2:
        raise SystemExit("usage: _sandbox.py [--syscalls FILE] -- COMMAND...")
    command = argv[1:]
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)
    if syscalls is not None:
        with open(syscalls) as fh:
            names = [line.strip() for line in fh if line.strip()]
        print(f"seccomp: {seccomp_allow(names)} calls allowed", file=sys.stderr)
    os.execv(command[0], command)  # noqa: S606 - the point is to replace this process, argv as given


if __name__ == "__main__":
    main(sys.argv[1:])
