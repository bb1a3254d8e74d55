"""Blocking commands on keys that live only below (issue 10, docs/semantics.md §13 "Blocking
commands"): BLPOP, BRPOP, BRPOPLPUSH, BLMOVE, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP, XREAD … BLOCK
and XREADGROUP … BLOCK bring their keys up first, then run on hot as Redis runs them: they return
at once when the key has data (byte-equal to a reference redis-server that never lost anything),
else block until another client's write wakes them. What a blocking write took is below before
its reply goes out, so a popped element never comes back. A client that leaves while blocked
leaves nothing blocked on hot.

Against the proxy before this change (blocking commands sent with nothing brought up) every
"returns at once" case fails: the command blocks on the empty hot and answers nil at its
timeout, while the reference answers the data.
"""

from __future__ import annotations

import random
import threading

import pytest

from tierstack import encode_command, wait_for
from twin import Twin

LOSSES = ("del", "flushall")

# Each family: the writes that give its keys data, then the blocking command (it must not block).
FAMILIES = {
    "blpop": ([["RPUSH", "bk:l", "a", "b", "c"]], ["BLPOP", "bk:none", "bk:l", "10"]),
    "brpop": ([["RPUSH", "bk:l", "a", "b", "c"]], ["BRPOP", "bk:l", "10"]),
    "brpoplpush": ([["RPUSH", "bk:l", "a", "b"], ["RPUSH", "bk:l2", "z"]], ["BRPOPLPUSH", "bk:l", "bk:l2", "10"]),
    "blmove": ([["RPUSH", "bk:l", "a", "b"], ["RPUSH", "bk:l2", "z"]],
               ["BLMOVE", "bk:l", "bk:l2", "LEFT", "RIGHT", "10"]),
    "blmpop": ([["RPUSH", "bk:l2", "x", "y", "z"]], ["BLMPOP", "10", "2", "bk:l", "bk:l2", "RIGHT", "COUNT", "2"]),
    "bzpopmin": ([["ZADD", "bk:z", "1", "a", "2", "b", "3", "c"]], ["BZPOPMIN", "bk:z", "10"]),
    "bzpopmax": ([["ZADD", "bk:z", "1", "a", "2", "b", "3", "c"]], ["BZPOPMAX", "bk:none", "bk:z", "10"]),
    "bzmpop": ([["ZADD", "bk:z", "1", "a", "2", "b", "3", "c"]], ["BZMPOP", "10", "1", "bk:z", "MIN", "COUNT", "2"]),
    "xread": ([["XADD", "bk:x", "1-1", "f", "v1"], ["XADD", "bk:x", "2-1", "f", "v2"]],
              ["XREAD", "COUNT", "5", "BLOCK", "10000", "STREAMS", "bk:x", "1-1"]),
    "xreadgroup": ([["XADD", "bk:x", "1-1", "f", "v1"], ["XADD", "bk:x", "2-1", "f", "v2"],
                    ["XGROUP", "CREATE", "bk:x", "g", "0"]],
                   ["XREADGROUP", "GROUP", "g", "c1", "BLOCK", "10000", "STREAMS", "bk:x", ">"]),
    "wrongtype": ([["HSET", "bk:h", "f", "v"]], ["BLPOP", "bk:h", "10"]),
}
KEYS = {0: ["bk:l", "bk:l2", "bk:z", "bk:x", "bk:h", "bk:none"]}


def blocked_on(server_client) -> int:
    return server_client.info("clients")["blocked_clients"]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_blocking_command_on_a_key_only_below_returns_at_once(make_stack, backend, reference, family, loss):
    """The family's keys are written, hot loses them, and the blocking command answers at once
    what the reference answers; hot then loses everything again and every key reads as on the
    reference (what the command took is below: nothing popped comes back). On the emulated
    Azure tiers one loss mode is enough."""
    if backend == "azure" and loss != "flushall":
        pytest.skip("azure: one loss mode is enough (the emulators make each step slow)")
    writes, command = FAMILIES[family]
    s = make_stack(backend, flags={"tiers-allow-flush": "yes"})
    with Twin(s, reference, KEYS, loss=loss) as tw:
        tw.send(*writes)
        tw.lose()
        tw.send(command)
        tw.lose()
        tw.check(f"after {command[0]}")
        # And again, on keys that are below once more: the second pop takes the next element.
        tw.send(command)
        tw.lose()
        tw.check(f"after a second {command[0]}")


def test_xreadgroup_block_on_a_stream_below_keeps_its_group_and_pending_entries(make_stack, reference):
    """A consumer group with pending entries, hot lost the stream: XREADGROUP … BLOCK serves the
    undelivered entries at once, and XPENDING / XAUTOCLAIM / XINFO then equal the reference's."""
    s = make_stack("local", flags={"tiers-allow-flush": "yes"})
    with Twin(s, reference, {0: ["bk:s"]}, loss="flushall") as tw:
        tw.send(*[["XADD", "bk:s", f"{i}-1", "f", f"v{i}"] for i in range(1, 6)])
        tw.send(["XGROUP", "CREATE", "bk:s", "g", "0"])
        tw.send(["XREADGROUP", "GROUP", "g", "c1", "COUNT", "2", "STREAMS", "bk:s", ">"])
        tw.lose()
        tw.send(["XREADGROUP", "GROUP", "g", "c2", "COUNT", "2", "BLOCK", "10000", "STREAMS", "bk:s", ">"])
        tw.lose()
        tw.send(["XPENDING", "bk:s", "g"])      # (the extended form shows idle times: they differ)
        tw.lose()
        tw.send(["XAUTOCLAIM", "bk:s", "g", "c3", "0", "0-0", "COUNT", "3"])
        tw.lose()
        tw.send(["XREADGROUP", "GROUP", "g", "c1", "BLOCK", "10000", "STREAMS", "bk:s", "0"])
        tw.lose()
        tw.check("after XREADGROUP BLOCK, XPENDING, XAUTOCLAIM")


# A key that is nowhere: the command blocks, and another client's write through the proxy wakes it.
WAKERS = {
    "blpop": (["BLPOP", "bk:w", "20"], ["LPUSH", "bk:w", "x", "y"]),
    "blmove": (["BLMOVE", "bk:w", "bk:w2", "RIGHT", "LEFT", "20"], ["RPUSH", "bk:w", "x"]),
    "bzpopmin": (["BZPOPMIN", "bk:w", "20"], ["ZADD", "bk:w", "2", "b", "1", "a"]),
    "xread": (["XREAD", "BLOCK", "20000", "STREAMS", "bk:w", "$"], ["XADD", "bk:w", "5-1", "f", "v"]),
    "xreadgroup": (["XREADGROUP", "GROUP", "g", "c", "BLOCK", "20000", "STREAMS", "bk:w", ">"],
                   ["XADD", "bk:w", "5-1", "f", "v"]),
}


def block_then_wake(tw, s, reference, command, wake, setup=()):
    """Sends `command` on both sides, waits until it blocks on both hot and the reference, then
    `wake` through another connection; the woken replies must be byte-equal."""
    if setup:
        tw.send(*setup, conn="setup")
    t, r = tw.conn("blocked")
    with s.hot() as h, reference.client() as ref:
        before_t, before_r = blocked_on(h), blocked_on(ref)
        t.send(encode_command(*command))
        r.send(encode_command(*command))
        wait_for(lambda: blocked_on(h) == before_t + 1, 20, desc=f"{command[0]} to block on hot")
        wait_for(lambda: blocked_on(ref) == before_r + 1, 20, desc=f"{command[0]} to block on the reference")
        tw.send(wake, conn="pusher")
        got, want = t.read_reply(), r.read_reply()
        assert got.raw == want.raw, f"{command}: woken {got.raw!r} != reference {want.raw!r}"
        wait_for(lambda: blocked_on(h) == before_t, 20, desc="hot to have nothing blocked")


@pytest.mark.parametrize("family", list(WAKERS))
def test_a_blocking_command_on_a_key_nowhere_blocks_and_a_write_wakes_it(make_stack, reference, family):
    command, wake = WAKERS[family]
    s = make_stack("local", flags={"tiers-allow-flush": "yes"})
    setup = [["XGROUP", "CREATE", "bk:w", "g", "$", "MKSTREAM"]] if family == "xreadgroup" else []
    with Twin(s, reference, {0: ["bk:w", "bk:w2"]}) as tw:
        block_then_wake(tw, s, reference, command, wake, setup)
        tw.lose()
        tw.check(f"after {command[0]} woke")


def test_xread_dollar_on_a_stream_below_waits_for_entries_newer_than_its_last(make_stack, reference):
    """`$` means the stream's last id when the command blocks: with the stream brought up first,
    XREAD … BLOCK … $ ignores the entries it already had and is woken by the next XADD only."""
    s = make_stack("local", flags={"tiers-allow-flush": "yes"})
    with Twin(s, reference, {0: ["bk:w"]}) as tw:
        tw.send(["XADD", "bk:w", "1-1", "f", "old"], ["XADD", "bk:w", "2-1", "f", "old2"])
        tw.lose()
        block_then_wake(tw, s, reference, ["XREAD", "BLOCK", "20000", "STREAMS", "bk:w", "$"],
                        ["XADD", "bk:w", "3-1", "f", "new"])
        tw.lose()
        tw.check("after XREAD $ woke")


def test_a_pipelined_blocking_command_behind_a_blocked_one_brings_up_and_leaves_cleanly(make_stack):
    """BLPOP of an empty key blocks; pipelined behind it, BLPOP of a list that lives only below is
    brought up beside the blocked connection. The client leaves: nothing stays blocked on hot,
    and the second list, never popped, still holds every element."""
    s = make_stack("local", flags={"tiers-allow-flush": "yes"})
    with s.client() as c:
        assert c.rpush("bk:below", "a", "b") == 2
    s.evict("bk:below")
    with s.hot() as h:
        c = s.raw()
        c.send(encode_command("BLPOP", "bk:empty", "0") + encode_command("BLPOP", "bk:below", "0"))
        wait_for(lambda: blocked_on(h) == 1, 20, desc="the first BLPOP to block")
        wait_for(lambda: h.exists("bk:below") == 1, 20, desc="the second BLPOP's list to be brought up")
        c.close()
        wait_for(lambda: blocked_on(h) == 0, 20, desc="hot to forget the blocked command of a client that left")
        assert h.lrange("bk:below", 0, -1) == [b"a", b"b"]
    s.evict("bk:below")
    with s.client() as p:
        assert p.lrange("bk:below", 0, -1) == [b"a", b"b"], "a command that never ran took an element"


def test_a_client_leaving_while_blocked_after_a_bring_up_leaves_nothing_blocked(make_stack):
    """BLMOVE from a key hot lost that turns out empty below too (a list popped empty): it blocks
    after its bring-up, and the client closes: its upstream connection closes with it."""
    s = make_stack("local", flags={"tiers-allow-flush": "yes"})
    with s.client() as c:
        assert c.rpush("bk:d", "z") == 1
    s.evict("bk:d")
    with s.hot() as h:
        c = s.raw()
        c.send(encode_command("BLMOVE", "bk:gone", "bk:d", "LEFT", "LEFT", "0"))
        wait_for(lambda: blocked_on(h) == 1, 20, desc="BLMOVE to block")
        assert h.lrange("bk:d", 0, -1) == [b"z"], "its destination was not brought up"
        c.close()
        wait_for(lambda: blocked_on(h) == 0, 20, desc="hot to forget the blocked command of a client that left")
    # Nothing of the command that left stays behind: its source is brought up as any key again.
    with s.client() as p:
        assert p.rpush("bk:gone", "later") == 1
    s.evict("bk:gone")
    with s.client() as p:
        assert p.lrange("bk:gone", 0, -1) == [b"later"], "a key of a command that left is still taken as popped"


def test_many_clients_blocked_on_keys_below_while_others_push(make_stack):
    """Twelve consumers BLPOP from six lists that live only below (hot lost them), twice as many
    times as the lists hold, while three pushers push the rest: every element is popped exactly
    once, and nothing is left anywhere."""
    s = make_stack("local", flags={"tiers-allow-flush": "yes"})
    lists = [f"bk:q{i}" for i in range(6)]
    first = {k: [f"{k}:i{n}".encode() for n in range(4)] for k in lists}
    with s.client() as c:
        for k, items in first.items():
            assert c.rpush(k, *items) == len(items)
    with s.hot() as h:
        h.flushall()
    consumers, pushers, per_pusher = 12, 3, 8
    pops_each = (len(lists) * 4 + pushers * per_pusher) // consumers
    popped: list = []
    errors: list = []
    lock = threading.Lock()

    def consume(i: int):
        rng = random.Random(i)
        try:
            with s.client(socket_timeout=60) as c:
                for _ in range(pops_each):
                    got = c.blpop(rng.sample(lists, len(lists)), timeout=40)
                    assert got is not None, "a BLPOP timed out with elements left to pop"
                    with lock:
                        popped.append(got[1])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(("consumer", i, repr(e)))

    def push(i: int):
        rng = random.Random(100 + i)
        try:
            with s.client() as c:
                for n in range(per_pusher):
                    c.rpush(rng.choice(lists), f"p{i}:{n}".encode())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(("pusher", i, repr(e)))

    threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(consumers)]
    threads += [threading.Thread(target=push, args=(i,), daemon=True) for i in range(pushers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "clients still running after 120 s"
    assert not errors, errors
    want = sorted([x for items in first.values() for x in items]
                  + [f"p{i}:{n}".encode() for i in range(pushers) for n in range(per_pusher)])
    assert sorted(popped) == want, "popped elements differ from those written (lost or popped twice)"
    with s.hot() as h:
        h.flushall()
        assert blocked_on(h) == 0
    with s.client() as c:
        assert [c.lrange(k, 0, -1) for k in lists] == [[]] * len(lists), "a popped element came back from below"


def test_a_popped_key_reads_as_written_as_soon_as_its_reply_is_out(make_stack):
    """A blocking pop marks the keys it may empty (a lookup then finds nothing below) until what
    it did is below; the mark must be gone before its reply goes out. The tier worker is made to
    hold each batch it served (and so every closure its completions captured) for a while, as a
    worker descheduled just after waking the loop does on a loaded machine: hot then loses both
    lists at once, and each must still read as the pop left it (before: TYPE answered none while
    the worker held the closure that kept the mark)."""
    s = make_stack("local", env={"TIERPROXY_TEST_WORKER_LINGER_MS": "1500"})
    with s.client() as c:
        assert c.rpush("bk:l", "a", "b") == 2
        assert c.rpush("bk:l2", "z") == 1
    s.evict("bk:l", "bk:l2")
    with s.client() as c:
        assert c.brpoplpush("bk:l", "bk:l2", 10) == b"b"
    s.evict("bk:l", "bk:l2")
    with s.client() as c:
        assert c.type("bk:l") == b"list", "the pop's mark outlived its reply: bk:l read as absent"
        assert c.lrange("bk:l", 0, -1) == [b"a"]
        assert c.lrange("bk:l2", 0, -1) == [b"b", b"z"]
