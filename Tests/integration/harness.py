"""Helpers for tierproxy's integration tests: real redis-server and tierproxy processes,
free ports, deadline-bounded waits, and a small RESP2/RESP3 reply reader for raw sockets.

Nothing here sleeps and hopes: every wait polls a condition until a deadline and fails with
a message saying what it was waiting for.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import select
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import redis

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
REDIS_SERVER = os.environ.get("REDIS_SERVER_BIN", "redis-server")
REDIS_CLI = os.environ.get("REDIS_CLI_BIN", "redis-cli")
REDIS_BENCHMARK = os.environ.get("REDIS_BENCHMARK_BIN", "redis-benchmark")

# TIERPROXY_TEST_HOT_TLS=1 runs the suites with the hot tier behind TLS: every RedisServer
# also listens on a TLS port, its `url` (what tests hand the proxy as its upstream) is
# rediss:// to that port, and the proxy trusts the test CA. `port` stays plain TCP, so the
# tests' own direct access to hot (DEL behind the proxy's back, FLUSHALL, INFO) is unchanged.
HOT_TLS = os.environ.get("TIERPROXY_TEST_HOT_TLS", "") not in ("", "0", "no")


# --------------------------------------------------------------------------------------------
# Waiting
# --------------------------------------------------------------------------------------------

class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01,
             desc: str = "condition", ignore: tuple = ()) -> Any:
    """Poll `pred` until it returns something truthy; return that. Fail after `timeout`."""
    deadline = Deadline(timeout)
    last_exc = None
    delay = interval
    while True:
        try:
            value = pred()
            if value:
                return value
        except ignore as exc:  # noqa: PERF203 - polling
            last_exc = exc
        if deadline.expired():
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {desc}{extra}")
        time.sleep(min(delay, deadline.remaining()) or 0.001)
        delay = min(delay * 1.5, 0.2)


# --------------------------------------------------------------------------------------------
# Ports and /proc
# --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_accepts(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tail(path: Path, n: int = 40) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "<no log>"
    return "\n".join(lines[-n:])


# --------------------------------------------------------------------------------------------
# RESP
# --------------------------------------------------------------------------------------------

class Incomplete(Exception):
    """More bytes are needed to complete the reply."""


class Closed(Exception):
    """The peer closed the connection before a complete reply arrived."""


class Reply:
    """One parsed reply. `t` is the RESP type byte as a str ('+', '-', ':', '$', '*', '%', '~',
    ',', '(', '=', '#', '_', '>', '!'), `v` its value (bytes, int, list, list of pairs, None),
    `attrs` the RESP3 attribute that preceded it, if any, `raw` the exact bytes."""

    __slots__ = ("t", "v", "attrs", "raw")

    def __init__(self, t: str, v: Any, raw: bytes = b"", attrs: Any = None):
        self.t, self.v, self.raw, self.attrs = t, v, raw, attrs

    def __repr__(self) -> str:
        return f"Reply({self.t!r}, {self.v!r})"

    @property
    def is_error(self) -> bool:
        return self.t in "-!"

    def py(self) -> Any:
        """Plain Python value: bytes/int/None/list/dict/set; errors as RespError."""
        t, v = self.t, self.v
        if t in "-!":
            return RespError(v)
        if t in "*>":
            return None if v is None else [x.py() for x in v]
        if t == "~":
            return {_hashable(x.py()) for x in v}
        if t == "%":
            return {_hashable(k.py()): x.py() for k, x in v}
        if t == ",":
            return float(v)
        if t == "(":
            return int(v)
        if t == "=":
            return v[4:]
        return v


class RespError(bytes):
    pass


def _hashable(x: Any) -> Any:
    return tuple(x) if isinstance(x, list) else x


def _line(buf: bytes, pos: int) -> tuple[bytes, int]:
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        raise Incomplete
    return buf[pos:nl], nl + 2


def parse_reply(buf: bytes, pos: int = 0) -> tuple[Reply, int]:
    """Parse one complete RESP2/RESP3 reply at `pos`; return (reply, end). Raise Incomplete."""
    start = pos
    attrs = None
    if buf[pos:pos + 1] == b"|":
        attrs, pos = _parse_value(buf, pos)
    r, end = _parse_value(buf, pos)
    r.raw = bytes(buf[start:end])
    r.attrs = attrs
    return r, end


def _parse_value(buf: bytes, pos: int) -> tuple[Reply, int]:
    if pos >= len(buf):
        raise Incomplete
    t = chr(buf[pos])
    line, p = _line(buf, pos + 1)
    if t in "+-":
        return Reply(t, bytes(line)), p
    if t == ":":
        return Reply(t, int(line)), p
    if t in ",(":
        return Reply(t, bytes(line)), p
    if t == "#":
        return Reply(t, line == b"t"), p
    if t == "_":
        return Reply(t, None), p
    if t in "$=!":
        n = int(line)
        if n < 0:
            return Reply(t, None), p
        if len(buf) < p + n + 2:
            raise Incomplete
        if buf[p + n:p + n + 2] != b"\r\n":
            raise ValueError(f"bulk of {n} bytes not followed by CRLF at {p + n}")
        return Reply(t, bytes(buf[p:p + n])), p + n + 2
    if t in "*~>%|":
        if line == b"?":
            raise ValueError("streamed aggregates are not supported by this reader")
        n = int(line)
        if n < 0:
            return Reply(t, None), p
        items = []
        count = n * 2 if t in "%|" else n
        for _ in range(count):
            item, p = parse_reply(buf, p)
            items.append(item)
        if t in "%|":
            items = list(zip(items[0::2], items[1::2]))
        return Reply(t, items), p
    raise ValueError(f"unknown RESP type byte {t!r} at {pos}: {bytes(buf[pos:pos + 40])!r}")


def encode_command(*args: Any) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RawConn:
    """A raw TCP client: send bytes, read whole replies (RESP2/RESP3), detect close."""

    def __init__(self, port: int, host: str = HOST, timeout: float = 10.0,
                 rcvbuf: Optional[int] = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False

    def __enter__(self) -> "RawConn":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: Deadline) -> None:
        if self.eof:
            raise Closed(f"connection closed; unparsed bytes {bytes(self.buf[:200])!r}")
        remaining = deadline.remaining()
        if remaining <= 0:
            raise TimeoutError(f"no complete reply in time; buffered {bytes(self.buf[:200])!r}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError(
                f"no complete reply in time; buffered {bytes(self.buf[:200])!r}") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            raise Closed(f"connection closed; unparsed bytes {bytes(self.buf[:200])!r}")
        self.buf += chunk

    def read_reply(self, timeout: Optional[float] = None) -> Reply:
        deadline = Deadline(self.timeout if timeout is None else timeout)
        while True:
            try:
                r, end = parse_reply(self.buf, 0)
            except Incomplete:
                self._fill(deadline)
                continue
            del self.buf[:end]
            return r

    def read_replies(self, n: int, timeout: Optional[float] = None) -> list[Reply]:
        deadline = Deadline(self.timeout if timeout is None else timeout)
        out = []
        pos = 0
        while len(out) < n:
            try:
                r, pos2 = parse_reply(self.buf, pos)
            except Incomplete:
                del self.buf[:pos]
                pos = 0
                self._fill(deadline)
                continue
            out.append(r)
            pos = pos2
        del self.buf[:pos]
        return out

    def cmd(self, *args: Any, timeout: Optional[float] = None) -> Reply:
        self.send(encode_command(*args))
        return self.read_reply(timeout)

    def read_until_close(self, timeout: float = 10.0) -> bytes:
        """Read everything until EOF; raise TimeoutError if the peer never closes."""
        deadline = Deadline(timeout)
        while not self.eof:
            try:
                self._fill(deadline)
            except Closed:
                break
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def is_closed(self, timeout: float = 10.0) -> bool:
        """True once the peer has closed (within timeout); discards any data read meanwhile."""
        try:
            self.read_until_close(timeout)
            return True
        except TimeoutError:
            return False


MARKER = b"end-of-exchange-marker"
MARKER_REPLY = b"$%d\r\n%s\r\n" % (len(MARKER), MARKER)


def exchange(port: int, payload: bytes, marker: bool = True, timeout: float = 10.0,
             count: Optional[int] = None) -> tuple[list[bytes], bool]:
    """Send `payload` and collect raw replies until the connection closes, or until the reply
    to an ECHO marker sent after the payload arrives (marker=True), or until `count` replies
    arrived (count=N, no marker). Returns (raw replies without the marker's, closed).
    Unparsable bytes before a close are returned as a last element."""
    if count is not None:
        marker = False
    with RawConn(port, timeout=timeout) as c:
        c.send(payload + (encode_command("ECHO", MARKER) if marker else b""))
        replies: list[bytes] = []
        deadline = Deadline(timeout)
        while count is None or len(replies) < count:
            try:
                r = c.read_reply(deadline.remaining())
            except Closed:
                tail_bytes = bytes(c.buf)
                if tail_bytes:
                    replies.append(tail_bytes)
                return replies, True
            if marker and r.raw == MARKER_REPLY:
                return replies, False
            replies.append(r.raw)
            if len(replies) > 1000:
                raise AssertionError("too many replies")
        return replies, False


# --------------------------------------------------------------------------------------------
# redis-server
# --------------------------------------------------------------------------------------------

def answers_ping(port: int, timeout: float) -> bool:
    """True if whatever listens on `port` answers PING (NOAUTH counts: it is up, just locked)."""
    try:
        with RawConn(port, timeout=timeout) as c:
            r = c.cmd("PING")
            return r.raw == b"+PONG\r\n" or r.v.startswith(b"NOAUTH")
    except (OSError, Closed, TimeoutError):
        return False


class RedisServer:
    """A real redis-server on loopback, no persistence, in its own temp dir."""

    def __init__(self, tmp: Path, port: Optional[int] = None, args: Iterable[str] = ()):
        self.dir = Path(tempfile.mkdtemp(prefix="redis-", dir=tmp))
        self.port = port or free_port()
        self.tls_port = free_port() if HOT_TLS else 0
        self.args = list(args)
        self.proc: Optional[subprocess.Popen] = None
        self.log = self.dir / "redis.log"

    @property
    def url(self) -> str:
        if self.tls_port:
            return f"rediss://{HOST}:{self.tls_port}"
        return f"redis://{HOST}:{self.port}"

    def _tls_args(self) -> list[str]:
        if not self.tls_port:
            return []
        pki = hot_tls_pki()
        return ["--tls-port", str(self.tls_port), "--tls-cert-file", str(pki / "server.crt"),
                "--tls-key-file", str(pki / "server.key"), "--tls-ca-cert-file", str(pki / "ca.crt"),
                "--tls-auth-clients", "no"]

    def start(self, timeout: float = 10.0) -> "RedisServer":
        for attempt in range(3):
            cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", HOST,
                   "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                   "--logfile", str(self.log), "--daemonize", "no",
                   "--enable-debug-command", "local", *self._tls_args(), *self.args]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            try:
                wait_for(lambda: self._ping() or self.proc.poll() is not None, timeout,
                         desc=f"redis-server on port {self.port}")
            except AssertionError:
                self.kill()
                raise
            if self.proc.poll() is None:
                return self
            if "Address already in use" in tail(self.log) and attempt < 2:
                self.port = free_port()
                self.tls_port = free_port() if self.tls_port else 0
                continue
            raise AssertionError(f"redis-server exited {self.proc.returncode}:\n{tail(self.log)}")
        raise AssertionError("unreachable")

    def _ping(self) -> bool:
        return answers_ping(self.port, timeout=1)

    def client(self, **kw: Any) -> redis.Redis:
        kw.setdefault("socket_timeout", 30)
        return redis.Redis(host=HOST, port=self.port, **kw)

    def admin(self) -> redis.Redis:
        """A direct client that authenticates if the server needs it."""
        kw = {}
        if getattr(self, "password", None):
            kw["password"] = self.password
        return self.client(**kw)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def normal_clients(self) -> list[dict]:
        return self.admin().client_list(_type="normal")

    def tracker(self) -> "UpstreamTracker":
        return UpstreamTracker(self.admin())

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class UpstreamTracker:
    """The connections Redis accepted after a mark, found by client id (ids only grow).
    Counting all clients would be fooled by the proxy's own short-lived connections
    (it fetches COMMAND on a connection of its own), so tests follow ids instead."""

    def __init__(self, admin: redis.Redis):
        self.admin = admin
        self.mark()

    def mark(self) -> None:
        self.max_id = max(int(c["id"]) for c in self.admin.client_list())

    def new(self) -> list[dict]:
        """Clients (normal or pubsub) connected since the mark, not the admin connection
        listing them."""
        return [c for c in self.admin.client_list()
                if int(c["id"]) > self.max_id and c.get("cmd") != "client|list"]

    def new_ids(self) -> set[int]:
        return {int(c["id"]) for c in self.new()}

    def alive(self, ids: set[int]) -> set[int]:
        return ids & {int(c["id"]) for c in self.admin.client_list()}


def named_upstream(admin: redis.Redis, name: str) -> list[int]:
    """Redis client ids of the connections called `name` (CLIENT SETNAME)."""
    return [int(c["id"]) for c in admin.client_list() if c.get("name") == name]


def pin(conn: "RawConn", admin: redis.Redis, name: str, timeout: float = 5.0) -> int:
    """Give the client's upstream connection a name (CLIENT SETNAME is connection-scoped, so a
    proxy that shares upstream connections between stateless clients must give this client a
    dedicated one) and return that connection's Redis client id."""
    assert conn.cmd("CLIENT", "SETNAME", name).raw == b"+OK\r\n"
    ids = wait_for(lambda: named_upstream(admin, name), timeout,
                   desc=f"an upstream connection named {name!r} in CLIENT LIST")
    assert len(ids) == 1, f"{len(ids)} connections named {name!r}"
    return ids[0]


# --------------------------------------------------------------------------------------------
# tierproxy
# --------------------------------------------------------------------------------------------

def proxy_binary() -> str:
    env = os.environ.get("TIERPROXY_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise AssertionError(f"TIERPROXY_BIN={env} is not an executable file")
        return os.path.abspath(env)
    for cand in (REPO / ".build/release/tierproxy", REPO / ".build/debug/tierproxy"):
        if os.access(cand, os.X_OK):
            return str(cand)
    raise AssertionError(
        "tierproxy binary not found: set TIERPROXY_BIN or build it with "
        f"`swift build -c release --product tierproxy` in {REPO} "
        "(looked for .build/release/tierproxy and .build/debug/tierproxy)")


def run_proxy_cli(args: list[str], timeout: float = 20.0, env: Optional[dict] = None,
                  cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run tierproxy to completion (--version, --help, --check-config)."""
    return subprocess.run([proxy_binary(), *args], capture_output=True, timeout=timeout,
                          env=proxy_env(env), cwd=cwd, stdin=subprocess.DEVNULL)


_hot_tls_pki: Optional[Path] = None


def hot_tls_pki() -> Path:
    """The test CA and server certificate of TIERPROXY_TEST_HOT_TLS mode, made once per run."""
    global _hot_tls_pki
    if _hot_tls_pki is None:
        from tls_support import make_pki  # imports this module: only at call time
        d = Path(tempfile.mkdtemp(prefix="tierproxy-hot-tls-"))
        make_pki(d)
        _hot_tls_pki = d
    return _hot_tls_pki


def proxy_env(extra: Optional[dict] = None) -> dict:
    """Our environment without the REDIS_* variables (tests set those deliberately); in
    TIERPROXY_TEST_HOT_TLS mode, with the test CA trusted for rediss:// upstreams."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_SSL")}
    if HOT_TLS:
        env.setdefault("TIERPROXY_UPSTREAM_TLS_CA_CERT_FILE", str(hot_tls_pki() / "ca.crt"))
    env.update(extra or {})
    return env


class Proxy:
    """tierproxy as a child process. `flags` are `--name value` pairs (dict, values as str)."""

    def __init__(self, tmp: Path, upstream: Optional[str] = None, flags: Optional[dict] = None,
                 config_file: Optional[Path] = None, env: Optional[dict] = None,
                 port: Optional[int] = None, extra_args: Iterable[str] = (),
                 port_flag: bool = True):
        """port: where the proxy will listen (a free one if None); port_flag=False leaves
        `--port` off the command line (the port then comes from the file or the default)."""
        self.dir = Path(tempfile.mkdtemp(prefix="tierproxy-", dir=tmp))
        self.port = port or free_port()
        self.port_flag = port_flag
        self.upstream = upstream
        self.flags = dict(flags or {})
        self.config_file = config_file
        self.env = env
        self.extra_args = list(extra_args)
        self.proc: Optional[subprocess.Popen] = None
        self.out = self.dir / "stdout.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> list[str]:
        args = [proxy_binary()]
        if self.config_file:
            args.append(str(self.config_file))
        if self.port_flag and "port" not in self.flags:
            args += ["--port", str(self.port)]
        if "bind" not in self.flags:
            args += ["--bind", HOST]
        if self.upstream:
            args += ["--upstream", self.upstream]
        for k, v in self.flags.items():
            args += [f"--{k}", str(v)]
        return args + self.extra_args

    def start(self, wait: str = "ping", timeout: float = 20.0) -> "Proxy":
        """wait: 'ping' (PING through the proxy answers +PONG), 'port' (accepts), or 'none'.
        If the chosen port was taken meanwhile (another process won the race), retry on a
        new one."""
        for attempt in range(3):
            offset = self.out.stat().st_size if self.out.exists() else 0
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=open(self.out, "ab"), stderr=subprocess.STDOUT,
                                         env=proxy_env(self.env), cwd=self.dir,
                                         start_new_session=True)
            if wait == "none":
                return self
            check = self._pong if wait == "ping" else (lambda: port_accepts(self.port))
            try:
                wait_for(lambda: self.proc.poll() is not None or check(), timeout,
                         desc=f"tierproxy on port {self.port} ({wait}); "
                              f"argv {shlex.join(self.argv())}")
            except AssertionError as e:
                self.kill()
                raise AssertionError(f"{e}\n--- tierproxy output ---\n{tail(self.out)}") from None
            if self.proc.poll() is None:
                return self
            new_output = self.out.read_bytes()[offset:].decode(errors="replace").lower()
            if self.port_flag and "in use" in new_output and attempt < 2:
                self.port = free_port()
                continue
            raise AssertionError(f"tierproxy exited with {self.proc.returncode} during start; "
                                 f"argv {shlex.join(self.argv())}\n--- output ---\n{tail(self.out)}")
        raise AssertionError("unreachable")

    def _pong(self) -> bool:
        return answers_ping(self.port, timeout=2)

    def client(self, **kw: Any) -> redis.Redis:
        kw.setdefault("socket_timeout", 30)
        return redis.Redis(host=HOST, port=self.port, **kw)

    def raw(self, **kw: Any) -> RawConn:
        return RawConn(self.port, **kw)

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"tierproxy did not exit within {timeout}s\n--- output ---\n{tail(self.out)}"
            ) from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_tool(args: list[str], timeout: float = 60.0, input: Optional[bytes] = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, timeout=timeout, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL)


def send_until_held(sock: socket.socket, chunk: bytes, most: int, quiet_s: float) -> int:
    """Writes `chunk` again and again without blocking until `most` bytes went out, or the
    socket stayed unwritable for `quiet_s` (the peer stopped reading). Returns bytes sent."""
    sock.setblocking(False)
    sent = 0
    while sent < most:
        _, writable, _ = select.select([], [sock], [], quiet_s)
        if not writable:
            break
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            continue
    sock.setblocking(True)
    return sent
