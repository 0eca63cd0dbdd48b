"""Figures on LogHub's published 2,000-line samples, read from a local checkout (nothing is stored here).

``python -m tests.corpus.loghub PATH`` scans every ``*_2k.log`` under PATH (a clone of
github.com/logpai/loghub) and prints, per system, the lines with a finding other than an address
(these samples carry no planted PII: such findings are mistakes, except the few real e-mail and MAC
addresses in the Linux and Mac samples) and the share of dotted-quad addresses that are found.
Without ground truth this is a check of over-redaction and of IPv4 recall, not a recall figure for
other types.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

from agent.detectors import Scanner
from agent.detectors._checks import ipv4_ok

__all__ = ["main"]

# A dotted quad standing alone (not inside a longer dotted run, not glued to a name by "-" or "~",
# not Gecko's "rv:"): what a reader would call an address in these logs.
_QUAD = re.compile(r"(?<![0-9A-Za-z.~])(?<!rv:)(?<![A-Za-z]-)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9]|\.[0-9])")


def main(root: Path) -> int:  # pragma: no cover - needs a local checkout
    scan = Scanner().scan
    total = mistaken = quads = quads_found = 0
    by: Counter[str] = Counter()
    print(f"{'system':<12}{'lines':>7}{'changed':>9}{'share':>8}")
    for path in sorted(root.rglob("*_2k.log")):
        n = changed = 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            n += 1
            found = scan(line)
            for q in _QUAD.finditer(line):
                if ipv4_ok(q.group()):
                    quads += 1
                    quads_found += any(
                        f.detector == "ipv4" and f.start <= q.start() and f.end >= q.end() for f in found
                    )
            other = [f.detector for f in found if f.detector not in ("ipv4", "ipv6")]
            if other:
                changed += 1
                by.update(other)
        total += n
        mistaken += changed
        print(f"{path.name.split('_')[0]:<12}{n:>7}{changed:>9}{changed / max(1, n):>8.1%}")
    print(
        f"all {total} lines, {mistaken} with a finding other than an address ({mistaken / max(1, total):.1%}): {dict(by)}"
    )
    print(f"dotted-quad addresses {quads}, found {quads_found} ({quads_found / max(1, quads):.2%})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(Path(sys.argv[1])))
