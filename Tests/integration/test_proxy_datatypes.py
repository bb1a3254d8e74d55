"""Every Redis data type through the proxy gives what Redis gives directly; big pipelines
and a 100 MB value."""

from __future__ import annotations

import hashlib
import os

import pytest
import redis


def scenario_strings(r):
    return [r.set("s", "v1"), r.get("s"), r.append("s", "+x"), r.strlen("s"), r.getrange("s", 1, 3),
            r.setrange("s", 0, "V"), r.incr("n"), r.incrby("n", 41), r.incrbyfloat("f", 1.5),
            r.decr("n"), r.mset({"a": "1", "b": "2"}), r.mget("a", "b", "nope"),
            r.setnx("a", "x"), r.getset("a", "new"), r.getdel("b"), r.set("e", "x", ex=100),
            r.ttl("e"), r.persist("e"), r.ttl("e"), r.set("bin", bytes(range(256))), r.get("bin"),
            r.lcs("a", "s"), r.type("s"), r.exists("a", "b", "s")]


def scenario_lists(r):
    return [r.rpush("l", *"abcdef"), r.lpush("l", "z"), r.lrange("l", 0, -1), r.lpop("l"),
            r.rpop("l", 2), r.lindex("l", 1), r.linsert("l", "BEFORE", "c", "bb"), r.llen("l"),
            r.lset("l", 0, "A"), r.lrem("l", 1, "bb"), r.ltrim("l", 0, 2), r.lrange("l", 0, -1),
            r.lpos("l", "c"), r.lmove("l", "l2", "LEFT", "RIGHT"), r.rpoplpush("l", "l2"),
            r.lrange("l2", 0, -1), r.lmpop(2, "nope", "l2", direction="LEFT", count=5), r.type("l")]


def scenario_sets(r):
    return [r.sadd("S", *"abcde"), r.sadd("T", *"defg"), sorted(r.smembers("S")),
            r.sismember("S", "a"), r.smismember("S", ["a", "q"]), r.scard("S"),
            sorted(r.sinter("S", "T")), sorted(r.sunion("S", "T")), sorted(r.sdiff("S", "T")),
            r.sinterstore("I", ["S", "T"]), r.sintercard(2, ["S", "T"]), r.srem("S", "a", "zz"),
            r.smove("S", "T", "b"), sorted(r.smembers("T")), r.sadd("ints", 1, 2, 3),
            sorted(r.smembers("ints")), r.type("S")]


def scenario_zsets(r):
    return [r.zadd("z", {"a": 1, "b": 2.5, "c": -3, "d": 1e10}), r.zrange("z", 0, -1, withscores=True),
            r.zrevrange("z", 0, 1), r.zscore("z", "b"), r.zincrby("z", 0.25, "b"), r.zrank("z", "b"),
            r.zrangebyscore("z", 0, 10, withscores=True), r.zcount("z", "-inf", "+inf"),
            r.zadd("z2", {"a": 10, "x": 1}), r.zunionstore("u", ["z", "z2"]),
            r.zrange("u", 0, -1, withscores=True), r.zinter(["z", "z2"], withscores=True),
            r.zpopmin("z"), r.zpopmax("z"), r.zmscore("z", ["a", "nope"]),
            r.zrangebylex("lex", "-", "+"), r.zadd("lex", {"aa": 0, "ab": 0, "b": 0}),
            r.zrangebylex("lex", "[a", "(b"), r.zremrangebyscore("z", 0, 2), r.zcard("z"), r.type("z")]


def scenario_hashes(r):
    return [r.hset("h", mapping={"f1": "v1", "f2": "2", "f3": "x"}), r.hget("h", "f1"),
            sorted(r.hgetall("h").items()), r.hmget("h", ["f1", "nope"]), r.hincrby("h", "f2", 40),
            r.hincrbyfloat("h", "fl", 0.5), r.hexists("h", "f3"), r.hdel("h", "f3"), r.hlen("h"),
            sorted(r.hkeys("h")), sorted(r.hvals("h")), r.hsetnx("h", "f1", "no"), r.hstrlen("h", "f1"),
            r.hscan("h", 0, count=100)[1] and sorted(r.hscan("h", 0, count=100)[1].items()),
            r.type("h")]


def scenario_streams(r):
    out = [r.xadd("st", {"a": "1"}, id="1-1"), r.xadd("st", {"b": "2"}, id="1-2"),
           r.xadd("st", {"c": "3"}, id="2-0"), r.xlen("st"), r.xrange("st"), r.xrevrange("st", count=1),
           r.xread({"st": "1-1"}), r.xgroup_create("st", "g", id="0"),
           r.xreadgroup("g", "c1", {"st": ">"}, count=2), r.xack("st", "g", "1-1"),
           r.xpending("st", "g"), r.xclaim("st", "g", "c2", 0, ["1-2"]),
           r.xautoclaim("st", "g", "c3", 0, "0-0")[:2], r.xdel("st", "1-1"),
           r.xtrim("st", maxlen=1), r.xrange("st"), r.type("st")]
    info = r.xinfo_stream("st")
    out.append({k: info[k] for k in ("length", "last-generated-id", "first-entry", "last-entry")})
    return out


def scenario_hll_bitmaps_geo(r):
    return [r.pfadd("hll", *[f"e{i}" for i in range(1000)]), r.pfcount("hll"),
            r.pfadd("hll2", "x", "e1"), r.pfmerge("hllm", "hll", "hll2"), r.pfcount("hllm"),
            r.setbit("bm", 7, 1), r.setbit("bm", 100, 1), r.getbit("bm", 7), r.getbit("bm", 8),
            r.bitcount("bm"), r.bitpos("bm", 1), r.set("bm2", b"\xff\x00"),
            r.bitop("AND", "bm3", "bm", "bm2"), r.get("bm3"),
            r.bitfield("bf").set("u8", 0, 200).incrby("u8", 0, 100).get("i16", 0).execute(),
            r.geoadd("geo", [13.361389, 38.115556, "Palermo", 15.087269, 37.502669, "Catania"]),
            r.geodist("geo", "Palermo", "Catania", unit="km"), r.geohash("geo", "Palermo"),
            r.geopos("geo", "Palermo", "nope"),
            r.geosearch("geo", longitude=15, latitude=37, radius=200, unit="km", withdist=True,
                        withcoord=True, sort="ASC"),
            r.type("hll"), r.type("geo")]


def scenario_keyspace(r):
    r.mset({"k1": "a", "k2": "b", "k3": "c"})
    return [sorted(r.keys("k*")), r.rename("k1", "kk"), r.renamenx("k2", "kk"), r.copy("kk", "kc"),
            r.expire("kc", 100), r.ttl("kc"), r.pexpire("kc", 50000) and r.pttl("kc") > 40000,
            r.unlink("k3", "nope"), r.dbsize(), r.object("encoding", "kk"),
            sorted(r.scan_iter(match="k*", count=2)), r.touch("kk", "nope"),
            r.sort("sortme") if r.rpush("sortme", 3, 1, 2) else None]


SCENARIOS = [scenario_strings, scenario_lists, scenario_sets, scenario_zsets, scenario_hashes,
             scenario_streams, scenario_hll_bitmaps_geo, scenario_keyspace]


def snapshot(direct: redis.Redis) -> dict:
    """Every key's type, DUMP payload and TTL presence: the state the scenario left behind.
    (Streams: entries and groups instead of DUMP, which embeds delivery times.)"""
    def content(k):
        if direct.type(k) == b"stream":
            return direct.xrange(k), direct.xinfo_groups(k)
        return direct.dump(k)
    return {k: (direct.type(k), content(k), direct.ttl(k) > 0) for k in sorted(direct.keys())}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__.removeprefix("scenario_"))
def test_data_type_results_equal_direct(scenario, proxy, direct, via):
    want = scenario(direct)
    want_state = snapshot(direct)
    direct.flushall()
    got = scenario(via)
    assert got == want
    assert snapshot(direct) == want_state


@pytest.mark.parametrize("protocol", [2, 3])
def test_data_types_with_hiredis_parser_and_resp(proxy, redis_server, protocol):
    """Same scenarios with redis-py's RESP3 mode: parsed values equal direct."""
    d = redis_server.client(protocol=protocol)
    p = proxy.client(protocol=protocol)
    for scenario in (scenario_hashes, scenario_zsets, scenario_sets, scenario_streams):
        d.flushall()
        want = scenario(d)
        d.flushall()
        assert scenario(p) == want, scenario.__name__


def test_pipeline_100k_commands_in_order(proxy, direct, via):
    n = 50_000
    pipe = via.pipeline(transaction=False)
    for i in range(n):
        pipe.incr("ctr")
        pipe.echo(str(i))
    res = pipe.execute()
    assert len(res) == 2 * n
    assert res[0::2] == list(range(1, n + 1))
    assert res[1::2] == [str(i).encode() for i in range(n)]
    assert direct.get("ctr") == str(n).encode()


def test_raw_pipeline_single_write(proxy):
    """100k commands in one write, read back as a stream: every reply, in order."""
    n = 100_000
    with proxy.raw(timeout=60) as c:
        c.send(b"".join(b"*2\r\n$4\r\nINCR\r\n$3\r\nctr\r\n" for _ in range(n)))
        replies = c.read_replies(n, timeout=60)
    assert [r.v for r in replies] == list(range(1, n + 1))


def test_100mb_value_round_trip(proxy, direct, via):
    size = 100 * 1024 * 1024
    value = os.urandom(1024) * (size // 1024)
    value = b"head" + value[4:-4] + b"tail"
    assert via.set("big", value) is True
    assert direct.strlen("big") == size
    got = via.get("big")
    assert len(got) == size
    assert hashlib.sha256(got).digest() == hashlib.sha256(value).digest()
    assert via.getrange("big", size - 4, -1) == b"tail"
    assert via.delete("big") == 1
