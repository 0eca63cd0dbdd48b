"""``python -m agent.cli``: the same entry point as ``hush-agent``."""

from agent.cli import main

raise SystemExit(main())
