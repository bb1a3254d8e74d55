"""A command of one key brings it up inside its own transaction (docs/semantics.md §11, "Brought
up"): `MULTI; EXISTS k; command; captures; EXEC`, one round trip, instead of an `EXISTS` first.
When hot had lost the key, the command ran on nothing: the proxy puts the copy from below in its
place and runs the command again, and the client gets that reply, in its place. A request the
client pipelined behind it (a lock-free GET among them) must not see what the first run made of
nothing.
"""

from __future__ import annotations

import pytest

from tierstack import encode_command
from twin import Twin


def _replies(conn, *cmds):
    conn.send(b"".join(encode_command(*c) for c in cmds))
    return [conn.read_reply().raw for _ in cmds]


@pytest.mark.parametrize("loss", ["flushall", "del"])
def test_a_pipeline_behind_a_command_of_a_lost_key_sees_the_key_from_below(make_stack, backend, reference, loss):
    s = make_stack(backend)
    setup = [["SET", "fb:s", "as"], ["SET", "fb:n", "41"], ["HSET", "fb:h", "f", "5", "g", "1"],
             ["RPUSH", "fb:l", "a", "b"], ["ZADD", "fb:z", "1", "m"]]
    pipelines = [
        [["INCR", "fb:s"], ["GET", "fb:s"], ["APPEND", "fb:s", "!"], ["GET", "fb:s"]],
        [["INCR", "fb:n"], ["GET", "fb:n"], ["MGET", "fb:n", "fb:s"]],
        [["HINCRBY", "fb:h", "f", "1"], ["HGETALL", "fb:h"], ["HLEN", "fb:h"]],
        [["LPUSH", "fb:l", "z"], ["LRANGE", "fb:l", "0", "-1"], ["RPOP", "fb:l"], ["LLEN", "fb:l"]],
        [["ZINCRBY", "fb:z", "2", "m"], ["ZRANGE", "fb:z", "0", "-1", "WITHSCORES"]],
    ]
    keys = ["fb:s", "fb:n", "fb:h", "fb:l", "fb:z"]
    with Twin(s, reference, {0: keys}) as tw:
        for c in setup:
            tw.step(c)
        t, r = tw.conn("pipe")
        for cmds in pipelines:
            if s.tiered:
                if loss == "flushall":
                    s.lose_hot("flushall")
                else:
                    s.evict(*keys)
            got, want = _replies(t, *cmds), _replies(r, *cmds)
            assert got == want, f"{cmds}: {got} != reference {want}"
        tw.check("after the pipelines")


def test_a_command_of_a_key_hot_holds_costs_one_transaction_and_no_watch(make_stack, backend):
    s = make_stack(backend)
    if not s.tiered:
        pytest.skip("counts the proxy's requests to hot")
    with s.client() as c:
        c.hset("fb:one", "f", 1)
    with s.hot() as h:
        h.config_resetstat()
    with s.client() as c:
        for _ in range(20):
            c.hincrby("fb:one", "f", 1)
    with s.hot() as h:
        stats = h.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
    assert calls.get("hincrby") == 20 and calls.get("multi") == 20, calls
    assert "watch" not in calls, f"the bring-up was not folded into the transaction: {calls}"
    assert calls.get("exists") == 20, calls
