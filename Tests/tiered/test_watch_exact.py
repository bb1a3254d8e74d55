"""WATCH is exact through the proxy (issue 9). docs/semantics.md §12: whatever the proxy sends on a
client's connection while that client has watched keys, the client's EXEC aborts exactly when it
would on Redis directly (its own writes to a watched key, anyone else's write to one, FLUSHALL,
expiry) and commits otherwise; and a client cannot tell tierproxy from one Redis with unlimited
memory, so a watched key that lives only below behaves as if it were in memory.

Every case runs side by side with a real redis-server (twin.py): each reply byte-equal, RESP2 and
RESP3 (HELLO 3). Connection "a" watches; "b" is another client. ("lose",) makes the stack's hot
lose everything (a no-op on the reference), so the key then lives only below.

Fails today: a tiered write on the watching connection runs the proxy's own MULTI … EXEC, and that
EXEC clears the client's watches (own SET/EXPIRE/DEL/INCR commit instead of aborting); a watched key
that lives only below is not in hot, so another client's DEL/SET/FLUSHALL does not touch the watch.
"""

from __future__ import annotations

import time

import pytest

from tierstack import wait_for
from twin import Twin

X, Y = "wx:x", "wx:y"
WATCH = ("a", "WATCH", X)
TX = [("a", "MULTI"), ("a", "PING"), ("a", "EXEC")]          # EXEC: nil if aborted, [PONG] if not
SET_X = ("a", "SET", X, "0")
SCRIPT_SET = "return redis.call('SET', KEYS[1], ARGV[1])"
LIB = ("#!lua name=wxlib\nredis.register_function('wxset', function(keys, args) "
       "return redis.call('SET', keys[1], args[1]) end)")

CASES = {
    # the client's own write to the watched key: aborts
    "own SET": [SET_X, WATCH, ("a", "SET", X, "1"), *TX],
    "own EXPIRE": [SET_X, WATCH, ("a", "EXPIRE", X, "100"), *TX],
    "own DEL": [SET_X, WATCH, ("a", "DEL", X), *TX],
    "own INCR": [SET_X, WATCH, ("a", "INCR", X), *TX],
    "own MSET": [SET_X, WATCH, ("a", "MSET", Y, "1", X, "2"), *TX],
    "own RENAME onto it": [SET_X, ("a", "SET", Y, "y"), WATCH, ("a", "RENAME", Y, X), *TX],
    "own script writing it": [SET_X, WATCH, ("a", "EVAL", SCRIPT_SET, "1", X, "s"), *TX],
    "own FCALL writing it": [("a", "FUNCTION", "LOAD", "REPLACE", LIB), SET_X, WATCH,
                             ("a", "FCALL", "wxset", "1", X, "f"), *TX],
    "own SET of a key that lives below": [SET_X, ("lose",), WATCH, ("a", "SET", X, "1"), *TX],
    "own DEL of a key that lives below": [SET_X, ("lose",), WATCH, ("a", "DEL", X), *TX],
    # writes that change nothing, or change other keys: commit
    "own write to another key": [SET_X, WATCH, ("a", "SET", Y, "1"), *TX],
    "own INCR/DEL/EXPIRE/script on another key": [
        SET_X, WATCH, ("a", "INCR", Y), ("a", "EXPIRE", Y, "100"), ("a", "EVAL", SCRIPT_SET, "1", Y, "s"),
        ("a", "DEL", Y), *TX],
    "own SETNX that fails": [SET_X, WATCH, ("a", "SETNX", X, "2"), *TX],
    "own SET NX that fails": [SET_X, WATCH, ("a", "SET", X, "2", "NX"), *TX],
    "own DEL of a missing key": [WATCH, ("a", "DEL", X), *TX],
    "own read of a key that lives below": [SET_X, ("lose",), WATCH, ("a", "GET", X), ("a", "MULTI"),
                                           ("a", "SET", X, "2"), ("a", "EXEC"), ("a", "GET", X)],
    "write to another key, then MULTI": [SET_X, WATCH, ("a", "SET", Y, "1"), ("a", "MULTI"),
                                         ("a", "SET", X, "2"), ("a", "EXEC"), ("a", "GET", X)],
    # other clients
    "another client's SET": [SET_X, WATCH, ("b", "SET", X, "2"), *TX],
    "another client's write to another key": [SET_X, WATCH, ("b", "SET", Y, "2"), *TX],
    "another client's SET of a key that lives below": [SET_X, ("lose",), WATCH, ("b", "SET", X, "2"), *TX],
    "another client's DEL of a key that lives below": [SET_X, ("lose",), WATCH, ("b", "DEL", X), *TX],
    "another client's write to the second watched key": [
        SET_X, ("a", "WATCH", X, Y), ("b", "SET", Y, "2"), *TX],
    "another client's write in another db": [SET_X, WATCH, ("b", "SELECT", "1"), ("b", "SET", X, "9"), *TX],
    # FLUSHALL (tiers-allow-flush yes)
    "FLUSHALL by another client": [SET_X, WATCH, ("b", "FLUSHALL"), *TX],
    "FLUSHALL while the key lives below": [SET_X, ("lose",), WATCH, ("b", "FLUSHALL"), *TX],
    "FLUSHALL of a missing key": [WATCH, ("b", "FLUSHALL"), *TX],
    # the watch's lifetime
    "UNWATCH, then own writes": [SET_X, WATCH, ("a", "UNWATCH"), ("a", "SET", X, "1"), *TX],
    "DISCARD unwatches": [SET_X, WATCH, ("a", "MULTI"), ("a", "DISCARD"), ("b", "SET", X, "2"), *TX],
    "EXEC unwatches": [SET_X, WATCH, *TX, ("b", "SET", X, "2"), *TX],
    "WATCH inside MULTI": [SET_X, ("a", "MULTI"), WATCH, ("a", "EXEC")],
}


# The cases above whose (last) EXEC aborts on Redis; every other case's EXEC commits. Checked on
# the reference, so each case really tests what its name says.
ABORTS = {'own SET',
          'own EXPIRE',
          'own DEL',
          'own INCR',
          'own MSET',
          'own RENAME onto it',
          'own script writing it',
          'own FCALL writing it',
          'own SET of a key that lives below',
          'own DEL of a key that lives below',
          "another client's SET",
          "another client's SET of a key that lives below",
          "another client's DEL of a key that lives below",
          "another client's write to the second watched key",
          'FLUSHALL by another client',
          'FLUSHALL while the key lives below'}


def _run(tw: Twin, steps: list, pipelined: bool = False) -> list:
    if pipelined:
        assert all(s[0] == "a" for s in steps)
        return list(zip(steps, tw.send(*[list(s[1:]) for s in steps], conn="a")))
    out = []
    for st in steps:
        if st == ("lose",):
            tw.lose()
        else:
            out += zip([st], tw.send(list(st[1:]), conn=st[0]))
    return out


def last_exec(replies: list):
    return [r for st, r in replies if st[1:] == ("EXEC",)][-1]


def aborted(r) -> bool:
    return r.raw in (b"*-1\r\n", b"_\r\n")


@pytest.fixture
def stack_allowing_flush(make_stack, backend):
    return make_stack(backend, flags={"tiers-allow-flush": "yes"})


@pytest.mark.parametrize("resp", [2, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_watch_case_byte_equal(stack_allowing_flush, reference, case, resp):
    """docs/semantics.md §12 (WATCH stays exact): EXEC aborts exactly when Redis's would; see the case name."""
    with Twin(stack_allowing_flush, reference, keys={0: [X, Y]}, resp=resp) as tw:
        ex = last_exec(_run(tw, CASES[case]))
        tw.check("after the case")
    assert aborted(ex) == (case in ABORTS), f"the case itself is wrong: the reference's EXEC answered {ex.raw!r}"


@pytest.mark.parametrize("resp", [2, 3])
def test_watch_pipelined_in_one_write(stack_allowing_flush, reference, resp):
    """The same, with WATCH … EXEC pipelined in one write (no reply awaited in between)."""
    with Twin(stack_allowing_flush, reference, keys={0: [X, Y]}, resp=resp) as tw:
        _run(tw, [SET_X, WATCH, ("a", "SET", X, "1"), *TX], pipelined=True)
        _run(tw, [WATCH, ("a", "SET", Y, "1"), ("a", "MULTI"), ("a", "SET", X, "2"), ("a", "EXEC")],
             pipelined=True)
        _run(tw, [("lose",)])
        _run(tw, [WATCH, ("a", "GET", X), ("a", "INCR", Y), ("a", "MULTI"), ("a", "INCR", X), ("a", "EXEC")],
             pipelined=True)
        tw.check("after the pipelines")


@pytest.mark.parametrize("resp", [2, 3])
def test_watch_expiry_aborts(stack_allowing_flush, reference, resp):
    """docs/semantics.md §12 (WATCH stays exact): a watched key that expires before EXEC aborts it; one
    already expired when watched does not. The WATCH must happen before the expiry on both sides
    (checked with PTTL); if the machine was too slow for that, the case is repeated with a longer
    expiry (at most 3 times)."""
    with Twin(stack_allowing_flush, reference, keys={0: [X, Y]}, resp=resp) as tw:
        for px in (1500, 4000, 10000):
            tw.send(["SET", X, "v", "PX", str(px)], conn="a")
            t0 = time.time()
            tw.send(["WATCH", X], conn="a")
            t, r = tw.conn("a")
            before = [c.cmd("PTTL", X).v for c in (t, r)]
            if all(v > 0 for v in before):
                break
            tw.send(["UNWATCH"], conn="a")
        else:
            pytest.fail(f"WATCH never came before a {px} ms expiry: PTTL {before}")
        wait_for(lambda: time.time() > t0 + px / 1000 + 0.1, px / 1000 + 5, desc="the watched key's expiry")
        assert aborted(last_exec(_run(tw, TX)))         # expired since WATCH: aborts
        tw.send(["SET", X, "v", "PX", "1"], conn="b")
        tb, rb = tw.conn("b")
        wait_for(lambda: all(c.cmd("PTTL", X).v == -2 for c in (tb, rb)), 5, desc="the 1 ms expiry")
        assert not aborted(last_exec(_run(tw, [WATCH, *TX])))   # already expired when watched: commits
        tw.check("after the expiries")
