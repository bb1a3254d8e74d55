"""Concurrency: nothing stale wins (issue 4, Semantics 9). 16 clients (spread over the proxy's
loops) write, read, delete and lose (direct DEL on hot) the same 4 keys at once, for a fixed
number of operations. When they are done, for each key:
* the value the proxy answers is one some client wrote, or nil (never garbage);
* warm agrees with hot: hot holds the same value as warm, or hot holds nothing (lost), or
  both hold nothing: a lower tier never ends up older than hot;
* after hot loses everything, the proxy answers the same as before the loss (no older value,
  no resurrected deleted one).
"""

from __future__ import annotations

import random
import threading

from tierstack import wait_for

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
