"""Side by side (issue 9): the same commands go to the stack under test (tierproxy; in ideal mode
a plain Redis) and to a *reference* redis-server that never loses anything, and between steps the
stack's hot Redis loses everything. The replies must be byte-equal, and so must what every
tracked key then reads as: docs/semantics.md (its opening promise), "a client cannot tell tierproxy from one Redis
with unlimited memory".

Every type is tiered (docs/semantics.md §13): each tracked key must read as the reference holds
it, of the same type, with the same contents (a stream with its consumer groups and pending
entries too) and TTL (within 2 s).

    tw = Twin(stack, reference, keys={0: ["a", "b"], 1: ["a"]}, loss="flushall")
    tw.step(["SET", "a", "1"], ["SORT", "l", "STORE", "a"])   # one pipelined write on conn "a"
    tw.step(["GET", "a"], conn="b")                          # a second connection on each side
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

import redis

from tierstack import Deadline, RawConn, RedisServer, Stack, encode_command

LOSSES = ("flushall", "maxmemory", "del")
NON_STRING = (b"hash", b"list", b"set", b"zset", b"stream")


def lose(stack: Stack, how: str, keys: Optional[dict] = None) -> None:
    """The stack's hot loses everything: FLUSHALL directly, maxmemory eviction, or a direct DEL of
    `keys` ({db: [key, ...]}). No-op in ideal mode."""
    if how == "del":
        for db, ks in (keys or {}).items():
            if ks:
                stack.evict(*ks, db=db)
    else:
        stack.lose_hot(how)


def flush_hot(stack: Stack) -> None:
    """FLUSHALL directly on the stack's hot, for use while clients write (lose_hot("flushall")
    asserts hot is empty afterwards, which concurrent writes may already have changed)."""
    if stack.tiered:
        with stack.hot() as h:
            assert h.flushall() is True


def _b(x: Any) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode()


class Twin:
    def __init__(self, stack: Stack, reference: RedisServer, keys: dict, loss: str = "flushall",
                 resp: int = 2):
        assert loss in LOSSES, loss
        self.s, self.ref, self.loss, self.resp = stack, reference, loss, resp
        self.keys = {db: [_b(k) for k in ks] for db, ks in keys.items()}
        self.conns: dict[str, tuple[RawConn, RawConn]] = {}
        self.history: list[str] = []

    def close(self) -> None:
        for t, r in self.conns.values():
            t.close()
            r.close()

    def __enter__(self) -> "Twin":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def conn(self, name: str) -> tuple[RawConn, RawConn]:
        if name not in self.conns:
            pair = (self.s.raw(), RawConn(self.ref.port, timeout=30))
            if self.resp == 3:
                for c in pair:
                    r = c.cmd("HELLO", "3")
                    assert r.t == "%", f"HELLO 3: {r!r}"
            self.conns[name] = pair
        return self.conns[name]

    def send(self, *cmds: list, conn: str = "a") -> list:
        """Send `cmds` pipelined (one write) on both sides; the replies must be byte-equal.
        Returns the reference's replies."""
        t, r = self.conn(conn)
        payload = b"".join(encode_command(*c) for c in cmds)
        t.send(payload)
        r.send(payload)
        got, want = t.read_replies(len(cmds)), r.read_replies(len(cmds))
        for c, g, w in zip(cmds, got, want):
            self.history.append(f"[{conn}] {' '.join(map(repr, c))} -> {w.raw[:80]!r}")
            assert g.raw == w.raw, (f"{' '.join(map(str, c))} (conn {conn}, loss {self.loss}): "
                                    f"{'tierproxy' if self.s.tiered else 'target'} {g.raw!r} != reference "
                                    f"{w.raw!r}\n  history:\n    " + "\n    ".join(self.history[-15:]))
        return want

    def lose(self) -> None:
        lose(self.s, self.loss, self.keys)
        self.history.append(f"[hot] lost everything ({self.loss})")

    def step(self, *cmds: list, conn: str = "a") -> list:
        """send(), then hot loses everything, every tracked key must read as on the reference,
        and hot loses everything again (so the next step meets keys that live only below)."""
        want = self.send(*cmds, conn=conn)
        self.lose()
        self.check()
        self.lose()
        return want

    def check(self, where: str = "") -> None:
        """Every tracked key reads the same through the stack as on the reference (see the module
        docstring for non-string types). Uses fresh clients, so no connection state leaks in."""
        for db, ks in self.keys.items():
            with self.s.client(db=db) as t, redis.Redis(port=self.ref.port, db=db, socket_timeout=30) as r:
                for k in ks:
                    self._check_key(t, r, db, k, where)

    def _check_key(self, t: redis.Redis, r: redis.Redis, db: int, k: bytes, where: str) -> None:
        rtype = r.type(k)
        ttype = t.type(k)
        label = f"db {db} key {k!r}{' ' + where if where else ''} (loss {self.loss})"
        hist = "\n  history:\n    " + "\n    ".join(self.history[-15:])
        assert ttype == rtype, f"{label}: TYPE {ttype!r}, reference {rtype!r}{hist}"
        if rtype in NON_STRING:
            assert read_value(t, k, rtype) == read_value(r, k, rtype), f"{label}: contents differ{hist}"
        else:
            assert t.get(k) == r.get(k), f"{label}: GET {t.get(k)!r}, reference {r.get(k)!r}{hist}"
        tt, rt = t.pttl(k), r.pttl(k)
        same = tt == rt or (tt >= 0 and rt >= 0 and abs(tt - rt) <= 2000)
        assert same, f"{label}: PTTL {tt}, reference {rt}{hist}"


def read_value(c: redis.Redis, k: bytes, rtype: bytes) -> Any:
    """A non-string value in a comparable form (set and hash order is per process)."""
    if rtype == b"hash":
        return sorted(c.hgetall(k).items())
    if rtype == b"list":
        return c.lrange(k, 0, -1)
    if rtype == b"set":
        return sorted(c.smembers(k))
    if rtype == b"zset":
        return c.zrange(k, 0, -1, withscores=True)
    if rtype == b"stream":
        groups = sorted((g["name"], g["last-delivered-id"], g["pending"]) for g in c.xinfo_groups(k))
        pending = [c.xpending_range(k, g, "-", "+", 1000) for g, _, _ in groups]
        return c.xrange(k), groups, [[(p["message_id"], p["consumer"]) for p in ps] for ps in pending]
    raise AssertionError(rtype)


def run_while_emptied(workers: list, empty: Callable[[], None], interval: float = 0.02,
                      timeout: float = 120.0) -> list:
    """Run each worker (a no-argument callable) in its own thread while `empty()` runs every
    `interval` s in another, until the workers are done (each joined within `timeout`). Returns
    the workers' exceptions as (index, repr), and the emptier's as ("emptier", repr); fails if a
    worker is still running."""
    errors: list = []
    done = threading.Event()

    def guard(i: int, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - returned to the test
            errors.append((i, repr(e)))

    def emptier() -> None:
        try:
            while not done.wait(interval):
                empty()
        except Exception as e:  # noqa: BLE001 - returned to the test: hot stopped being emptied
            errors.append(("emptier", repr(e)))


    threads = [threading.Thread(target=guard, args=(i, fn), daemon=True) for i, fn in enumerate(workers)]
    em = threading.Thread(target=emptier, daemon=True)
    em.start()
    for t in threads:
        t.start()
    deadline = Deadline(timeout)
    for t in threads:
        t.join(deadline.remaining())
    done.set()
    em.join(10)
    assert not any(t.is_alive() for t in threads), f"workers still running after {timeout} s"
    return errors


def run_scenario(make_stack, backend: str, reference: RedisServer, fn: Callable, keys: dict, loss: str) -> None:
    """One scenario `fn(tw)` side by side (tiers-allow-flush on), with the proxy's output on failure.
    On the emulated Azure tiers one loss mode is enough (the emulators make each step slow)."""
    import pytest
    if backend == "azure" and loss != "flushall":
        pytest.skip("azure: one loss mode is enough (the emulators make each step slow)")
    s = make_stack(backend, flags={"tiers-allow-flush": "yes"})
    with Twin(s, reference, keys, loss=loss) as tw:
        tw.check("at the start")
        try:
            fn(tw)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- tierproxy output ---\n{s.output()[-2000:]}") from None
