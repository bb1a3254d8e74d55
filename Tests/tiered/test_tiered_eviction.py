"""Eviction (issue 4, Semantics 6 with 1 and 3): hot is a redis-server with `maxmemory 8mb` and
`allkeys-lru`; 30 MB of distinct keys written through tierproxy all read back byte-equal,
although Redis evicted many of them. Write-through (the default rule) means every key was in
warm before its SET was answered, so eviction never loses data.

Against a plain Redis (or today's pass-through proxy) the read-back fails: that is what the
test is for. With TIERED_TARGET=ideal the hot has no maxmemory and everything reads back.
"""

from __future__ import annotations

import hashlib
import time

from tierstack import chunks

KEYS = 3000
SIZE = 10 * 1024          # 3000 x 10 KiB = 30 MiB, well past 8 MB


def value(i: int) -> bytes:
    """Distinct, deterministic, not trivially compressible, binary-safe."""
    block = hashlib.sha256(b"tiered-eviction-%d" % i).digest()
    return (b"%08d|" % i + block * (SIZE // len(block) + 1))[:SIZE]


def test_thirty_megabytes_through_an_eight_megabyte_hot(make_stack, backend):
    """Semantics 6 (demotion by eviction loses nothing), via 1 (read-through) and 3 (write-through)."""
    s = make_stack(backend, hot_maxmemory="8mb")
    keys = [b"ev:%05d" % i for i in range(KEYS)]
    t0 = time.monotonic()
    with s.client() as c:
        for batch in chunks(list(range(KEYS)), 100):
            p = c.pipeline(transaction=False)
            for i in batch:
                p.set(keys[i], value(i))
            assert p.execute() == [True] * len(batch)
        written = time.monotonic() - t0

        if s.tiered:
            with s.hot() as h:
                info = h.info()
            assert info["evicted_keys"] > 0, "Redis evicted nothing: the test did not stress hot"
            assert info["used_memory"] <= 10 * 1024 * 1024, info["used_memory"]

        # Every key, through MGET (falls through for nil positions only) ...
        wrong = []
        for batch in chunks(list(range(KEYS)), 50):
            got = c.mget([keys[i] for i in batch])
            wrong += [keys[i] for i, g in zip(batch, got) if g != value(i)]
        assert not wrong, f"{len(wrong)} of {KEYS} keys lost or wrong after eviction, e.g. {wrong[:5]}"
        # ... and a sample through GET and STRLEN (each falls through on its own).
        for i in range(0, KEYS, 7):
            assert c.get(keys[i]) == value(i), keys[i]
        for i in range(3, KEYS, 101):
            assert c.strlen(keys[i]) == SIZE, keys[i]
    print(f"{backend}: wrote {KEYS * SIZE >> 20} MiB in {written:.1f}s, read back in "
          f"{time.monotonic() - t0 - written:.1f}s")
    if s.tiered:
        with s.hot() as h:
            assert h.dbsize() < KEYS, "every key fits on hot: the reads did not need the lower tiers"
        assert len(s.warm.live_keys(db=0)) == KEYS, "warm does not hold every written key"


def test_a_copy_brought_up_is_read_before_hot_can_evict_it(make_stack):
    """Under maxmemory Redis makes room before each command it runs. A read of a key hot lacks
    brings the key's copy up first: were that promotion and the read two commands, the read would
    be where Redis makes room, and the copy just taken may be what it evicts (one of 600
    collections once read empty so, on a loaded machine). Here the copy alone overfills hot, so
    Redis evicts it at the very next command: the read must still see all of it."""
    s = make_stack("local")
    big = {b"f%02d" % i: b"x" * 100_000 for i in range(30)}    # 3 MB in hot, a few KB as a DUMP payload
    with s.client() as c:
        assert c.hset("ev:big", mapping=big) == 30
    s.evict("ev:big")
    if s.tiered:
        with s.hot() as h:
            h.config_set("maxmemory-policy", "allkeys-lru")
            h.config_set("maxmemory", h.info("memory")["used_memory"] + 1024 * 1024)
    with s.client() as c:
        assert c.hgetall("ev:big") == big, "the read came after hot had evicted the copy it brought up"
        assert c.hlen("ev:big") == 30
    if s.tiered:
        with s.hot() as h:
            assert h.exists("ev:big") == 0, "hot kept the copy: the test did not make it evict"
