#!/usr/bin/env bash
# Builds tierproxy and runs it on its defaults (port 6380, upstream redis://127.0.0.1:6379),
# starting a local redis-server on 6379 first if nothing answers there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --no-python
swift build -c release --product tierproxy
if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
    echo "run: no Redis on 6379, starting one (data in ./data/redis)"
    mkdir -p data/redis
    redis-server --port 6379 --bind 127.0.0.1 --dir "$PWD/data/redis" --daemonize yes \
        --logfile "$PWD/data/redis/redis.log" --save ""
    for _ in $(seq 50); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
exec .build/release/tierproxy conf/tierproxy.conf "$@"
