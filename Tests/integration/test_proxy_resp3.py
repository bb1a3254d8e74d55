"""RESP3 through the proxy: redis-py protocol=3, and HELLO 3 replies byte-equal to Redis."""

from __future__ import annotations

import re

from harness import RawConn, encode_command as C

# (command, number of replies it produces). Each reply type RESP3 has is covered:
# map %, set ~, double ",", big number (, verbatim =, boolean #, null _, push >, attribute |.
COMMANDS = [
    (("HGETALL", "h"), 1),                                   # map
    (("SMEMBERS", "s"), 1),                                  # set
    (("ZSCORE", "z", "a"), 1),                               # double
    (("ZRANGE", "z", "0", "-1", "WITHSCORES"), 1),           # array of [member, double]
    (("ZSCORE", "z", "inf"), 1),                             # double inf
    (("GET", "missing"), 1),                                 # null
    (("HGET", "h", "missing"), 1),
    (("EVAL", "return {double=3.25}", "0"), 1),
    (("EVAL", "return {big_number='123456789012345678901234567890'}", "0"), 1),
    (("EVAL", "return {verbatim_string={format='txt',string='hello'}}", "0"), 1),
    (("EVAL", "return {map={a=1}}", "0"), 1),
    (("EVAL", "return false", "0"), 1),
    (("DEBUG", "PROTOCOL", "bignum"), 1),
    (("DEBUG", "PROTOCOL", "verbatim"), 1),
    (("DEBUG", "PROTOCOL", "true"), 1),
    (("DEBUG", "PROTOCOL", "false"), 1),
    (("DEBUG", "PROTOCOL", "null"), 1),
    (("DEBUG", "PROTOCOL", "double"), 1),
    (("DEBUG", "PROTOCOL", "map"), 1),
    (("DEBUG", "PROTOCOL", "set"), 1),
    (("DEBUG", "PROTOCOL", "attrib"), 1),                    # attribute + reply
    (("DEBUG", "PROTOCOL", "push"), 2),                      # push, then the real reply
    (("CONFIG", "GET", "maxmemory*"), 1),                    # map
    (("XINFO", "STREAM", "st"), 1),                          # map with nested arrays
    (("COMMAND", "INFO", "GET"), 1),
    (("COMMAND", "DOCS", "GET"), 1),                         # nested maps
    (("LPOS", "l", "nope"), 1),
    (("NOSUCHCMD",), 1),                                     # error
    (("INCR", "h"), 1),                                      # WRONGTYPE error
]


def setup_data(direct):
    direct.hset("h", mapping={"a": "1", "b": "2"})
    direct.sadd("s", "x", "y", "z")
    direct.zadd("z", {"a": 1.5, "b": -0.25, "inf": float("inf")})
    direct.xadd("st", {"f": "v"}, id="1-1")
    direct.rpush("l", "a")


def mask_hello(raw: bytes) -> bytes:
    """The client id in HELLO's map differs between two connections."""
    masked, n = re.subn(rb"\$2\r\nid\r\n:\d+\r\n", b"$2\r\nid\r\n:<id>\r\n", raw)
    assert n == 1, raw
    return masked


def run_resp3(port: int) -> list[bytes]:
    out = []
    with RawConn(port) as c:
        hello = c.cmd("HELLO", "3")
        assert hello.t == "%", hello
        out.append(mask_hello(hello.raw))
        for cmd, n in COMMANDS:
            c.send(C(*cmd))
            out.append(b"".join(r.raw for r in c.read_replies(n)))
    return out


def test_hello3_replies_byte_equal_direct(proxy, redis_server, direct):
    setup_data(direct)
    want = run_resp3(redis_server.port)
    got = run_resp3(proxy.port)
    for (cmd, _), w, g in zip([(("HELLO", "3"), 1)] + COMMANDS, want, got):
        assert g == w, f"{cmd}: proxy {g[:300]!r} != redis {w[:300]!r}"
    # The reference must really contain each RESP3 type byte.
    for t in (b"%", b"~", b",", b"(", b"=", b"#", b"_", b"|", b">", b"-"):
        assert any(r.startswith(t) for r in want), f"no reply of type {t!r} in the reference"


def test_resp3_push_messages_byte_equal(proxy, redis_server, direct):
    def run(port):
        with RawConn(port) as c:
            c.cmd("HELLO", "3")
            out = [c.cmd("SUBSCRIBE", "ch3").raw, c.cmd("PSUBSCRIBE", "c*").raw]
            direct.publish("ch3", "payload")
            out += [r.raw for r in c.read_replies(2)]  # message + pmessage pushes
            out.append(c.cmd("PING").raw)  # RESP3 subscriber: normal replies allowed
            out.append(c.cmd("GET", "k").raw)
            out.append(c.cmd("UNSUBSCRIBE").raw)
            out.append(c.cmd("PUNSUBSCRIBE").raw)
            return out
    want = run(redis_server.port)
    assert want[0].startswith(b">3\r\n") and want[2].startswith(b">3\r\n$7\r\nmessage")
    assert run(proxy.port) == want


def test_resp3_tracking_redirect_push(proxy):
    """Tracking in RESP3 with BCAST: invalidation pushes interleave with replies."""
    with RawConn(proxy.port) as a, RawConn(proxy.port) as b:
        a.cmd("HELLO", "3")
        assert a.cmd("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:").raw == b"+OK\r\n"
        b.cmd("SET", "user:1", "x")
        b.cmd("SET", "other", "y")
        b.cmd("DEL", "user:1")
        pushes = a.read_replies(2, timeout=5)
        assert [p.t for p in pushes] == [">", ">"]
        assert [p.py() for p in pushes] == [[b"invalidate", [b"user:1"]]] * 2
        assert a.cmd("PING").raw == b"+PONG\r\n"


def test_redis_py_protocol3(proxy, redis_server):
    d = redis_server.client(protocol=3)
    p = proxy.client(protocol=3)
    d.flushall()
    setup_data(d)
    for fn in (lambda r: r.hgetall("h"), lambda r: r.smembers("s"),
               lambda r: r.zrange("z", 0, -1, withscores=True), lambda r: r.zscore("z", "a"),
               lambda r: r.xinfo_stream("st"), lambda r: r.config_get("maxmemory"),
               lambda r: r.get("missing"), lambda r: r.execute_command("HELLO", "3")[b"proto"]):
        assert fn(p) == fn(d)
    assert p.connection_pool.connection_kwargs.get("protocol") == 3
