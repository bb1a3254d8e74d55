"""MULTI/EXEC, WATCH conflicts and DISCARD through the proxy."""

from __future__ import annotations

import pytest
import redis

from harness import encode_command as C, exchange


def test_multi_exec_pipeline(proxy, direct, via):
    pipe = via.pipeline(transaction=True)
    pipe.set("tx:a", 1).incr("tx:a").lpush("tx:l", "x", "y").lrange("tx:l", 0, -1).get("tx:a")
    assert pipe.execute() == [True, 2, 2, [b"y", b"x"], b"2"]
    assert direct.get("tx:a") == b"2"


def test_multi_exec_raw_equal_direct(proxy, redis_server):
    """Queued replies, EXEC array, EXECABORT after a queueing error, nested MULTI error."""
    script = b"".join([
        C("MULTI"), C("SET", "k", "v"), C("INCR", "n"), C("GET", "k"), C("EXEC"),
        C("MULTI"), C("MULTI"), C("SET", "k"), C("SET", "k", "w"), C("EXEC"), C("GET", "k"),
        C("MULTI"), C("INCR", "k"), C("SET", "k2", "x"), C("EXEC"),
        C("EXEC"), C("DISCARD"),
    ])
    redis_server.admin().flushall()
    want, closed = exchange(redis_server.port, script)
    assert not closed and len(want) == 17 
    redis_server.admin().flushall()
    got, _ = exchange(proxy.port, script)
    assert got == want
    assert want[4] == b"*3\r\n+OK\r\n:1\r\n$1\r\nv\r\n"
    assert want[9].startswith(b"-EXECABORT")


def test_watch_conflict_exec_returns_nil(proxy, direct):
    a, b = proxy.raw(), proxy.raw()
    with a, b:
        assert a.cmd("SET", "w", "0").raw == b"+OK\r\n"
        assert a.cmd("WATCH", "w").raw == b"+OK\r\n"
        assert a.cmd("GET", "w").v == b"0"
        assert b.cmd("SET", "w", "from-b").raw == b"+OK\r\n"  # another client modifies
        assert a.cmd("MULTI").raw == b"+OK\r\n"
        assert a.cmd("SET", "w", "from-a").raw == b"+QUEUED\r\n"
        assert a.cmd("EXEC").raw == b"*-1\r\n"
        assert direct.get("w") == b"from-b"
        # Without a conflict the same sequence commits.
        assert a.cmd("WATCH", "w").raw == b"+OK\r\n"
        assert a.cmd("MULTI").raw == b"+OK\r\n"
        assert a.cmd("SET", "w", "from-a").raw == b"+QUEUED\r\n"
        assert a.cmd("EXEC").raw == b"*1\r\n+OK\r\n"
        assert direct.get("w") == b"from-a"


def test_watch_conflict_redis_py(proxy, via):
    other = proxy.client()
    via.set("bal", 10)
    with pytest.raises(redis.WatchError):
        with via.pipeline() as p:
            p.watch("bal")
            cur = int(p.get("bal"))
            other.set("bal", 99)
            p.multi()
            p.set("bal", cur - 1)
            p.execute()
    assert via.get("bal") == b"99"
    other.close()


def test_watch_then_direct_write_conflicts(proxy, direct):
    """A write straight to Redis (not through the proxy) also breaks the WATCH."""
    with proxy.raw() as a:
        a.cmd("WATCH", "dw")
        direct.set("dw", "direct")
        a.cmd("MULTI")
        a.cmd("SET", "dw", "proxy")
        assert a.cmd("EXEC").raw == b"*-1\r\n"
    assert direct.get("dw") == b"direct"


def test_discard(proxy, direct):
    with proxy.raw() as a:
        assert a.cmd("MULTI").raw == b"+OK\r\n"
        assert a.cmd("SET", "d", "x").raw == b"+QUEUED\r\n"
        assert a.cmd("DISCARD").raw == b"+OK\r\n"
        assert a.cmd("GET", "d").raw == b"$-1\r\n"
        assert a.cmd("DISCARD").raw == b"-ERR DISCARD without MULTI\r\n"
        # The connection is usable afterwards, not stuck in MULTI state.
        assert a.cmd("SET", "d", "y").raw == b"+OK\r\n"
    assert direct.get("d") == b"y"
