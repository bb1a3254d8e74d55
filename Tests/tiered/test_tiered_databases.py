"""Databases (issue 4: "SELECTed databases stay separate in every tier"; "FLUSHDB / FLUSHALL
through the proxy").

* The same key in dbs 0-3 holds four values in every tier; after hot loses everything each db
  reads its own value back, through redis-py's per-db connections and through one raw
  connection that SELECTs; DEL in one db and COPY ... DB n across dbs stay in their dbs.
* FLUSHALL / FLUSHDB (with or without ASYNC/SYNC) through the proxy are refused with an
  `-ERR` naming `tiers-allow-flush` (decision: the message names the directive so the
  operator knows the switch), and nothing is flushed anywhere.
* With `--tiers-allow-flush yes`, FLUSHDB empties that db in every tier (other dbs keep
  theirs, also after hot loses everything), and FLUSHALL empties every db in every tier.
"""

from __future__ import annotations

import pytest

from tierstack import wait_for

COLD_RULE = "c:* policy write-through tier cold"


def test_selected_databases_stay_separate(make_stack, backend):
    """Issue 4 'Database index': SELECTed dbs stay separate in every tier (and COPY ... DB)."""
    s = make_stack(backend, rules=(COLD_RULE,))
    for db in range(4):
        with s.client(db) as c:
            assert c.set("same", f"db{db}") is True
            assert c.set("c:same", f"cold-db{db}") is True
    with s.client(2) as c:
        c.set("only2", "x")
    with s.client(0) as c:
        assert c.copy("same", "copied", destination_db=3) is True
    with s.client(1) as c:
        assert c.delete("same") == 1
    if s.tiered:
        held = {e.db: e.value for e in s.warm.entries() if e.key == b"same"}
        assert held == {0: b"db0", 2: b"db2", 3: b"db3"}, f"warm entries of 'same' per db: {held}"
        held = {e.db: e.value for e in s.cold.entries() if e.key == b"c:same"}
        assert held == {db: b"cold-db%d" % db for db in range(4)}, f"cold entries per db: {held}"
    s.lose_hot()
    for db in range(4):
        with s.client(db) as c:
            assert c.get("same") == (None if db == 1 else f"db{db}".encode()), f"db {db}"
            assert c.get("c:same") == f"cold-db{db}".encode(), f"db {db}"
            assert c.get("only2") == (b"x" if db == 2 else None), f"db {db}"
            assert c.get("copied") == (b"db0" if db == 3 else None), f"db {db}"
    s.lose_hot()
    with s.raw() as r:       # one connection moving between dbs (the proxy must follow SELECT)
        for db in (3, 0, 2, 1, 2):
            assert r.cmd("SELECT", db).raw == b"+OK\r\n"
            want = b"$-1\r\n" if db == 1 else b"$3\r\ndb%d\r\n" % db
            assert r.cmd("GET", "same").raw == want, f"db {db} after SELECT"
        assert r.cmd("SELECT", 3).raw == b"+OK\r\n"
        assert r.cmd("EXISTS", "copied", "same", "only2").raw == b":2\r\n"


@pytest.mark.tiers_only
@pytest.mark.parametrize("argv", [("FLUSHALL",), ("FLUSHALL", "ASYNC"), ("FLUSHDB",), ("FLUSHDB", "SYNC")])
def test_flush_refused_by_default(make_stack, argv):
    """Issue 4 'FLUSHDB / FLUSHALL': refused with a clear error unless tiers-allow-flush yes."""
    s = make_stack("local")
    with s.client() as c:
        c.set("keep", "v")
    with s.raw() as r:
        got = r.cmd(*argv)
        assert got.t == "-" and got.v.startswith(b"ERR") and b"tiers-allow-flush" in got.v, got
        assert r.cmd("GET", "keep").v == b"v"
    with s.hot() as h:
        assert h.get("keep") == b"v", f"{argv} was refused but hot was flushed anyway"
    assert s.warm.get("keep") is not None


def _tier_keys(s, db):
    keys = set()
    for insp in (s.warm, s.cold):
        keys |= {k for (d, k) in insp.live_keys(db)}
    return keys


def test_flush_allowed_empties_every_tier(make_stack, backend):
    """Issue 4 'FLUSHDB / FLUSHALL' with tiers-allow-flush yes: that db's lower tiers are emptied too."""
    s = make_stack(backend, rules=(COLD_RULE,), flags={"tiers-allow-flush": "yes"})
    for db in (0, 1, 2):
        with s.client(db) as c:
            c.mset({"x": f"db{db}", "c:x": f"cold{db}"})
    with s.raw() as r:
        assert r.cmd("SELECT", 1).raw == b"+OK\r\n"
        assert r.cmd("FLUSHDB").raw == b"+OK\r\n"
    if s.tiered:
        wait_for(lambda: not _tier_keys(s, 1), 10, desc="FLUSHDB in db 1 to empty db 1 in warm and cold")
        assert _tier_keys(s, 0) == {b"x", b"c:x"} and _tier_keys(s, 2) == {b"x", b"c:x"}, \
            "FLUSHDB in db 1 touched other dbs' lower tiers"
    s.lose_hot()
    for db in (0, 1, 2):
        with s.client(db) as c:
            want = [None, None] if db == 1 else [f"db{db}".encode(), f"cold{db}".encode()]
            assert c.mget("x", "c:x") == want, f"db {db}"
    with s.raw() as r:
        assert r.cmd("FLUSHALL").raw == b"+OK\r\n"
    if s.tiered:
        wait_for(lambda: not _tier_keys(s, None), 10, desc="FLUSHALL to empty warm and cold")
    s.lose_hot()
    for db in (0, 2):
        with s.client(db) as c:
            assert c.mget("x", "c:x") == [None, None], f"db {db} after FLUSHALL"
