"""TIERS CONFIG SET changes what the proxy does, not only what CONFIG GET answers: tier-timeout
bounds the wait for a slow tier (the Cosmos emulator with latency), negative-cache-ms decides
whether a second miss of an absent key asks warm again, loglevel decides which lines are written;
and a multi-argument SET applies everything or nothing, as Redis 7's CONFIG SET does."""

from __future__ import annotations

import sys

import pytest
import redis

from harness import REPO, RawConn, wait_for

sys.path.insert(0, str(REPO))
from Tests.emulators.harness import EmulatorProcess  # noqa: E402

pytestmark = pytest.mark.proxy_process


@pytest.fixture
def prx(make_redis, make_proxy, tmp_path):
    srv = make_redis()
    return make_proxy(srv.url, flags={"dir": str(tmp_path)})


def config_get(c, name: str) -> bytes:
    return dict(zip(*[iter(c.execute_command("TIERS", "CONFIG", "GET", name))] * 2))[name.encode()]


def test_negative_cache_ms_decides_whether_warm_is_asked_again(prx):
    c = prx.client(protocol=2)
    assert c.execute_command("TIERS", "CONFIG", "SET", "negative-cache-ms", "600000") == b"OK"
    before = c.info("tiers")
    assert c.get("absent:a") is None and c.get("absent:a") is None
    after = c.info("tiers")
    assert after["warm_get_misses"] - before["warm_get_misses"] == 1        # the second was remembered
    assert after["negative_cache_hits"] - before["negative_cache_hits"] == 1
    assert c.execute_command("TIERS", "CONFIG", "SET", "negative-cache-ms", "0") == b"OK"
    assert c.get("absent:b") is None and c.get("absent:b") is None
    last = c.info("tiers")
    assert last["warm_get_misses"] - after["warm_get_misses"] == 2          # nothing remembered
    assert last["negative_cache_hits"] == after["negative_cache_hits"]


def test_loglevel_decides_what_is_logged(prx):
    c = prx.client(protocol=2)
    pinned = "Client pinned to its own upstream connection"          # a debug line
    with RawConn(prx.port) as raw:
        raw.cmd("CLIENT", "SETNAME", "before")
    assert pinned not in prx.output()
    assert c.execute_command("TIERS", "CONFIG", "SET", "loglevel", "debug") == b"OK"
    with RawConn(prx.port) as raw:
        raw.cmd("CLIENT", "SETNAME", "after")
    wait_for(lambda: pinned in prx.output(), 10, desc="the debug line once loglevel is debug")
    # At warning, the notice that records the change itself is not written.
    assert c.execute_command("TIERS", "CONFIG", "SET", "loglevel", "warning") == b"OK"
    assert c.execute_command("TIERS", "CONFIG", "SET", "tier-slowlog-threshold", "777") == b"OK"
    assert "TIERS CONFIG SET loglevel debug" in prx.output()
    assert "TIERS CONFIG SET tier-slowlog-threshold 777" not in prx.output()


def test_multi_argument_set_is_all_or_nothing(prx):
    c = prx.client(protocol=2)
    with RawConn(prx.port) as raw:
        e = raw.cmd("TIERS", "CONFIG", "SET", "tier-timeout", "1234", "negative-cache-ms", "abc").v
        assert e.startswith(b"ERR CONFIG SET failed (possibly related to argument 'negative-cache-ms') - "), e
        e = raw.cmd("TIERS", "CONFIG", "SET", "tier-timeout", "1", "TIER-TIMEOUT", "2").v
        assert e == b"ERR CONFIG SET failed (possibly related to argument 'TIER-TIMEOUT') - duplicate parameter", e
        e = raw.cmd("TIERS", "CONFIG", "SET", "tier-timeout", "1", "Nope", "2").v
        assert e == b"ERR Unknown option or number of arguments for CONFIG SET - 'Nope'", e
    assert config_get(c, "tier-timeout") == b"5000"                          # none of them applied
    assert config_get(c, "negative-cache-ms") == b"1000"
    assert c.execute_command("TIERS", "CONFIG", "SET", "TIER-TIMEOUT", "1234", "negative-cache-ms", "5") == b"OK"
    assert config_get(c, "tier-timeout") == b"1234" and config_get(c, "negative-cache-ms") == b"5"


def test_tier_timeout_bounds_the_wait_for_a_slow_tier(make_redis, make_proxy, tmp_path):
    emu = EmulatorProcess(ports={"identity": -1}).start()
    try:
        srv = make_redis()
        cosmos = emu.cosmos_url.split("://", 1)[1]
        blob = emu.blob_account_url.split("://", 1)[1]
        prx = make_proxy(srv.url, flags={
            "dir": str(tmp_path), "warm": f"cosmos+http://{cosmos}/rtdb/state",
            "cold": f"blob+http://{blob}/rtcold", "tiers-create": "yes", "tier-timeout": 5000}, env=emu.env())
        wait_for(lambda: prx.output().count("ready (created") == 2, 20, desc="tiers-create made both tiers")
        c = prx.client(protocol=2)
        assert c.set("slow:1", "x") is True
        emu.add_fault("cosmos", kind="latency", ms=1500, op="ReadDocument", count=-1)
        srv.client().delete("slow:1")
        assert c.get("slow:1") == b"x"                 # 1.5 s is within 5000 ms: answered
        assert c.execute_command("TIERS", "CONFIG", "SET", "tier-timeout", "300") == b"OK"
        srv.client().delete("slow:1")
        with pytest.raises(redis.ResponseError, match=r"no answer within tier-timeout \(300 ms\)"):
            c.get("slow:1")                            # the same 1.5 s read, cut off at 300 ms
        assert c.info("tiers")["warm_timeouts"] >= 1
    finally:
        emu.stop()
