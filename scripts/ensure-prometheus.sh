#!/usr/bin/env bash
# Install the Debian `prometheus` package the remote-write tests run for real
# (tests/integration/test_prometheus.py), when it is missing and we may: root with apt-get.
# Never fails the build: without it, those tests are skipped with the reason.
set -uo pipefail
if command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-prometheus: prometheus not installed (needs root and apt-get); its tests will be skipped" >&2
    exit 0
fi
# the tests start their own instance on a free loopback port, whatever the package sets up
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1; then
    apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 \
        || echo "ensure-prometheus: apt-get install prometheus failed; its tests will be skipped" >&2
fi
exit 0
