"""Keyspace commands see below (issue 10, `tiers-keyspace yes`, docs/semantics.md "Keyspace
commands"): SCAN, KEYS, DBSIZE and RANDOMKEY answer for the whole keyspace, hot and the lower
tiers, each key once.

The keyspace is spread over three tiers: `h:` keys in hot (and warm, write-through), `w:` keys
in warm only (deleted directly on hot: what eviction does), `c:` keys in cold only (a `tier cold`
rule, deleted on hot), plus hashes and lists in each tier for TYPE. A reference redis-server gets
every write and never loses anything: what it answers is what the proxy must answer.

Before a scan the keyspace is left quiet until hot has not touched any key for a few seconds
(waited for with OBJECT IDLETIME, not slept): a key hot has held untouched since before the scan
began is the one the lower phase leaves out as already returned (KeyspaceScan).
"""

from __future__ import annotations

import random
import subprocess
import threading
import time

import pytest
import redis

from tierstack import RawConn, encode_command, wait_for

COLD_RULE = "c:* policy write-through tier cold"


def fill(stack, reference, n: int, db: int = 0) -> None:
    """n keys over the three tiers (a tenth of them hashes or lists), in both servers."""
    spots = ("h", "w", "c")
    with stack.client(db) as p, redis.Redis(port=reference.port, db=db) as r:
        for target in (p, r):
            pipe = target.pipeline(transaction=False)
            for i in range(n):
                key = f"{spots[i % 3]}:{i}"
                if i % 10 == 1:
                    pipe.hset(key, mapping={"f": i})
                elif i % 10 == 2:
                    pipe.rpush(key, i, i + 1)
                else:
                    pipe.set(key, i)
                if len(pipe) >= 1000:
                    pipe.execute()
            pipe.execute()
    if stack.tiered:
        below = [f"{spots[i % 3]}:{i}" for i in range(n) if i % 3]
        with stack.hot(db) as h:
            for start in range(0, len(below), 1000):
                h.delete(*below[start:start + 1000])


def quiet(stack, seconds: int = 4, db: int = 0) -> None:
    """Waits until hot has left its keys untouched for `seconds` (the newest key's idle time)."""
    if not stack.tiered:
        return
    with stack.hot(db) as h:
        newest = min((k for k in h.scan_iter(count=1000)), key=lambda k: h.object("idletime", k), default=None)
        if newest is not None:
            wait_for(lambda: h.object("idletime", newest) >= seconds, seconds + 30, desc="a quiet hot keyspace")


def expected(reference, match: str = "*", type_: str | None = None, db: int = 0) -> set:
    with redis.Redis(port=reference.port, db=db) as r:
        return set(r.scan_iter(match=match, count=1000, _type=type_))


def full_scan(client, **kw) -> list:
    return list(client.scan_iter(**kw))


def test_scan_returns_each_key_once_over_three_tiers(make_stack, backend, reference):
    """20 000 keys on the embedded tiers; 4000 on the emulated Azure tiers (their Python
    emulators serve a page in milliseconds, and a COUNT 10 walk is hundreds of pages)."""
    s = make_stack(backend, rules=(COLD_RULE,))
    fill(s, reference, 20000 if backend == "local" else 4000)
    if s.tiered:
        assert s.warm.live_keys(0) and s.cold.live_keys(0), "keys were placed below"
    quiet(s)
    with s.client() as c:
        for count, kw in ((1000, {}), (97, {}), (10, {"match": "w:1*"}), (97, {"match": "c:*", "_type": "hash"}),
                          (10, {"_type": "list"}), (1000, {"_type": "string"}), (1000, {"_type": "stream"})):
            got = full_scan(c, count=count, **kw)
            want = expected(reference, kw.get("match", "*"), kw.get("_type"))
            assert len(got) == len(set(got)), f"SCAN {kw} COUNT {count}: {len(got) - len(set(got))} duplicates"
            assert set(got) == want, f"SCAN {kw} COUNT {count}: missing {list(want - set(got))[:5]}, extra {list(set(got) - want)[:5]}"


def test_redis_cli_scan_and_keys_dbsize(make_stack, backend, reference):
    s = make_stack(backend, rules=(COLD_RULE,))
    fill(s, reference, 20000 if backend == "local" else 4000)
    quiet(s)
    for pattern in ("*", "c:2*"):
        out = subprocess.run(["redis-cli", "-p", str(s.port), "--scan", "--pattern", pattern],
                             capture_output=True, check=True, timeout=300).stdout.split(b"\n")
        got = [k for k in out if k]
        assert len(got) == len(set(got)), f"redis-cli --scan --pattern {pattern}: duplicates"
        assert set(got) == expected(reference, pattern), f"redis-cli --scan --pattern {pattern}"
    with s.client() as c, redis.Redis(port=reference.port) as r:
        assert c.dbsize() == r.dbsize()
        for pattern in ("*", "w:1?", "[hc]:12*"):
            got = c.keys(pattern)
            assert len(got) == len(set(got)) and set(got) == set(r.keys(pattern)), f"KEYS {pattern}"


def test_other_databases_and_expired_keys_are_not_listed(make_stack, backend, reference):
    s = make_stack(backend, rules=(COLD_RULE,))
    fill(s, reference, 300, db=0)
    fill(s, reference, 90, db=3)
    with s.client() as c, redis.Redis(port=reference.port) as r:
        for target in (c, r):
            target.set("w:soon", "x", px=1500)
            target.set("c:soon", "x", px=1500)
    s.evict("w:soon", "c:soon")
    deadline = time.time() + 1.6
    wait_for(lambda: time.time() > deadline, 5, desc="the short expiries to pass")
    quiet(s)
    with s.client() as c, s.client(3) as c3, redis.Redis(port=reference.port) as r:
        got = full_scan(c, count=50)
        assert len(got) == len(set(got)) and set(got) == expected(reference)
        assert b"w:soon" not in got and b"c:soon" not in got
        assert set(full_scan(c3, count=50)) == expected(reference, db=3)
        assert c.dbsize() == r.dbsize() == 300
        assert c3.dbsize() == 90


@pytest.mark.tiers_only
def test_randomkey_answers_a_key_from_below_when_hot_is_empty(make_stack, backend, reference):
    s = make_stack(backend, rules=(COLD_RULE,))
    fill(s, reference, 30)
    with s.hot() as h:
        h.flushall()
    with s.client() as c:
        key = c.randomkey()
        assert key in expected(reference), f"RANDOMKEY gave {key!r}"
        assert c.exists(key) == 1
        c.execute_command("TIERS", "CONFIG", "SET", "tiers-keyspace", "no")
        assert c.execute_command("TIERS", "CONFIG", "GET", "tiers-keyspace") in ([b"tiers-keyspace", b"no"], {b"tiers-keyspace": b"no"})
    with s.hot() as h:
        h.flushall()
    with s.client() as c:
        assert c.randomkey() is None


@pytest.mark.tiers_only
def test_tiers_keyspace_no_answers_what_hot_holds(make_stack, backend, reference):
    s = make_stack(backend, rules=(COLD_RULE,), flags={"tiers-keyspace": "no"})
    fill(s, reference, 600)
    with s.client() as c, s.hot() as h:
        assert set(full_scan(c, count=20)) == set(h.scan_iter(count=1000))
        assert c.dbsize() == h.dbsize() == 200
        assert set(c.keys("*")) == set(h.keys("*"))
        c.execute_command("TIERS", "CONFIG", "SET", "tiers-keyspace", "yes")
        assert c.dbsize() == 600


def test_scan_during_writes_and_deletes_returns_every_stable_key(make_stack, backend, reference):
    """Other clients create and delete `churn:` keys (in hot and below) while the scan runs:
    every key present throughout is returned."""
    s = make_stack(backend, rules=(COLD_RULE, "churnc:* policy write-through tier cold"))
    fill(s, reference, 3000)
    quiet(s)
    stop = threading.Event()
    errors: list = []

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with s.client() as c:
                i = 0
                while not stop.is_set():
                    prefix = rng.choice(("churn", "churnc"))
                    c.set(f"{prefix}:{seed}:{i}", i)
                    if i and rng.random() < 0.5:
                        c.delete(f"{prefix}:{seed}:{rng.randrange(i)}")
                    if rng.random() < 0.3:
                        s.evict(f"{prefix}:{seed}:{i}")
                    i += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    try:
        with s.client() as c:
            got = [k for k in full_scan(c, count=25) if not k.startswith(b"churn")]
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert set(got) == expected(reference), "a stable key was missed"


@pytest.mark.tiers_only
def test_cursor_errors_pipelining_and_multi(make_stack, backend, reference):
    s = make_stack(backend, rules=(COLD_RULE,))
    fill(s, reference, 60)
    quiet(s)
    with RawConn(s.port) as p, RawConn(reference.port) as r:
        for argv in (("SCAN", "abc"), ("SCAN", "-"), ("SCAN", "18446744073709551616"), ("SCAN", "0", "COUNT", "0"),
                     ("SCAN", "0", "COUNT", "x"), ("SCAN", "0", "MATCH"), ("SCAN", "0", "BOGUS", "1"), ("KEYS",),
                     ("DBSIZE", "x")):
            assert p.cmd(*argv).raw == r.cmd(*argv).raw, argv
        # The lower phase's cursor with bad options: Redis's own errors too.
        cursor = b"0"
        while True:
            reply = p.cmd("SCAN", cursor, "COUNT", 100).v
            cursor = reply[0].v
            if int(cursor) >= 1 << 63 or cursor == b"0":
                break
        assert int(cursor) >= 1 << 63, "hot's phase ends in a lower-phase cursor"
        for argv in (("COUNT", "0"), ("COUNT", "x"), ("MATCH",), ("BOGUS", "1")):
            assert p.cmd("SCAN", cursor, *argv).raw == r.cmd("SCAN", "0", *argv).raw, argv
        # Pipelined: SCANs between other commands answer in order, and a full walk is whole.
        p.send(b"".join(encode_command("PING") + encode_command("SCAN", c, "COUNT", 1000) + encode_command("ECHO", c)
                        for c in (b"0", cursor)))
        replies = p.read_replies(6)
        assert [x.raw for x in replies[0::3]] == [b"+PONG\r\n"] * 2
        assert [x.v for x in replies[2::3]] == [b"0", cursor]
        assert int(replies[1].v[0].v) != 0 and int(replies[4].v[0].v) != int(cursor)
        # Inside MULTI, SCAN runs on hot, as queued: hot's cursor and hot's keys.
        assert p.cmd("MULTI").raw == b"+OK\r\n"
        assert p.cmd("SCAN", "0", "COUNT", "1000").raw == b"+QUEUED\r\n"
        exec_reply = p.cmd("EXEC").v
        with s.hot() as h:
            assert {k.v for k in exec_reply[0].v[1].v} <= set(h.keys("*"))
    with s.client() as c:
        # A cursor this process did not issue restarts the lower phase: nothing is missed.
        got = []
        cur = (1 << 63) | 12345
        while True:
            cur, keys = c.scan(cur, count=100)
            got += keys
            if cur == 0:
                break
        below = {k for k in expected(reference) if not k.startswith(b"h:")}
        assert below <= set(got)


@pytest.mark.tiers_only
def test_cursor_after_a_proxy_restart_still_covers_every_key_below(make_stack, reference):
    s = make_stack("local", rules=(COLD_RULE,))
    fill(s, reference, 900)
    quiet(s)
    with s.client() as c:
        cur, first = c.scan(0, count=10000)
        assert cur >= 1 << 63
        cur, more = c.scan(cur, count=50)
    s.restart_proxy()
    got = set(first) | set(more)
    with s.client() as c:
        while cur != 0:
            cur, keys = c.scan(cur, count=50)
            got |= set(keys)
    assert got == expected(reference)


@pytest.mark.tiers_only
def test_a_tracking_client_is_not_sent_invalidations_for_keys_its_scan_probed(make_stack, reference):
    """The lower phase asks hot about each listed key; for a client with CLIENT TRACKING on that
    must not happen on its own connection, or Redis would track keys the client never read."""
    s = make_stack("local", rules=(COLD_RULE,))
    fill(s, reference, 30)
    with s.client() as c:
        c.set("h:probed", "in hot and warm")
    with RawConn(s.port) as t:
        assert t.cmd("HELLO", "3").t == "%"
        assert t.cmd("CLIENT", "TRACKING", "on").raw == b"+OK\r\n"
        quiet(s)
        seen, cursor = set(), b"0"
        while True:
            reply = t.cmd("SCAN", cursor, "COUNT", 1000)
            cursor, keys = reply.v[0].v, reply.v[1].v
            seen |= {k.v for k in keys}
            assert t.cmd("DBSIZE").v == 31
            if cursor == b"0":
                break
        assert b"h:probed" in seen and b"w:1" in seen
        assert t.cmd("GET", "sentinel").t in "$_"
        with s.client() as c:
            c.set("h:probed", "changed")       # the lower phase probed it (it is also in warm)
            c.set("sentinel", "x")
        push = t.read_reply(timeout=10)
        assert push.t == ">" and [x.v for x in push.v[1].v] == [b"sentinel"], f"first invalidation: {push!r}"


@pytest.mark.tiers_only
def test_a_key_in_warm_and_cold_is_returned_once(make_stack, backend, reference):
    """A key read up from cold into warm (its rule now says warm) keeps its cold copy: the scan
    lists it in warm and leaves it out of cold's page."""
    s = make_stack(backend, rules=(COLD_RULE,))
    fill(s, reference, 90)
    with s.client() as c:
        assert c.execute_command("TIERS", "CONFIG", "SET", "rules", "") in (b"OK", "OK", True)
        copied = [f"c:{i}" for i in range(2, 90, 3) if i % 10 not in (1, 2)][:10]
        for key in copied:
            assert c.get(key) is not None
    s.evict(*copied)
    for key in copied:
        wait_for(lambda: s.warm.get(key) is not None, 10, desc=f"{key} copied up to warm")
        assert s.cold.get(key) is not None, f"{key} kept its cold copy"
    quiet(s)
    with s.client() as c:
        for count in (5, 1000):
            got = full_scan(c, count=count)
            assert len(got) == len(set(got)), f"COUNT {count}: duplicates {[k for k in got if got.count(k) > 1][:5]}"
            assert set(got) == expected(reference)
