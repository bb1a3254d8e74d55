"""Shared plumbing for the tierproxy test emulators (stdlib only).

- `EmulatorServer`: a ThreadingHTTPServer (one thread per connection, HTTP/1.1
  keep-alive) so injected latency never serializes concurrent requests.
- `Faults`: rules that tests install over HTTP (`POST /__faults`) or per
  request (`x-emulator-fault` header); see README.md for the control API.
- `Stats`: per-operation counters served at `GET /__stats`.
- `tokens`: the signed bearer-token format shared by identity.py (issuer) and
  cosmos.py / blob.py (verifiers), so the three agree even in separate processes.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import uuid
import os
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qsl

# --------------------------------------------------------------------------
# Tokens (JWT, HS256, signed with a secret shared by the emulators)
# --------------------------------------------------------------------------
TOKEN_SECRET = os.environ.get("EMULATOR_TOKEN_SECRET", "tierproxy-emulator-token-secret").encode()
DEFAULT_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
DEFAULT_OID = "00000000-0000-0000-0000-00000000e1d0"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_dec(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def issue_token(audience: str, lifetime_s: int = 3600, oid: str = DEFAULT_OID,
                tenant: str = DEFAULT_TENANT, extra: dict | None = None) -> tuple[str, int]:
    """Return (jwt, expires_on_epoch). `audience` is the resource without /.default."""
    now = int(time.time())
    claims = {"aud": audience.rstrip("/"), "iss": f"https://sts.windows.net/{tenant}/",
              "iat": now, "nbf": now, "exp": now + lifetime_s, "oid": oid, "sub": oid,
              "tid": tenant, "ver": "1.0", "jti": uuid.uuid4().hex}
    if extra:
        claims.update(extra)
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = _b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        _b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(TOKEN_SECRET, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64url(sig), claims["exp"]


def verify_token(token: str, audiences) -> tuple[bool, str]:
    """Check signature, expiry and audience. Returns (ok, reason)."""
    try:
        h, c, s = token.split(".")
        expected = hmac.new(TOKEN_SECRET, (h + "." + c).encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _b64url_dec(s)):
            return False, "signature"
        claims = json.loads(_b64url_dec(c))
    except Exception:  # noqa: BLE001 - any malformed token is simply invalid
        return False, "malformed"
    if claims.get("exp", 0) <= time.time():
        return False, "expired"
    aud = str(claims.get("aud", "")).rstrip("/")
    if aud not in {a.rstrip("/") for a in audiences}:
        return False, "audience"
    return True, ""


# --------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------
FAULT_KINDS = {"status", "throttle", "latency", "reset", "truncate", "hang"}


class Faults:
    """Ordered rules; the first matching rule with budget left fires.

    Rule fields: kind (status|throttle|latency|reset|truncate|hang),
    count (int, default 1; null/-1 = unlimited), op (operation name filter),
    method, path (substring filter), status (for kind=status, default 503),
    retry_after_ms (throttle, default 100), ms (latency / hang duration),
    code (error code override). A global `latency_ms` is added to every
    request (not counted against rules)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules: list[dict] = []
        self.latency_ms = 0.0
        self.fired: dict[str, int] = {}

    def configure(self, body: dict):
        with self.lock:
            if body.get("clear"):
                self.rules.clear()
            if "latency_ms" in body:
                self.latency_ms = float(body["latency_ms"] or 0)
            rules = body.get("rules", [])
            if isinstance(body.get("kind"), str):
                rules = list(rules) + [body]
            for r in rules:
                r = dict(r)
                if r.get("kind") not in FAULT_KINDS:
                    raise ValueError(f"unknown fault kind {r.get('kind')!r}; expected one of {sorted(FAULT_KINDS)}")
                c = r.get("count", 1)
                r["remaining"] = -1 if c is None or c < 0 else int(c)
                self.rules.append(r)

    def clear(self):
        with self.lock:
            self.rules.clear()
            self.latency_ms = 0.0

    def snapshot(self):
        with self.lock:
            return {"latency_ms": self.latency_ms, "rules": [dict(r) for r in self.rules],
                    "fired": dict(self.fired)}

    def take(self, op: str, method: str, path: str):
        with self.lock:
            for r in self.rules:
                if r["remaining"] == 0:
                    continue
                if r.get("op") and r["op"] != op:
                    continue
                if r.get("method") and r["method"].upper() != method:
                    continue
                if r.get("path") and r["path"] not in path:
                    continue
                if r["remaining"] > 0:
                    r["remaining"] -= 1
                self.fired[r["kind"]] = self.fired.get(r["kind"], 0) + 1
                return dict(r)
            self.rules = [r for r in self.rules if r["remaining"] != 0]
        return None


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.ops: dict[str, int] = {}
            self.responses: dict[str, dict[str, int]] = {}
            self.requests = 0
            self.auth_failures = 0
            self.in_flight = 0
            self.max_in_flight = 0

    def begin(self):
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self):
        with self.lock:
            self.in_flight -= 1

    def op(self, name: str):
        with self.lock:
            self.ops[name] = self.ops.get(name, 0) + 1

    def response(self, name: str, status: int):
        with self.lock:
            d = self.responses.setdefault(name, {})
            d[str(status)] = d.get(str(status), 0) + 1
            if status in (401, 403):
                self.auth_failures += 1

    def snapshot(self):
        with self.lock:
            return {"requests": self.requests, "ops": dict(self.ops),
                    "responses": {k: dict(v) for k, v in self.responses.items()},
                    "auth_failures": self.auth_failures, "in_flight": self.in_flight,
                    "max_in_flight": self.max_in_flight}


# --------------------------------------------------------------------------
# HTTP base
# --------------------------------------------------------------------------
class Request:
    def __init__(self, handler: "BaseHandler", body: bytes):
        self.method = handler.command
        self.raw_path = handler.path
        parts = urlsplit(handler.path)
        self.path = parts.path            # still percent-encoded
        self.query_string = parts.query
        self.query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.headers = handler.headers    # case-insensitive email.message.Message
        self.body = body

    def header(self, name: str, default=None):
        v = self.headers.get(name)
        return default if v is None else v


class Response:
    def __init__(self, status: int, body: bytes = b"", headers: dict | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}


def http_date(ts: float | None = None) -> str:
    return formatdate(ts if ts is not None else time.time(), usegmt=True)


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two sends; with Nagle on, the body would wait for the client's
    # delayed ACK (~40 ms) on every response that has one. The real services don't stall so.
    disable_nagle_algorithm = True
    server_version = "tierproxy-emulator"
    sys_version = ""

    # subclasses: emulator attribute set on the server
    def log_message(self, fmt, *args):  # quiet unless asked
        if getattr(self.server, "verbose", False):
            super().log_message(fmt, *args)

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(n) if n else b""

    def _handle(self):
        emu = self.server.emulator
        stats: Stats = emu.stats
        body = self._read_body()
        req = Request(self, body)
        if req.path.startswith("/__"):
            return self._send(emu.control(req))
        stats.begin()
        try:
            op = emu.operation(req)
            stats.op(op)
            if getattr(self.server, "verbose", False):
                import sys
                print(f"[{emu.name}] {req.method} {req.raw_path} -> {op}", file=sys.stderr, flush=True)
            fault = emu.faults.take(op, req.method, req.path)
            if per_req := req.header("x-emulator-fault"):
                try:
                    fault = json.loads(per_req)
                except ValueError:
                    fault = {"kind": per_req}
            delay = emu.faults.latency_ms
            if fault and fault.get("kind") == "latency":
                delay += float(fault.get("ms", 20))
            if delay:
                time.sleep(delay / 1000.0)
            if fault and fault["kind"] in ("status", "throttle"):
                resp = emu.fault_response(req, fault)
            elif fault and fault["kind"] == "reset":
                stats.response(op, 0)
                return self._reset()
            elif fault and fault["kind"] == "hang":
                emu.stop_event.wait(float(fault.get("ms", 60000)) / 1000.0)
                stats.response(op, 0)
                return self._reset()
            else:
                resp = emu.dispatch(req, op)
            stats.response(op, resp.status)
            if fault and fault["kind"] == "truncate":
                return self._send(resp, truncate=True)
            self._send(resp, head=req.method == "HEAD")
        finally:
            stats.end()

    def _reset(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    def _send(self, resp: Response, head: bool = False, truncate: bool = False):
        self.send_response_only(resp.status)
        hdrs = {k.lower(): (k, v) for k, v in resp.headers.items()}
        if "date" not in hdrs:
            self.send_header("Date", http_date())
        for _, (k, v) in hdrs.items():
            if k.lower() == "content-length":
                continue
            self.send_header(k, str(v))
        length = resp.headers.get("Content-Length", resp.headers.get("content-length"))
        self.send_header("Content-Length", str(length if (head and length is not None) else len(resp.body)))
        self.end_headers()
        if head:
            return
        if truncate:
            self.wfile.write(resp.body[: len(resp.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return self._reset()
        self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class Emulator:
    """Base: subclasses implement operation(req) -> str, dispatch(req, op) -> Response,
    fault_response(req, fault) -> Response."""

    name = "emulator"

    def __init__(self, host="127.0.0.1", port=0, tls=False, verbose=False):
        self.faults = Faults()
        self.stats = Stats()
        self.stop_event = threading.Event()
        self.httpd = EmulatorServer((host, port), BaseHandler)
        self.httpd.emulator = self
        self.httpd.verbose = verbose
        self.scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            cert, key = self_signed_cert()
            ctx.load_cert_chain(cert, key)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
            self.cert_file = cert
        self.host, self.port = self.httpd.server_address[:2]
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"{self.name}-{self.port}", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # control API, identical on every emulator
    def control(self, req: Request) -> Response:
        p = req.path.rstrip("/")
        if p == "/__health":
            return json_response(200, {"ok": True, "name": self.name})
        if p == "/__stats":
            if req.method == "GET":
                return json_response(200, self.stats.snapshot())
            if req.method in ("DELETE", "POST"):
                self.stats.reset()
                return json_response(200, self.stats.snapshot())
        if p == "/__faults":
            if req.method == "GET":
                return json_response(200, self.faults.snapshot())
            if req.method == "DELETE":
                self.faults.clear()
                return json_response(200, self.faults.snapshot())
            if req.method in ("POST", "PUT"):
                try:
                    self.faults.configure(json.loads(req.body or b"{}"))
                except (ValueError, TypeError) as e:
                    return json_response(400, {"error": str(e)})
                return json_response(200, self.faults.snapshot())
        if p == "/__reset":
            self.faults.clear()
            self.stats.reset()
            self.reset_state()
            return json_response(200, {"ok": True})
        return json_response(404, {"error": f"unknown control path {p}"})

    def reset_state(self):
        pass


def json_response(status: int, obj, headers: dict | None = None) -> Response:
    h = {"Content-Type": "application/json"}
    if headers:
        h.update(headers)
    return Response(status, json.dumps(obj).encode(), h)


_cert_lock = threading.Lock()
_cert_paths: tuple[str, str] | None = None


def self_signed_cert() -> tuple[str, str]:
    """Make (once per process) a self-signed cert for 127.0.0.1/localhost with the openssl CLI."""
    global _cert_paths
    with _cert_lock:
        if _cert_paths:
            return _cert_paths
        d = tempfile.mkdtemp(prefix="emu-tls-")
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=30)
        _cert_paths = (cert, key)
        return _cert_paths
