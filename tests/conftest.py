"""Suite-wide settings.

Property tests explore new random inputs on every local run; under CI (``CI`` set) they replay a
fixed sequence instead, so a gate run passes or fails on the code, not on the draw. A failure found
locally is a bug to fix and, usually, a new explicit example.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
