#!/usr/bin/env python3
"""Issue 9 figures: what a tiered write costs, beside Redis itself with and without persistence.

redis-benchmark -c 50 -r 100000 -d 64 against five targets, each with its own fresh redis-server:
  direct          Redis, no persistence (every ratio is to this)
  direct AOF      Redis with appendonly yes, appendfsync everysec (the durable-write reference)
  core-only       tierproxy --warm none --cold none
  write-through   tierproxy, embedded tiers (warm sqlite:DIR/warm.db, cold dir:DIR/cold), default rule
  write-behind    the same, with `rule * policy write-behind`
Per round and target: SET -P 1, SET -P 16 (write-behind: then wait for its backlog to drain, off
the clock), then every key written directly on that target's Redis (so each GET is a hot hit),
GET -P 1, GET -P 16. Targets alternate (the first one rotates each round); medians over
--rounds (>= 3). Also: each process's CPU per request (utime+stime from /proc/PID/stat over the
fixed -n), the write-behind key log's appends/s (INFO tiers `key_log_appends` or any `*append*`
field, if the proxy has one; else n/a) beside its SET rate, and checks: round 1's SETs reached the
SQLite warm tier (row count = hot's key count), no proxy died or logged a warning.

Thresholds of issue 9, each printed PASS/FAIL: write-behind SET P16 >= 0.5x and P1 >= 0.7x;
write-through SET P16 >= 0.2x and P1 >= 0.45x; tiered GET (write-through and write-behind, P1 and
P16) >= 0.95x core-only.

Usage: bench/write_bench.py [--rounds 3] [--threads 1] [--write-results]
Exit 1 if anything went wrong (PROBLEM lines), 2 if a threshold failed. Figures from a busy machine
are not final: run it on a quiet one.
"""
import argparse, os, platform, re, shlex, shutil, sqlite3, statistics, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxy_bench import ROOT, Target, free_port, run_benchmark  # noqa: E402
from tiered_bench import (PROBLEMS, Proxy, populate, problem, problem_lines, snapshot_binary,  # noqa: E402
                          start_redis, write_results)
import tiered_bench  # noqa: E402

sys.path.insert(0, ROOT)
import redis  # noqa: E402

SECTION = "## Tiered writes (issue 9)"
VALUE = "v" * 64
CASES = [("set", 1), ("set", 16), ("get", 1), ("get", 16)]
THRESHOLDS = [  # (label, target, case, minimum ratio, relative to)
    ("write-behind SET -P 16 >= 0.5x direct", "write-behind", ("set", 16), 0.5, "direct"),
    ("write-behind SET -P 1 >= 0.7x direct", "write-behind", ("set", 1), 0.7, "direct"),
    ("write-through SET -P 16 >= 0.2x direct", "write-through", ("set", 16), 0.2, "direct"),
    ("write-through SET -P 1 >= 0.45x direct", "write-through", ("set", 1), 0.45, "direct"),
] + [(f"{t} GET -P {p} within 5% of core-only", t, ("get", p), 0.95, "core-only")
     for t in ("write-through", "write-behind") for p in (1, 16)]


class Bench:
    """One target: its own Redis, and the proxy in front of it (None for direct targets)."""

    def __init__(self, name, redis_t, proxy=None):
        self.name, self.redis, self.proxy = name, redis_t, proxy

    @property
    def port(self):
        return self.proxy.port if self.proxy else self.redis.port

    @property
    def pid(self):
        return (self.proxy or self.redis).proc.pid

    def info_tiers(self):
        return self.proxy.info_tiers() if self.proxy else {}

    def stop(self):
        if self.proxy:
            self.proxy.stop()
        self.redis.stop()


def start_targets(args, binary, tmp):
    out = [Bench("direct", start_redis(tmp))]
    port, d = free_port(), tempfile.mkdtemp(prefix="redis-aof-", dir=tmp)
    out.append(Bench("direct AOF everysec", Target(
        "direct-aof", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "yes", "--appendfsync", "everysec", "--dir", d], port)))
    for name, warm, cold, extra in (
            ("core-only", "none", "none", ()),
            ("write-through", "sqlite:{dir}/warm.db", "dir:{dir}/cold", ()),
            ("write-behind", "sqlite:{dir}/warm.db", "dir:{dir}/cold", ("--rule", "* policy write-behind"))):
        r = start_redis(tmp)
        out.append(Bench(name, r, Proxy(name, binary, tmp, r.port, args.threads, warm, cold, extra=extra)))
    return out


def append_counter(tiers):
    """The key log's append counter in INFO tiers, if the proxy reports one: (field, value)."""
    if "key_log_appends" in tiers:
        return "key_log_appends", int(tiers["key_log_appends"])
    for f, v in tiers.items():
        if re.search(r"append", f) and isinstance(v, int):
            return f, v
    return None, None


def drain(t, timeout):
    """Wait (off the clock) until write-behind has flushed everything; returns seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        i = t.info_tiers()
        if int(i.get("write_behind_backlog", 0)) == 0 and int(i.get("flushes_in_flight", 0)) == 0:
            return time.monotonic() - t0
        time.sleep(0.05)
    problem(f"{t.name}: backlog not drained within {timeout}s: {t.info_tiers()}")
    return float("nan")


def warm_rows(t):
    with sqlite3.connect(f"file:{os.path.join(t.proxy.dir, 'warm.db')}?mode=ro", uri=True, timeout=10) as con:
        return con.execute("SELECT count(*) FROM entries").fetchone()[0]


def one_target(args, t, rnd, results, extra_figures):
    bench_args = ("-d", str(args.size))
    for test, pipeline in CASES:
        if test == "get" and pipeline == 1:
            populate(t.redis.port, value=VALUE)          # every GET a hot hit, 64-byte values
        n = args.p1_requests if pipeline == 1 else args.requests
        tiers0 = t.info_tiers()
        r = run_benchmark(t.port, test, pipeline, n, t.pid, extra=bench_args)
        tiers1 = t.info_tiers()
        results[(t.name, (test, pipeline))].append(r)
        field, before = append_counter(tiers0)
        if field is not None and test == "set":
            extra_figures[(t.name, pipeline)].append((tiers1[field] - before) / (n / r["rps"]))
        if t.proxy is not None and not t.proxy.alive(f"{test.upper()} -P {pipeline} round {rnd + 1}"):
            raise RuntimeError(f"{t.name} died")
        if t.name == "write-behind" and test == "set":
            extra_figures[("drain", pipeline)].append(drain(t, args.drain_timeout))
        if rnd == 0 and test == "set" and pipeline == 16 and t.name in ("write-through", "write-behind"):
            with redis.Redis(host="127.0.0.1", port=t.redis.port, socket_timeout=30) as h:
                hot = h.dbsize()
            rows = warm_rows(t)
            if rows != hot:
                problem(f"{t.name}: after round 1's SETs warm holds {rows} entries, hot {hot} keys")


def report(args, targets, results, extra_figures):
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [f"Host: {os.cpu_count()} cores, {cpu_model}, {platform.platform()}; {tiered_bench.BINARY_NOTE}; "
             f"proxy --threads {args.threads}. redis-benchmark -c 50 -r 100000 -d {args.size}, -n {args.p1_requests} "
             f"at -P 1 and {args.requests} at -P 16; {args.rounds} rounds alternating, medians (min–max). Each "
             f"target has its own Redis. The benchmark client, Redis and the proxy share the cores.", "",
             "| target | test | rps | (min–max) | ratio to direct | p50 ms | server CPU µs/req |",
             "|---|---|---:|---:|---:|---:|---:|"]
    med = {}
    for case in CASES:
        for t in targets:
            rs = results[(t.name, case)]
            med[(t.name, case)] = statistics.median(r["rps"] for r in rs)
        for t in targets:
            rs = results[(t.name, case)]
            rps = med[(t.name, case)]
            lines.append(f"| {t.name} | {case[0].upper()} -P {case[1]} | {rps:,.0f} | {min(r['rps'] for r in rs):,.0f}–"
                         f"{max(r['rps'] for r in rs):,.0f} | {rps / med[('direct', case)]:.2f} | "
                         f"{statistics.median(r['p50'] for r in rs):.3f} | "
                         f"{statistics.median(r['cpu_us'] for r in rs):.1f} |")
    lines += ["", "(server CPU = the target process only: Redis for direct, the proxy otherwise.)", "",
              "| proxy CPU per SET at -P 1 | µs |", "|---|---:|"]
    for t in targets:
        if t.proxy is not None:
            lines.append(f"| {t.name} | {statistics.median(r['cpu_us'] for r in results[(t.name, ('set', 1))]):.1f} |")
    lines += ["", "| write-behind | SET -P 1 | SET -P 16 |", "|---|---:|---:|",
              "| SET rps | " + " | ".join(f"{med[('write-behind', ('set', p))]:,.0f}" for p in (1, 16)) + " |"]
    if extra_figures[("write-behind", 1)]:
        lines.append("| key-log appends/s | " + " | ".join(
            f"{statistics.median(extra_figures[('write-behind', p)]):,.0f}" for p in (1, 16)) + " |")
    else:
        lines.append("| key-log appends/s | n/a (INFO tiers has no append counter) | n/a |")
    lines.append("| backlog drain after the run (s, off the clock) | " + " | ".join(
        f"{statistics.median(extra_figures[('drain', p)]):.1f}" for p in (1, 16)) + " |")
    lines += ["", "| issue 9 threshold | measured | result |", "|---|---:|---|"]
    failed = 0
    for label, name, case, minimum, base in THRESHOLDS:
        ratio = med[(name, case)] / med[(base, case)]
        ok = ratio >= minimum
        failed += not ok
        lines.append(f"| {label} | {ratio:.2f} | {'PASS' if ok else 'FAIL'} |")
    return "\n".join(lines + problem_lines()), failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=200000, help="-n at -P 16")
    ap.add_argument("--p1-requests", type=int, default=100000, help="-n at -P 1")
    ap.add_argument("--size", type=int, default=64, help="redis-benchmark -d")
    ap.add_argument("--threads", type=int, default=1, help="proxy --threads")
    ap.add_argument("--drain-timeout", type=float, default=300.0)
    ap.add_argument("--write-results", action="store_true", help=f"replace '{SECTION}' in bench/RESULTS.md")
    args = ap.parse_args()
    if args.rounds < 3:
        sys.exit("--rounds must be >= 3 (medians of alternating rounds)")
    built = os.environ.get("TIERPROXY_BIN", os.path.join(ROOT, ".build/release/tierproxy"))
    if not os.path.exists(built):
        sys.exit(f"{built} missing: swift build -c release --product tierproxy")
    tmp = tempfile.mkdtemp(prefix="write-bench-")
    started = time.time()
    targets = []
    try:
        binary = snapshot_binary(built, tmp)
        targets = start_targets(args, binary, tmp)
        results = {(t.name, c): [] for t in targets for c in CASES}
        extra = {k: [] for k in [(t.name, p) for t in targets for p in (1, 16)] + [("drain", 1), ("drain", 16)]}
        for rnd in range(args.rounds):
            k = rnd % len(targets)
            for t in targets[k:] + targets[:k]:
                one_target(args, t, rnd, results, extra)
            print(f"round {rnd + 1}/{args.rounds} done ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)
    finally:
        for t in targets:
            t.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    table, failed = report(args, targets, results, extra)
    print(table)
    print(f"\n(total {time.time() - started:.0f} s)", file=sys.stderr)
    if args.write_results:
        write_results(os.path.join(HERE, "RESULTS.md"), table,
                      "python3 bench/write_bench.py " + shlex.join(sys.argv[1:]), title=SECTION)
    if PROBLEMS:
        print(f"\n{len(PROBLEMS)} PROBLEM(S):\n" + "\n\n".join(PROBLEMS), file=sys.stderr)
        sys.exit(1)
    sys.exit(2 if failed else 0)


if __name__ == "__main__":
    main()
