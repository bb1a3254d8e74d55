"""Launch the Cosmos, Blob and identity emulators.

    python3 -m Tests.emulators [--cosmos-port N] [--blob-port N] [--identity-port N]
                               [--latency-ms 20] [--tls] [--verbose] [--ready-file PATH] [--one-process]
    python3 Tests/emulators/run.py ...   (same)

Port 0 (the default) picks a free loopback port; -1 disables that emulator.
When everything listens, prints exactly one line to stdout:

    EMULATORS READY {"cosmos": "http://127.0.0.1:N", "blob": "http://127.0.0.1:M/devstoreaccount1", ...}

and (with --ready-file) writes the same JSON to PATH. Exits cleanly on SIGTERM / SIGINT.

With both Cosmos and Blob enabled, Blob runs in a child process of this one (its own interpreter,
so Cosmos and Blob traffic never wait for each other's GIL); this process serves Cosmos and
identity, and its pid is the ready line's `pid` (`pids` lists both). The child exits with this
process (SIGTERM/SIGINT stop both; if this process dies, the child notices within half a second).
`--one-process` keeps all three in this process.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

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


def _watch_parent(parent_pid: int):
    """Exit when the launcher that started this child is gone (SIGKILLed, crashed)."""
    try:                                      # Linux: be told at once
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(0)
            time.sleep(0.5)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _Child:
    """One emulator in a child process (python3 run.py ... --ready-file F), started before the
    launcher's own emulators so both start-ups overlap."""

    def __init__(self, args: list[str], deadline_s: float = 20.0):
        self.dir = tempfile.mkdtemp(prefix="emu-child-")
        self.ready = os.path.join(self.dir, "ready.json")
        self.deadline = time.monotonic() + deadline_s
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), *args, "--one-process",
                                      "--ready-file", self.ready, "--parent-pid", str(os.getpid())],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def info(self) -> dict:
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None:
                raise SystemExit(f"emulator child process exited with {self.proc.returncode} before it was ready")
            if time.monotonic() > self.deadline:
                self.stop()
                raise SystemExit("emulator child process not ready before the deadline")
            time.sleep(0.01)
        with open(self.ready) as f:
            return json.load(f)

    def stop(self):
        _common.stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description="tierproxy test emulators (Cosmos DB, Blob Storage, Entra ID)")
    ap.add_argument("--cosmos-port", type=int, default=0)
    ap.add_argument("--blob-port", type=int, default=0)
    ap.add_argument("--identity-port", type=int, default=0)
    ap.add_argument("--latency-ms", type=float, default=0.0, help="added to every request (requests overlap)")
    ap.add_argument("--tls", action="store_true", help="serve HTTPS with a self-signed cert (openssl CLI)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--verbose", action="store_true", help="log each request to stderr")
    ap.add_argument("--ready-file", help="also write the ready JSON here")
    ap.add_argument("--one-process", action="store_true",
                    help="serve Blob in this process too (default: a child process when Cosmos is also served)")
    ap.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)    # set for the Blob child
    ap.add_argument("--tls-cert", nargs=2, help=argparse.SUPPRESS)       # the launcher's cert and key
    a = ap.parse_args(argv)
    if a.parent_pid:
        _watch_parent(a.parent_pid)
    if a.tls_cert:
        _common.use_cert(*a.tls_cert)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    child = None
    blob_port = a.blob_port
    if not a.one_process and a.blob_port >= 0 and a.cosmos_port >= 0:
        if a.host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("emulators listen on loopback only")
        args = ["--cosmos-port", "-1", "--identity-port", "-1", "--blob-port", str(a.blob_port),
                "--latency-ms", str(a.latency_ms), "--host", a.host]
        if a.tls:
            args += ["--tls", "--tls-cert", *_common.self_signed_cert()]   # one certificate for all
        if a.verbose:
            args.append("--verbose")
        child = _Child(args)
        blob_port = -1
    try:
        emus, info = start_all(a.cosmos_port, blob_port, a.identity_port, a.latency_ms, a.tls, a.verbose, a.host)
        pids = [os.getpid()]
        if child is not None:
            cinfo = child.info()
            pids.append(cinfo["pid"])
            # the order a one-process launcher prints: cosmos, blob, identity, ca_cert, pid
            blob = {k: v for k, v in cinfo.items() if k not in info and k not in ("pid", "pids")}
            head = {k: v for k, v in info.items() if k in ("cosmos", "cosmos_key")}
            info = {**head, **blob, **{k: v for k, v in info.items() if k not in head}}
        info["pids"] = pids
    except BaseException:
        if child is not None:
            child.stop()
        raise
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f)
        os.replace(tmp, a.ready_file)
    if not a.parent_pid:
        print("EMULATORS READY " + json.dumps(info), flush=True)
    done.wait()
    for e in emus.values():
        e.stop()
    if child is not None:
        child.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
