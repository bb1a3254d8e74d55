"""Large collections are serialised once per flush, not once per write (issue 10, docs/semantics.md
§13 "Large collections"): a hash, list, set, sorted set or stream whose DUMP was at least
`collection-capture-limit` bytes is only probed (PTTL) after a write, its key recorded, and the
write-behind flusher reads it from hot once for all the writes since its last flush. A write
that empties it is still an exact delete, and hot losing it before its flush keeps what the
lower tiers already hold instead of deleting the whole collection.

Against the proxy before this (a DUMP after every write) the DUMP count on hot equals the
number of writes and `collection_writes_deferred` does not exist.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from tierstack import wait_for

LIMIT = "4kb"
FIELD = b"v" * 40


def _values(n: int) -> list[bytes]:
    """Incompressible values: DUMP compresses repetitive ones (LZF), so they would stay small."""
    return [os.urandom(20).hex().encode() for _ in range(n)]


def _tiered(s):
    if not s.tiered:
        pytest.skip("proxy-only: counts the proxy's deferred writes")
    return s


def _drained(s) -> bool:
    with s.client() as c:
        t = c.info("tiers")
    return all(t.get(f, 1) == 0 for f in ("write_behind_backlog", "pending_deletes", "flushes_in_flight"))


def _wait_drained(s) -> None:
    wait_for(lambda: _drained(s), 60, interval=0.05, desc="the write-behind backlog to drain")


def _dumps(s) -> int:
    with s.hot() as h:
        return h.info("commandstats").get("cmdstat_dump", {}).get("calls", 0)


@pytest.mark.parametrize("policy", ["write-behind", "write-through"])
def test_many_writes_to_a_large_hash_cost_few_serialisations(make_stack, backend, reference, policy):
    """Eight clients write one large hash (distinct fields and shared counters) and one large
    list at once: hot answers far fewer DUMPs than there were writes, every write is counted as
    deferred, and once flushed, hot losing everything loses nothing."""
    s = _tiered(make_stack(backend, rules=(f"* policy {policy}",), flags={"collection-capture-limit": LIMIT}))
    seed = {b"seed%03d" % i: v for i, v in enumerate(_values(200))}
    with s.client() as c, reference.client() as r:
        for target in (c, r):
            target.hset("bc:h", mapping=seed)
            target.rpush("bc:l", *seed.values())
    with s.client() as c:
        c.hset("bc:h", "learn", "1")       # the first write after the seed learns the size
        c.rpush("bc:l", "learn")
    with reference.client() as r:
        r.hset("bc:h", "learn", "1")
        r.rpush("bc:l", "learn")
    _wait_drained(s)
    with s.hot() as h:
        h.config_resetstat()
    with s.client() as c:
        deferred_before = c.info("tiers")["collection_writes_deferred"]

    clients, rounds = 8, 60 if backend == "local" else 20
    errors: list = []

    def worker(i: int) -> None:
        try:
            with s.client() as c, reference.client() as r:
                for n in range(rounds):
                    for target in (c, r):
                        target.hset("bc:h", f"c{i}:{n}", FIELD)
                        target.hincrby("bc:h", f"count{n % 4}", 1)
                        target.rpush("bc:l", f"{i}:{n}")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    writes = clients * rounds * 3
    _wait_drained(s)
    with s.client() as c:
        deferred = c.info("tiers")["collection_writes_deferred"] - deferred_before
    assert deferred == writes, f"{deferred} of {writes} writes deferred"
    dumps = _dumps(s)
    assert dumps <= writes // 2, f"hot served {dumps} DUMPs for {writes} writes: not coalesced"

    s.lose_hot("flushall")
    with s.client() as c, reference.client() as r:
        assert c.hgetall("bc:h") == r.hgetall("bc:h")
        assert sorted(c.lrange("bc:l", 0, -1)) == sorted(r.lrange("bc:l", 0, -1))
        assert c.llen("bc:l") == r.llen("bc:l")


def test_emptying_a_large_collection_is_an_exact_delete(make_stack, backend):
    """The write that removes a large hash's last field leaves nothing anywhere, at once: hot
    losing everything right after does not bring the hash back, flushed or not."""
    s = _tiered(make_stack(backend, rules=("* policy write-behind",), flags={"collection-capture-limit": LIMIT}))
    fields = [b"f%03d" % i for i in range(200)]
    with s.client() as c:
        c.hset("bc:gone", mapping=dict(zip(fields, _values(200))))
        c.hset("bc:gone", "learn", "1")
    _wait_drained(s)
    with s.client() as c:
        before = c.info("tiers")["collection_writes_deferred"]
        assert c.hdel("bc:gone", *fields) == len(fields)
        assert c.info("tiers")["collection_writes_deferred"] == before + 1, "the write was not deferred"
        assert c.hdel("bc:gone", "learn") == 1
        s.lose_hot("flushall")
        assert c.exists("bc:gone") == 0, "an emptied hash came back from below"
    _wait_drained(s)
    with s.client() as c:
        assert c.exists("bc:gone") == 0
    assert s.warm.get("bc:gone") is None and (s.cold is None or s.cold.get("bc:gone") is None)


def test_hot_losing_a_large_collection_before_its_flush_keeps_what_is_below(make_stack, backend):
    """Writes to a flushed large hash, then hot loses it at once (FLUSHALL on hot, racing the
    flush): the hash reads back with at least every field it had at its last flush, never as
    missing (the flusher must not take hot's silence for a delete)."""
    s = _tiered(make_stack(backend, rules=("* policy write-behind",), flags={"collection-capture-limit": LIMIT}))
    base = {b"f%03d" % i: v for i, v in enumerate(_values(200))}
    for attempt in range(5):
        key = f"bc:race{attempt}"
        with s.client() as c:
            c.hset(key, mapping=base)
            c.hset(key, "learn", "1")
        _wait_drained(s)
        with s.client() as c:
            for n in range(5):
                c.hset(key, f"late{n}", "x")
            s.lose_hot("flushall")
        _wait_drained(s)
        with s.client() as c:
            got = c.hgetall(key)
        assert set(base) | {b"learn"} <= set(got), f"attempt {attempt}: {len(got)} fields left of {len(base) + 1}"


def test_a_large_collection_that_expires_before_its_flush_stays_expired(make_stack, backend):
    """PEXPIRE on a large hash is a deferred write too; once the hash expired on hot, the flusher
    finds it gone and that is a delete (its expiry was due), not a loss: it never reads back."""
    s = _tiered(make_stack(backend, rules=("* policy write-behind",), flags={"collection-capture-limit": LIMIT}))
    with s.client() as c:
        c.hset("bc:exp", mapping={b"f%03d" % i: v for i, v in enumerate(_values(200))})
        c.hset("bc:exp", "learn", "1")
    _wait_drained(s)
    with s.client() as c:
        assert c.pexpire("bc:exp", 300) is True
        wait_for(lambda: c.exists("bc:exp") == 0, 20, interval=0.05, desc="the hash to expire")
    _wait_drained(s)
    s.lose_hot("flushall")
    with s.client() as c:
        assert c.exists("bc:exp") == 0, "an expired hash came back from below"
    stored = s.warm.get("bc:exp")
    assert stored is None or not stored.live(int(time.time() * 1000)), stored


def test_a_collection_larger_than_one_socket_read_is_flushed(make_stack, backend):
    """A 1 MB hash: its DUMP reaches the flusher over many reads of the proxy's own connection
    to hot, and each must be scanned once (a rescan took the reply for garbage, and the flush
    failed for ever)."""
    s = _tiered(make_stack(backend, rules=("* policy write-behind",), flags={"collection-capture-limit": LIMIT}))
    with s.client() as c:
        for chunk in range(20):
            c.hset("bc:huge", mapping={b"f%05d" % (chunk * 1000 + i): v for i, v in enumerate(_values(1000))})
        for n in range(3):
            c.hset("bc:huge", f"late{n}", "x")
        assert len(c.dump("bc:huge")) > 900_000
    _wait_drained(s)
    with s.client() as c:
        t = c.info("tiers")
        assert t["flush_failures"] == 0, t
        assert t["collection_writes_deferred"] >= 3, t
    s.lose_hot("flushall")
    with s.client() as c:
        assert c.hlen("bc:huge") == 20_003
