#!/usr/bin/env bash
# Install Debian's `chromium` for the dashboard's browser tests (tests/collector/http/test_browser.py,
# Playwright's Python API pointed at /usr/bin/chromium — never `playwright install`, which downloads),
# when it is missing and we may: root with apt-get.
# Never fails the build: without it, the browser tests are skipped with the reason.
set -uo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: chromium not installed (needs root and apt-get); the browser tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; then
    apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
        || echo "ensure-chromium: apt-get install chromium failed; the browser tests will be skipped" >&2
fi
exit 0
