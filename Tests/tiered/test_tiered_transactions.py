"""A client's own MULTI … EXEC (README "Three-tier keyspace"): Redis queues the commands, so the
proxy does not tier them one by one; once EXEC has run, the keys its tiered writes touched are
recorded durably and flushed below from hot (write-behind style). So what a transaction wrote or
deleted survives hot losing everything, and a discarded or WATCH-failed transaction changes no tier.
"""

from __future__ import annotations

import pytest

from tierstack import wait_for


def test_transaction_writes_reach_the_lower_tiers(make_stack, backend):
    """Semantics 3, 4 for writes queued in MULTI/EXEC."""
    s = make_stack(backend)
    with s.client() as c:
        c.set("tx:gone", "old")
        c.set("tx:counter", "10")
        p = c.pipeline(transaction=True)
        p.set("tx:new", "v1").incrby("tx:counter", 5).delete("tx:gone").append("tx:new", "+")
        assert p.execute() == [True, 15, 1, 3]
        p = c.pipeline(transaction=True)
        p.set("tx:discarded", "x")
        p.reset()                                       # never sent: nothing queued
        with s.raw() as r:
            assert r.cmd("MULTI").raw == b"+OK\r\n"
            assert r.cmd("SET", "tx:discarded", "x").raw == b"+QUEUED\r\n"
            assert r.cmd("DISCARD").raw == b"+OK\r\n"
    if s.tiered:
        def flushed() -> bool:
            w = {e.key: e.value for e in s.warm.entries() if e.live()}
            return w.get(b"tx:new") == b"v1+" and w.get(b"tx:counter") == b"15" and b"tx:gone" not in w
        wait_for(flushed, 10, desc="the transaction's writes and delete to reach warm")
    s.lose_hot()
    with s.client() as c:
        assert c.mget("tx:new", "tx:counter", "tx:gone", "tx:discarded") == [b"v1+", b"15", None, None]


@pytest.mark.tiers_only
def test_watch_failed_transaction_changes_no_tier(make_stack):
    s = make_stack("local")
    with s.client() as c, s.client() as other:
        c.set("tx:w", "before")
        with s.raw() as r:
            assert r.cmd("WATCH", "tx:w").raw == b"+OK\r\n"
            other.set("tx:w", "meanwhile")              # the watched key changes: EXEC must fail
            assert r.cmd("MULTI").raw == b"+OK\r\n"
            assert r.cmd("SET", "tx:w", "lost").raw == b"+QUEUED\r\n"
            assert r.cmd("EXEC").raw == b"*-1\r\n"
    assert s.warm.get("tx:w").value == b"meanwhile"
    s.lose_hot()
    with s.client() as c:
        assert c.get("tx:w") == b"meanwhile"
