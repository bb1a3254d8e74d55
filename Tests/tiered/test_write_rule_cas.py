"""Optimistic locking through the proxy (issue 9): the WATCH/MULTI check-and-set loop every client
library offers. docs/semantics.md §12: WATCH is exact (a client's EXEC aborts exactly when it would on
Redis directly, whatever the proxy sends on its connection meanwhile), and a client cannot tell
tierproxy from one Redis with unlimited memory, also while hot is emptied.

8 clients increment one counter: WATCH, GET, a write to an unrelated key of their own (a tiered
write inside the WATCH window), MULTI, SET counter+1, EXEC. Half use redis-py's pipeline by hand,
half its `transaction()` helper. If EXEC never aborts wrongly, the final counter equals the number
of successful EXECs. Meanwhile another thread empties hot (direct FLUSHALL, or a direct DEL of the
counter) every 20 ms; that may make EXECs abort (hot really changed), never lose an update.

Fails today: the tiered write inside the WATCH window runs the proxy's own MULTI … EXEC, whose EXEC
clears the client's watches, so concurrent EXECs all commit and updates are lost.
"""

from __future__ import annotations

import pytest
from redis.exceptions import WatchError

from twin import flush_hot, run_while_emptied

CLIENTS = 8
ATTEMPTS = 25          # per client: a bound on the loop, successes counted
COUNTER = "cas:counter"


class Bounded(Exception):
    pass


def _by_hand(c, n: int, tally: dict) -> None:
    with c.pipeline() as p:
        for i in range(ATTEMPTS):
            try:
                p.watch(COUNTER)
                v = int(p.get(COUNTER) or 0)
                p.set(f"cas:side:{n}", f"{n}-{i}")           # unrelated tiered write, same connection
                p.multi()
                p.set(COUNTER, v + 1)
                p.execute()
                tally["ok"] += 1
            except WatchError:
                tally["aborted"] += 1
            finally:
                p.reset()
            tally["last"] = f"{n}-{i}"


def _with_helper(c, n: int, tally: dict) -> None:
    attempts = {"i": 0}

    def body(p) -> None:
        i = attempts["i"]
        attempts["i"] += 1
        if i >= ATTEMPTS * 4:
            raise Bounded(f"client {n}: {i} attempts without a commit")
        v = int(p.get(COUNTER) or 0)
        p.set(f"cas:side:{n}", f"{n}-{i}")
        tally["last"] = f"{n}-{i}"
        p.multi()
        p.set(COUNTER, v + 1)

    for _ in range(ATTEMPTS // 2):
        before = attempts["i"]
        c.transaction(body, COUNTER)
        tally["ok"] += 1
        tally["aborted"] += attempts["i"] - before - 1


@pytest.mark.parametrize("loss", ["flushall", "del"])
def test_check_and_set_counter_loses_no_update(make_stack, backend, loss):
    """docs/semantics.md §12 (WATCH stays exact) and §11 (EXEC's writes recorded): final counter == successful EXECs, 8 clients, hot
    emptied every 20 ms; each client's unrelated key keeps its last value."""
    s = make_stack(backend)
    with s.client() as c:
        c.set(COUNTER, 0)
    tallies = [{"ok": 0, "aborted": 0, "last": None} for _ in range(CLIENTS)]

    def client(n: int) -> None:
        with s.client() as c:
            (_by_hand if n % 2 == 0 else _with_helper)(c, n, tallies[n])

    empty = (lambda: flush_hot(s)) if loss == "flushall" else (lambda: s.evict(COUNTER))
    errors = run_while_emptied([lambda n=n: client(n) for n in range(CLIENTS)], empty, timeout=180)
    assert not errors, errors
    ok = sum(t["ok"] for t in tallies)
    assert ok > 0, f"no EXEC ever committed: {tallies}"
    for round_ in ("before", "after"):
        with s.client() as c:
            final = int(c.get(COUNTER) or 0)
            sides = [c.get(f"cas:side:{n}") for n in range(CLIENTS)]
        assert final == ok, (f"{round_} a last hot loss: counter {final}, but {ok} EXECs committed "
                             f"({sum(t['aborted'] for t in tallies)} aborted): lost or phantom updates")
        assert sides == [t["last"].encode() for t in tallies], f"unrelated keys {sides}"
        s.lose_hot()


@pytest.mark.parametrize("loss", ["flushall", "maxmemory"])
def test_transaction_survives_a_hot_loss_right_after_exec(make_stack, backend, loss):
    """docs/semantics.md §11 ("writes queued in a client's own MULTI are recorded … at EXEC") against
    the promise at its top (hot may lose keys at any time): the state each written key has after a write is captured atomically with
    it, EXEC included; so what a committed MULTI/EXEC wrote survives hot losing everything the
    moment EXEC has answered (here 20 times: SET, INCR, DEL in one transaction, then the loss)."""
    s = make_stack(backend)
    with s.client() as c:
        c.set("tx2:gone", "old")
        for i in range(20):
            p = c.pipeline(transaction=True)
            p.set("tx2:k", f"v{i}").incr("tx2:n").delete("tx2:gone")
            assert p.execute() == [True, i + 1, 1 if i == 0 else 0]
            s.lose_hot(loss)
            got = c.mget("tx2:k", "tx2:n", "tx2:gone")
            assert got == [f"v{i}".encode(), str(i + 1).encode(), None], f"after EXEC #{i} and a hot loss: {got}"
