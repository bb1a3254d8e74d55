"""A new key costs no delete below (docs/semantics.md §3): the first write of a key that no tier
holds brings it up first (its lookup reads every tier, under the key's lock, and finds nothing),
so its store puts the value in the tier its rule names and skips the delete in the other one,
which on Cosmos DB or Blob Storage is a request per key. The key's later life is unchanged: a
delete, an overwrite into the other tier and hot losing it all end as on Redis.
"""

from __future__ import annotations

from tierstack import wait_for


def _tiers(s) -> dict:
    with s.client() as c:
        return c.info("tiers")


def test_new_keys_cost_no_delete_in_a_tier_that_never_held_them(make_stack, backend, reference):
    s = make_stack(backend)
    if not s.tiered:
        return
    before = _tiers(s)["lower_deletes"]
    with s.client() as c, reference.client() as r:
        for i in range(50):
            for t in (c, r):
                t.hset(f"fk:{i}", "f", i)
                t.rpush(f"fk:l{i}", i)
    assert _tiers(s)["lower_deletes"] == before, "a new key's store deleted it in a tier that never held it"
    # Later writes still keep one copy: a value big enough for cold, then small again.
    big = b"x" * 3_000_000
    with s.client() as c:
        assert c.hset("fk:0", "big", big) == 1
        assert c.hdel("fk:0", "big") == 1
        assert c.delete("fk:l0") == 1
    with reference.client() as r:
        r.hset("fk:0", "big", big)
        r.hdel("fk:0", "big")
        r.delete("fk:l0")
    s.lose_hot("flushall")
    with s.client() as c, reference.client() as r:
        for i in range(50):
            assert c.hgetall(f"fk:{i}") == r.hgetall(f"fk:{i}"), i
            assert c.lrange(f"fk:l{i}", 0, -1) == r.lrange(f"fk:l{i}", 0, -1), i
    wait_for(lambda: s.cold is None or s.cold.get("fk:0") is None, 20, desc="no copy of fk:0 left in cold")
