"""Every type in three tiers (issue 10, docs/semantics.md §13): hashes, lists, sets, sorted sets,
streams (with consumer groups and pending entries) and geo sets are written below like strings,
and a key of any type that hot lost is brought up before a command reads or modifies it, so every
reply is Redis's own.

Each scenario runs side by side with a reference redis-server (twin.py): every reply byte-equal,
and between every two steps the stack's hot loses everything (direct FLUSHALL, maxmemory
eviction, or a direct DEL of the scenario's keys), after which every key must read as on the
reference (type, contents, TTL; a stream's groups and pending entries too). Against the proxy of
issue 9 (strings only below) every scenario fails at its first read after a loss.

Blocking commands bring their keys up first (Tests/tiered/test_tiered_blocking.py has the rest)
and what a blocking write took is below before its reply goes out; a client that leaves while
blocked leaves nothing blocked on hot.
"""

from __future__ import annotations

import pytest

from tierstack import encode_command, wait_for
from twin import LOSSES, Twin, flush_hot, run_scenario, run_while_emptied

SCENARIOS = {}


def scenario(*keys):
    def wrap(fn):
        SCENARIOS[fn.__name__] = (fn, {0: list(keys)})
        return fn
    return wrap


@scenario("ty:h", "ty:h2")
def hash_(tw):
    tw.step(["HSET", "ty:h", "a", "1", "b", "two", "c", "3"])
    tw.step(["HINCRBY", "ty:h", "a", "5"], ["HGET", "ty:h", "a"])
    tw.step(["HMGET", "ty:h", "a", "b", "zz"], ["HLEN", "ty:h"], ["HSTRLEN", "ty:h", "b"])
    tw.step(["HDEL", "ty:h", "b"], ["HEXISTS", "ty:h", "b"])
    tw.step(["HSETNX", "ty:h", "c", "x"], ["HSETNX", "ty:h", "d", "4"])
    tw.step(["EXPIRE", "ty:h", "1000"])
    tw.step(["HINCRBYFLOAT", "ty:h", "d", "0.5"], ["TTL", "ty:h"])
    tw.step(["GET", "ty:h"], ["MGET", "ty:h", "ty:h2"], ["SET", "ty:h2", "s"])
    tw.step(["RENAME", "ty:h", "ty:h2"], ["HGET", "ty:h2", "d"])


@scenario("ty:l", "ty:l2")
def list_(tw):
    tw.step(["RPUSH", "ty:l", "a", "b", "c"], ["LPUSH", "ty:l", "z"])
    tw.step(["LRANGE", "ty:l", "0", "-1"], ["LLEN", "ty:l"])
    tw.step(["LPOP", "ty:l"], ["LINSERT", "ty:l", "BEFORE", "b", "x"])
    tw.step(["LINDEX", "ty:l", "1"], ["LPOS", "ty:l", "c"])
    tw.step(["LMOVE", "ty:l", "ty:l2", "LEFT", "RIGHT"])
    tw.step(["RPOPLPUSH", "ty:l", "ty:l2"], ["LRANGE", "ty:l2", "0", "-1"])
    tw.step(["LSET", "ty:l", "0", "first"], ["LTRIM", "ty:l2", "1", "-1"])
    tw.step(["PEXPIRE", "ty:l", "900000"], ["LRANGE", "ty:l", "0", "-1"])


@scenario("ty:s", "ty:s2", "ty:su")
def set_(tw):
    tw.step(["SADD", "ty:s", "1", "2", "3", "4"], ["SADD", "ty:s2", "3", "4", "5"])
    tw.step(["SCARD", "ty:s"], ["SISMEMBER", "ty:s", "2"], ["SMISMEMBER", "ty:s", "1", "9"])
    tw.step(["SINTERCARD", "2", "ty:s", "ty:s2"], ["SREM", "ty:s", "1"])
    tw.step(["SMOVE", "ty:s", "ty:s2", "2"], ["SUNIONSTORE", "ty:su", "ty:s", "ty:s2"])
    tw.step(["SMEMBERS", "ty:su"], ["SDIFF", "ty:s2", "ty:s"])


@scenario("ty:z", "ty:zd")
def sorted_set(tw):
    tw.step(["ZADD", "ty:z", "1", "a", "2", "b", "3", "c"])
    tw.step(["ZADD", "ty:z", "GT", "0", "a"], ["ZADD", "ty:z", "GT", "CH", "5", "a"])
    tw.step(["ZINCRBY", "ty:z", "2.5", "b"], ["ZRANGE", "ty:z", "0", "-1", "WITHSCORES"])
    tw.step(["ZRANK", "ty:z", "a"], ["ZSCORE", "ty:z", "b"], ["ZCARD", "ty:z"])
    tw.step(["ZPOPMIN", "ty:z"], ["ZRANGESTORE", "ty:zd", "ty:z", "0", "-1"])
    tw.step(["ZRANGEBYSCORE", "ty:zd", "-inf", "+inf", "WITHSCORES"], ["ZREM", "ty:zd", "a"])


@scenario("ty:x")
def stream(tw):
    tw.step(["XADD", "ty:x", "1-1", "f", "v1"], ["XADD", "ty:x", "2-1", "f", "v2"], ["XADD", "ty:x", "3-1", "f", "v3"])
    tw.step(["XGROUP", "CREATE", "ty:x", "g", "0"])
    tw.step(["XREADGROUP", "GROUP", "g", "c1", "COUNT", "2", "STREAMS", "ty:x", ">"])
    tw.step(["XPENDING", "ty:x", "g"])          # (the extended form shows idle times: they differ)
    tw.step(["XAUTOCLAIM", "ty:x", "g", "c2", "0", "0-0"])
    tw.step(["XACK", "ty:x", "g", "1-1"], ["XLEN", "ty:x"])
    tw.step(["XREADGROUP", "GROUP", "g", "c2", "COUNT", "5", "STREAMS", "ty:x", ">"])
    tw.step(["XINFO", "GROUPS", "ty:x"], ["XRANGE", "ty:x", "-", "+"])
    tw.step(["XTRIM", "ty:x", "MAXLEN", "1"], ["XDEL", "ty:x", "3-1"])


@scenario("ty:geo")
def geo(tw):
    tw.step(["GEOADD", "ty:geo", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"])
    tw.step(["GEODIST", "ty:geo", "Palermo", "Catania", "km"], ["GEOHASH", "ty:geo", "Palermo"])
    tw.step(["GEOSEARCH", "ty:geo", "FROMMEMBER", "Palermo", "BYRADIUS", "200", "km", "ASC"])


@scenario("ty:t")
def type_changes(tw):
    """A string below becomes each type in turn, and back: no older value of another type returns."""
    tw.step(["SET", "ty:t", "string"])
    tw.step(["DEL", "ty:t"], ["HSET", "ty:t", "f", "v"])
    tw.step(["HGET", "ty:t", "f"], ["DEL", "ty:t"], ["RPUSH", "ty:t", "a"])
    tw.step(["LRANGE", "ty:t", "0", "-1"], ["SET", "ty:t", "again"])
    tw.step(["GET", "ty:t"], ["DEL", "ty:t"], ["ZADD", "ty:t", "1", "m"])
    tw.step(["COPY", "ty:t", "ty:t", "REPLACE"], ["ZSCORE", "ty:t", "m"])


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_type_survives_hot_losing_it(make_stack, backend, reference, name, loss):
    """docs/semantics.md §13: see the scenario's docstring and the module's."""
    fn, keys = SCENARIOS[name]
    run_scenario(make_stack, backend, reference, fn, keys, loss)


def test_hashes_counted_by_many_clients_while_hot_is_emptied(make_stack, backend):
    """Eight clients HINCRBY fields of three hashes (and RPUSH to a list) while hot is emptied every
    20 ms: every increment and every push is counted in the end, from whichever tier holds it."""
    s = make_stack(backend, flags={"tiers-allow-flush": "yes"})
    clients, rounds = 8, 40 if backend == "local" else 15

    def worker(i: int):
        def run():
            with s.client() as c:
                for n in range(rounds):
                    assert c.hincrby(f"ty:cnt:{n % 3}", f"f{i % 2}", 1) >= 1
                    assert c.rpush("ty:log", f"{i}:{n}") >= 1
        return run

    errors = run_while_emptied([worker(i) for i in range(clients)], lambda: flush_hot(s))
    assert not errors, errors
    with s.client() as c:
        total = sum(int(v) for h in range(3) for v in c.hgetall(f"ty:cnt:{h}").values())
        assert total == clients * rounds, f"{total} increments counted of {clients * rounds}"
        pushed = c.lrange("ty:log", 0, -1)
        assert sorted(pushed) == sorted(f"{i}:{n}".encode() for i in range(clients) for n in range(rounds))


def test_thirty_megabytes_of_collections_through_an_eight_megabyte_hot(make_stack, backend):
    """maxmemory 8mb with allkeys-lru, 30 MB of hashes, lists, sets and sorted sets written through
    the proxy: Redis evicts most of them, and every one reads back whole."""
    s = make_stack(backend, hot_maxmemory="8mb")
    count, fields, size = 600, 50, 1000          # 600 x 50 x ~1 KB = 30 MB

    def member(k: int, f: int) -> bytes:
        return (b"%05d:%03d|" % (k, f)) * (size // 10)

    def write(c, k: int):
        key = f"ty:big:{k}"
        kind = k % 4
        members = [member(k, f) for f in range(fields)]
        if kind == 0:
            c.hset(key, mapping={b"f%03d" % f: m for f, m in enumerate(members)})
        elif kind == 1:
            c.rpush(key, *members)
        elif kind == 2:
            c.sadd(key, *members)
        else:
            c.zadd(key, {m: f for f, m in enumerate(members)})

    def read(c, k: int):
        key = f"ty:big:{k}"
        kind = k % 4
        if kind == 0:
            return sorted(c.hgetall(key).values())
        if kind == 1:
            return c.lrange(key, 0, -1)
        if kind == 2:
            return sorted(c.smembers(key))
        return c.zrange(key, 0, -1)

    with s.client() as c:
        for k in range(count):
            write(c, k)
        if s.tiered:
            with s.hot() as h:
                assert h.info()["evicted_keys"] > 0, "Redis evicted nothing: the test did not stress hot"
        wrong = [k for k in range(count) if read(c, k) != sorted(member(k, f) for f in range(fields))]
        assert not wrong, f"{len(wrong)} of {count} collections lost or wrong after eviction, e.g. {wrong[:5]}"


def plant_newer_payload(s, key: bytes) -> bytes:
    """Rewrites `key`'s row in the SQLite warm tier so that its DUMP payload's RDB version (the 2
    bytes before its CRC64) is 255, fixing the envelope's CRC32; returns the new payload."""
    import sqlite3
    import struct
    import zlib
    con = sqlite3.connect(s.warm.path, timeout=10)
    (blob,) = con.execute("SELECT entry FROM entries WHERE db = 0 AND key = ?", (key,)).fetchone()
    blob = bytearray(blob)
    payload_end = len(blob) - 4
    struct.pack_into("<H", blob, payload_end - 10, 255)
    struct.pack_into("<I", blob, payload_end, zlib.crc32(bytes(blob[:payload_end])) & 0xFFFFFFFF)
    con.execute("UPDATE entries SET entry = ? WHERE db = 0 AND key = ?", (bytes(blob), key))
    con.commit()
    con.close()
    return s.warm.get(key).value


def test_a_payload_from_a_newer_redis_is_an_error_and_stays_below(make_stack, reference):
    """A DUMP payload whose RDB version is newer than hot's (hot swapped for an older Redis): a
    read, a write, a pop and a blocking pop that need the key each get an error that says so
    (never a nil, an empty list, or a write over it), the proxy logs it, and the entry stays
    below untouched (docs/semantics.md §13 "Versions")."""
    s = make_stack("local")
    with s.client() as c:
        assert c.hset("ty:new", mapping={"a": "1", "b": "2"}) == 2
        assert c.rpush("ty:newl", "x", "y") == 2
    assert s.warm.get("ty:new").type == "hash" and s.warm.get("ty:newl").type == "list"
    newer = {k: plant_newer_payload(s, k) for k in (b"ty:new", b"ty:newl")}
    with reference.client() as r:
        try:
            r.restore("ty:probe", 0, newer[b"ty:new"])
            raise AssertionError("Redis restored a payload of RDB version 255")
        except Exception as e:  # redis.ResponseError
            assert "DUMP payload version or checksum are wrong" in str(e), e
    s.evict("ty:new", "ty:newl")
    for cmd in (["HGETALL", "ty:new"], ["HSET", "ty:new", "z", "9"], ["LPOP", "ty:newl"],
                ["BLPOP", "ty:newl", "5"], ["HGETALL", "ty:new"]):
        with s.raw() as c:
            reply = c.cmd(*cmd)
        assert reply.t == "-", f"{cmd}: {reply.raw!r} (an unrestorable copy must be an error)"
        text = reply.raw.decode()
        assert text.startswith("-ERR tierproxy: ") and "RDB version 255" in text and "newer Redis" in text, text
    for k, payload in newer.items():
        assert s.warm.get(k).value == payload, f"the entry of {k!r} below changed"
    with s.hot() as h:
        assert h.exists("ty:new", "ty:newl") == 0, "hot holds a key it could not restore"
    wait_for(lambda: "tier_entry_not_restorable" in s.output() or "Tier entry not restorable" in s.output(), 10,
             desc="the proxy to log the unrestorable entry")


def test_a_client_that_leaves_while_blocked_leaves_nothing_blocked_on_hot(make_stack):
    """Two BLPOPs pipelined on one connection: a push serves the first, the second blocks, and
    the client closes. Its upstream connection must close with it (Redis then unblocks it), as
    a direct client's would: nothing may stay blocked on hot (found by Redis's own suite)."""
    s = make_stack("local")
    with s.hot() as h:
        c = s.raw()
        c.send(encode_command("BLPOP", "ty:gone", "0") + encode_command("BLPOP", "ty:gone", "0"))
        wait_for(lambda: h.info("clients")["blocked_clients"] == 1, 20, desc="the first BLPOP to block")
        with s.client() as p:
            assert p.rpush("ty:gone", "x") == 1
        assert c.read_reply().py() == [b"ty:gone", b"x"]
        wait_for(lambda: h.info("clients")["blocked_clients"] == 1, 20, desc="the second BLPOP to block")
        c.close()
        wait_for(lambda: h.info("clients")["blocked_clients"] == 0, 20,
                 desc="hot to forget the blocked command of a client that left")


def test_what_a_woken_pop_took_is_below_before_its_reply(make_stack, reference):
    """A BLPOP / BLMOVE that really blocks is woken by another client's push; once its reply is
    out, hot losing everything loses nothing: the lists below are what it left."""
    import threading
    s = make_stack("local")
    with Twin(s, reference, {0: ["ty:wait", "ty:wait2", "ty:dest"]}) as tw:
        for cmd in (["BLPOP", "ty:wait", "10"], ["BLMOVE", "ty:wait2", "ty:dest", "RIGHT", "LEFT", "10"]):
            t, r = tw.conn("blocked")
            got = {}
            th = threading.Thread(target=lambda: got.update(t=t.cmd(*cmd)), daemon=True)
            th.start()
            with s.hot() as h:
                wait_for(lambda: h.info("clients")["blocked_clients"] == 1, 20, desc=f"{cmd[0]} to block on hot")
            tw.send(["RPUSH", cmd[1], "x", "y", "z"], conn="pusher")
            th.join(20)
            assert not th.is_alive(), "the blocked command never answered"
            want = r.cmd(*cmd)
            assert got["t"].raw == want.raw, f"{cmd}: {got['t'].raw!r} != reference {want.raw!r}"
            tw.lose()
            tw.check(f"after {cmd[0]} woke")
