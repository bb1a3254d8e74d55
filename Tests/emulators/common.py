"""Shared plumbing for the tierproxy test emulators (stdlib only).

- `Emulator` / `_Connection`: HTTP/1.1 keep-alive servers on one asyncio event loop per
  process (a daemon thread). The bytes on the wire are BaseHTTPRequestHandler's (its request
  parsing, limits and error pages run unchanged on buffered input); injected latency and hangs
  are timers, so concurrent requests overlap instead of queueing, without a thread each.
- `parse_header_block`: request headers, the same mapping http.client.parse_headers builds,
  without the email parser for ordinary header blocks.
- `Faults`: rules that tests install over HTTP (`POST /__faults`) or per
  request (`x-emulator-fault` header); see README.md for the control API.
- `Stats`: per-operation counters served at `GET /__stats`.
- `tokens`: the signed bearer-token format shared by identity.py (issuer) and
  cosmos.py / blob.py (verifiers), so the three agree even in separate processes.
"""
from __future__ import annotations

import asyncio
import base64
import email.parser
import functools
import hashlib
import hmac
import http.client
import json
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
import os
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
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
    def __init__(self, handler: "_Connection", body: bytes):
        self.method = handler.command
        self.raw_path = handler.path
        self.path, self.query_string, query = _split_target(handler.path)
        self.query = dict(query)          # a copy: the cached one stays as parsed
        self.headers = handler.headers    # case-insensitive http.client.HTTPMessage (see _FastHeaders)
        self.body = body

    def header(self, name: str, default=None):
        v = self.headers.get(name)
        return default if v is None else v


_TARGET_CACHE: dict[str, tuple] = {}


def _split_target(target: str) -> tuple[str, str, dict]:
    """(percent-encoded path, raw query string, dict(parse_qsl(query))) of a request target, cached:
    the same URLs come back over and over (point reads, blob GETs)."""
    hit = _TARGET_CACHE.get(target)
    if hit is None:
        parts = urlsplit(target)
        hit = (parts.path, parts.query, dict(parse_qsl(parts.query, keep_blank_values=True)))
        if len(_TARGET_CACHE) >= 4096:
            _TARGET_CACHE.clear()
        _TARGET_CACHE[target] = hit
    return hit


class Response:
    def __init__(self, status: int, body: bytes = b"", headers: dict | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}


_date_cache: tuple[int, str] = (-1, "")


def http_date(ts: float | None = None) -> str:
    """email.utils.formatdate(ts, usegmt=True), cached per second (formatdate shows whole seconds;
    a time within half a microsecond of the next second, which it rounds up, is not cached)."""
    global _date_cache
    if ts is None:
        ts = time.time()
    sec = int(ts)
    if ts < 0 or ts - sec >= 0.9999995:
        return formatdate(ts, usegmt=True)
    cached = _date_cache
    if cached[0] == sec:
        return cached[1]
    text = _http_date_at(sec)
    _date_cache = (sec, text)
    return text


@functools.lru_cache(maxsize=4096)
def _http_date_at(sec: int) -> str:
    return formatdate(sec, usegmt=True)


# --------------------------------------------------------------------------
# Request headers: a fast parser that yields exactly what http.client.parse_headers
# (email.feedparser, compat32 policy) yields for ordinary header blocks, and hands anything
# unusual (continuation lines, stray CRs, odd names, a block cut short by EOF) to that
# parser itself, so the result never differs.
# --------------------------------------------------------------------------
# Every line "name:value" with name in the feedparser's header-name range and no CR/LF inside,
# then the empty line that ends the block.
_SIMPLE_BLOCK = re.compile(r"(?:[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r?\n)*\r?\n")
# In such a block: name, and the value as compat32 gives it (leading blanks and the line end removed).
_SIMPLE_LINE = re.compile(r"([\x21-\x39\x3b-\x7e]+):[ \t]*([^\r\n]*)\r?\n")
_MESSAGE_MUTATORS = ("__setitem__", "__delitem__", "set_raw", "replace_header", "add_header", "set_param",
                     "del_param", "set_type", "set_boundary", "set_charset")


class _FastHeaders(http.client.HTTPMessage):
    """An HTTPMessage (so every email.message.Message method works) whose lookups use a dict
    built once (and rebuilt after any change). Values are the raw strings the email parser would
    return (compat32 leaves latin-1 text as is)."""

    _ci = None

    def _index(self) -> dict:
        # first occurrence wins, as in Message.get
        ci = self._ci = {k.lower(): v for k, v in reversed(self._headers)}
        return ci

    def get(self, name, failobj=None):
        v = (self._ci or self._index()).get(name.lower())
        return failobj if v is None else v

    def __getitem__(self, name):
        return (self._ci or self._index()).get(name.lower())

    def __contains__(self, name):
        return name.lower() in (self._ci or self._index())

    # compat32's header_fetch_parse returns these strings unchanged (no surrogates in latin-1 text)
    def items(self):
        return list(self._headers)

    def values(self):
        return [v for _, v in self._headers]

    def get_all(self, name, failobj=None):
        name = name.lower()
        values = [v for k, v in self._headers if k.lower() == name]
        return values or failobj


def _invalidating(name):
    base = getattr(http.client.HTTPMessage, name)

    def method(self, *args, **kw):
        self._ci = None
        try:
            return base(self, *args, **kw)
        finally:
            self._ci = None
    method.__name__ = name
    return method


for _m in _MESSAGE_MUTATORS:
    setattr(_FastHeaders, _m, _invalidating(_m))


def _simple_headers(hstring: str):
    """_FastHeaders for a block that _SIMPLE_BLOCK matched, else None."""
    if _SIMPLE_BLOCK.fullmatch(hstring) is None:
        return None
    msg = _FastHeaders()
    msg._headers = _SIMPLE_LINE.findall(hstring)
    return msg


def parse_header_block(lines: list[bytes]):
    """`lines`: what http.client._read_headers read (ending with the empty line). The same result
    as http.client.parse_headers on those lines."""
    hstring = b"".join(lines).decode("iso-8859-1")
    msg = _simple_headers(hstring)
    if msg is None:
        msg = email.parser.Parser(_class=http.client.HTTPMessage).parsestr(hstring)
    return msg


class _NeedMore(Exception):
    """The buffered bytes end before what a blocking read would return: wait for more."""


class _BufferReader:
    """The part of io.BufferedReader the HTTP code uses (readline(limit), read(n)), over the bytes a
    connection has received so far. Where the blocking reader would wait, raises _NeedMore (the
    caller rewinds `pos` and retries when more bytes arrive); at EOF it returns what there is, as
    the blocking reader does."""

    __slots__ = ("conn",)

    def __init__(self, conn: "_Connection"):
        self.conn = conn

    def readline(self, limit: int = -1) -> bytes:
        c = self.conn
        buf, pos = c.buf, c.pos
        end = len(buf) if limit is None or limit < 0 else min(len(buf), pos + limit)
        i = buf.find(b"\n", pos, end)
        if i >= 0:
            c.pos = i + 1
            return bytes(buf[pos:i + 1])
        if end - pos == limit or c.eof:
            c.pos = end
            return bytes(buf[pos:end])
        raise _NeedMore

    def read(self, n: int = -1) -> bytes:
        c = self.conn
        buf, pos = c.buf, c.pos
        if n is None or n < 0:
            if not c.eof:
                raise _NeedMore
            c.pos = len(buf)
            return bytes(buf[pos:])
        if len(buf) - pos < n and not c.eof:
            raise _NeedMore
        c.pos = min(len(buf), pos + n)
        return bytes(buf[pos:c.pos])


class _TransportWriter:
    """wfile: writes go straight to the transport (dropped once the peer is gone, where the blocking
    server's send would have raised on a dead connection)."""

    __slots__ = ("conn",)

    def __init__(self, conn: "_Connection"):
        self.conn = conn

    def write(self, data) -> int:
        c = self.conn
        if not c.closed and data:
            c.transport.write(data)
        return len(data)

    def flush(self):
        pass


class _Connection(asyncio.Protocol, BaseHTTPRequestHandler):
    """One HTTP/1.1 keep-alive connection, served on the emulators' event loop.

    The wire behaviour is BaseHTTPRequestHandler's (its parse_request, send_error, send_response_only,
    send_header, end_headers run unchanged on a buffer-backed rfile/wfile): the same request-line and
    header limits, error pages, `Expect: 100-continue`, HTTP/1.0 and HTTP/0.9 handling, and an
    exception while handling a request closes the connection after a traceback on stderr, as
    socketserver does. Requests on one connection are served in order; injected latency and `hang`
    are timers, so concurrent requests overlap without a thread each."""

    protocol_version = "HTTP/1.1"
    server_version = "tierproxy-emulator"
    sys_version = ""

    def __init__(self, emu: "Emulator"):
        self.emu = emu
        self.server = emu                 # log_message looks at server.verbose
        self.buf = bytearray()
        self.pos = 0
        self.eof = False
        self.closed = False
        self.busy = False                 # a request is waiting on a timer (latency / hang)
        self.in_body = False              # request line and headers parsed; waiting for the body
        self.close_connection = False
        self.transport = None
        self.client_address = ("", 0)
        self.rfile = _BufferReader(self)
        self.wfile = _TransportWriter(self)

    # ---------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport):
        self.transport = transport
        self.client_address = transport.get_extra_info("peername") or ("", 0)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                # one send per response anyway; never let Nagle hold a second segment back
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.emu._conns.add(self)

    def data_received(self, data):
        self.buf += data
        if not self.busy:
            self._advance()

    def eof_received(self):
        self.eof = True
        if not self.busy:
            self._advance()
        # half-closed: still answer what was sent (asyncio's TLS transports close regardless)
        return self.emu.ssl_context is None

    def connection_lost(self, exc):
        self.closed = True
        self.emu._conns.discard(self)

    # ---------------------------------------------------------------- request framing
    def _advance(self):
        """Serve every complete request in the buffer (in order), then wait for more bytes."""
        while not self.closed and not self.busy:
            start = self.pos
            try:
                if not self.in_body:
                    if start >= len(self.buf) and not self.eof:
                        break
                    if not self._parse_head():
                        self._compact()
                        if self.close_connection:
                            self._close()
                            break
                        continue
                    self.in_body = True
                    start = self.pos
                body = self._read_body()
            except _NeedMore:
                self.pos = start
                break
            except Exception:             # noqa: BLE001 - like socketserver: report, drop the connection
                return self._handle_error()
            self.in_body = False
            self._compact()
            try:
                self._begin(body)
            except Exception:             # noqa: BLE001
                return self._handle_error()
            if not self.busy:
                self._end_of_request()

    def _compact(self):
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0

    def _parse_head(self) -> bool:
        """BaseHTTPRequestHandler.handle_one_request up to the method call. True: a request to serve."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = ''
            self.request_version = ''
            self.command = ''
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return False
        if not self.raw_requestline:
            self.close_connection = True
            return False
        # parse_request reads the whole header block before it writes anything but an error page
        # (after which nothing more is read), so a retry after _NeedMore never repeats output.
        if not self.parse_request():
            return False
        if not hasattr(self, 'do_' + self.command):
            self.send_error(
                HTTPStatus.NOT_IMPLEMENTED,
                "Unsupported method (%r)" % self.command)
            return False
        return True

    def parse_request(self):
        """BaseHTTPRequestHandler.parse_request (Python 3.11) verbatim, except that the header block
        goes through parse_header_block (same result as http.client.parse_headers, much cheaper)."""
        self.command = None  # set in case of error on the first line
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, 'iso-8859-1')
        requestline = requestline.rstrip('\r\n')
        self.requestline = requestline
        words = requestline.split()
        if len(words) == 0:
            return False

        if len(words) >= 3:  # Enough to determine protocol version
            version = words[-1]
            try:
                if not version.startswith('HTTP/'):
                    raise ValueError
                base_version_number = version.split('/', 1)[1]
                version_number = base_version_number.split(".")
                if len(version_number) != 2:
                    raise ValueError
                if any(not component.isdigit() for component in version_number):
                    raise ValueError("non digit in http version")
                if any(len(component) > 10 for component in version_number):
                    raise ValueError("unreasonable length http version")
                version_number = int(version_number[0]), int(version_number[1])
            except (ValueError, IndexError):
                self.send_error(
                    HTTPStatus.BAD_REQUEST,
                    "Bad request version (%r)" % version)
                return False
            if version_number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
                self.close_connection = False
            if version_number >= (2, 0):
                self.send_error(
                    HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                    "Invalid HTTP version (%s)" % base_version_number)
                return False
            self.request_version = version

        if not 2 <= len(words) <= 3:
            self.send_error(
                HTTPStatus.BAD_REQUEST,
                "Bad request syntax (%r)" % requestline)
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != 'GET':
                self.send_error(
                    HTTPStatus.BAD_REQUEST,
                    "Bad HTTP/0.9 request type (%r)" % command)
                return False
        self.command, self.path = command, path

        # gh-87389: reduce a leading '//' to a single '/'.
        if self.path.startswith('//'):
            self.path = '/' + self.path.lstrip('/')  # Reduce to a single /

        # Examine the headers and look for a Connection directive.
        try:
            self.headers = self._read_headers()
        except http.client.LineTooLong as err:
            self.send_error(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Line too long",
                str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Too many headers",
                str(err)
            )
            return False

        conntype = self.headers.get('Connection', "")
        if conntype.lower() == 'close':
            self.close_connection = True
        elif (conntype.lower() == 'keep-alive' and
              self.protocol_version >= "HTTP/1.1"):
            self.close_connection = False
        # Examine the headers and look for an Expect directive
        expect = self.headers.get('Expect', "")
        if (expect.lower() == "100-continue" and
                self.protocol_version >= "HTTP/1.1" and
                self.request_version >= "HTTP/1.1"):
            if not self.handle_expect_100():
                return False
        return True

    def _read_headers(self):
        """parse_header_block(_read_header_lines(rfile)), short-cut when the whole block is buffered,
        within the limits (no line over 65536 bytes, at most 100 lines) and plain."""
        buf, pos = self.buf, self.pos
        if pos and buf[pos - 1] == 10:          # the request line ended with LF
            e1 = buf.find(b"\n\r\n", pos - 1)
            e2 = buf.find(b"\n\n", pos - 1)
            end = (e1 + 3 if e2 < 0 or 0 <= e1 < e2 else e2 + 2) if (e1 >= 0 or e2 >= 0) else -1
            if 0 <= end - pos <= _MAXLINE and buf.count(b"\n", pos, end) <= _MAXHEADERS:
                msg = _simple_headers(buf[pos:end].decode("iso-8859-1"))
                if msg is not None:
                    self.pos = end
                    return msg
        return parse_header_block(_read_header_lines(self.rfile))

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            if not self._chunked_complete():
                raise _NeedMore           # (checked without copying: uploads come in many pieces)
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

    def _chunked_complete(self) -> bool:
        """Would the chunked read below finish on the bytes buffered now (or fail, or hit EOF)?"""
        buf, pos, eof = self.buf, self.pos, self.eof
        while True:
            i = buf.find(b"\n", pos)
            if i < 0:
                return eof
            try:
                size = int(bytes(buf[pos:i + 1]).strip().split(b";")[0], 16)
            except ValueError:
                return True               # the real read raises the same error
            pos = i + 1
            if size == 0:
                return buf.find(b"\n", pos) >= 0 or eof
            if size < 0 or len(buf) - pos < size:
                return eof
            pos += size
            j = buf.find(b"\n", pos)
            if j < 0:
                return eof
            pos = j + 1

    # ---------------------------------------------------------------- serving one request
    def _begin(self, body: bytes):
        emu = self.emu
        req = Request(self, body)
        if req.path.startswith("/__"):
            return self._send(emu.control(req))
        stats: Stats = emu.stats
        stats.begin()
        try:
            op = emu.operation(req)
            stats.op(op)
            if emu.verbose:
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
        except BaseException:
            stats.end()
            raise
        if delay:
            # park this connection (later bytes stay buffered); the timer runs even if the client
            # goes away meanwhile: a request that was read is carried out, as a thread sleeping in
            # a blocking server would have done
            self.busy = True
            self._timer(delay / 1000.0, self._after_delay, req, op, fault)
        else:
            self._respond(req, op, fault)

    def _timer(self, seconds: float, fn, *args):
        timers = self.emu._timers

        def fire():
            timers.discard(h)
            fn(*args)
        h = self.emu.loop.call_later(seconds, fire)
        timers.add(h)
        return h

    def _after_delay(self, req: "Request", op: str, fault):
        self.busy = False
        try:
            self._respond(req, op, fault)
        except Exception:                 # noqa: BLE001
            return self._handle_error()
        self._end_of_request()
        if not self.closed and not self.busy:
            self._advance()

    def _respond(self, req: "Request", op: str, fault):
        emu = self.emu
        stats: Stats = emu.stats
        hanging = False
        try:
            if fault and fault["kind"] in ("status", "throttle"):
                resp = emu.fault_response(req, fault)
            elif fault and fault["kind"] == "reset":
                stats.response(op, 0)
                return self._reset()
            elif fault and fault["kind"] == "hang":
                # answers nothing; RST after `ms`, or sooner if the emulator stops
                hanging = self.busy = True
                self._hang_op = op
                emu._hangs.add(self)
                self._hang_timer = self._timer(float(fault.get("ms", 60000)) / 1000.0, self._hang_done)
                return
            else:
                resp = emu.dispatch(req, op)
            stats.response(op, resp.status)
            if fault and fault["kind"] == "truncate":
                return self._send(resp, truncate=True)
            self._send(resp, head=req.method == "HEAD")
        finally:
            if not hanging:
                stats.end()

    def _hang_done(self):
        emu = self.emu
        if self not in emu._hangs:
            return
        emu._hangs.discard(self)
        try:
            emu.stats.response(self._hang_op, 0)
            self.busy = False
            self._reset()
        finally:
            emu.stats.end()

    def _end_of_request(self):
        if not self.closed and not self.busy and self.close_connection:
            self._close()

    def _close(self):
        """socketserver's shutdown_request: what was written goes out, then FIN."""
        if not self.closed:
            self.closed = True
            self.transport.close()

    def _handle_error(self):
        print('-' * 40, file=sys.stderr)
        print('Exception occurred during processing of request from', self.client_address, file=sys.stderr)
        traceback.print_exc()
        print('-' * 40, file=sys.stderr)
        self._close()

    def _reset(self):
        """TCP RST: SO_LINGER 0, then close. What was written goes out first (a blocking sendall
        returns only once the kernel holds it all)."""
        self.close_connection = True
        if self.closed:
            return
        if self.transport.get_write_buffer_size():
            self.busy = True              # nothing more is read from this connection
            self._timer(0.001, self._reset_when_flushed)
            return
        self._abort()

    def _reset_when_flushed(self):
        if not self.closed and self.transport.get_write_buffer_size():
            self._timer(0.001, self._reset_when_flushed)
            return
        self._abort()

    def _abort(self):
        if self.closed:
            return
        t = self.transport
        sock = t.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.closed = True
        t.abort()

    def _send(self, resp: Response, head: bool = False, truncate: bool = False):
        """Status line, headers (in resp.headers order, one per name case-insensitively, Date added if
        absent, Content-Length last), then the body: the bytes BaseHTTPRequestHandler's
        send_response_only/send_header/end_headers would write, built in one buffer."""
        if self.request_version == 'HTTP/0.9':
            return self._send_via_base(resp, head, truncate)
        headers = resp.headers
        hdrs = {k.lower(): (k, v) for k, v in headers.items()}
        code = resp.status
        try:
            message = self.responses[code][0]
        except KeyError:
            message = ''
        date = "" if "date" in hdrs else "Date: %s\r\n" % http_date()
        hdrs.pop("content-length", None)
        if "connection" in hdrs:
            v = str(hdrs["connection"][1]).lower()
            if v == 'close':
                self.close_connection = True
            elif v == 'keep-alive':
                self.close_connection = False
        length = headers.get("Content-Length", headers.get("content-length"))
        data = ("%s %d %s\r\n%s%sContent-Length: %s\r\n\r\n" % (
            self.protocol_version, code, message, date, "".join(["%s: %s\r\n" % kv for kv in hdrs.values()]),
            length if (head and length is not None) else len(resp.body))).encode('latin-1', 'strict')
        if head:
            self.wfile.write(data)
            return
        if truncate:
            self.wfile.write(data + resp.body[: len(resp.body) // 2])
            self.close_connection = True
            return self._reset()
        body = resp.body
        if len(body) <= 65536:
            self.wfile.write(data + body)
        else:               # don't copy large bodies just to save a write
            self.wfile.write(data)
            self.wfile.write(body)

    def _send_via_base(self, resp: Response, head: bool = False, truncate: bool = False):
        """Through BaseHTTPRequestHandler's own methods (HTTP/0.9 requests: they write no status
        line or headers)."""
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
            self.close_connection = True
            return self._reset()
        self.wfile.write(resp.body)

    def log_message(self, fmt, *args):  # quiet unless asked
        if self.emu.verbose:
            super().log_message(fmt, *args)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = None   # methods served


_MAXLINE = http.client._MAXLINE
_MAXHEADERS = http.client._MAXHEADERS


def _read_header_lines(fp) -> list[bytes]:
    """http.client._read_headers: the same limits and the same exceptions."""
    headers = []
    readline = fp.readline
    while True:
        line = readline(_MAXLINE + 1)
        if len(line) > _MAXLINE:
            raise http.client.LineTooLong("header line")
        headers.append(line)
        if len(headers) > _MAXHEADERS:
            raise http.client.HTTPException("got more than %d headers" % _MAXHEADERS)
        if line in (b'\r\n', b'\n', b''):
            break
    return headers


# --------------------------------------------------------------------------
# The event loop all emulators of a process share (one thread: no GIL hand-offs between
# connection threads; requests overlap on timers instead).
# --------------------------------------------------------------------------
_loop_lock = threading.Lock()
_shared_loop: asyncio.AbstractEventLoop | None = None


def _event_loop() -> asyncio.AbstractEventLoop:
    global _shared_loop
    with _loop_lock:
        if _shared_loop is None or _shared_loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run():
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="emulators-loop", daemon=True).start()
            ready.wait()
            _shared_loop = loop
        return _shared_loop


class Emulator:
    """Base: subclasses implement operation(req) -> str, dispatch(req, op) -> Response,
    fault_response(req, fault) -> Response."""

    name = "emulator"

    def __init__(self, host="127.0.0.1", port=0, tls=False, verbose=False):
        self.faults = Faults()
        self.stats = Stats()
        self.stop_event = threading.Event()
        self.verbose = verbose
        # listening at once (like socketserver), so connections made before start() queue
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.scheme = "http"
        self.ssl_context = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            cert, key = self_signed_cert()
            ctx.load_cert_chain(cert, key)
            self.ssl_context = ctx
            self.scheme = "https"
            self.cert_file = cert
        self.host, self.port = sock.getsockname()[:2]
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._server = None
        self._conns: set = set()
        self._hangs: set = set()
        self._timers: set = set()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self):
        self.loop = _event_loop()
        coro = self.loop.create_server(lambda: _Connection(self), sock=self.sock, ssl=self.ssl_context,
                                       backlog=128)
        self._server = asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)
        self.thread = next((t for t in threading.enumerate() if t.name == "emulators-loop"), None)
        return self

    def stop(self):
        self.stop_event.set()
        if self.loop is None or self._server is None:
            self.sock.close()
            return

        async def shutdown():
            self._server.close()
            for c in list(self._hangs):      # hangs end when the emulator stops (then RST)
                c._hang_timer.cancel()
                c._hang_done()
            for t in list(self._timers):
                t.cancel()
            for c in list(self._conns):
                if not c.closed:
                    c.closed = True
                    c.transport.abort()
            await self._server.wait_closed()
        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        except Exception:                    # noqa: BLE001 - stopping is best effort
            pass
        self._server = None

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


def stop_process(proc: subprocess.Popen, grace_s: float = 5.0):
    """SIGTERM, then SIGKILL if it is still there after `grace_s`; reaps it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace_s)


def use_cert(cert: str, key: str):
    """Serve TLS with this certificate (a launcher's, so a child process presents the same one)."""
    global _cert_paths
    with _cert_lock:
        _cert_paths = (cert, key)


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
