"""CLIENT TRACKING sees only the client's own reads (docs/semantics.md §12). A tiered command's own
requests (the bring-up's EXISTS, the capture's GET/PTTL) must not run where Redis would remember
their keys as ones the client caches: the client would then be told of changes to keys it never
read, or an OPTOUT client's `CLIENT CACHING no` would be spent on the proxy's EXISTS.

Each case runs against the proxy and against a plain redis-server side by side. Client "a"
tracks with its invalidations redirected to a subscriber; client "b" writes. The case ends with a
sentinel key that "a" reads and "b" writes, so the subscriber's messages up to the sentinel's are
every invalidation the case caused: the lists must be equal (and equal what Redis is known to say).
"""

from __future__ import annotations

import pytest

from tierstack import RawConn, encode_command

P = "trk:"
SENTINEL = P + "sentinel"


def _cmd(c: RawConn, *args):
    c.send(encode_command(*args))
    return c.read_reply()


def _invalidations(port: int, steps: list, tracking: tuple) -> list:
    """Runs `steps` ((conn, *args), conn "a" or "b") with "a" tracking as `tracking` says; returns
    the keys of each invalidation message, in order, up to the sentinel's."""
    with RawConn(port, timeout=30) as sub, RawConn(port, timeout=30) as a, RawConn(port, timeout=30) as b:
        sub_id = _cmd(sub, "CLIENT", "ID").v
        assert _cmd(sub, "SUBSCRIBE", "__redis__:invalidate").t == "*"
        r = _cmd(a, "CLIENT", "TRACKING", "on", "REDIRECT", sub_id, *tracking)
        assert r.raw == b"+OK\r\n", r
        conns = {"a": a, "b": b}
        for conn, *args in steps:
            r = _cmd(conns[conn], *args)
            assert r.t != "-", f"{args}: {r!r}"
        if "OPTIN" in tracking:
            _cmd(a, "CLIENT", "CACHING", "yes")
        _cmd(a, "GET", SENTINEL)
        _cmd(b, "SET", SENTINEL, "1")
        seen: list = []
        while True:
            msg = sub.read_reply()
            keys = [k.v for k in msg.v[2].v] if msg.v[2].v is not None else None
            if keys == [SENTINEL.encode()]:
                return seen
            seen.append(keys)


SETUP = [("b", "SET", P + "x", "1"), ("b", "SET", P + "y", "1"), ("b", "SET", P + "s", "abc"),
         ("b", "DEL", P + "h", P + "w")]

CASES = {
    # a reads x only; its writes of y (INCR, APPEND, HSET) read nothing a caches
    "writes track nothing": (
        (), [("a", "GET", P + "x"), ("a", "INCR", P + "y"), ("a", "APPEND", P + "w", "z"),
             ("a", "HSET", P + "h", "f", "v"), ("b", "SET", P + "y", "2"), ("b", "SET", P + "w", "2"),
             ("b", "HSET", P + "h", "f", "2"), ("a", "INCR", P + "x")],
        [[(P + "x").encode()]]),
    # keyed reads (brought up first) track exactly their key
    "keyed reads track their key": (
        (), [("a", "STRLEN", P + "s"), ("a", "INCR", P + "y"), ("b", "SET", P + "y", "5"),
             ("b", "APPEND", P + "s", "d")],
        [[(P + "s").encode()]]),
    # OPTOUT: CLIENT CACHING no applies to the client's next command, not the proxy's EXISTS
    "optout caching no": (
        ("OPTOUT",), [("a", "CLIENT", "CACHING", "no"), ("a", "STRLEN", P + "s"), ("b", "APPEND", P + "s", "d"),
                      ("a", "TYPE", P + "x"), ("b", "INCR", P + "x")],
        [[(P + "x").encode()]]),
    # OPTIN: CLIENT CACHING yes is spent on the client's command
    "optin caching yes": (
        ("OPTIN",), [("a", "STRLEN", P + "s"), ("a", "CLIENT", "CACHING", "yes"), ("a", "TTL", P + "x"),
                     ("b", "APPEND", P + "s", "d"), ("b", "INCR", P + "x")],
        [[(P + "x").encode()]]),
    # the client's own transaction: the proxy's captures of its writes track nothing
    "own transaction": (
        (), [("a", "MULTI"), ("a", "INCR", P + "y"), ("a", "SET", P + "w", "1"), ("a", "EXEC"),
             ("b", "SET", P + "y", "9"), ("b", "SET", P + "w", "2"), ("a", "GET", P + "x"), ("b", "INCR", P + "x")],
        [[(P + "x").encode()]]),
    # NOLOOP: the client's own write is not reported to it, a write by b is
    "noloop": (
        ("NOLOOP",), [("a", "STRLEN", P + "s"), ("a", "APPEND", P + "s", "d"), ("a", "STRLEN", P + "s"),
                      ("a", "GET", P + "x"), ("b", "INCR", P + "x")],
        [[(P + "x").encode()]]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tracking_sees_only_the_clients_reads(make_stack, reference, case):
    """docs/semantics.md §12: invalidations through the proxy are exactly Redis's."""
    tracking, steps, expected = CASES[case]
    stack = make_stack("local")
    got = {}
    for name, port in (("reference", reference.port), ("tierproxy", stack.port)):
        got[name] = _invalidations(port, SETUP + steps, tracking)
    assert got["reference"] == expected, f"the case itself is wrong: Redis sent {got['reference']}"
    assert got["tierproxy"] == got["reference"]


def test_tracking_off_restores_the_atomic_capture(make_stack):
    """After CLIENT TRACKING off (and after RESET) the proxy's captures run in the client's own
    transaction again; the written state still reaches the lower tiers either way."""
    stack = make_stack("local")
    with RawConn(stack.port, timeout=30) as a:
        for tracking in (["CLIENT", "TRACKING", "on"], ["CLIENT", "TRACKING", "off"], ["RESET"]):
            assert _cmd(a, *tracking).t == "+"
            assert _cmd(a, "SET", P + "v", "1").t == "+"
            assert _cmd(a, "INCR", P + "v").v == 2
            assert _cmd(a, "APPEND", P + "v", "0").v == 2
            assert stack.where(P + "v") == [b"hot", b"warm"]
            assert _cmd(a, "DEL", P + "v").v == 1
