#!/usr/bin/env bash
# Redis 7.0.15's own test suite through tierproxy (docs/compatibility.md has the figures).
#
#   scripts/redis-suite.sh core|tiered OUTDIR
#
# Starts a fresh upstream redis-server with the settings the harness expects and tierproxy in
# front of it (core: --warm none --cold none; tiered: embedded SQLite warm and directory cold,
# tiers-allow-flush yes, since the harness flushes between units), runs the runner in
# ../shared/redis-suite (outside this repository: it drives Redis's Tcl harness, which is Redis's
# code and stays out of the project), then compares with the runner's direct baseline.
# Needs REDIS_SUITE_HARNESS (see ../shared/redis-suite/README.md) and a release build.
#
# Environment: UP_PORT (22000), PROXY_PORT (22100), BASEPORT (23000), UNITS ("unit/a unit/b"),
# TIERPROXY_BIN (.build/release/tierproxy), SUITE (../shared/redis-suite).
set -u
[ $# -eq 2 ] || { sed -n '2,/^set -u/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 2; }
MODE=$1
OUT=$(mkdir -p "$2" && cd "$2" && pwd) || exit 1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUITE=${SUITE:-$ROOT/../shared/redis-suite}
BIN=${TIERPROXY_BIN:-$ROOT/.build/release/tierproxy}
UP=${UP_PORT:-22000}
PP=${PROXY_PORT:-22100}
export BASEPORT=${BASEPORT:-23000}
[ -x "$BIN" ] || { echo "no tierproxy at $BIN: swift build -c release --product tierproxy" >&2; exit 2; }
[ -x "$SUITE/run.sh" ] || { echo "no runner at $SUITE" >&2; exit 2; }

SCRATCH=$(mktemp -d -t tierproxy-suite.XXXXXX) || exit 1
REDIS_PID= PROXY_PID=
cleanup() {
    [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
    cp "$SCRATCH"/*.log "$OUT"/ 2>/dev/null
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (bounded) until PORT answers PING.
wait_ping() {
    for _ in $(seq 100); do
        [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    echo "nothing answers PING on port $1" >&2
    exit 1
}

redis-server --port "$UP" --bind 127.0.0.1 --save "" --appendonly no \
    --enable-debug-command yes --enable-protected-configs yes --enable-module-command yes \
    --dir "$SCRATCH" --logfile "$SCRATCH/redis.log" &
REDIS_PID=$!
wait_ping "$UP"

case "$MODE" in
    core) TIERS=(--warm none --cold none) ;;
    tiered) TIERS=(--warm "sqlite:$SCRATCH/warm.db" --cold "dir:$SCRATCH/cold" --tiers-allow-flush yes) ;;
    *) echo "mode must be core or tiered" >&2; exit 2 ;;
esac
"$BIN" --port "$PP" --upstream "redis://127.0.0.1:$UP" "${TIERS[@]}" --dir "$SCRATCH" \
    --logfile "$SCRATCH/tierproxy.log" &
PROXY_PID=$!
wait_ping "$PP"

(cd "$SUITE" && UPSTREAM="127.0.0.1:$UP" ./run.sh 127.0.0.1 "$PP" "$OUT")
python3 "$SUITE/compare.py" "$SUITE/baseline-direct" "$OUT" > "$OUT/compare.txt" 2>&1
tail -n 1 "$OUT/compare.txt"
