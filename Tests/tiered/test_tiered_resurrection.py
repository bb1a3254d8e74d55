"""No resurrection (issue 4, Semantics 4 and 9): DEL, UNLINK, GETDEL, overwrites (SET, GETSET,
MSET, SET ... GET, INCR, APPEND, RENAME), EXPIRE/PEXPIREAT and SET PX reach every tier. After
the hot Redis loses everything (FLUSHALL directly on it, or a restart without persistence)
each key is gone or has its newest value, never an older one, and no lower tier holds an
older value either. Done twice: the reads after the first loss promote keys again, and those
promotions must not bring anything back after the second.

A control key that was only written must survive the loss: without it a proxy that never
consults the lower tiers would pass (so the test fails today, on the control key).
"""

from __future__ import annotations

import time

import pytest

from tierstack import wait_for

GONE = object()


def _scenario(c, evict) -> dict:
    """Runs the writes; returns key -> expected value (bytes) or GONE."""
    now_ms = int(time.time() * 1000)
    want: dict = {}

    c.set("r:del", "v"); assert c.delete("r:del") == 1; want["r:del"] = GONE
    c.set("r:unlink", "v"); assert c.unlink("r:unlink") == 1; want["r:unlink"] = GONE
    c.set("r:getdel", "v"); assert c.getdel("r:getdel") == b"v"; want["r:getdel"] = GONE
    c.set("r:multi-a", "v"); c.set("r:multi-b", "v")
    assert c.delete("r:multi-a", "r:multi-b", "r:never") == 2
    want["r:multi-a"] = want["r:multi-b"] = GONE

    # Deletes of keys that live only below (hot lost them first): Redis-with-unlimited-memory
    # would count them, and they must leave every tier.
    c.set("r:del-below", "v"); evict("r:del-below")
    assert c.delete("r:del-below") == 1; want["r:del-below"] = GONE
    c.set("r:getdel-below", "v"); evict("r:getdel-below")
    assert c.getdel("r:getdel-below") == b"v"; want["r:getdel-below"] = GONE
    c.set("r:unlink-below", "v"); evict("r:unlink-below")
    assert c.unlink("r:unlink-below") == 1; want["r:unlink-below"] = GONE

    c.set("r:over", "old"); c.set("r:over", "new"); want["r:over"] = b"new"
    c.set("r:over-below", "old"); evict("r:over-below"); c.set("r:over-below", "new")
    want["r:over-below"] = b"new"
    c.set("r:getset", "old"); assert c.getset("r:getset", "new") == b"old"; want["r:getset"] = b"new"
    c.set("r:mset", "old"); c.mset({"r:mset": "new"}); want["r:mset"] = b"new"
    c.set("r:setget", "old"); assert c.set("r:setget", "new", get=True) == b"old"; want["r:setget"] = b"new"
    c.set("r:incr", "5"); evict("r:incr"); assert c.incr("r:incr") == 6; want["r:incr"] = b"6"
    c.set("r:append", "ab"); evict("r:append"); assert c.append("r:append", "cd") == 4
    want["r:append"] = b"abcd"
    c.set("r:ren-src", "v1"); c.set("r:ren-dst", "old"); evict("r:ren-src")
    assert c.rename("r:ren-src", "r:ren-dst") is True
    want["r:ren-src"] = GONE; want["r:ren-dst"] = b"v1"

    c.set("r:expire0", "v"); assert c.expire("r:expire0", 0) is True; want["r:expire0"] = GONE
    c.set("r:expire-neg", "v"); evict("r:expire-neg"); assert c.expire("r:expire-neg", -5) is True
    want["r:expire-neg"] = GONE
    c.set("r:pexpireat-past", "v"); assert c.pexpireat("r:pexpireat-past", now_ms - 1000) is True
    want["r:pexpireat-past"] = GONE
    c.set("r:pexpire", "v"); assert c.pexpire("r:pexpire", 400) is True; want["r:pexpire"] = GONE
    c.set("r:pexpire-below", "v"); evict("r:pexpire-below")
    assert c.pexpire("r:pexpire-below", 400) is True; want["r:pexpire-below"] = GONE
    c.set("r:setpx", "v", px=400); want["r:setpx"] = GONE
    c.set("r:setpx-over", "forever"); c.set("r:setpx-over", "brief", px=400); want["r:setpx-over"] = GONE
    c.set("r:keep", "kept"); want["r:keep"] = b"kept"     # control
    c.set("r:keep-ttl", "kept", ex=1000); want["r:keep-ttl"] = b"kept"
    # Everything with a 400 ms expiry has expired once the wall clock passes this.
    expired_after = time.time() + 0.4 + 0.1
    wait_for(lambda: time.time() > expired_after, 5, desc="the 400 ms expiries to pass")
    return want


def _check(c, want: dict, when: str) -> None:
    wrong = {}
    for k, v in want.items():
        got = c.get(k)
        if (v is GONE and got is not None) or (v is not GONE and got != v):
            wrong[k] = got
    assert not wrong, f"{when}: wrong values (deleted/expired keys must read nil, overwritten keys " \
                      f"their newest value): {wrong}"
    gone = [k for k, v in want.items() if v is GONE]
    assert c.exists(*gone) == 0, f"{when}: EXISTS counts deleted keys"
    assert [c.ttl(k) for k in gone] == [-2] * len(gone), f"{when}: TTL of deleted keys"


def _check_tiers(s, want: dict) -> None:
    """No lower tier serves (holds live) a deleted key or an older value. Deletes may land a
    moment after the reply (Semantics 10 allows a retried delete), so wait with a deadline."""
    def stale():
        bad = []
        for insp in (s.warm, s.cold):
            if insp is None:
                continue
            for e in insp.entries():
                if e.db != 0 or not e.live():
                    continue
                k = e.key.decode()
                if k in want and (want[k] is GONE or e.value != want[k]):
                    bad.append((insp.tier, k, e.value))
        return bad
    last = []

    def clean():
        nonlocal last
        last = stale()
        return not last
    try:
        wait_for(clean, 10, desc="lower tiers to drop deleted keys and older values")
    except AssertionError:
        raise AssertionError(f"lower tiers still hold deleted or older entries: {last}") from None


@pytest.mark.parametrize("loss", ["flushall", "restart"])
def test_nothing_deleted_comes_back(make_stack, backend, loss):
    """Semantics 4 (deletes/expiries reach every tier) and 9 (no lower tier older than hot)."""
    s = make_stack(backend)
    with s.client() as c:
        want = _scenario(c, s.evict)
    for round_ in (1, 2):
        s.lose_hot(loss)
        if loss == "restart":
            wait_for(lambda: s.client().ping(), 10, desc="the proxy to reach the restarted hot",
                     ignore=(Exception,))
        with s.client() as c:
            _check(c, want, f"after hot loss #{round_} ({loss})")
        if s.tiered:
            _check_tiers(s, want)
