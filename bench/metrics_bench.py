#!/usr/bin/env python3
"""Issue 11 figure: what metrics cost on the hit path.

The same tierproxy build three times: `metrics off` (the default, no endpoint), `metrics on`
(`--metrics-port`, scraped every second by a thread of this script, as a Prometheus would, for the
whole run) and a second `metrics off` process, the A/A control: the two off processes run the
same code, so their ratio is this bench's own noise floor, printed beside the on/off ratio.
redis-benchmark -c 50 -r 100000 GET and SET at -P 1 and -P 16, the three targets alternating
(the starting one rotates) for --rounds rounds; medians, the ratio of the medians, and the
median of each round's own ratio to `metrics off` (the runs of a round are back to back, so slow
drift of the machine cancels), which the issue wants within 2%.

The processes live for the whole run (warmed up first) and start with address-space
randomisation off (`setarch -R`), so that no process is a few percent faster or slower than
another for its whole life only because of where its stacks, heap and libraries landed.
`--pin` puts this script, Redis and redis-benchmark on CPU 0 and every thread of the proxies on
CPU 1, so the scheduler cannot move them between runs. The hit path: GETs run on the embedded
tiers with every key a hot hit; SETs run on the proxy core (`--warm none --cold none`), since a
tiered SET is a write to the lower tier, not a hit. Checked per run: every scrape answered 200,
and GETs made no lower-tier lookup (every key was populated in hot).

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


NAMES = ("metrics off", "metrics on", "metrics off (A/A control)")


def start_proxies(binary, tmp, upstream_port, threads, pin):
    """The run's six proxies: GETs on the embedded tiers, SETs on the core, each trio metrics
    off, on, and off again; warmed up (first requests fault pages in and fill caches). Their
    metrics ports by id."""
    prefix = ("setarch", os.uname().machine, "-R")
    targets, ports = {}, {}
    for case, warm, cold in (("get", "sqlite:{dir}/warm.db", "dir:{dir}/cold"), ("set", "none", "none")):
        trio = []
        for name in NAMES:
            env, mport = {}, None
            if name == "metrics on":
                mport = free_port()
                env = {"TIERPROXY_METRICS_PORT": str(mport)}
            t = Proxy(name, binary, tmp, upstream_port, threads, warm, cold, env=env, prefix=prefix)
            ports[id(t)] = mport
            trio.append(t)
        targets[case] = trio
    for trio_case, trio in targets.items():
        for t in trio:
            if pin:
                for tid in os.listdir(f"/proc/{t.proc.pid}/task"):
                    os.sched_setaffinity(int(tid), {1})
            run_benchmark(t.port, trio_case, 16, 200000, t.proc.pid)
    return targets, ports


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
    results = {(name, c): [] for name in NAMES for c in cases}
    scrapes = [0, 0]
    targets, ports = start_proxies(binary, tmp, redis_t.port, args.threads, args.pin)
    try:
        for rnd in range(args.rounds):
            for case in cases:
                trio = targets[case[0]]
                k = rnd % len(trio)
                for t in trio[k:] + trio[:k]:
                    r, scraped = run_case(t, case, args, ports.get(id(t)))
                    scrapes[0] += scraped[0]
                    scrapes[1] += scraped[1]
                    t.alive(f"{case} round {rnd + 1}")
                    results[(t.name, case)].append(r)
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for trio in targets.values():
            for t in trio:
                t.stop()
        redis_t.stop()
    if scrapes[1]:
        problem(f"{scrapes[1]} scrapes failed (of {sum(scrapes)})")
    lines = ["| test | metrics off rps | metrics on + scraped 1/s rps | ratio of medians | median of round ratios "
             "| within 2% | A/A control: median of round ratios | p50 ms off / on | proxy CPU µs/req off / on / control |",
             "|---|---:|---:|---:|---:|:---:|---:|---:|---:|"]
    for case in cases:
        a, b, c = (results[(name, case)] for name in NAMES)
        med = lambda rs, f: statistics.median(x[f] for x in rs)
        paired = lambda ys: statistics.median(y["rps"] / x["rps"] for x, y in zip(a, ys))
        on, control = paired(b), paired(c)
        lines.append(f"| {case[0].upper()} -P {case[1]} | {med(a, 'rps'):,.0f} | {med(b, 'rps'):,.0f} | "
                     f"{med(b, 'rps') / med(a, 'rps'):.3f} | {on:.3f} | {'yes' if abs(on - 1) <= 0.02 else 'no'} | "
                     f"{control:.3f} | {med(a, 'p50'):.3f} / {med(b, 'p50'):.3f} | "
                     f"{med(a, 'cpu_us'):.2f} / {med(b, 'cpu_us'):.2f} / {med(c, 'cpu_us'):.2f} |")
    table = "\n".join(lines) + (f"\n\n{args.rounds} rounds alternating, medians, `--threads {args.threads}`, "
                                f"the same six processes for the whole run, address-space randomisation off"
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
