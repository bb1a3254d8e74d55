"""The metrics and health endpoint (`metrics-port`): /metrics counters against a load whose
effects are known, promtool's format check, /healthz, /readyz and /healthz/memory as hot goes
down and comes back, the tier state-change and slow-log lines (both log formats)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from harness import REPO, RawConn, free_port, wait_for
from metrics_support import http_get, metric, scrape

pytestmark = pytest.mark.proxy_process


def start(make_redis, make_proxy, tmp_path, **flags):
    srv = make_redis()
    port = free_port()
    base = {"dir": str(tmp_path), "metrics-port": port, "health-probe-interval": 200, "threads": 2}
    base.update(flags)
    prx = make_proxy(srv.url, flags=base)
    return srv, prx, port


def test_metrics_off_by_default(make_redis, make_proxy, tmp_path):
    srv = make_redis()
    prx = make_proxy(srv.url, flags={"dir": str(tmp_path)})
    assert prx.client().info("proxy")["metrics_port"] == 0
    assert prx.client().info("tiers")["warm_state"] == "unknown"     # no probes without the endpoint (README)
    assert "Metrics and health endpoint" not in prx.output()


def test_counters_match_the_load_and_promtool_accepts(make_redis, make_proxy, tmp_path):
    srv, prx, port = start(make_redis, make_proxy, tmp_path)
    c, hot = prx.client(), srv.client()
    stored, absent = 300, 100
    for i in range(stored):
        c.set(f"k:{i}", "v" * 10)
    hot.flushall()                                        # hot loses every key: they live in warm
    for i in range(stored):
        assert c.get(f"k:{i}") == b"v" * 10               # found in warm, promoted
    for i in range(absent):
        assert c.get(f"none:{i}") is None                 # found nowhere
    for i in range(stored):
        assert c.get(f"k:{i}") == b"v" * 10               # hot hits now: no lookup
    m = scrape(port)
    assert metric(m, "tierproxy_lookups_total") == stored + absent
    assert metric(m, "tierproxy_lookup_hits_total", tier="warm") == stored
    assert metric(m, "tierproxy_lookup_misses_total") == absent
    assert metric(m, "tierproxy_promotions_total") == stored
    assert metric(m, "tierproxy_tier_promotions_total", tier="warm") == stored
    assert metric(m, "tierproxy_tier_requests_total", tier="warm", op="get", result="hit") == stored
    assert metric(m, "tierproxy_tier_requests_total", tier="warm", op="get", result="miss") == absent
    assert metric(m, "tierproxy_tier_requests_total", tier="cold", op="get", result="miss") == absent
    assert metric(m, "tierproxy_tier_requests_total", tier="warm", op="put", result="ok") == stored
    ratio = metric(m, "tierproxy_lookup_hits_total", tier="warm") / metric(m, "tierproxy_lookups_total")
    assert abs(ratio - stored / (stored + absent)) < 0.01
    count = metric(m, "tierproxy_tier_request_duration_seconds_count", tier="warm", op="get")
    assert count == stored + absent
    assert metric(m, "tierproxy_tier_request_duration_seconds_bucket", tier="warm", op="get", le="+Inf") == count
    assert metric(m, "tierproxy_tier_written_bytes_total", tier="warm") == stored * 10
    # redis-py pins its connection (CLIENT SETINFO); a raw connection stays on the shared route,
    # where every request is counted per loop.
    before = sum(v for (name, labels), v in m.items()
                 if name == "tierproxy_loop_requests_total" and ("route", "shared") in labels)
    with RawConn(prx.port) as raw:
        for i in range(stored):                           # one at a time: deep pipelines pin
            assert raw.cmd("GET", f"k:{i}").v == b"v" * 10
    m = scrape(port)
    after = sum(v for (name, labels), v in m.items()
                if name == "tierproxy_loop_requests_total" and ("route", "shared") in labels)
    assert after - before == stored
    assert metric(m, "tierproxy_connected_clients") >= 1
    assert metric(m, "tierproxy_loops") == 2
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by scripts/deps.sh (Debian's prometheus package)"
    status, body = http_get(port, "/metrics")
    check = subprocess.run([promtool, "check", "metrics"], input=body.encode(), capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert_families_grouped(body)
    # TIERS RESETSTAT zeroes INFO's counters; /metrics stays monotonic, as Prometheus counters must.
    assert c.execute_command("TIERS", "RESETSTAT") == b"OK"
    assert c.info("tiers")["lookups"] == 0
    assert metric(scrape(port), "tierproxy_lookups_total") == stored + absent


def family_of(sample_name: str, types: dict[str, str]) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample_name[: -len(suffix)]
        if sample_name.endswith(suffix) and types.get(base) == "histogram":
            return base
    return sample_name


def assert_families_grouped(body: str):
    """The text format wants each family's lines in one group, HELP and TYPE first."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M))
    seen, current = [], None
    for line in body.splitlines():
        name = line.split()[2] if line.startswith("# ") else family_of(re.split(r"[{ ]", line, 1)[0], types)
        if name != current:
            assert name not in seen, f"{name}: its lines are split into more than one group"
            seen.append(name)
            current = name


def test_every_metric_the_readme_names_is_served(make_redis, make_proxy, tmp_path):
    """The README's /metrics list, names and label sets, against what the endpoint serves."""
    srv, prx, port = start(make_redis, make_proxy, tmp_path)
    prx.client().set("a", "1")
    readme = (REPO / "README.md").read_text()
    bullet = readme.split("- **`/metrics`**", 1)[1].split("\n- **", 1)[0]
    named = re.findall(r"`(tierproxy_[a-z_]+)(?:\{([a-z_,]+)(?:=[^}]*)?\})?`", bullet)
    assert len(named) >= 20, named
    status, body = http_get(port, "/metrics")
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M))
    samples = scrape(port)
    missing = []
    for name, labels in named:
        if name not in types:
            missing.append(name)
            continue
        if labels:
            want = set(labels.split(","))
            have = [{k for k, _ in ls} for n, ls in samples if n == name]
            if want not in have:
                missing.append(f"{name}{{{labels}}} (served with {have[:1]})")
    assert not missing, missing
    for issue_name in ("tierproxy_tier_request_duration_seconds_bucket", "tierproxy_write_behind_backlog",
                       "tierproxy_write_behind_oldest_age_seconds", "tierproxy_pending_deletes"):
        assert any(n == issue_name for n, _ in samples), issue_name


def test_health_endpoints_follow_hot(make_redis, make_proxy, tmp_path):
    srv, prx, port = start(make_redis, make_proxy, tmp_path)
    assert http_get(port, "/healthz") == (200, "ok\n")
    wait_for(lambda: http_get(port, "/readyz")[0] == 200, 10, desc="/readyz 200")
    health = json.loads(http_get(port, "/healthz/memory")[1])
    assert set(health) == {"hot", "warm", "cold"}
    assert [health[t]["state"] for t in ("hot", "warm", "cold")] == ["up", "up", "up"]
    assert health["warm"]["backend"] == f"sqlite:{tmp_path}/warm.db" and health["hot"]["last_error"] is None
    for tier in ("hot", "warm", "cold"):
        assert set(health[tier]) == {"state", "backend", "last_error", "latency_ms"}, health[tier]
        assert isinstance(health[tier]["latency_ms"], float) and health[tier]["last_error"] is None, health[tier]
    assert health["cold"]["backend"] == f"dir:{tmp_path}/cold"
    srv.stop()
    wait_for(lambda: http_get(port, "/readyz")[0] == 503, 10, desc="/readyz 503 with hot down")
    health = json.loads(http_get(port, "/healthz/memory")[1])
    assert health["hot"]["state"] == "down" and health["hot"]["last_error"]
    assert http_get(port, "/healthz")[0] == 200          # alive, though not ready
    m = scrape(port)
    assert metric(m, "tierproxy_tier_state", tier="hot", state="down") == 1
    srv.start()
    wait_for(lambda: http_get(port, "/readyz")[0] == 200, 10, desc="/readyz 200 again")
    out = prx.output()
    assert "Tier hot state up -> down" in out and "Tier hot state down -> up" in out
    assert http_get(port, "/nope")[0] == 404


def test_slowlog_and_state_lines_in_json(make_redis, make_proxy, tmp_path):
    srv, prx, port = start(make_redis, make_proxy, tmp_path, **{"log-format": "json", "tier-slowlog-threshold": 0})
    c = prx.client()
    c.set("secret-key", "1")
    wait_for(lambda: '"op":"put"' in prx.output(), 10, desc="the put's slow-log line")   # its delete in cold may come first
    lines = [json.loads(line) for line in prx.output().splitlines() if line.startswith("{")]
    slow = [x for x in lines if x.get("event") == "tier_slow"]
    put = next(x for x in slow if x["op"] == "put")
    assert put["tier"] == "warm" and put["outcome"] == "ok" and isinstance(put["duration_ms"], (int, float))
    assert len(put["key_hash"]) == 16 and "key" not in put
    assert "secret-key" not in prx.output()
    states = [x for x in lines if x.get("event") == "tier_state"]
    assert {(x["tier"], x["to"]) for x in states} >= {("hot", "up"), ("warm", "up"), ("cold", "up")}
    # log-keys yes prints the key itself; a threshold of -1 logs nothing.
    c.execute_command("TIERS", "CONFIG", "SET", "tier-slowlog-threshold", "-1")
    before = prx.output().count("tier_slow")
    c.set("other", "2")
    assert c.execute_command("TIERS", "WHERE", "other") == [b"hot", b"warm"]
    assert prx.output().count("tier_slow") == before


def fnv1a64(data: bytes) -> str:
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def test_slowlog_line_in_redis_format_hashes_the_key(make_redis, make_proxy, tmp_path):
    srv, prx, port = start(make_redis, make_proxy, tmp_path, **{"tier-slowlog-threshold": 0})
    prx.client().set("hidden-key", "1")
    # The write's put to warm and its delete in cold are logged in either order.
    def put_line():
        return next((x for x in prx.output().splitlines() if "Tier slow operation" in x and " op=put" in x), None)
    line = wait_for(put_line, 10, desc="the put's slow-log line")
    fields = dict(f.split("=", 1) for f in line.split("Tier slow operation", 1)[1].split())
    assert fields["tier"] == "warm" and fields["outcome"] == "ok" and fields["db"] == "0"
    assert float(fields["duration_ms"]) >= 0
    assert fields["key_hash"] == fnv1a64(b"hidden-key") and "key" not in fields
    assert "hidden-key" not in prx.output()


def test_log_keys_prints_the_key(make_redis, make_proxy, tmp_path):
    srv, prx, port = start(make_redis, make_proxy, tmp_path, **{"tier-slowlog-threshold": 0, "log-keys": "yes"})
    prx.client().set("visible-key", "1")
    prx.client().set("two\nlines", "1")
    wait_for(lambda: "key=visible-key" in prx.output(), 10, desc="slow-log line with the key")
    # A key that would break the line is printed quoted and escaped, on its own line still.
    wait_for(lambda: 'key="two\\nlines"' in prx.output(), 10, desc="the escaped key")
    assert not any(line.startswith("lines") for line in prx.output().splitlines())


def test_log_keys_in_json(make_redis, make_proxy, tmp_path):
    srv, prx, port = start(make_redis, make_proxy, tmp_path, **{"tier-slowlog-threshold": 0, "log-keys": "yes",
                                                                  "log-format": "json"})
    prx.client().set("json-key", "1")
    def slow_lines():
        return [x for x in (json.loads(line) for line in prx.output().splitlines() if line.startswith("{"))
                if x.get("event") == "tier_slow" and x.get("op") == "put"]
    line = wait_for(slow_lines, 10, desc="a JSON slow-log line")[0]
    assert line["key"] == "json-key" and "key_hash" not in line
    assert {"tier", "op", "duration_ms", "outcome", "db"} <= set(line)


def test_hot_that_wants_auth_from_each_client_is_up(make_redis, make_proxy, tmp_path):
    # The proxy has no password; Redis answers NOAUTH, so it is reachable: ready.
    srv = make_redis(args=("--requirepass", "pw"))
    port = free_port()
    prx = make_proxy(srv.url, flags={"dir": str(tmp_path), "metrics-port": port, "health-probe-interval": 200},
                     wait="port")
    # The proxy port accepts (its sockets listen) a moment before the metrics endpoint is bound.
    wait_for(lambda: http_get(port, "/readyz")[0] == 200, 10, desc="/readyz 200 with NOAUTH from hot", ignore=(OSError,))
    # A wrong proxy password is a refused handshake: down.
    port2 = free_port()
    bad = make_proxy(f"redis://:nope@127.0.0.1:{srv.port}", flags={"dir": str(tmp_path / "b"), "metrics-port": port2,
                                                                    "health-probe-interval": 200}, wait="port")
    # /readyz is 503 before the first probe too: wait for the probe's verdict, then check both.
    def hot_after_probe():
        hot = json.loads(http_get(port2, "/healthz/memory")[1])["hot"]
        return hot if hot["state"] != "unknown" else None
    hot = wait_for(hot_after_probe, 10, desc="hot probed with a refused AUTH", ignore=(OSError,))
    assert hot["state"] == "down" and "WRONGPASS" in hot["last_error"], hot
    status, body = http_get(port2, "/readyz")
    assert status == 503 and "hot: down" in body, (status, body)
