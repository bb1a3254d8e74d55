"""Visibility and placement rules (issue 4, Semantics 8, 3, 6).

`TIERS WHERE key` — the format this suite fixes (decision, kept simple):
    a RESP array of bulk strings naming the tiers that hold a live (unexpired) copy of `key` in
    the connection's selected db, in the order "hot", "warm", "cold"; an empty array when no
    tier holds it. It never promotes and never changes any tier.
    e.g.  TIERS WHERE user:1  ->  1) "hot" 2) "warm"        TIERS WHERE nope -> (empty array)

`INFO` gains a `# Tiers` section (`INFO tiers` returns it alone, as `field:value` lines); the
sections Redis answers are unchanged.

Rules: `--rule "PATTERN policy write-through|write-behind|hot-only [ttl SECONDS] [tier warm|cold]"`,
repeatable, first match wins, default write-through to warm. Decision on `ttl`: it is the
expiry a write gets when the client's command carries none (the seed's "sessions hot-only with
a 300 s TTL"); a command's own expiry wins.
"""

from __future__ import annotations

import pytest

from tierstack import wait_for

pytestmark = pytest.mark.tiers_only

RULES = (
    "sess:* policy hot-only ttl 300",
    "cat:big* policy hot-only",              # first match wins over the next rule
    "cat:* policy write-through tier cold",
)


def test_tiers_where(make_stack, backend):
    """Semantics 8: TIERS WHERE (format in the module docstring)."""
    s = make_stack(backend, rules=RULES)
    c = s.client()
    with s.raw() as r:
        c.set("u:1", "v")
        assert s.where("u:1", r) == [b"hot", b"warm"]
        s.evict("u:1")
        assert s.where("u:1", r) == [b"warm"], "TIERS WHERE must not promote"
        assert s.where("u:1", r) == [b"warm"]
        assert c.get("u:1") == b"v"
        assert s.where("u:1", r) == [b"hot", b"warm"]
        c.set("cat:1", "v")
        assert s.where("cat:1", r) == [b"hot", b"cold"]
        c.set("sess:1", "v")
        assert s.where("sess:1", r) == [b"hot"]
        c.set("u:big", b"z" * (3 * 1024 * 1024))          # over the 2 MB warm item limit
        assert s.where("u:big", r) == [b"hot", b"cold"]
        assert c.delete("u:1", "cat:1") == 2
        assert s.where("u:1", r) == [] and s.where("cat:1", r) == []
        assert s.where("never", r) == []
        c.set("u:brief", "v", px=300)
        s.evict("u:brief")
        wait_for(lambda: s.where("u:brief", r) == [], 5, desc="an expired entry to leave TIERS WHERE")
        assert r.cmd("SELECT", 1).raw == b"+OK\r\n"
        assert s.where("u:big", r) == []
        assert r.cmd("SET", "u:big", "db1").raw == b"+OK\r\n"
        assert s.where("u:big", r) == [b"hot", b"warm"]


def test_info_tiers_section(stack):
    """Semantics 8: INFO gains # Tiers."""
    with stack.raw() as r:
        full = r.cmd("INFO").v.decode()
        assert "# Server" in full and "redis_version:" in full, "Redis's own INFO sections are gone"
        assert "\r\n# Tiers\r\n" in "\r\n" + full, "INFO lacks a # Tiers section"
        only = r.cmd("INFO", "tiers").v.decode().strip().splitlines()
    assert only[0] == "# Tiers", only[:3]
    fields = [line for line in only[1:] if line]
    assert fields and all(":" in line for line in fields), only


def test_placement_rules(make_stack, backend):
    """Semantics 3: rules, first match wins; hot-only; rule ttl; tier cold."""
    s = make_stack(backend, rules=RULES)
    with s.client() as c:
        c.set("sess:a", "v")
        c.set("sess:b", "v", ex=50)
        c.set("cat:bigone", "v")
        c.set("cat:small", "v")
        c.set("other", "v")
        assert 290 <= c.ttl("sess:a") <= 300, "rule ttl not applied to a write without expiry"
        assert 45 <= c.ttl("sess:b") <= 50, "rule ttl overrode the command's own expiry"
        assert c.ttl("cat:small") == -1 and c.ttl("other") == -1
    mine = {b"sess:a", b"sess:b", b"cat:bigone", b"cat:small", b"other"}
    warm = {e.key for e in s.warm.entries()} & mine
    cold = {e.key for e in s.cold.entries()} & mine
    assert warm == {b"other"}, f"warm holds {warm}"
    assert cold == {b"cat:small"}, f"cold holds {cold}"
    s.lose_hot()
    with s.client() as c:
        assert c.mget("sess:a", "sess:b", "cat:bigone") == [None, None, None], \
            "hot-only keys are lost with hot: that is what hot-only means"
        assert c.mget("cat:small", "other") == [b"v", b"v"]
        assert c.ttl("cat:small") == -1
