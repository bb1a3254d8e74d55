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


def test_blind_sets_of_new_keys_cost_no_delete_in_a_new_directory_tier(make_stack):
    """A blind SET reads nothing first, so `AbsentBelow` knows nothing of its key: the directory
    tier itself knows which names it may hold (a walk at start, every write since)."""
    s = make_stack("local")
    if not s.tiered:
        return
    before = _tiers(s)["lower_deletes"]
    with s.client() as c:
        for i in range(50):
            assert c.set(f"fb:{i}", i)
        assert c.mset({f"fb:m{i}": i for i in range(20)})
        assert c.setex("fb:ex", 100, "v")
        p = c.pipeline(transaction=False)
        for i in range(64):
            p.set(f"fb:p{i}", i)
        assert all(p.execute())
    assert _tiers(s)["lower_deletes"] == before, "a blind SET of a new key deleted it in a cold tier that never held it"
    assert s.warm.get("fb:p63").value == b"63"


def test_a_cold_copy_from_before_a_restart_is_still_deleted(make_stack):
    """The directory tier's "may hold" answer covers files written by an earlier run: after a
    restart, a SET that puts the key in warm still deletes its old copy in cold, which would
    otherwise come back once warm's copy expires."""
    s = make_stack("local", rules=("old:* policy write-through tier cold",))
    if not s.tiered:
        return
    with s.client() as c:
        for i in range(20):
            assert c.set(f"old:{i}", f"cold-{i}")
    assert s.cold.get("old:19") is not None
    s.restart_proxy()
    with s.client() as c:
        assert c.execute_command("TIERS", "CONFIG", "SET", "rules", "") in (b"OK", "OK", True)
        for i in range(20):
            assert c.set(f"old:{i}", f"warm-{i}", px=1500)
    for i in range(20):
        assert s.warm.get(f"old:{i}") is not None, i
        assert s.cold.get(f"old:{i}") is None, f"old:{i}: the copy in cold from before the restart was left"
    s.lose_hot("flushall")
    with s.client() as c:
        assert c.get("old:3") == b"warm-3"
        wait_for(lambda: c.get("old:3") is None, 20, desc="old:3 expired")
        assert c.get("old:4") is None
