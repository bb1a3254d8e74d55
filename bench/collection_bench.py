#!/usr/bin/env python3
"""Issue 10 figure: what one write to a big collection costs when every type is tiered.

A hash of --fields fields (default 100 000, `field:N` -> `value:N`) is built on each target, then
--writes single-field HSETs are timed one after another (redis-py, one connection): the mean
latency per write and the proxy's CPU per write (utime+stime from /proc/PID/stat). Targets, each
with its own fresh redis-server:
  direct          Redis itself
  write-through   tierproxy, embedded tiers (warm sqlite, cold dir), default rule
  write-behind    the same, with `rule * policy write-behind`
Also the DUMP payload's size, which each tiered write reads back and stores whole.

Usage: bench/collection_bench.py [--fields 100000] [--writes 30] [--write-results]
Figures from a busy machine are not final.
"""
import argparse, os, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxy_bench import ROOT  # noqa: E402
from tiered_bench import Proxy, snapshot_binary, start_redis, write_results  # noqa: E402

sys.path.insert(0, ROOT)
import redis  # noqa: E402

SECTION = "## Writes to a big collection (issue 10)"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(port, pid, fields, writes):
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=600) as c:
        with c.pipeline(transaction=False) as p:
            for i in range(0, fields, 1000):
                p.hset("big", mapping={f"field:{j}": f"value:{j}" for j in range(i, min(i + 1000, fields))})
            p.execute()
        cpu0, t0 = cpu_seconds(pid) if pid else 0.0, time.perf_counter()
        for i in range(writes):
            c.hset("big", "field:1", str(i))
        elapsed = time.perf_counter() - t0
        cpu = (cpu_seconds(pid) - cpu0) if pid else None
        return elapsed / writes, cpu / writes if cpu is not None else None, len(c.dump("big"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fields", type=int, default=100_000)
    ap.add_argument("--writes", type=int, default=30)
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tierproxy-collection-bench-")
    binary = snapshot_binary(os.environ.get("TIERPROXY_BIN", os.path.join(ROOT, ".build/release/tierproxy")), tmp)
    rows = []
    for name, rules in (("direct", None), ("write-through", []), ("write-behind", ["--rule", "* policy write-behind"])):
        r = start_redis(tmp)
        proxy = None
        try:
            if rules is not None:
                proxy = Proxy(name, binary, tmp, r.port, 1, "sqlite:{dir}/warm.db", "dir:{dir}/cold", extra=rules)
            port, pid = (proxy.port, proxy.proc.pid) if proxy else (r.port, None)
            latency, cpu, size = measure(port, pid, args.fields, args.writes)
            rows.append((name, latency, cpu, size))
        finally:
            if proxy:
                proxy.stop()
            r.stop()
    table = [f"One HSET to a {args.fields}-field hash, {args.writes} writes one after another:", "",
             "| target | ms per write | proxy CPU ms per write | DUMP bytes |", "|---|---:|---:|---:|"]
    for name, latency, cpu, size in rows:
        table.append(f"| {name} | {latency * 1000:.2f} | {'' if cpu is None else f'{cpu * 1000:.1f}'} | {size} |")
    text = "\n".join(table)
    print(text)
    if args.write_results:
        write_results(os.path.join(HERE, "RESULTS.md"), text, " ".join(["bench/collection_bench.py"] + sys.argv[1:]),
                      title=SECTION)


if __name__ == "__main__":
    main()
