"""``python -m collector.cli``: the same entry point as ``hush-collector``."""

from collector.cli import main

raise SystemExit(main())
