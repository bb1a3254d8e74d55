#!/usr/bin/env bash
# Installs what building, running and testing tierproxy needs on Debian: the C libraries, a real
# redis-server and clients, and the Python packages the tests drive. Idempotent: installs only
# what is missing, so it is cheap to call before every run.
set -euo pipefail

apt_packages=(libevent-dev libhiredis-dev libcurl4-openssl-dev libssl-dev libsqlite3-dev zlib1g-dev
              redis-server redis-tools nutcracker pkg-config
              prometheus docker-compose netcat-openbsd curl binutils openssl)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "${1:-}" != "--no-python" ]; then
    python3 - <<'PY' || python3 -m pip install -q --disable-pip-version-check pytest redis hiredis azure-cosmos azure-storage-blob pyyaml
import importlib, sys
for m in ("pytest", "redis", "hiredis", "azure.cosmos", "azure.storage.blob", "yaml"):
    importlib.import_module(m)
PY
fi
