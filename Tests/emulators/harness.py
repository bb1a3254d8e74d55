"""Start/stop the emulators from tests, with deadlines (never sleep-and-hope).

    from Tests.emulators.harness import EmulatorProcess
    with EmulatorProcess(latency_ms=0) as emu:        # subprocess: python3 -m Tests.emulators
        emu.cosmos_url, emu.cosmos_key, emu.blob_account_url, emu.blob_connection_string, emu.identity_url
        emu.add_fault("cosmos", kind="throttle", count=2, retry_after_ms=50, op="ReadDocument")
        emu.stats("cosmos")["ops"]["ReadDocument"]
        emu.reset()                                    # faults + stats (+ data with data=True)

`InProcessEmulators` offers the same API with the servers on an event-loop thread in the calling process.
"""
from __future__ import annotations

import json
import os
import select
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

from Tests.emulators.common import stop_process

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVICES = ("cosmos", "blob", "identity")


class _Control:
    info: dict

    def _base(self, service: str) -> str:
        url = self.info[service]
        if service == "blob":
            url = url.rsplit("/", 1)[0]   # strip /devstoreaccount1
        return url

    def _ssl(self):
        if "ca_cert" in self.info:
            return ssl.create_default_context(cafile=self.info["ca_cert"])
        return None

    def control(self, service: str, method: str, path: str, body=None, timeout=5.0):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self._base(service) + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout, context=self._ssl()) as r:
            raw = r.read()
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    # faults ---------------------------------------------------------------
    def add_fault(self, service: str, **rule):
        """e.g. add_fault("cosmos", kind="throttle", count=1, retry_after_ms=200, op="ReadDocument")"""
        return self.control(service, "POST", "/__faults", {"rules": [rule]})

    def set_latency(self, ms: float, services=SERVICES):
        for s in services:
            if s in self.info:
                self.control(s, "POST", "/__faults", {"latency_ms": ms})

    def clear_faults(self, services=SERVICES):
        for s in services:
            if s in self.info:
                self.control(s, "DELETE", "/__faults")

    # stats ----------------------------------------------------------------
    def stats(self, service: str) -> dict:
        return self.control(service, "GET", "/__stats")

    def ops(self, service: str) -> dict:
        return self.stats(service)["ops"]

    def reset_stats(self, services=SERVICES):
        for s in services:
            if s in self.info:
                self.control(s, "DELETE", "/__stats")

    def reset(self, data: bool = False, services=SERVICES):
        """Clear faults and stats; with data=True also drop all stored databases/containers/blobs/secrets."""
        for s in services:
            if s in self.info:
                if data:
                    self.control(s, "POST", "/__reset")
                else:
                    self.clear_faults((s,))
                    self.reset_stats((s,))

    def set_secret(self, name: str, value: str):
        return self.control("identity", "PUT", f"/__secrets/{name}", value.encode())

    # convenient accessors -------------------------------------------------
    @property
    def cosmos_url(self): return self.info["cosmos"]
    @property
    def cosmos_key(self): return self.info["cosmos_key"]
    @property
    def blob_account_url(self): return self.info["blob"]
    @property
    def blob_account(self): return self.info["blob_account"]
    @property
    def blob_key(self): return self.info["blob_key"]
    @property
    def blob_connection_string(self): return self.info["blob_connection_string"]
    @property
    def identity_url(self): return self.info["identity"]

    def env(self) -> dict:
        """Environment variables in the seed library's / tierproxy's vocabulary."""
        e = {}
        if "cosmos" in self.info:
            e.update(COSMOS_ENDPOINT=self.cosmos_url, COSMOS_ACCOUNT_URI=self.cosmos_url, COSMOS_KEY=self.cosmos_key)
        if "blob" in self.info:
            e.update(BLOB_ACCOUNT_URL=self.blob_account_url,
                     AZURE_STORAGE_CONNECTION_STRING=self.blob_connection_string)
        if "identity" in self.info:
            i = self.info
            e.update(IDENTITY_ENDPOINT=i["identity_endpoint"], IDENTITY_HEADER=i["identity_header"],
                     AZURE_AUTHORITY_HOST=i["authority_host"], AZURE_TENANT_ID=i["tenant_id"],
                     AZURE_CLIENT_ID=i["client_id"], AZURE_CLIENT_SECRET=i["client_secret"],
                     KEY_VAULT_URI=i["key_vault"], AZURE_POD_IDENTITY_AUTHORITY_HOST=i["identity"])
        return e

    def wait_healthy(self, deadline: float):
        for s in SERVICES:
            if s not in self.info:
                continue
            while True:
                try:
                    if self.control(s, "GET", "/__health", timeout=1.0).get("ok"):
                        break
                except (OSError, urllib.error.URLError):
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{s} emulator not healthy before deadline")
                time.sleep(0.02)


class EmulatorProcess(_Control):
    """Runs `python3 -m Tests.emulators` as a child process on free loopback ports."""

    def __init__(self, latency_ms: float = 0, tls: bool = False, verbose: bool = False, ports: dict | None = None,
                 start_timeout_s: float = 20.0, python: str = sys.executable):
        self.args = [python, "-m", "Tests.emulators", "--latency-ms", str(latency_ms)]
        for s in SERVICES:
            self.args += [f"--{s}-port", str((ports or {}).get(s, 0))]
        if tls:
            self.args.append("--tls")
        if verbose:
            self.args.append("--verbose")
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}

    def start(self):
        deadline = time.monotonic() + self.start_timeout_s
        self.proc = subprocess.Popen(self.args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=None,
                                     stdin=subprocess.DEVNULL)
        buf = b""
        fd = self.proc.stdout.fileno()
        while not any(l.startswith(b"EMULATORS READY") for l in buf.split(b"\n")[:-1]):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                self.stop()
                raise TimeoutError(f"emulators not ready in {self.start_timeout_s}s: {buf.decode(errors='replace')}")
            r, _, _ = select.select([fd], [], [], remaining)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    continue
                buf += chunk
        line = next(l for l in buf.split(b"\n") if l.startswith(b"EMULATORS READY"))
        self.info = json.loads(line[len(b"EMULATORS READY "):])
        self.wait_healthy(deadline)
        return self

    def stop(self):
        if self.proc:
            stop_process(self.proc)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class InProcessEmulators(_Control):
    """Same API, servers on an event-loop thread of this process (one process; shares the GIL with the test)."""

    def __init__(self, latency_ms: float = 0, tls: bool = False, verbose: bool = False):
        self.kw = dict(latency_ms=latency_ms, tls=tls, verbose=verbose)
        self.emus: dict = {}
        self.info: dict = {}

    def start(self):
        from Tests.emulators.run import start_all
        self.emus, self.info = start_all(**self.kw)
        self.wait_healthy(time.monotonic() + 10)
        return self

    def stop(self):
        for e in self.emus.values():
            e.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
