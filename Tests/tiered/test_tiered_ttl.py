"""TTL fidelity (issue 4, Semantics 5 and 4): a key that lives only below still reports its
logical TTL/PTTL/EXPIRETIME through the proxy; once promoted, hot holds the same absolute
expiry (within a second); commands that depend on the old TTL (SET KEEPTTL, EXPIRE NX/GT,
GETEX PERSIST) see it; an expiry set on a key that lives only below reaches the lower tier;
and a lower-tier entry past its expiry is never served, nor promoted.
"""

from __future__ import annotations

import time

import pytest

from tierstack import wait_for

COLD_RULE = "c:* policy write-through tier cold"


def _close(a: int, b: int, tol: int, what: str) -> None:
    assert a >= 0 and b >= 0 and abs(a - b) <= tol, f"{what}: {a} vs {b} (tolerance {tol})"


@pytest.mark.parametrize("prefix", ["w:", "c:"], ids=["warm", "cold"])
def test_logical_expiry_survives_promotion(make_stack, backend, prefix):
    """Semantics 5: TTL/PTTL/EXPIRETIME of a key below, and its absolute expiry on hot after promotion."""
    s = make_stack(backend, rules=(COLD_RULE,))
    c = s.client()
    k_ex, k_pxat, k_none = prefix + "ex", prefix + "pxat", prefix + "none"
    pxat = int(time.time() * 1000) + 500_000 + 123
    c.set(k_ex, "v", ex=100)
    c.set(k_pxat, "v", pxat=pxat)
    c.set(k_none, "v")
    exptime = c.pexpiretime(k_ex)
    s.lose_hot()

    # Before promotion: the logical values, whichever tier answers.
    assert 98 <= c.ttl(k_ex) <= 100, c.ttl(k_ex)
    _close(c.pexpiretime(k_ex), exptime, 1000, "PEXPIRETIME of a key below")
    _close(c.pexpiretime(k_pxat), pxat, 1000, "PEXPIRETIME of a PXAT key below")
    _close(c.expiretime(k_pxat), pxat // 1000, 1, "EXPIRETIME of a PXAT key below")
    assert c.ttl(k_none) == -1 and c.pttl(k_none) == -1 and c.expiretime(k_none) == -1

    # Promotion by GET keeps the absolute expiry on hot.
    assert c.get(k_ex) == b"v" and c.get(k_pxat) == b"v" and c.get(k_none) == b"v"
    if s.tiered:
        with s.hot() as h:
            assert h.exists(k_ex, k_pxat, k_none) == 3, "GET did not promote to hot"
            _close(h.pexpiretime(k_ex), exptime, 1000, "hot PEXPIRETIME after promotion")
            _close(h.pexpiretime(k_pxat), pxat, 1000, "hot PEXPIRETIME after promotion")
            assert h.ttl(k_none) == -1, "a key without expiry got one on promotion"
    _close(c.pttl(k_pxat), pxat - int(time.time() * 1000), 1000, "PTTL after promotion")


def test_commands_that_read_the_old_ttl(make_stack, backend):
    """Semantics 5 and issue 4 'commands that read before they write': KEEPTTL, EXPIRE NX/GT, GETEX PERSIST, EXPIRE on a key below."""
    s = make_stack(backend)
    c = s.client()
    c.set("t:keepttl", "a", ex=300)
    c.set("t:persist", "a", ex=300)
    c.set("t:nx", "a", ex=300)
    c.set("t:gt", "a", ex=300)
    c.set("t:expire-below", "a")
    s.lose_hot()
    assert c.set("t:keepttl", "b", keepttl=True) is True
    assert 298 <= c.ttl("t:keepttl") <= 300, "SET KEEPTTL on a key below lost its TTL"
    assert c.getex("t:persist", persist=True) == b"a"
    assert c.ttl("t:persist") == -1
    assert c.expire("t:nx", 50, nx=True) is False, "EXPIRE NX must see the TTL the key has below"
    assert c.expire("t:gt", 100, gt=True) is False, "EXPIRE GT must see the larger TTL below"
    assert c.expire("t:expire-below", 200) is True
    # Those TTL changes reached the lower tiers: lose hot again and read them back.
    s.lose_hot()
    assert c.get("t:keepttl") == b"b" and 297 <= c.ttl("t:keepttl") <= 300
    assert c.ttl("t:persist") == -1 and c.get("t:persist") == b"a"
    assert 297 <= c.ttl("t:nx") <= 300 and 297 <= c.ttl("t:gt") <= 300
    assert 197 <= c.ttl("t:expire-below") <= 200, "EXPIRE of a key below did not reach the tier"


@pytest.mark.parametrize("prefix", ["w:", "c:"], ids=["warm", "cold"])
def test_expired_below_is_never_served(make_stack, backend, prefix):
    """Semantics 4: a lower-tier entry past its expiry reads as absent by every command and is
    not promoted; the expiry is checked by the proxy (Cosmos' own TTL sweep and the emulator's
    lazy expiry are not relied on: the proxy must compare the stored expiry itself)."""
    s = make_stack(backend, rules=(COLD_RULE,))
    c = s.client()
    keys = [prefix + n for n in ("get", "mget", "strlen", "exists", "ttl", "incr", "append", "getex")]
    for k in keys:
        c.set(k, "7", px=1200)
    expires = time.time() + 1.2
    c.set(prefix + "alive", "a")
    s.lose_hot()
    wait_for(lambda: time.time() > expires + 0.2, 5, desc="the 1.2 s expiry to pass")
    k = iter(keys)
    assert c.get(next(k)) is None
    assert c.mget(next(k), prefix + "alive") == [None, b"a"]
    assert c.strlen(next(k)) == 0
    assert c.exists(next(k)) == 0
    assert c.ttl(next(k)) == -2
    assert c.incr(next(k)) == 1, "INCR started from an expired value"
    assert c.append(next(k), "x") == 1, "APPEND appended to an expired value"
    assert c.getex(next(k), ex=100) is None
    if s.tiered:
        with s.hot() as h:
            expired = [x for x in keys[:5] + keys[-1:] if h.exists(x)]
            assert not expired, f"expired entries were promoted to hot: {expired}"
