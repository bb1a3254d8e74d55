"""A real Prometheus (Debian's package) scrapes the proxy on loopback every second while a load
runs: the counters it stored match what the load did (N misses in hot → N lookups; the warm hit
ratio within 1%), and every expression of deploy/grafana/tierproxy.json returns series."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse

import pytest
import yaml

from harness import REDIS_BENCHMARK, REPO, free_port, tail, wait_for
from metrics_support import http_get, scrape

pytestmark = pytest.mark.proxy_process


def dashboard_expressions() -> list[tuple[str, str]]:
    dash = json.loads((REPO / "deploy" / "grafana" / "tierproxy.json").read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"].replace("$job", ".*")))
    return out


class Prometheus:
    def __init__(self, tmp, target_port: int):
        self.port = free_port()
        config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{target_port}"]}]
        self.config = tmp / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = tmp / "prometheus.log"
        binary = shutil.which("prometheus")
        assert binary, "prometheus is installed by scripts/deps.sh (Debian's prometheus package)"
        self.proc = subprocess.Popen([binary, f"--config.file={self.config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: self.proc.poll() is not None or http_get(self.port, "/-/ready")[0] == 200, 30,
                 desc="prometheus ready", ignore=(OSError,))
        assert self.proc.poll() is None, tail(self.log)

    def query(self, expr: str) -> list:
        status, body = http_get(self.port, "/api/v1/query?query=" + urllib.parse.quote(expr))
        assert status == 200, (expr, body)
        data = json.loads(body)
        assert data["status"] == "success", data
        return data["data"]["result"]

    def value(self, expr: str):
        r = self.query(expr)
        return float(r[0]["value"][1]) if r else None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)


def loop_requests(port: int) -> float:
    return sum(v for (name, _), v in scrape(port).items() if name == "tierproxy_loop_requests_total")


@pytest.fixture
def stack(make_redis, make_proxy, tmp_path):
    srv = make_redis()
    mport = free_port()
    prx = make_proxy(srv.url, flags={"dir": str(tmp_path / "data"), "metrics-port": mport, "threads": 2,
                                     "health-probe-interval": 500})
    prx.metrics_port = mport
    prom = Prometheus(tmp_path, mport)
    yield srv, prx, prom
    prom.stop()


def test_scraped_counters_match_the_load_and_dashboard_has_series(stack):
    srv, prx, prom = stack
    # Prometheus's first scrape comes seconds after it is ready (target updates are batched): the
    # load starts once it scrapes, so that it scrapes while the load runs.
    wait_for(lambda: prom.value('up{job="tierproxy"}') == 1, 30, desc="Prometheus's first scrape of the proxy")
    c, hot = prx.client(), srv.client()
    stored, absent = 400, 100
    for i in range(stored):
        c.set(f"k:{i}", "v")
    hot.flushall()
    for i in range(stored):
        assert c.get(f"k:{i}") == b"v"
    for i in range(absent):
        assert c.get(f"absent:{i}") is None
    # The hit path under load while Prometheus scrapes: bounded, every GET a hot hit, long enough
    # (seconds) that some scrapes land in the middle of it.
    lo = loop_requests(prx.metrics_port)
    bench = subprocess.run([REDIS_BENCHMARK, "-p", str(prx.port), "-n", "200000", "-c", "10", "-q", "GET", "k:1"],
                           capture_output=True, timeout=300)
    assert bench.returncode == 0, bench.stderr
    hi = loop_requests(prx.metrics_port)
    assert hi - lo >= 200000
    def scraped_mid_load():
        series = prom.query("sum(tierproxy_loop_requests_total)[5m:1s]")
        return series and any(lo + 1000 < float(v) < hi - 1000 for _, v in series[0]["values"])
    wait_for(scraped_mid_load, 30, desc="a scrape stored while the benchmark ran")
    wait_for(lambda: prom.value("tierproxy_lookups_total") == stored + absent, 30,
             desc=f"Prometheus to store tierproxy_lookups_total = {stored + absent}")
    assert prom.value('tierproxy_lookup_hits_total{tier="warm"}') == stored
    assert prom.value("tierproxy_lookup_misses_total") == absent
    ratio = prom.value('tierproxy_lookup_hits_total{tier="warm"} / ignoring(tier) tierproxy_lookups_total')
    assert abs(ratio - stored / (stored + absent)) < 0.01
    assert prom.value('up{job="tierproxy"}') == 1
    # rate() over the dashboard's windows needs a few samples.
    wait_for(lambda: (prom.value("count_over_time(tierproxy_up[5m])") or 0) >= 4, 30, desc="4 scrapes stored")
    empty = [(title, expr) for title, expr in dashboard_expressions() if not prom.query(expr)]
    assert not empty, f"dashboard expressions with no series: {empty}"
