"""Authorization (issue 4, Semantics 2: errors are not misses; Redis stays the judge of who may
read what). With `requirepass` on hot, an unauthenticated client asking for a key that lives
only in warm gets Redis's own `NOAUTH` reply (byte-equal to what hot answers directly), for
GET, MGET, STRLEN, EXISTS, TTL alike; an ACL user without access to the key gets Redis's
`NOPERM`; a GET of a hash gets `WRONGTYPE`. In none of these cases does a lower tier see a
request (emulator request counters, azure backend). Then an authenticated GET reads the key,
and that one costs a warm read: the refusals were refusals, not "absent".
"""

from __future__ import annotations

import pytest

from tierstack import RawConn, wait_for

PASSWORD = "tiered-secret"


def test_refusals_never_reach_the_lower_tiers(make_stack, backend):
    """Semantics 2: errors are not misses; only a nil falls through."""
    s = make_stack(backend, password=PASSWORD)
    counted = s.tiered and s.backend == "azure"
    with s.client(password=PASSWORD) as a:
        assert a.set("auth:k", "v") is True
        assert a.hset("auth:h", "f", "v") == 1
        assert a.acl_setuser("limited", enabled=True, passwords=["+limitedpw"], keys=["allowed:*"],
                             commands=["+@all"], reset=True) is True
    s.evict("auth:k")
    if s.tiered:
        assert s.warm.get("auth:k") is not None, "write-through SET did not reach warm"
    if counted:
        s.emu.reset_stats(("cosmos", "blob"))

    def both(argv: tuple, auth: tuple = ()) -> tuple:
        """The same command through the stack and straight to hot, on fresh connections."""
        out = []
        for port in (s.port, s.server.port):
            with RawConn(port, timeout=10) as r:
                if auth:
                    assert r.cmd("AUTH", *auth).raw == b"+OK\r\n"
                out.append(r.cmd(*argv).raw)
        return tuple(out)

    for argv in (("GET", "auth:k"), ("MGET", "auth:k", "other"), ("STRLEN", "auth:k"),
                 ("EXISTS", "auth:k"), ("TTL", "auth:k"), ("GETRANGE", "auth:k", 0, -1)):
        via, direct = both(argv)
        assert via.startswith(b"-NOAUTH"), f"{argv}: {via!r}"
        assert via == direct, f"{argv}: {via!r} differs from Redis's own {direct!r}"
    via, direct = both(("GET", "auth:k"), auth=("limited", "limitedpw"))
    assert via.startswith(b"-NOPERM") and via == direct, (via, direct)
    via, direct = both(("GET", "auth:h"), auth=(PASSWORD,))
    assert via.startswith(b"-WRONGTYPE") and via == direct, (via, direct)

    if counted:
        for svc in ("cosmos", "blob"):
            st = s.emu.stats(svc)
            assert st["requests"] == 0, f"{svc} saw requests for refused commands: {st['ops']}"
    with s.client(password=PASSWORD) as a:
        assert a.get("auth:k") == b"v"
    if counted:
        assert s.emu.ops("cosmos").get("ReadDocument", 0) == 1, s.emu.ops("cosmos")


def test_proxy_auth_denials_never_reach_the_lower_tiers(make_stack, backend):
    """auth-mode proxy (issue 12): the proxy judges the ACL itself, before the tiering path. A
    user denied a key that lives only below gets NOPERM for every read, and no lower tier sees a
    request; a key it may read is brought up as usual."""
    s = make_stack(backend, flags={"auth-mode": "proxy", "requirepass": PASSWORD, "negative-cache-ms": "0",
                                   "user": "tina on >tina-pw ~pub:* +@all"})
    if not s.tiered:
        pytest.skip("auth-mode is the proxy's: nothing to compare with a plain Redis here")
    counted = s.backend == "azure"
    with s.client(password=PASSWORD) as a:
        assert a.set("auth:k", "v") is True and a.set("pub:k", "p") is True
    s.evict("auth:k", "pub:k")

    def tina(*argv) -> bytes:
        with RawConn(s.port, timeout=10) as r:
            assert r.cmd("AUTH", "tina", "tina-pw").raw == b"+OK\r\n"
            return r.cmd(*argv).raw

    # The ACL rules need the upstream's command table, read once the proxy has started.
    wait_for(lambda: tina("PING") == b"+PONG\r\n", 30, desc="the proxy to have read the command table")

    def warm_requests() -> int:
        with s.client(password=PASSWORD) as a:
            return int(a.info("tiers")["warm_requests"])

    before = warm_requests()
    if counted:
        s.emu.reset_stats(("cosmos", "blob"))
    for argv in (("GET", "auth:k"), ("MGET", "auth:k", "pub:other"), ("STRLEN", "auth:k"), ("EXISTS", "auth:k"),
                 ("TTL", "auth:k"), ("GETRANGE", "auth:k", 0, -1), ("HGETALL", "auth:k"), ("TIERS", "WHERE", "auth:k")):
        assert tina(*argv).startswith(b"-NOPERM"), argv
    assert warm_requests() == before, "a denied key was looked up in the warm tier"
    if counted:
        for svc in ("cosmos", "blob"):
            st = s.emu.stats(svc)
            assert st["requests"] == 0, f"{svc} saw requests for denied keys: {st['ops']}"
    assert tina("GET", "pub:k") == b"$1\r\np\r\n"
    assert warm_requests() > before
    with s.client(password=PASSWORD) as a:
        assert a.get("auth:k") == b"v"
