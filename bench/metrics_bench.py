#!/usr/bin/env python3
"""Issue 11 figure: what metrics cost on the hit path.

The same tierproxy build twice: `metrics off` (the default, no endpoint) and `metrics on`
(`--metrics-port`, scraped every second by a thread of this script, as a Prometheus would, for the
whole run). redis-benchmark -c 50 -r 100000 GET and SET at -P 1 and -P 16, the two targets
alternating (the starting one rotates) for --rounds rounds, with fresh proxy processes each
round (warmed up before they are measured); medians, the ratio of the medians, and
the median of each round's own on/off ratio (the two runs of a round are back to back, so slow
drift of the machine cancels), which the issue wants within 2%. `--pin` puts this script, Redis
and redis-benchmark on CPU 0 and every thread of the proxies on CPU 1, so the scheduler cannot
move them between runs. The hit path: GETs run on the embedded tiers with every key a hot
hit; SETs run on the proxy core (`--warm none --cold none`), since a tiered SET is a write to the
lower tier, not a hit. Checked per run: every scrape answered 200, and GETs made no lower-tier
lookup (every key was populated in hot).

Usage: bench/metrics_bench.py [--rounds 5] [--threads 1] [--pin] [--write-results]
Everything is started here on free loopback ports and stopped at the end.
"""
import argparse, os, statistics, sys, tempfile, threading, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxy_bench import ROOT, free_port, run_benchmark  # noqa: E402
from tiered_bench import PROBLEMS, Proxy, populate, problem, snapshot_binary, start_redis  # noqa: E402
import tiered_bench  # noqa: E402

SECTION = "## Metrics on the hit path (issue 11)"


class Scraper:
    """GET /metrics every `interval` s until stopped; counts answers and failures."""

    def __init__(self, port, interval=1.0):
        self.url, self.interval = f"http://127.0.0.1:{port}/metrics", interval
        self.ok = self.failed = 0
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop_ev.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    r.read()
                    self.ok += 1 if r.status == 200 else 0
            except OSError:
                self.failed += 1
            self.stop_ev.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join(10)


def start_proxies(binary, tmp, upstream_port, threads, pin):
    """One round's four proxies: GETs on the embedded tiers, SETs on the core, each pair with
    metrics off and on; warmed up (first requests fault pages in and fill caches)."""
    mport, mport2 = free_port(), free_port()
    tiered = [Proxy("metrics off", binary, tmp, upstream_port, threads, "sqlite:{dir}/warm.db", "dir:{dir}/cold"),
              Proxy("metrics on", binary, tmp, upstream_port, threads, "sqlite:{dir}/warm.db", "dir:{dir}/cold",
                    env={"TIERPROXY_METRICS_PORT": str(mport)})]
    core = [Proxy("metrics off", binary, tmp, upstream_port, threads, "none", "none"),
            Proxy("metrics on", binary, tmp, upstream_port, threads, "none", "none",
                  env={"TIERPROXY_METRICS_PORT": str(mport2)})]
    for t in tiered + core:
        if pin:
            for tid in os.listdir(f"/proc/{t.proc.pid}/task"):
                os.sched_setaffinity(int(tid), {1})
        run_benchmark(t.port, "get" if t in tiered else "set", 16, 50000, t.proc.pid)
    return {"get": tiered, "set": core}, {id(tiered[1]): mport, id(core[1]): mport2}


def run_case(t, case, args, metrics_port):
    """One redis-benchmark run on `t` (scraped every second when it has a metrics port); the
    result and (scrapes answered, scrapes failed)."""
    n = args.p1_requests if case[1] == 1 else args.requests
    lookups0 = t.info_tiers().get("lookups", 0)
    scraped = (0, 0)
    if metrics_port:
        with Scraper(metrics_port) as s:
            r = run_benchmark(t.port, case[0], case[1], n, t.proc.pid)
        scraped = (s.ok, s.failed)
    else:
        r = run_benchmark(t.port, case[0], case[1], n, t.proc.pid)
    if case[0] == "get" and t.info_tiers().get("lookups", 0) != lookups0:
        problem(f"{t.name} GET -P {case[1]}: hot hits made lower-tier lookups")
    return r, scraped


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="proxy --threads")
    ap.add_argument("--requests", type=int, default=200000, help="-n at -P 16")
    ap.add_argument("--p1-requests", type=int, default=100000, help="-n at -P 1")
    ap.add_argument("--pin", action="store_true", help="this script, Redis and the client on CPU 0; the proxies on CPU 1")
    ap.add_argument("--write-results", action="store_true", help=f"replace '{SECTION}' in bench/RESULTS.md")
    args = ap.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {0})        # inherited by redis-server and redis-benchmark
    built = os.environ.get("TIERPROXY_BIN", os.path.join(ROOT, ".build/release/tierproxy"))
    if not os.path.exists(built):
        sys.exit(f"{built} missing: swift build -c release --product tierproxy")
    tmp = tempfile.mkdtemp(prefix="metrics-bench-")
    binary = snapshot_binary(built, tmp)
    redis_t = start_redis(tmp)
    populate(redis_t.port)
    cases = [("get", 1), ("get", 16), ("set", 1), ("set", 16)]
    results = {(name, c): [] for name in ("metrics off", "metrics on") for c in cases}
    scrapes = [0, 0]
    try:
        for rnd in range(args.rounds):
            # Fresh processes every round: a process's own memory layout can make it a few
            # percent faster or slower for its whole life, which pairing the same two processes
            # in every round would count as the metrics' cost.
            targets, ports = start_proxies(binary, tmp, redis_t.port, args.threads, args.pin)
            try:
                for case in cases:
                    pair = targets["get" if case[0] == "get" else "set"]
                    k = rnd % len(pair)
                    for t in pair[k:] + pair[:k]:
                        r, scraped = run_case(t, case, args, ports.get(id(t)))
                        scrapes[0] += scraped[0]
                        scrapes[1] += scraped[1]
                        t.alive(f"{case} round {rnd + 1}")
                        results[(t.name, case)].append(r)
            finally:
                for pair in targets.values():
                    for t in pair:
                        t.stop()
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        redis_t.stop()
    if scrapes[1]:
        problem(f"{scrapes[1]} scrapes failed (of {sum(scrapes)})")
    lines = ["| test | metrics off rps | metrics on + scraped 1/s rps | ratio of medians | median of round ratios "
             "| within 2% | p50 ms off / on | proxy CPU µs/req off / on |",
             "|---|---:|---:|---:|---:|:---:|---:|---:|"]
    for case in cases:
        a, b = results[("metrics off", case)], results[("metrics on", case)]
        med = lambda rs, f: statistics.median(x[f] for x in rs)
        paired = statistics.median(y["rps"] / x["rps"] for x, y in zip(a, b))
        lines.append(f"| {case[0].upper()} -P {case[1]} | {med(a, 'rps'):,.0f} | {med(b, 'rps'):,.0f} | "
                     f"{med(b, 'rps') / med(a, 'rps'):.3f} | {paired:.3f} | {'yes' if abs(paired - 1) <= 0.02 else 'no'} | "
                     f"{med(a, 'p50'):.3f} / {med(b, 'p50'):.3f} | "
                     f"{med(a, 'cpu_us'):.1f} / {med(b, 'cpu_us'):.1f} |")
    table = "\n".join(lines) + (f"\n\n{args.rounds} rounds alternating, medians, `--threads {args.threads}`"
                                f"{', pinned (script, Redis, client on CPU 0; proxies on CPU 1)' if args.pin else ''}; "
                                f"{scrapes[0]} scrapes answered during the 'on' runs. {tiered_bench.BINARY_NOTE}.")
    if PROBLEMS:
        table += "\n\n**Problems seen:**\n" + "\n".join(f"- {p.splitlines()[0]}" for p in PROBLEMS)
    print(table)
    if args.write_results:
        tiered_bench.SECTION = SECTION
        tiered_bench.write_results(os.path.join(ROOT, "bench", "RESULTS.md"), table, " ".join(sys.argv), title=SECTION)
    sys.exit(1 if PROBLEMS else 0)


if __name__ == "__main__":
    main()
