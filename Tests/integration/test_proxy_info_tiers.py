"""INFO's section selection with the proxy's `# Tiers` and `# Proxy` (as Redis selects its own),
RESP3's verbatim string, and TIERS STATS / RULES / RESETSTAT / CONFIG GET|SET / HELP in RESP2 and
RESP3, with Redis-worded errors."""

from __future__ import annotations

import pytest

from harness import RawConn, encode_command as C

pytestmark = pytest.mark.proxy_process


def sections(text: str) -> list[str]:
    return [line[2:] for line in text.split("\r\n") if line.startswith("# ")]


@pytest.fixture
def prx(make_redis, make_proxy, tmp_path):
    srv = make_redis()
    return make_proxy(srv.url, flags={"dir": str(tmp_path)})


def info(conn: RawConn, *args: str) -> str:
    r = conn.cmd("INFO", *args)
    assert r.t in ("$", "="), r
    return r.v.decode() if isinstance(r.v, bytes) else r.v


def test_section_selection(prx):
    with RawConn(prx.port) as c:
        default = sections(info(c))
        assert default[0] == "Server" and default[-2:] == ["Tiers", "Proxy"]
        assert "Commandstats" not in default
        assert sections(info(c, "tiers")) == ["Tiers"]
        assert sections(info(c, "PROXY")) == ["Proxy"]
        assert sections(info(c, "server")) == ["Server"]
        assert sections(info(c, "server", "tiers")) == ["Server", "Tiers"]
        for everything in ("all", "everything"):
            s = sections(info(c, everything))
            assert "Commandstats" in s and s[-2:] == ["Tiers", "Proxy"]
        assert sections(info(c, "default")) == default


SELECTIONS = [(), ("default",), ("all",), ("everything",), ("server",), ("server", "clients"), ("tiers",),
              ("proxy",), ("tiers", "proxy"), ("proxy", "tiers"), ("SERVER", "Tiers"), ("default", "tiers"),
              ("commandstats",), ("nonsense",), ("nonsense", "proxy"), ("all", "proxy"), ("keyspace", "PROXY")]


def proxy_sections_for(args: tuple) -> list[str]:
    """What the proxy adds to Redis's own sections: both for none/default/all/everything, else the
    ones named (any case), after Redis's, in its fixed order."""
    names = {a.lower() for a in args}
    if not names or names & {"default", "all", "everything"}:
        return ["Tiers", "Proxy"]
    return [s for s in ("Tiers", "Proxy") if s.lower() in names]


@pytest.mark.parametrize("protocol", [2, 3])
def test_section_selection_is_redis_own_plus_the_proxy_sections(make_redis, make_proxy, tmp_path, protocol):
    """Differential: for each selection, the proxy's INFO has exactly the sections the same
    redis-server gives, in its order, then # Tiers / # Proxy as selected; RESP3 keeps the verbatim type."""
    srv = make_redis()
    prx = make_proxy(srv.url, flags={"dir": str(tmp_path)})
    with RawConn(srv.port) as direct, RawConn(prx.port) as proxied:
        if protocol == 3:
            assert direct.cmd("HELLO", "3").t == "%" and proxied.cmd("HELLO", "3").t == "%"
        for args in SELECTIONS:
            d, p = direct.cmd("INFO", *args), proxied.cmd("INFO", *args)
            assert p.t == d.t == ("=" if protocol == 3 else "$"), (args, d.t, p.t)
            dtext, ptext = info_text(d), info_text(p)
            want = sections(dtext) + proxy_sections_for(args)
            assert sections(ptext) == want, args
            if not proxy_sections_for(args):
                assert ptext == dtext or sections(ptext) == sections(dtext), args
            # Sections separated by one empty line, the body ending in CRLF, as Redis writes them.
            if ptext:
                assert ptext.endswith("\r\n") and "\r\n\r\n\r\n" not in ptext, args


def info_text(r) -> str:
    raw = r.v.decode() if isinstance(r.v, bytes) else r.v
    return raw[4:] if r.t == "=" and raw.startswith("txt:") else raw


def test_tiers_and_proxy_fields(prx):
    c = prx.client()
    c.set("a", "hello")
    tiers = c.info("tiers")
    for tier in ("warm", "cold"):
        for field in ("requests", "get_hits", "get_misses", "errors", "timeouts", "retries", "throttled",
                      "latency_p50_us", "latency_p95_us", "latency_p99_us", "latency_p999_us", "inflight",
                      "bytes_read", "bytes_written", "promotions", "state", "last_error"):
            assert f"{tier}_{field}" in tiers, f"{tier}_{field}"
    assert tiers["warm_bytes_written"] == 5 and tiers["warm_requests"] >= 1
    assert tiers["warm_latency_p50_us"] > 0 and tiers["warm_latency_p999_us"] >= tiers["warm_latency_p50_us"]
    proxy = c.info("proxy")
    for field in ("loops", "connected_clients", "pinned_clients", "upstream_connections_shared",
                  "upstream_connections_pinned", "upstream_reconnects", "rejected_connections", "buffer_memory_bytes"):
        assert field in proxy, field
    assert proxy["connected_clients"] >= 1
    pinned = proxy["pinned_clients"]                         # redis-py's own (CLIENT SETINFO pins)
    with RawConn(prx.port) as raw:
        assert raw.cmd("PING").v == b"PONG"
        assert c.info("proxy")["pinned_clients"] == pinned  # a raw connection shares
        raw.cmd("CLIENT", "SETNAME", "pinned")               # pins this connection
        assert c.info("proxy")["pinned_clients"] == pinned + 1


def test_resp3_info_is_a_verbatim_string(prx):
    with RawConn(prx.port) as c:
        assert c.cmd("HELLO", "3").t == "%"
        c.send(C("INFO", "tiers"))
        r = c.read_reply()
        assert r.raw.startswith(b"=") and b"\r\ntxt:# Tiers\r\n" in r.raw
        length = int(r.raw[1:r.raw.index(b"\r\n")])
        assert len(r.raw) == len(b"=%d\r\n" % length) + length + 2


def test_tiers_stats_rules_resetstat(prx):
    c = prx.client(protocol=2)
    c.set("x", "1")
    stats = c.execute_command("TIERS", "STATS")
    assert isinstance(stats, list) and len(stats) % 2 == 0
    fields = dict(zip(stats[::2], stats[1::2]))
    assert fields[b"lower_writes"] == b"1" and b"warm_latency_p99_us" in fields
    assert c.execute_command("TIERS", "RULES") == [b"* policy write-through tier warm (default)"]
    assert c.execute_command("TIERS", "RESETSTAT") == b"OK"
    fields = c.execute_command("TIERS", "STATS")
    assert dict(zip(fields[::2], fields[1::2]))[b"lower_writes"] == b"0"
    assert c.info("tiers")["lower_writes"] == 0
    with RawConn(prx.port) as raw:
        raw.cmd("HELLO", "3")
        r = raw.cmd("TIERS", "STATS")
        assert r.t == "%" and r.raw.startswith(b"%")
        r = raw.cmd("TIERS", "CONFIG", "GET", "tier-timeout")
        assert r.raw == b"%1\r\n$12\r\ntier-timeout\r\n$4\r\n5000\r\n"


def test_tiers_config_get_set(prx, tmp_path):
    c = prx.client(protocol=2)
    got = c.execute_command("TIERS", "CONFIG", "GET", "*")
    assert got[::2] == [b"rules", b"tier-timeout", b"negative-cache-ms", b"tier-slowlog-threshold", b"loglevel",
                        b"tiers-keyspace"]
    assert c.execute_command("TIERS", "CONFIG", "GET", "tier-*") == [b"tier-timeout", b"5000", b"tier-slowlog-threshold", b"500"]
    assert c.execute_command("TIERS", "CONFIG", "SET", "tier-timeout", "1234", "negative-cache-ms", "0") == b"OK"
    assert c.info("tiers")["tier_timeout_ms"] == 1234
    assert c.execute_command("TIERS", "CONFIG", "GET", "negative-cache-ms") == [b"negative-cache-ms", b"0"]
    # Rules change at once for every loop: a hot-only key stays out of the lower tiers.
    assert c.execute_command("TIERS", "CONFIG", "SET", "rules", "h:* policy hot-only; c:* policy write-through tier cold") == b"OK"
    c.set("h:1", "x")
    c.set("c:1", "y")
    assert c.execute_command("TIERS", "WHERE", "h:1") == [b"hot"]
    assert c.execute_command("TIERS", "WHERE", "c:1") == [b"hot", b"cold"]
    assert c.execute_command("TIERS", "RULES")[:2] == [b"h:* policy hot-only", b"c:* policy write-through tier cold"]
    assert c.execute_command("TIERS", "CONFIG", "SET", "loglevel", "verbose") == b"OK"
    assert c.execute_command("TIERS", "CONFIG", "GET", "loglevel") == [b"loglevel", b"verbose"]
    with RawConn(prx.port) as raw:
        assert raw.cmd("TIERS", "CONFIG", "SET", "nope", "1").v == b"ERR Unknown option or number of arguments for CONFIG SET - 'nope'"
        e = raw.cmd("TIERS", "CONFIG", "SET", "tier-timeout", "abc").v
        assert e.startswith(b"ERR CONFIG SET failed (possibly related to argument 'tier-timeout') - ")
        assert raw.cmd("TIERS", "CONFIG", "SET", "tier-timeout").v == b"ERR wrong number of arguments for 'tiers|config|set' command"
        assert raw.cmd("TIERS", "CONFIG", "SET", "tier-timeout", "1", "loglevel").v == b"ERR syntax error"   # as CONFIG SET a b c
        assert raw.cmd("TIERS", "CONFIG").v == b"ERR wrong number of arguments for 'tiers|config' command"
        assert raw.cmd("TIERS").v == b"ERR wrong number of arguments for 'tiers' command"
        long = "x" * 200
        assert raw.cmd("TIERS", long).v == f"ERR unknown subcommand '{'x' * 128}'. Try TIERS HELP.".encode()
        assert raw.cmd("TIERS", "CONFIG", "GET").v == b"ERR wrong number of arguments for 'tiers|config|get' command"
        assert raw.cmd("TIERS", "CONFIG", "NOPE").v == b"ERR unknown subcommand 'NOPE'. Try TIERS HELP."
        assert raw.cmd("TIERS", "STATS", "x").v == b"ERR wrong number of arguments for 'tiers|stats' command"
        assert raw.cmd("TIERS", "RESETSTAT", "x").v == b"ERR wrong number of arguments for 'tiers|resetstat' command"
        bad = raw.cmd("TIERS", "CONFIG", "SET", "rules", "x policy sometimes").v
        assert bad.startswith(b"ERR CONFIG SET failed (possibly related to argument 'rules')")
    assert c.execute_command("TIERS", "CONFIG", "GET", "tier-timeout") == [b"tier-timeout", b"1234"]


def test_help_lists_every_subcommand(prx):
    with RawConn(prx.port) as raw:                    # status lines, as Redis's HELP replies
        for args in (("TIERS", "HELP"), ("TIERS", "CONFIG", "HELP")):
            r = raw.cmd(*args)
            assert r.raw.startswith(b"*") and r.raw.split(b"\r\n")[1].startswith(b"+"), r.raw[:80]
            assert r.raw.count(b"\r\n+") == int(r.raw[1:r.raw.index(b"\r\n")]), r.raw[:80]
    help_lines = prx.client(protocol=2).execute_command("TIERS", "HELP")
    text = b"\n".join(help_lines)
    for sub in (b"WHERE", b"CHECK", b"STATS", b"RULES", b"RESETSTAT", b"CONFIG GET", b"CONFIG SET", b"HELP"):
        assert any(line.startswith(sub) for line in help_lines), sub
    assert b"tier-timeout" in text and b"negative-cache-ms" in text and b"loglevel" in text
