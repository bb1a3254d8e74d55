"""Writes of one key from many clients run as one transaction per loop pass (`KeyBatch`):
`MULTI; EXISTS k; cmd1; …; cmdN; captures; EXEC`, each client getting its own command's reply.
Hot sees far fewer transactions than there are writes, and nothing else changes: every write
runs exactly once, each client's replies come in its own order, the key ends as on a reference
Redis, and hot losing the key behind the proxy's back (a batch that finds it gone brings it up
and runs again on it) loses nothing. Clients here use raw connections: redis-py's CLIENT SETINFO
pins a client to an upstream connection of its own, and only clients on a loop's shared
connection are batched.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from tierstack import RawConn, encode_command

# Holds the key's lock while hot is busy (a script's KeyedOp holds it until its reply is
# below): every write sent meanwhile waits for the lock, so they all gather in one batch.
BUSY = """local t0 = redis.call('TIME')
repeat local t = redis.call('TIME') until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > tonumber(ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'script', 1)"""


@pytest.mark.parametrize("policy", ["write-through", "write-behind"])
def test_writes_waiting_on_a_key_run_as_one_transaction(make_stack, backend, reference, policy):
    s = make_stack(backend, rules=(f"* policy {policy}",), flags={"threads": 1})
    if not s.tiered:
        pytest.skip("counts the proxy's transactions on hot")
    clients = 24
    with s.client() as c, reference.client() as r:
        for target in (c, r):
            target.hset("kb:b", mapping={"seed": 1, **{f"c{i}": i for i in range(clients)}})
    with s.hot() as h:
        h.config_resetstat()
    conns = [s.raw() for _ in range(clients + 1)]
    try:
        busy, writers = conns[0], conns[1:]
        busy.send(encode_command("EVAL", BUSY, "1", "kb:b", "500000"))
        # Hot loses the key right after the script (this DEL waits for it): the batch finds it
        # gone, brings it up and runs again on it.
        with RawConn(s.server.port, timeout=60) as lose:
            lose.send(encode_command("DEL", "kb:b"))
            for i, w in enumerate(writers):
                w.send(encode_command("HINCRBY", "kb:b", f"c{i}", "10"))
            assert busy.read_reply(timeout=60).raw == b":1\r\n"
            assert lose.read_reply(timeout=60).raw == b":1\r\n", "hot did not lose the key"
        got = [w.read_reply(timeout=60).raw for w in writers]
    finally:
        for conn in conns:
            conn.close()
    with reference.client() as r:
        r.hincrby("kb:b", "script", 1)
        want = [b":%d\r\n" % r.hincrby("kb:b", f"c{i}", 10) for i in range(clients)]
    assert got == want, "a client got another's reply, or its write ran on a hash hot had lost"
    with s.hot() as h:
        execs = h.info("commandstats").get("cmdstat_exec", {}).get("calls", 0)
    # The script's transaction, then the batch (twice: hot had lost the key), and stragglers.
    assert execs <= 1 + clients // 3, f"hot ran {execs} transactions for {clients} waiting writes: not batched"
    with s.client() as c, reference.client() as r:
        assert c.hgetall("kb:b") == r.hgetall("kb:b")
    s.lose_hot("flushall")
    with s.client() as c, reference.client() as r:
        assert c.hgetall("kb:b") == r.hgetall("kb:b"), "the lower tiers do not hold the batch's state"


def _chaos(s, stop: threading.Event, losses: list) -> None:
    """Hot loses the keys every few milliseconds until the writers are done (DEL, or FLUSHALL)."""
    n = 0
    with s.hot() as h:
        while not stop.wait(0.015):
            n += 1
            if n % 3:
                h.delete("kb:h", "kb:l")
            else:
                h.flushall()       # the writers may fill it again at once
            losses.append(n)


@pytest.mark.parametrize("policy", ["write-through", "write-behind"])
def test_many_clients_writing_one_key_while_hot_loses_it_lose_nothing(make_stack, backend, reference, policy):
    s = make_stack(backend, rules=(f"* policy {policy}",), flags={"threads": 1})
    if not s.tiered:
        pytest.skip("hot loses keys behind the proxy's back")
    clients, rounds = 16, 25
    with s.client() as c, reference.client() as r:
        for target in (c, r):
            target.hset("kb:h", "seed", 1)
            target.rpush("kb:l", "seed")
    errors: list = []
    in_order: list = []
    start = threading.Barrier(clients)

    def writer(i: int) -> None:
        try:
            with s.raw() as c, reference.client() as r:
                start.wait(30)
                counts, lengths = [], []
                for n in range(rounds):
                    counts.append(int(c.cmd("HINCRBY", "kb:h", f"c{i}", 1).raw[1:-2]))
                    r.hincrby("kb:h", f"c{i}", 1)
                    lengths.append(int(c.cmd("RPUSH", "kb:l", f"{i}:{n}").raw[1:-2]))
                    r.rpush("kb:l", f"{i}:{n}")
                    if i == 0:
                        # Fails on its own inside a batch: the others' writes stand.
                        assert c.cmd("HINCRBY", "kb:h", "seed", "x").raw.startswith(b"-ERR value is not an integer")
                # Each write ran once, on the key as it was: HINCRBY counts 1, 2, 3 …
                in_order.append((i, counts, lengths) if counts != list(range(1, rounds + 1))
                                or lengths != sorted(set(lengths)) else True)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    stop, losses = threading.Event(), []
    chaos = threading.Thread(target=_chaos, args=(s, stop, losses), daemon=True)
    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    chaos.start()
    deadline = time.monotonic() + 180
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stop.set()
    chaos.join(10)
    assert not any(t.is_alive() for t in threads), "writers did not finish"
    assert not errors, errors
    assert losses, "hot never lost the keys during the writes"
    bad = [x for x in in_order if x is not True]
    assert not bad, f"a client's replies were lost, repeated or out of order: {bad[:2]}"
    with s.client() as c, reference.client() as r:
        assert c.hgetall("kb:h") == r.hgetall("kb:h")
        assert sorted(c.lrange("kb:l", 0, -1)) == sorted(r.lrange("kb:l", 0, -1))
    s.lose_hot("flushall")
    with s.client() as c, reference.client() as r:
        assert c.hgetall("kb:h") == r.hgetall("kb:h"), "the lower tiers do not hold the last state"
        assert c.llen("kb:l") == r.llen("kb:l")


@pytest.mark.parametrize("policy", ["write-through", "write-behind"])
def test_a_batch_whose_clients_all_left_before_the_lock_came(make_stack, backend, policy):
    """Every writer waiting on the key leaves (reset, mid-pipeline) before the lock comes: the
    batch is left with no client on the shared connection and runs each write alone. It used to
    crash the proxy there (the batch read its tier access from a member it no longer had)."""
    s = make_stack(backend, rules=(f"* policy {policy}",), flags={"threads": 1})
    if not s.tiered:
        pytest.skip("the proxy's own batching")
    writers = 12
    with s.client() as c:
        c.hset("kb:gone", mapping={f"c{i}": 0 for i in range(writers)})
    busy = s.raw()
    try:
        busy.send(encode_command("EVAL", BUSY, "1", "kb:gone", "300000"))
        for i in range(writers):
            w = s.raw()
            w.send(encode_command("HINCRBY", "kb:gone", f"c{i}", "10") * 20)
            w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.close()
        assert busy.read_reply(timeout=60).raw == b":1\r\n"
    finally:
        busy.close()
    deadline = time.monotonic() + 60
    with s.client() as c:
        assert c.ping(), "the proxy is gone"
        # A client that left after sending may or may not have had its writes run (as with
        # Redis); whatever ran is whole: every field moved in steps of 10.
        while True:
            fields = c.hgetall("kb:gone")
            if time.monotonic() > deadline or len(fields) == writers + 1:
                break
        assert all(int(v) % 10 == 0 for k, v in fields.items() if k != b"script"), fields
    with s.hot() as h:
        on_hot = h.hgetall("kb:gone")
    s.lose_hot("flushall")
    with s.client() as c:
        assert c.hgetall("kb:gone") == on_hot, "the lower tiers do not hold what hot held"
