"""The write rule (issue 9), command by command: every command the upstream's COMMAND reply flags
`write` keeps the lower tiers true, and the keys a command reads (its sources, and the type of its
destination) are brought up first: docs/semantics.md §11 (the rule, not a list; SORT STORE, MOVE,
SWAPDB by name), §1 (keys read are brought up), §4 (deletes and overwrites with another type reach
every tier), §9 (nothing older comes back), §13 (a key that becomes a non-string type has its
string copy deleted below).

Each scenario runs side by side with a reference redis-server (twin.py): every reply byte-equal,
and between every two steps the stack's hot loses everything (direct FLUSHALL, real maxmemory
eviction, or a direct DEL of the scenario's keys), after which every key must read as on the
reference. A step never reads a non-string key an earlier step made (hot may have lost it: not
tiered yet). Fails today wherever a command reaches hot only: the older string comes back from
warm, or hot answers without the key's real type (a write onto a string that lives below).
"""

from __future__ import annotations

import pytest
import redis

from twin import LOSSES, run_scenario

SCENARIOS = {}


def scenario(*keys, db1=()):
    def wrap(fn):
        SCENARIOS[fn.__name__] = (fn, {0: list(keys), 1: list(db1)})
        return fn
    return wrap


@scenario("so:src", "so:dst", "so:dst2", "so:none")
def sort_store(tw):
    """SORT … STORE onto a string that lives below (it becomes a list), and from a missing key
    (the destination is deleted)."""
    tw.step(["SET", "so:dst", "old"], ["SET", "so:dst2", "old2"])
    tw.step(["RPUSH", "so:src", "3", "1", "2"], ["SORT", "so:src", "STORE", "so:dst"])
    tw.step(["SORT", "so:none", "STORE", "so:dst2"])


@scenario("bo:a", "bo:b", "bo:and", "bo:not", "bo:gone")
def bitop(tw):
    """BITOP over sources that live only below (brought up first), and onto a destination that
    lives below: an empty result deletes it."""
    tw.step(["SET", "bo:a", b"\xff\x0f\x33"], ["SET", "bo:b", b"\x0f"], ["SET", "bo:gone", "old"])
    tw.step(["BITOP", "AND", "bo:and", "bo:a", "bo:b"])
    tw.step(["BITOP", "OR", "bo:and", "bo:a", "bo:and"])
    tw.step(["BITOP", "NOT", "bo:not", "bo:a"])
    tw.step(["BITOP", "XOR", "bo:gone", "bo:missing1", "bo:missing2"])


@scenario("sb:k", "sb:new", "sb:bf")
def setbit_on_a_key_in_warm(tw):
    """SETBIT/BITFIELD on keys that live in warm modify their value (the key is brought up),
    GETBIT/BITCOUNT read it, and the result reaches the lower tiers."""
    tw.step(["SET", "sb:k", "a"], ["SET", "sb:bf", "xyz", "EX", "1000"])
    tw.step(["SETBIT", "sb:k", "6", "1"])
    tw.step(["GETBIT", "sb:k", "6"], ["BITCOUNT", "sb:k"])
    tw.step(["SETBIT", "sb:k", "30", "1"])
    tw.step(["SETBIT", "sb:new", "100", "1"])
    tw.step(["BITFIELD", "sb:bf", "SET", "u8", "0", "255", "INCRBY", "u8", "8", "1"])


@scenario("mv:k", "mv:both", db1=("mv:k", "mv:both"))
def move(tw):
    """MOVE of a key that lives only below, to db 1 and back; MOVE onto an existing key does nothing."""
    tw.step(["SET", "mv:k", "v", "EX", "1000"], ["SET", "mv:both", "zero"])
    tw.step(["MOVE", "mv:k", "1"])
    tw.step(["SELECT", "1"], ["SET", "mv:both", "one"], ["SELECT", "0"])
    tw.step(["MOVE", "mv:both", "1"])
    tw.step(["SELECT", "1"], ["MOVE", "mv:k", "0"], ["SELECT", "0"])
    tw.step(["GET", "mv:k"])


@scenario("sw:a", "sw:zero", db1=("sw:a", "sw:one"))
def swapdb(tw):
    """SWAPDB with tiers-allow-flush yes swaps the dbs in every tier, keys below included."""
    tw.step(["SET", "sw:a", "a0"], ["SET", "sw:zero", "z"], ["SELECT", "1"], ["SET", "sw:a", "a1"],
            ["SET", "sw:one", "o", "EX", "1000"], ["SELECT", "0"])
    tw.step(["SWAPDB", "0", "1"])
    tw.step(["SET", "sw:a", "after"])
    tw.step(["SWAPDB", "1", "0"])


@scenario("rn:src", "rn:dst", "rn:h", "rn:dst2")
def rename_over_a_key_below(tw):
    """RENAME over a key that lives only below: the new value wins; a hash renamed over a string
    below deletes the string copy."""
    tw.step(["SET", "rn:dst", "old"], ["SET", "rn:dst2", "old2"])
    tw.step(["SET", "rn:src", "new"], ["RENAME", "rn:src", "rn:dst"])
    tw.step(["HSET", "rn:h", "f", "v"], ["RENAME", "rn:h", "rn:dst2"])


@scenario("st:s1", "st:d", "st:d2", "st:d3")
def setstore_empty_result(tw):
    """SDIFFSTORE/SUNIONSTORE/SINTERSTORE with an empty result delete a destination that had a
    string copy below; a non-empty one turns it into a set."""
    tw.step(["SET", "st:d", "old"], ["SET", "st:d2", "old2"], ["SET", "st:d3", "old3"])
    tw.step(["SADD", "st:s1", "a"], ["SDIFFSTORE", "st:d", "st:s1", "st:s1"])
    tw.step(["SUNIONSTORE", "st:d2", "st:none1", "st:none2"])
    tw.step(["SADD", "st:s2", "b"], ["SINTERSTORE", "st:d3", "st:s2"], ["DEL", "st:s2"])


@scenario("zs:d", "zs:d2")
def zstore_destinations(tw):
    """ZUNIONSTORE/ZRANGESTORE destinations that were strings below."""
    tw.step(["SET", "zs:d", "old"], ["SET", "zs:d2", "old2"])
    tw.step(["ZUNIONSTORE", "zs:d", "1", "zs:none"])
    tw.step(["ZADD", "zs:src", "1", "m"], ["ZRANGESTORE", "zs:d2", "zs:src", "0", "-1"], ["DEL", "zs:src"])


@scenario("ty:k", "ty:k2")
def string_becomes_a_hash(tw):
    """DEL k + HSET k after SET k: the old string never comes back; the next SET is a string again."""
    tw.step(["SET", "ty:k", "str"], ["SET", "ty:k2", "str2", "EX", "1000"])
    tw.step(["DEL", "ty:k"], ["HSET", "ty:k", "f", "v"])
    tw.step(["UNLINK", "ty:k2"], ["RPUSH", "ty:k2", "x"])
    tw.step(["SET", "ty:k", "again"])


@scenario("wt:h", "wt:s", "wt:l", "wt:z", "wt:x", "wt:ld")
def writes_onto_a_string_below_see_its_type(tw):
    """A write to a key that lives only below meets the key's real type (WRONGTYPE like Redis),
    and the string stays."""
    tw.step(*[["SET", k, "old"] for k in ("wt:h", "wt:s", "wt:l", "wt:z", "wt:x", "wt:ld")])
    tw.step(["HSET", "wt:h", "f", "v"], ["SADD", "wt:s", "m"], ["LPUSH", "wt:l", "e"],
            ["ZADD", "wt:z", "1", "m"], ["XADD", "wt:x", "1-1", "f", "v"])
    tw.step(["RPUSH", "wt:src", "e"], ["LMOVE", "wt:src", "wt:ld", "LEFT", "RIGHT"],
            ["RPOPLPUSH", "wt:src", "wt:ld"], ["DEL", "wt:src"])


@scenario("ot:geo", "ot:hll", "ot:hll2", "ot:x", "ot:ld")
def other_write_commands(tw):
    """GEOADD, PFADD/PFMERGE (an HLL is a string: tiered), XADD, LMOVE onto keys that had a string
    copy below, after DEL. PFCOUNT only last: it rewrites the HLL's cached cardinality in place
    (Redis flags it may-replicate, not write), so the bytes GET reads would differ from then on
    while the count does not."""
    tw.step(*[["SET", k, "old"] for k in ("ot:geo", "ot:x", "ot:ld")], ["PFADD", "ot:hll", "a", "b"])
    tw.step(["DEL", "ot:geo"], ["GEOADD", "ot:geo", "13.361389", "38.115556", "Palermo"])
    tw.step(["PFADD", "ot:hll", "c"])
    tw.step(["PFMERGE", "ot:hll2", "ot:hll"])
    tw.step(["DEL", "ot:x"], ["XADD", "ot:x", "1-1", "f", "v"])
    tw.step(["DEL", "ot:ld"], ["RPUSH", "ot:src", "e"], ["LMOVE", "ot:src", "ot:ld", "LEFT", "RIGHT"])
    tw.send(["PFCOUNT", "ot:hll"], ["PFCOUNT", "ot:hll2"], ["PFCOUNT", "ot:hll", "ot:hll2"])


@scenario("rs:s", "rs:busy", "rs:h")
def restore(tw):
    """RESTORE … REPLACE of a string over a string below reaches below; without REPLACE a key that
    lives below is BUSYKEY; a hash restored over a string below deletes the string copy."""
    with redis.Redis(port=tw.ref.port) as r:
        r.set("rs:tmp", "restored")
        s_payload = r.dump("rs:tmp")
        r.delete("rs:tmp")
        r.hset("rs:tmp", "f", "v")
        h_payload = r.dump("rs:tmp")
        r.delete("rs:tmp")
    tw.step(["SET", "rs:s", "old"], ["SET", "rs:busy", "kept"], ["SET", "rs:h", "old"])
    tw.step(["RESTORE", "rs:s", "0", s_payload, "REPLACE"])
    tw.step(["RESTORE", "rs:busy", "0", s_payload])
    tw.step(["RESTORE", "rs:h", "0", h_payload, "REPLACE"])


@scenario("cs:k", "cs:copy", "cs:h", "cs:hd", "cs:gd")
def copy_setrange_getdel(tw):
    """COPY of a hash over a string below (REPLACE), SETRANGE and GETDEL on keys below."""
    tw.step(["SET", "cs:k", "hello"], ["SET", "cs:hd", "old"], ["SET", "cs:gd", "v"])
    tw.step(["SETRANGE", "cs:k", "1", "EY"], ["COPY", "cs:k", "cs:copy"])
    tw.step(["HSET", "cs:h", "f", "v"], ["COPY", "cs:h", "cs:hd", "REPLACE"])
    tw.step(["GETDEL", "cs:gd"])
    tw.step(["SETRANGE", "cs:copy", "10", "!"])


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_write_command_keeps_lower_tiers_true(make_stack, backend, reference, name, loss):
    """docs/semantics.md §11: every write keeps the lower tiers true; see the scenario's docstring."""
    fn, keys = SCENARIOS[name]
    run_scenario(make_stack, backend, reference, fn, keys, loss)
