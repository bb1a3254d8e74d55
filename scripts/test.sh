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
