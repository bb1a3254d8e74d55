"""An upstream's COMMAND reply of odd shapes (a module's commands, another server, a malformed
entry) never crashes the proxy, and neither does a client's odd `numkeys` read through the key
specs of a real one (issue 13).

The odd upstream is a small RESP peer on a loopback socket: it answers COMMAND with the odd
table, PING with +PONG, ECHO with its argument and everything else with +OK."""

from __future__ import annotations

import socket
import threading

import pytest

from harness import Incomplete, RawConn, encode_command as C, parse_reply, wait_for

pytestmark = pytest.mark.proxy_process


def bulk(s: str) -> bytes:
    b = s.encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


def arr(*items: bytes) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(items)


def num(n: int) -> bytes:
    return b":%d\r\n" % n


def flat_map(**kv: bytes) -> bytes:
    return arr(*[x for k, v in kv.items() for x in (bulk(k), v)])


def key_spec(begin: bytes, find: bytes, flags=("RW", "update")) -> bytes:
    return flat_map(flags=arr(*[b"+%s\r\n" % f.encode() for f in flags]), begin_search=begin, find_keys=find)


def index_begin(i: int) -> bytes:
    return flat_map(type=bulk("index"), spec=flat_map(index=num(i)))


def range_find(last: int, step: int, limit: int) -> bytes:
    return flat_map(type=bulk("range"), spec=flat_map(lastkey=num(last), keystep=num(step), limit=num(limit)))


def keynum_find(idx: int, first: int, step: int) -> bytes:
    return flat_map(type=bulk("keynum"), spec=flat_map(keynumidx=num(idx), firstkey=num(first), keystep=num(step)))


def entry(name: str, arity: int, flags=("write",), first=1, last=1, step=1, cats=("@write",), specs=(), subs=None) -> bytes:
    items = [bulk(name), num(arity), arr(*[b"+%s\r\n" % f.encode() for f in flags]), num(first), num(last), num(step),
             arr(*[b"+%s\r\n" % c.encode() for c in cats]), arr(), arr(*specs)]
    if subs is not None:
        items.append(subs)
    return arr(*items)


INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1

ODD_TABLE = arr(
    entry("ping", -1, flags=("fast",), first=0, last=0, step=0, cats=("@fast", "@connection")),
    entry("echo", 2, flags=("fast",), first=0, last=0, step=0, cats=("@fast", "@connection")),
    entry("get", 2, flags=("readonly", "fast"), cats=("@read", "@string"),
          specs=(key_spec(index_begin(1), range_find(0, 1, 0), flags=("RO", "access")),)),
    entry("set", -3, cats=("@write", "@string"), specs=(key_spec(index_begin(1), range_find(0, 1, 0)),)),
    entry("mod.minarity", INT_MIN),                                        # -arity overflows
    entry("mod.maxkeys", -2, first=1, last=INT_MAX, step=INT_MAX),
    entry("mod.negbegin", -2, specs=(key_spec(index_begin(-3), range_find(0, 1, 0)),)),
    entry("mod.hugebegin", -2, specs=(key_spec(index_begin(INT_MAX), range_find(INT_MAX, 1, 0)),)),
    entry("mod.keynum", -2, specs=(key_spec(index_begin(1), keynum_find(-5, INT_MIN, 1)),)),
    entry("mod.keynum2", -3, specs=(key_spec(index_begin(1), keynum_find(0, 1, 0)),)),
    entry("mod.badlimit", -2, specs=(key_spec(index_begin(1), range_find(-1, 1, INT_MIN)),)),
    entry("mod.cont", -2, subs=arr(num(1), bulk("x"), entry("mod.cont|sub", INT_MIN), entry("|", 2))),
    entry("", 1),
    entry("x" * 40 + "1", -1), entry("x" * 40 + "2", -1),                 # names alike past 32 bytes
    bulk("not an entry"),
    num(7),
    arr(num(1), num(2), num(3), num(4), num(5), num(6)),                   # no name
    arr(bulk("mod.short"), num(1)),
    arr(bulk("mod.types"), bulk("2"), num(1), arr(num(1)), bulk("1"), num(1), arr(num(5)), num(3), bulk("specs")),
)


class OddUpstream:
    """A RESP peer on 127.0.0.1 that answers COMMAND with `table`."""

    def __init__(self, table: bytes):
        self.table = table
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.seen: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _answer(self, argv: list) -> bytes:
        name = argv[0].lower()
        self.seen.append(name)
        if name == b"command":
            return self.table
        if name == b"ping":
            return b"+PONG\r\n"
        if name == b"echo" and len(argv) == 2:
            return b"$%d\r\n%s\r\n" % (len(argv[1]), argv[1])
        return b"+OK\r\n"

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                out = b""
                while True:
                    try:
                        r, end = parse_reply(buf, 0)
                    except Incomplete:
                        break
                    buf = buf[end:]
                    out += self._answer(r.py())
                try:
                    conn.sendall(out)
                except OSError:
                    return

    def close(self) -> None:
        self.sock.close()


ODD_REQUESTS = [
    ("mod.minarity", "a"), ("mod.maxkeys", "a", "b"), ("mod.negbegin", "a"), ("mod.hugebegin", "a"),
    ("mod.keynum", "9223372036854775807", "k"), ("mod.keynum", "-1", "k"), ("mod.keynum2", "9223372036854775807", "k"),
    ("mod.keynum2", "2", "k"), ("mod.badlimit", "a", "b", "c"), ("mod.cont", "sub", "a"), ("mod.cont",),
    ("x" * 40 + "1",), ("mod.types", "a"), ("get", "k"), ("set", "k", "v"),
]


@pytest.mark.parametrize("mode", ["passthrough", "auth-proxy", "tiered"])
def test_odd_command_reply_never_crashes(make_proxy, tmp_path, mode):
    up = OddUpstream(ODD_TABLE)
    flags = {"warm": "none", "cold": "none", "threads": "1"}
    if mode == "auth-proxy":
        flags.update({"auth-mode": "proxy", "user": "default on nopass ~k* +@all"})
    if mode == "tiered":
        flags.update({"warm": f"sqlite:{tmp_path}/warm.db"})
    try:
        prx = make_proxy(f"redis://127.0.0.1:{up.port}", flags=flags)
        with RawConn(prx.port, timeout=20) as c:
            wait_for(lambda: b"command" in up.seen, 10, desc="the proxy to ask for COMMAND")
            # A command the table has learned shows the table is in use (ECHO shares once it is).
            c.cmd("ECHO", "table")
            for argv in ODD_REQUESTS:
                got = c.cmd(*argv)
                assert got.t in "+-$*:_", (argv, got)
            assert c.cmd("PING").raw == b"+PONG\r\n"
            assert c.cmd("ECHO", "still here").v == b"still here"
        assert prx.alive(), prx.output()[-3000:]
    finally:
        up.close()


@pytest.mark.parametrize("mode", ["auth-proxy", "tiered"])
def test_odd_numkeys_through_a_real_redis_answers_as_redis(make_redis, make_proxy, tmp_path, mode):
    """A client's numkeys of any size goes through the key specs of Redis's own COMMAND reply
    (the write rule's, the ACL check's) and Redis answers it: the same bytes as direct."""
    srv = make_redis()
    flags = {"warm": "none", "cold": "none"}
    if mode == "auth-proxy":
        flags.update({"auth-mode": "proxy", "user": "default on nopass ~k* +@all"})
    if mode == "tiered":
        flags.update({"warm": f"sqlite:{tmp_path}/warm.db"})
    prx = make_proxy(srv.url, flags=flags)
    requests = [C("EVAL", "return 1", n, "k") for n in ("9223372036854775807", "-9223372036854775808",
                                                          "99", "-1", "x")]
    requests += [C("FCALL", "f", "9223372036854775807", "k"), C("ZUNIONSTORE", "kd", "9223372036854775807", "k"),
                 C("LMPOP", "9223372036854775807", "k", "LEFT"), C("XREAD", "STREAMS", "k")]
    with RawConn(srv.port) as d, RawConn(prx.port) as p:
        for req in requests:
            d.send(req)
            p.send(req)
            assert p.read_reply(20).raw == d.read_reply(20).raw, req
        assert p.cmd("PING").raw == b"+PONG\r\n"
    assert prx.alive(), prx.output()[-3000:]
