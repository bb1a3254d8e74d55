"""redis-py's `Lock` through the proxy while hot loses everything between every step (issue 9).
docs/semantics.md (its opening promise); deletes
reach every tier (§4), so a lock released by its Lua script (`DEL` inside `EVALSHA`, key declared)
stays released when hot loses it; `extend`/`reacquire` (PEXPIRE inside a script) reach the lower
tiers (§5, §11); the scripts' `GET` of a lock key that lives only below sees it (§1: scripts' declared
keys are brought up first).

The same scenario runs against a reference redis-server that never loses anything, and its log
must equal the stack's, and both must equal EXPECTED (so the scenario itself is checked). Sync
and asyncio clients alike. Then competing holders: threads incrementing a counter under one lock
while hot is emptied concurrently; mutual exclusion holds, so no increment is lost.

Fails today: the release script's DEL reaches hot only; the token comes back from warm, so
`locked()` stays True and the next `acquire(blocking=False)` fails.
"""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest
import redis
import redis.asyncio
from redis.exceptions import LockError

from tierstack import HOST, wait_for
from twin import LOSSES, flush_hot, lose, run_while_emptied

EXPECTED = [
    ("a.acquire", True), ("a.locked", True), ("a.owned", True),
    ("b.acquire blocking=False", False), ("b.acquire blocking_timeout=0.3", False), ("b.owned", False),
    ("a.extend 60", True), ("pttl after extend in (60 s, 120 s]", True),
    ("a.reacquire", True), ("pttl after reacquire in (0, 60 s]", True),
    ("a.release", None), ("a.locked after release", False), ("a.owned after release", False),
    ("GET lock key after release", None),
    ("b.acquire after release", True), ("b.owned", True), ("a.owned", False),
    ("a.release (not held)", "LockError"), ("a.extend (not held)", "LockError"),
    ("a.reacquire (not held)", "LockError"),
    ("b.release", None), ("b.locked", False),
    ("c.acquire 0.5 s", True), ("wait past c's expiry", True), ("c.locked after expiry", False),
    ("c.owned after expiry", False), ("c.reacquire after expiry", "LockNotOwnedError"),
    ("d.acquire after c expired", True), ("c.extend while d holds", "LockNotOwnedError"),
    ("c.release while d holds", "LockNotOwnedError"), ("d.owned", True), ("d.release", None),
    ("GET c key", None),
]


def steps(c):
    """The scenario, one (label, thunk) per step; a thunk may return an awaitable (asyncio)."""
    a = c.lock("lk:a", timeout=60)
    b = c.lock("lk:a", timeout=60)
    cl = c.lock("lk:c", timeout=0.5)
    d = c.lock("lk:c", timeout=60)
    clock = {}

    def between(lo, hi):
        async def check(v):
            return lo < (await v if inspect.isawaitable(v) else v) <= hi
        return lambda: check(c.pttl("lk:a"))

    def acquire_c():
        clock["c"] = time.time()
        return cl.acquire(blocking=False)

    def past_expiry():
        wait_for(lambda: time.time() > clock["c"] + 0.6, 5, desc="the 0.5 s lock timeout to pass")
        return True

    return [
        ("a.acquire", lambda: a.acquire(blocking=False)), ("a.locked", a.locked), ("a.owned", a.owned),
        ("b.acquire blocking=False", lambda: b.acquire(blocking=False)),
        ("b.acquire blocking_timeout=0.3", lambda: b.acquire(blocking_timeout=0.3)), ("b.owned", b.owned),
        ("a.extend 60", lambda: a.extend(60)), ("pttl after extend in (60 s, 120 s]", between(60_000, 120_000)),
        ("a.reacquire", a.reacquire), ("pttl after reacquire in (0, 60 s]", between(0, 60_000)),
        ("a.release", a.release), ("a.locked after release", a.locked), ("a.owned after release", a.owned),
        ("GET lock key after release", lambda: c.get("lk:a")),
        ("b.acquire after release", lambda: b.acquire(blocking=False)), ("b.owned", b.owned),
        ("a.owned", a.owned),
        ("a.release (not held)", a.release), ("a.extend (not held)", lambda: a.extend(10)),
        ("a.reacquire (not held)", a.reacquire),
        ("b.release", b.release), ("b.locked", b.locked),
        ("c.acquire 0.5 s", acquire_c), ("wait past c's expiry", past_expiry),
        ("c.locked after expiry", cl.locked), ("c.owned after expiry", cl.owned),
        ("c.reacquire after expiry", cl.reacquire),
        ("d.acquire after c expired", lambda: d.acquire(blocking=False)),
        ("c.extend while d holds", lambda: cl.extend(10)), ("c.release while d holds", cl.release),
        ("d.owned", d.owned), ("d.release", d.release),
        ("GET c key", lambda: c.get("lk:c")),
    ]


async def run(c, lose_hot) -> list:
    log = []
    for label, thunk in steps(c):
        try:
            v = thunk()
            if inspect.isawaitable(v):
                v = await v
        except LockError as e:
            v = type(e).__name__
        log.append((label, v))
        lose_hot()
    return log


def _stack_and_loss(make_stack, backend, loss):
    s = make_stack(backend)
    return s, (lambda: lose(s, loss, {0: ["lk:a", "lk:c"]}))


@pytest.mark.parametrize("loss", LOSSES)
def test_lock_sync_hot_emptied_between_steps(make_stack, backend, reference, loss):
    """docs/semantics.md §4, §5, §11: redis-py Lock (sync) acquire/locked/owned/extend/reacquire/
    release, competing acquire with blocking_timeout, expiry, all with hot emptied between steps."""
    s, lose_hot = _stack_and_loss(make_stack, backend, loss)
    with reference.client() as r:
        want = asyncio.run(run(r, lambda: None))
    assert want == EXPECTED, "the scenario itself is wrong (reference disagrees with EXPECTED)"
    with s.client() as c:
        got = asyncio.run(run(c, lose_hot))
    assert got == want, _diff(got, want)


@pytest.mark.parametrize("loss", LOSSES)
def test_lock_asyncio_hot_emptied_between_steps(make_stack, backend, reference, loss):
    """The same with redis.asyncio's Lock (its own Lua scripts and EVALSHA path), over RESP3."""
    s, lose_hot = _stack_and_loss(make_stack, backend, loss)

    async def main(port, lose_hot):
        c = redis.asyncio.Redis(host=HOST, port=port, socket_timeout=30, protocol=3)
        try:
            return await run(c, lose_hot)
        finally:
            await c.aclose()
    want = asyncio.run(main(reference.port, lambda: None))
    assert want == EXPECTED, "the scenario itself is wrong (reference disagrees with EXPECTED)"
    got = asyncio.run(main(s.port, lose_hot))
    assert got == want, _diff(got, want)


def _diff(got, want) -> str:
    first = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w) if got != want else None
    return f"first difference at step {first}: stack {got[first]!r}, reference {want[first]!r}\n" \
           f"stack log: {got}"


def test_lock_mutual_exclusion_while_hot_is_emptied(make_stack, backend):
    """docs/semantics.md §4, §9: 4 threads each add 1 to a string counter 10 times under one
    redis-py Lock (blocking acquire, blocking_timeout 20 s) while another thread empties hot
    (FLUSHALL) every 20 ms. Exclusion holds and no release is undone: every acquire succeeds
    and the counter ends at 40, also after hot loses it once more."""
    s = make_stack(backend)
    threads_n, rounds = 4, 10

    def holder(n: int) -> None:
        with s.client() as c:
            lk = c.lock("lk:mutex", timeout=30, blocking_timeout=20)
            for _ in range(rounds):
                assert lk.acquire(), f"thread {n}: acquire timed out (a released lock came back?)"
                try:
                    v = int(c.get("lk:counter") or 0)
                    c.set("lk:counter", v + 1)
                finally:
                    lk.release()

    errors = run_while_emptied([lambda n=n: holder(n) for n in range(threads_n)], lambda: flush_hot(s))
    assert not errors, errors
    s.lose_hot()
    with s.client() as c:
        assert c.get("lk:counter") == str(threads_n * rounds).encode()
        assert c.get("lk:mutex") is None, "the lock is still held after every holder released it"
