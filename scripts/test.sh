#!/usr/bin/env bash
# Runs every test: the Swift unit tests, then the integration suites (real redis-server, redis-cli,
# redis-benchmark, redis-py, the Azure SDKs against the test emulators) on a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
swift build -c release --product tierproxy
swift build -c release --product tierbench
swift test
TIERPROXY_BIN="$PWD/.build/release/tierproxy" python3 -m pytest -q -p no:cacheprovider Tests/integration Tests/tiered "$@"
# Once more with the hot tier behind TLS (rediss:// to every upstream's TLS port; the tests' own
# direct access to hot stays plain). test_upstream_tls.py is TLS throughout already.
TIERPROXY_TEST_HOT_TLS=1 TIERPROXY_BIN="$PWD/.build/release/tierproxy" python3 -m pytest -q -p no:cacheprovider \
    Tests/integration Tests/tiered --ignore=Tests/integration/test_upstream_tls.py "$@"
