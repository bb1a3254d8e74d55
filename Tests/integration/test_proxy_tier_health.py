"""Tier states on the emulators (Cosmos warm, Blob cold, created by `tiers-create yes`): throttling
makes warm `degraded` (429s counted per tier in INFO and /metrics, one log line per change), a
stopped emulator makes both tiers `down` and /readyz 503, and the metrics show it."""

from __future__ import annotations

import json
import sys

import pytest

from harness import REPO, free_port, wait_for
from metrics_support import http_get, metric, scrape

sys.path.insert(0, str(REPO))
from Tests.emulators.harness import EmulatorProcess  # noqa: E402

pytestmark = pytest.mark.proxy_process


def state(port: int, tier: str) -> str:
    return json.loads(http_get(port, "/healthz/memory")[1])[tier]["state"]


def test_throttling_degrades_and_a_stopped_emulator_is_down(make_redis, make_proxy, tmp_path):
    emu = EmulatorProcess(ports={"identity": -1}).start()
    try:
        srv = make_redis()
        mport = free_port()
        cosmos = emu.cosmos_url.split("://", 1)[1]
        blob = emu.blob_account_url.split("://", 1)[1]
        prx = make_proxy(srv.url, flags={
            "dir": str(tmp_path), "warm": f"cosmos+http://{cosmos}/healthdb/state",
            "cold": f"blob+http://{blob}/healthcold", "tiers-create": "yes", "metrics-port": mport,
            "health-probe-interval": 200, "tier-timeout": 4000}, env=emu.env())
        wait_for(lambda: "ready (created if it was missing)" in prx.output() and prx.output().count("ready (created") == 2,
                 20, desc="tiers-create made the database, container and blob container")
        wait_for(lambda: http_get(mport, "/readyz")[0] == 200, 20, desc="/readyz 200")
        c = prx.client(protocol=2)
        assert c.set("t:1", "x") is True
        srv.client().delete("t:1")
        # Each lookup's ReadDocument throttled twice, then served: it succeeds after retries.
        for i in range(5):
            emu.add_fault("cosmos", kind="throttle", count=2, retry_after_ms=10, op="ReadDocument")
            srv.client().delete("t:1")
            assert c.get("t:1") == b"x"
        emu.add_fault("cosmos", kind="throttle", count=-1, retry_after_ms=10, op="ReadDocument")
        info = c.info("tiers")
        assert info["warm_throttled"] >= 10 and info["warm_retries"] >= 10
        m = scrape(mport)
        assert metric(m, "tierproxy_tier_http_throttled_total", tier="warm", status="429") >= 5
        assert metric(m, "tierproxy_tier_http_retries_total", tier="warm") >= 5
        def throttled_get():               # keeps 429s coming until the next probe sees them
            srv.client().delete("t:1")
            try:
                c.get("t:1")
            except Exception:
                pass
            return state(mport, "warm") == "degraded"
        wait_for(throttled_get, 10, desc="warm degraded after 429s")
        assert "Tier warm state up -> degraded" in prx.output()
        assert http_get(mport, "/readyz")[0] == 200           # degraded still answers: ready
        emu.clear_faults()
        wait_for(lambda: state(mport, "warm") == "up", 10, desc="warm up again once the 429s stop")
        assert "Tier warm state degraded -> up" in prx.output()
        emu.stop()
        wait_for(lambda: state(mport, "warm") == "down" and state(mport, "cold") == "down", 20,
                 desc="both tiers down with the emulators stopped")
        status, body = http_get(mport, "/readyz")
        assert status == 503 and "down" in body
        m = scrape(mport)
        assert metric(m, "tierproxy_tier_state", tier="warm", state="down") == 1
        assert metric(m, "tierproxy_tier_state", tier="hot", state="up") == 1
        assert c.info("tiers")["warm_state"] == "down" and c.info("tiers")["warm_last_error"] != "none"
        with pytest.raises(Exception, match="tier unavailable"):
            c.get("never-written")                              # a miss cannot be answered truthfully
    finally:
        emu.stop()
