#!/usr/bin/env python3
"""Issue 10 figure: what a full SCAN iteration costs when the keyspace sees below.

--keys keys (default 100 000, 20-byte values) are written; through the proxy (embedded tiers:
warm sqlite, cold dir; `tiers-keyspace yes`) half of them are then deleted directly on hot, so
they live in warm only. One full SCAN iteration (redis-py, one connection, COUNT --count) is
timed on each target, --rounds times alternating:
  direct   Redis itself, holding every key
  proxy    tierproxy, half of the keys in hot (and warm), half in warm only
Reported: the median time of a full iteration, its round trips (SCAN calls), the keys returned
(each once), and the proxy's CPU per iteration (utime+stime from /proc/PID/stat). Before timing,
the keyspace is left untouched for 4 seconds: the lower phase leaves out keys hot has held
untouched since the scan began, which is what makes each key come once.

Usage: TIERPROXY_BIN=... python3 bench/scan_bench.py [--keys 100000] [--count 1000] [--rounds 3] [--write-results]
Figures from a busy machine are not final.
"""
import argparse, os, statistics, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxy_bench import ROOT  # noqa: E402
from tiered_bench import Proxy, snapshot_binary, start_redis, write_results  # noqa: E402
from collection_bench import cpu_seconds  # noqa: E402

sys.path.insert(0, ROOT)
import redis  # noqa: E402

SECTION = "## A full SCAN with half of the keys below (issue 10)"


def load(port, keys):
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=600) as c:
        with c.pipeline(transaction=False) as p:
            for i in range(keys):
                p.set(f"key:{i}", "v" * 20)
                if len(p) >= 1000:
                    p.execute()
            p.execute()


def full_scan(port, count, pid):
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=600) as c:
        cpu0, t0 = cpu_seconds(pid) if pid else 0.0, time.perf_counter()
        cursor, calls, keys = 0, 0, []
        while True:
            cursor, page = c.scan(cursor, count=count)
            calls += 1
            keys += page
            if cursor == 0:
                break
        elapsed = time.perf_counter() - t0
        return elapsed, calls, keys, (cpu_seconds(pid) - cpu0) if pid else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag, default, text in (("--keys", 100_000, "keys written"), ("--count", 1000, "SCAN's COUNT"),
                                ("--rounds", 3, "full iterations per target")):
        ap.add_argument(flag, type=int, default=default, help=text)
    ap.add_argument("--write-results", action="store_true", help="put the section in bench/RESULTS.md")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tierproxy-scan-bench-")
    binary = snapshot_binary(os.environ.get("TIERPROXY_BIN", os.path.join(ROOT, ".build/release/tierproxy")), tmp)
    direct, hot = start_redis(tmp), start_redis(tmp)
    proxy = Proxy("proxy", binary, tmp, hot.port, 1, "sqlite:{dir}/warm.db", "dir:{dir}/cold")
    try:
        load(direct.port, args.keys)
        load(proxy.port, args.keys)
        with redis.Redis(host="127.0.0.1", port=hot.port) as h:
            below = [f"key:{i}" for i in range(0, args.keys, 2)]
            for i in range(0, len(below), 1000):
                h.delete(*below[i:i + 1000])
            in_hot = h.dbsize()
        time.sleep(4)   # the quiet period the lower phase's dedup relies on (see the docstring)
        results = {"direct": [], "proxy": []}
        for _ in range(args.rounds):
            for name, port, pid in (("direct", direct.port, None), ("proxy", proxy.port, proxy.proc.pid)):
                elapsed, calls, keys, cpu = full_scan(port, args.count, pid)
                assert len(keys) == len(set(keys)) == args.keys, f"{name}: {len(keys)} keys, {len(set(keys))} distinct"
                results[name].append((elapsed, calls, cpu))
    finally:
        proxy.stop()
        direct.stop()
        hot.stop()
    table = [f"One full SCAN iteration (COUNT {args.count}) of {args.keys} keys, {in_hot} of them in hot and the "
             f"rest in warm (SQLite) only; {args.rounds} rounds, medians:", "",
             "| target | ms per iteration | SCAN calls | proxy CPU ms per iteration |", "|---|---:|---:|---:|"]
    for name, rows in results.items():
        ms = statistics.median(r[0] for r in rows) * 1000
        cpu = "" if rows[0][2] is None else f"{statistics.median(r[2] for r in rows) * 1000:.0f}"
        table.append(f"| {name} | {ms:.0f} | {rows[0][1]} | {cpu} |")
    load1 = os.getloadavg()[0]
    table += ["", f"Load average at the end: {load1:.1f} on {os.cpu_count()} CPUs"
              + (" (a shared, busy machine: not final figures)." if load1 > 1 else ".")]
    report("\n".join(table), args.write_results)


def report(text, write):
    """Prints the section; with --write-results also puts it in bench/RESULTS.md."""
    print(text)
    if not write:
        return
    argv = " ".join(["bench/scan_bench.py"] + sys.argv[1:])
    write_results(os.path.join(HERE, "RESULTS.md"), text, argv, title=SECTION)


if __name__ == "__main__":
    main()
