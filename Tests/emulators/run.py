"""Launch the Cosmos, Blob and identity emulators in one process.

    python3 -m Tests.emulators [--cosmos-port N] [--blob-port N] [--identity-port N]
                               [--latency-ms 20] [--tls] [--verbose] [--ready-file PATH]
    python3 Tests/emulators/run.py ...   (same)

Port 0 (the default) picks a free loopback port; -1 disables that emulator.
When everything listens, prints exactly one line to stdout:

    EMULATORS READY {"cosmos": "http://127.0.0.1:N", "blob": "http://127.0.0.1:M/devstoreaccount1", ...}

and (with --ready-file) writes the same JSON to PATH. Exits cleanly on SIGTERM / SIGINT.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    __package__ = "Tests.emulators"  # noqa: A001

from Tests.emulators import blob as _blob  # noqa: E402
from Tests.emulators import common as _common  # noqa: E402
from Tests.emulators import cosmos as _cosmos  # noqa: E402
from Tests.emulators import identity as _identity  # noqa: E402


def start_all(cosmos_port=0, blob_port=0, identity_port=0, latency_ms=0.0, tls=False, verbose=False,
              host="127.0.0.1"):
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("emulators listen on loopback only")
    emus = {}
    if cosmos_port >= 0:
        emus["cosmos"] = _cosmos.CosmosEmulator(host, cosmos_port, tls=tls, verbose=verbose)
    if blob_port >= 0:
        emus["blob"] = _blob.BlobEmulator(host, blob_port, tls=tls, verbose=verbose)
    if identity_port >= 0:
        emus["identity"] = _identity.IdentityEmulator(host, identity_port, tls=tls, verbose=verbose)
    for e in emus.values():
        e.faults.latency_ms = float(latency_ms or 0)
        e.start()
    info = {}
    if "cosmos" in emus:
        c = emus["cosmos"]
        info.update(cosmos=c.url, cosmos_key=c.key)
    if "blob" in emus:
        b = emus["blob"]
        info.update(blob=b.account_url, blob_account=b.account, blob_key=b.key,
                    blob_connection_string=b.connection_string())
    if "identity" in emus:
        i = emus["identity"]
        info.update(identity=i.url, imds=f"{i.url}/metadata/identity/oauth2/token",
                    identity_endpoint=f"{i.url}/msi/token", identity_header=i.identity_header,
                    authority_host=i.url + "/", tenant_id=i.tenant, client_id=i.client_id,
                    client_secret=i.client_secret, key_vault=i.url)
    if tls:
        info["ca_cert"] = _common.self_signed_cert()[0]
    info["pid"] = os.getpid()
    return emus, info


def main(argv=None):
    ap = argparse.ArgumentParser(description="tierproxy test emulators (Cosmos DB, Blob Storage, Entra ID)")
    ap.add_argument("--cosmos-port", type=int, default=0)
    ap.add_argument("--blob-port", type=int, default=0)
    ap.add_argument("--identity-port", type=int, default=0)
    ap.add_argument("--latency-ms", type=float, default=0.0, help="added to every request (threaded, overlapping)")
    ap.add_argument("--tls", action="store_true", help="serve HTTPS with a self-signed cert (openssl CLI)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--verbose", action="store_true", help="log each request to stderr")
    ap.add_argument("--ready-file", help="also write the ready JSON here")
    a = ap.parse_args(argv)
    emus, info = start_all(a.cosmos_port, a.blob_port, a.identity_port, a.latency_ms, a.tls, a.verbose, a.host)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f)
        os.replace(tmp, a.ready_file)
    print("EMULATORS READY " + json.dumps(info), flush=True)
    done.wait()
    for e in emus.values():
        e.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
