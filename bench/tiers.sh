#!/usr/bin/env bash
# Builds tierbench (release) and runs it against SQLite, a directory, and the Cosmos and Blob
# emulators started here with a fixed per-request latency. Results go to bench/tiers-latest.txt.
#   bench/tiers.sh [LATENCY_MS] [extra tierbench args...]
set -euo pipefail
cd "$(dirname "$0")/.."
LATENCY="${1:-20}"; shift || true
swift build -c release --product tierbench 2>&1 | tail -1
READY="$(mktemp)"
python3 Tests/fixtures/orphan_guard.py -m Tests.emulators --latency-ms "$LATENCY" --ready-file "$READY" >/dev/null 2>"$READY.log" &
EMU=$!
trap 'kill $EMU 2>/dev/null || true; rm -f "$READY" "$READY.log"' EXIT
for _ in $(seq 1 100); do [ -s "$READY" ] && break; sleep 0.1; done
[ -s "$READY" ] || { echo "emulators did not start"; cat "$READY.log"; exit 1; }
eval "$(python3 - "$READY" <<'PY'
import json, sys, shlex
i = json.load(open(sys.argv[1]))
print(f"export COSMOS_ENDPOINT={shlex.quote(i['cosmos'])} COSMOS_KEY={shlex.quote(i['cosmos_key'])}")
print(f"export BLOB_ACCOUNT_URL={shlex.quote(i['blob'])} BLOB_KEY={shlex.quote(i['blob_key'])}")
PY
)"
export EMULATOR_LATENCY_MS="$LATENCY"
"$(swift build -c release --show-bin-path)/tierbench" "$@" | tee bench/tiers-latest.txt
