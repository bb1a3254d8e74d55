"""What the proxy itself asks of hot stays out of what the client can observe (docs/semantics.md
§11, §12), as far as the tiered keyspace allows:

- a write of a hash, list, set, sorted set or stream is read back with DUMP (13), never with a
  GET that Redis would count as a WRONGTYPE error of the client's;
- a key this proxy deleted in every lower tier (or found absent everywhere) is not asked about
  before a command that reads it: there is nothing to bring up;
- over `maxmemory` Redis queues nothing in MULTI, not even a GET, yet still runs outside MULTI
  the commands that add no data (DEL, EXPIRE) and scripts flagged `allow-oom`; through the proxy
  they run as they do on Redis, and their result still reaches the lower tiers.
"""

from __future__ import annotations

import pytest

from tierstack import RawConn, encode_command, wait_for

pytestmark = pytest.mark.tiers_only


def _cmd(c: RawConn, *args):
    c.send(encode_command(*args))
    return c.read_reply()


def test_collection_writes_are_read_back_as_their_type(make_stack):
    stack = make_stack("local")
    with stack.hot() as hot, RawConn(stack.port, timeout=30) as c:
        assert _cmd(c, "SET", "col:t", "v").t == "+"
        assert stack.warm.get("col:t") is not None
        hot.config_resetstat()
        for args in (["SADD", "col:s", "a", "b"], ["HSET", "col:h", "f", "v"], ["LPUSH", "col:l", "a"],
                     ["ZADD", "col:z", "1", "m"], ["XADD", "col:x", "*", "f", "v"],
                     ["XGROUP", "CREATE", "col:x", "g", "$"], ["SINTERSTORE", "col:d", "col:s", "col:missing"],
                     ["SUNIONSTORE", "col:t", "col:s"], ["SPOP", "col:s", "5"]):
            r = _cmd(c, *args)
            assert r.t != "-", f"{args}: {r!r}"
        assert hot.info("errorstats") == {}, "the proxy's reads of non-strings answered WRONGTYPE"
        seen = set(hot.info("commandstats"))
        assert "cmdstat_dump" in seen and "cmdstat_get" not in seen, seen
        assert hot.type("col:t") == b"set"
        below = stack.warm.get("col:t")
        assert below is not None and below.type == "set", f"the set did not replace the string below: {below}"
        # A string that lives only below still makes a set command fail as on Redis.
        assert _cmd(c, "SET", "col:u", "v").t == "+"
        stack.evict("col:u")
        r = _cmd(c, "SADD", "col:u", "a")
        assert r.raw.startswith(b"-WRONGTYPE"), r
        assert _cmd(c, "GET", "col:u").raw == b"$1\r\nv\r\n"


def test_keys_known_absent_below_are_not_asked_about(make_stack):
    stack = make_stack("local")
    with stack.hot() as hot, RawConn(stack.port, timeout=30) as c:
        assert _cmd(c, "SET", "gone", "1").t == "+"
        assert _cmd(c, "DEL", "gone").v == 1
        wait_for(lambda: stack.warm.get("gone") is None, 10, desc="the delete below")
        hot.config_set("slowlog-log-slower-than", 0)
        try:
            hot.slowlog_reset()
            assert _cmd(c, "SADD", "gone", "a").v == 1
            assert _cmd(c, "INCR", "gone2").v == 1
            assert _cmd(c, "DEL", "gone2").v == 1
            assert _cmd(c, "INCR", "gone2").v == 1
            logged = [[a.decode() for a in e["command"].split()][0].lower() for e in hot.slowlog_get(128)]
        finally:
            hot.config_set("slowlog-log-slower-than", 10000)
        logged = [name for name in reversed(logged) if name != "slowlog"]
        # gone2 was never seen before its first INCR: that one is brought up (EXISTS) and captured.
        assert "exists" not in logged[:logged.index("sadd")], f"the SADD asked about its key: {logged}"
        assert "exists" not in logged[logged.index("del"):], f"the INCR after DEL asked about its key: {logged}"


def test_writes_over_maxmemory_are_judged_by_redis(make_stack, reference):
    stack = make_stack("local")
    allow_oom = "#!lua flags=allow-oom\nreturn redis.call('get', KEYS[1])"
    steps = [["DEL", "oom:a"], ["EXPIRE", "oom:b", "1000"], ["SET", "oom:c", "1"], ["INCR", "oom:b"],
             ["EVAL", allow_oom, "1", "oom:b"], ["EVAL", "return redis.call('set', KEYS[1], 'x')", "1", "oom:b"],
             ["PERSIST", "oom:b"]]
    got = {}
    for name, port, server in (("reference", reference.port, reference), ("tierproxy", stack.port, stack.server)):
        with RawConn(port, timeout=30) as c, server.admin() as admin:
            assert _cmd(c, "SET", "oom:a", "1").t == "+" and _cmd(c, "SET", "oom:b", "2").t == "+"
            admin.config_set("maxmemory", 1)
            try:
                got[name] = [_cmd(c, *s).raw for s in steps]
            finally:
                admin.config_set("maxmemory", 0)
    assert got["tierproxy"] == got["reference"]
    assert got["reference"][0] == b":1\r\n" and got["reference"][2].startswith(b"-OOM"), got["reference"]
    assert stack.warm.get("oom:a") is None, "DEL over maxmemory did not reach warm"
    b = stack.warm.get("oom:b")
    assert b is not None and b.value == b"2" and b.expires_ms is None, f"EXPIRE then PERSIST below: {b}"


def test_tiered_write_while_a_script_is_busy(make_stack, reference):
    """Redis refuses commands with BUSY while a script runs past lua-time-limit: a tiered write
    (the proxy's own MULTI around it) gets Redis's error, leaves no transaction open on the
    client's connection and changes nothing, in hot or below; after SCRIPT KILL it works."""
    stack = make_stack("local")
    got = {}
    for name, port, server in (("reference", reference.port, reference), ("tierproxy", stack.port, stack.server)):
        with RawConn(port, timeout=30) as c, RawConn(server.port, timeout=30) as looping, server.admin() as admin:
            assert _cmd(c, "SET", "busy:x", "1").t == "+"
            admin.config_set("lua-time-limit", 10)
            looping.send(encode_command("EVAL", "while true do end", "0"))
            wait_for(lambda: _busy(admin), 10, desc="the script to run past lua-time-limit")
            replies = [_cmd(c, "INCR", "busy:x").raw[:5], _cmd(c, "APPEND", "busy:x", "2").raw[:5]]
            admin.script_kill()
            assert looping.read_reply().t == "-"
            replies += [_cmd(c, *a).raw for a in (["PING", "asdf"], ["GET", "busy:x"], ["INCR", "busy:x"])]
            got[name] = replies
    assert got["reference"] == [b"-BUSY", b"-BUSY", b"$4\r\nasdf\r\n", b"$1\r\n1\r\n", b":2\r\n"], got["reference"]
    assert got["tierproxy"] == got["reference"]
    assert stack.warm.get("busy:x").value == b"2"


def _busy(admin) -> bool:
    try:
        admin.ping()
        return False
    except Exception as e:  # noqa: BLE001 - redis-py raises BusyLoadingError or ResponseError
        return "BUSY" in str(e)
