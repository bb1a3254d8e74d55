"""Concurrency: nothing stale wins (issue 4, Semantics 9). 16 clients (spread over the proxy's
loops) write, read, delete and lose (direct DEL on hot) the same 4 keys at once, for a fixed
number of operations. When they are done, for each key:
* the value the proxy answers is one some client wrote, or nil (never garbage);
* warm agrees with hot: hot holds the same value as warm, or hot holds nothing (lost), or
  both hold nothing: a lower tier never ends up older than hot;
* after hot loses everything, the proxy answers the same as before the loss (no older value,
  no resurrected deleted one).

The second test (issue 9) does the same with pipelined writers (16 commands per write: SET,
DEL, GETDEL, SET … GET and scripts in the pipeline) and script writers (EVAL/EVALSHA of a SET and
of a compare-and-delete, keys declared), readers, and hot emptied (direct FLUSHALL) every 50 ms.
"""

from __future__ import annotations

import random
import threading

from tierstack import wait_for
from twin import flush_hot, run_while_emptied

KEYS = [f"race:{i}" for i in range(4)]
CLIENTS = 16
OPS = 150


def test_many_clients_one_key_nothing_stale_wins(make_stack, backend):
    """Semantics 9: many clients, one key, nothing stale wins."""
    s = make_stack(backend)
    errors: list = []
    written = set()
    lock = threading.Lock()

    def worker(n: int) -> None:
        rnd = random.Random(1000 + n)
        try:
            with s.client() as c:
                for i in range(OPS):
                    k = rnd.choice(KEYS)
                    r = rnd.random()
                    if r < 0.45:
                        v = f"c{n}-{i}"
                        with lock:
                            written.add(v.encode())
                        assert c.set(k, v) is True
                    elif r < 0.75:
                        c.get(k)
                    elif r < 0.85:
                        c.delete(k)
                    else:
                        s.evict(k)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((n, repr(e)))

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "clients still running after 120 s"
    assert not errors, errors[:5]

    _nothing_stale(s, written)


SET_SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]) return 1"
CAD_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
DEPTH = 16


def test_pipelined_and_script_writers_while_hot_is_emptied(make_stack, backend):
    """docs/semantics.md §9 with issue 9's writers (§11): pipelined (depth 16) and scripts, hot emptied every 50 ms."""
    s = make_stack(backend)
    written: set = set()
    lock = threading.Lock()

    def value(n: int, i: int, j: int) -> str:
        v = f"p{n}-{i}-{j}"
        with lock:
            written.add(v.encode())
        return v

    def pipeliner(n: int) -> None:
        rnd = random.Random(2000 + n)
        with s.client() as c:
            setter = c.register_script(SET_SCRIPT)
            for i in range(OPS // DEPTH * 2):
                p = c.pipeline(transaction=False)
                for j in range(DEPTH):
                    k, r = rnd.choice(KEYS), rnd.random()
                    if r < 0.4:
                        p.set(k, value(n, i, j))
                    elif r < 0.55:
                        p.delete(k)
                    elif r < 0.65:
                        p.getdel(k)
                    elif r < 0.75:
                        p.set(k, value(n, i, j), get=True)
                    elif r < 0.9:
                        setter(keys=[k], args=[value(n, i, j)], client=p)
                    else:
                        p.get(k)
                p.execute()

    def scripter(n: int) -> None:
        rnd = random.Random(3000 + n)
        with s.client() as c:
            cad = c.register_script(CAD_SCRIPT)
            for i in range(OPS):
                k = rnd.choice(KEYS)
                if rnd.random() < 0.5:
                    assert c.eval(SET_SCRIPT, 1, k, value(n, i, 0)) == 1
                else:
                    cad(keys=[k], args=[c.get(k) or b"-"])

    def reader(n: int) -> None:
        with s.client() as c:
            for _ in range(OPS):
                for v in c.mget(KEYS):
                    assert v is None or v in written, f"read {v!r}, never written"

    workers = [lambda n=n: pipeliner(n) for n in range(4)] + [lambda n=n: scripter(n) for n in range(4)] \
        + [lambda n=n: reader(n) for n in range(4)]
    errors = run_while_emptied(workers, lambda: flush_hot(s), interval=0.05, timeout=180)
    assert not errors, errors[:5]
    _nothing_stale(s, written)


def _nothing_stale(s, written: set) -> None:
    """Values read are ones written; warm agrees with hot; a hot loss changes no answer."""
    with s.client() as c:
        before = dict(zip(KEYS, c.mget(KEYS)))
    for k, v in before.items():
        assert v is None or v in written, f"{k}: {v!r} was never written"
    if s.tiered:
        def consistent() -> bool:
            with s.hot() as h:
                hot = dict(zip(KEYS, h.mget(KEYS)))
            warm = {e.key.decode(): e.value for e in s.warm.entries() if e.live()}
            bad.clear()
            for k in KEYS:
                if hot[k] is not None and warm.get(k) != hot[k]:
                    bad.append((k, hot[k], warm.get(k)))
            return not bad
        bad: list = []
        try:
            wait_for(consistent, 10, desc="warm to agree with hot")
        except AssertionError:
            raise AssertionError(f"warm older than hot (key, hot, warm): {bad}") from None
    s.lose_hot()
    with s.client() as c:
        after = dict(zip(KEYS, c.mget(KEYS)))
    assert after == before, f"after hot lost everything: {after} vs before {before}"
