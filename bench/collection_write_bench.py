#!/usr/bin/env python3
"""Issue 10 figures: HSET and LPUSH through the proxy as ratios to direct Redis, on small keys and
on one large collection, with write-through and write-behind (embedded tiers).

Tests (redis-benchmark -c 50, custom commands; -n --p1-requests at -P 1, --requests at -P 16):
  HSET small    HSET hs:__rand_int__ f v        (-r 100000: many small hashes)
  LPUSH small   LPUSH ls:__rand_int__ v         (-r 100000)
  HSET 10k      HSET big field:__rand_int__ v   (-r 10000: overwrites fields of one 10 000-field hash)
  LPUSH 10k     LPUSH biglist v                 (one list of 10 000 elements, growing by the run)
The large keys are rebuilt before every run (40-byte random values, so their DUMP is not
compressible) and written once through the proxy so it knows their size. Targets, each with its
own redis-server: direct, write-through (default rule), write-behind (`rule * policy write-behind`).
Rounds alternate targets; medians. Also per run: the proxy's CPU per request and the DUMPs hot
served per 1000 writes (commandstats), which shows large collections read once per flush.
Write-behind's backlog is drained between runs, off the clock.

Usage: bench/collection_write_bench.py [--rounds 3] [--write-results]
"""
import argparse, csv, io, os, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxy_bench import ROOT, cpu_seconds  # noqa: E402
from tiered_bench import Proxy, snapshot_binary, start_redis, write_results  # noqa: E402

sys.path.insert(0, ROOT)
import redis  # noqa: E402

SECTION = "## Writes to collections, small and large (issue 10)"
TESTS = (("HSET small", ["HSET", "hs:__rand_int__", "f", "v"], "100000"),
         ("LPUSH small", ["LPUSH", "ls:__rand_int__", "v"], "100000"),
         ("HSET 10k", ["HSET", "big", "field:__rand_int__", "v"], "10000"),
         ("LPUSH 10k", ["LPUSH", "biglist", "v"], "10000"))
THRESHOLD = ("write-behind", "HSET 10k", 16, 0.4)


def rebuild(port, direct_port):
    """The large keys, built on hot directly, then written once through `port` (learns sizes)."""
    with redis.Redis(port=direct_port) as h:
        h.delete("big", "biglist")
        with h.pipeline(transaction=False) as p:
            for i in range(0, 10_000, 1000):
                p.hset("big", mapping={f"field:{j}": os.urandom(20).hex() for j in range(i, i + 1000)})
                p.rpush("biglist", *[os.urandom(20).hex() for _ in range(1000)])
            p.execute()
    with redis.Redis(port=port) as c:
        c.hset("big", "field:0", os.urandom(20).hex())
        c.lset("biglist", 0, os.urandom(20).hex())


def drain(port, timeout=120):
    deadline = time.time() + timeout
    with redis.Redis(port=port) as c:
        while time.time() < deadline:
            t = c.info("tiers")
            if all(t.get(f, 0) == 0 for f in ("write_behind_backlog", "pending_deletes", "flushes_in_flight")):
                return
            time.sleep(0.05)
    raise RuntimeError("write-behind backlog did not drain")


def run(port, hot_port, pid, command, rand, pipeline, n):
    with redis.Redis(port=hot_port) as h:
        h.config_resetstat()
    before = cpu_seconds(pid)
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "50", "-r", rand,
                          "-n", str(n), "-P", str(pipeline), "--csv", *command],
                         capture_output=True, text=True, timeout=900, check=True).stdout
    cpu = cpu_seconds(pid) - before
    row = list(csv.DictReader(io.StringIO(out)))[-1]
    with redis.Redis(port=hot_port) as h:
        dumps = h.info("commandstats").get("cmdstat_dump", {}).get("calls", 0)
    return {"rps": float(row["rps"]), "p50": float(row["p50_latency_ms"]), "cpu_us": cpu / n * 1e6,
            "dumps_per_k": dumps * 1000 / n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--p1-requests", type=int, default=50_000)
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tierproxy-collection-write-bench-")
    binary = snapshot_binary(os.environ.get("TIERPROXY_BIN", os.path.join(ROOT, ".build/release/tierproxy")), tmp)
    targets, redises = [], []
    for name, extra in (("direct", None), ("write-through", ()), ("write-behind", ("--rule", "* policy write-behind"))):
        r = start_redis(tmp)
        redises.append(r)
        if extra is None:
            targets.append((name, r.port, r.port, r.proc.pid, None))
        else:
            p = Proxy(name, binary, tmp, r.port, 1, "sqlite:{dir}/warm.db", "dir:{dir}/cold", extra=extra)
            targets.append((name, p.port, r.port, p.proc.pid, p))
    try:
        results = measure_all(args, targets)
    finally:
        for t in targets:
            (t[4] or None) and t[4].stop()
        for r in redises:
            r.stop()
    table, failed = report(args, results)
    print(table)
    if args.write_results:
        write_results(os.path.join(ROOT, "bench", "RESULTS.md"), table,
                      " ".join(["bench/collection_write_bench.py"] + sys.argv[1:]), title=SECTION)
    sys.exit(1 if failed else 0)


def measure_all(args, targets):
    results = {}
    for rnd in range(args.rounds):
        order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
        for name, port, hot, pid, proxy in order:
            for test, command, rand in TESTS:
                for pipeline in (1, 16):
                    if "10k" in test:
                        rebuild(port, hot)
                    if proxy:
                        drain(port)
                    n = args.p1_requests if pipeline == 1 else args.requests
                    results.setdefault((name, test, pipeline), []).append(run(port, hot, pid, command, rand, pipeline, n))
                    if proxy:
                        drain(port)
        print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return results


def report(args, results):
    def med(name, test, p, field):
        return statistics.median(r[field] for r in results[(name, test, p)])
    lines = [f"redis-benchmark -c 50, -n {args.p1_requests} at -P 1 and {args.requests} at -P 16; "
             f"{args.rounds} rounds alternating, medians; proxy --threads 1, embedded tiers, default "
             "collection-capture-limit (64kb). The benchmark client, Redis and the proxy share the cores.", "",
             "| test | -P | direct rps | write-through rps (ratio) | write-behind rps (ratio) | proxy CPU µs/req wt / wb | DUMPs per 1000 writes wt / wb |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for test, _, _ in TESTS:
        for p in (1, 16):
            d = med("direct", test, p, "rps")
            cells = [f"{med(t, test, p, 'rps'):,.0f} ({med(t, test, p, 'rps') / d:.2f})" for t in ("write-through", "write-behind")]
            cpu = " / ".join(f"{med(t, test, p, 'cpu_us'):.1f}" for t in ("write-through", "write-behind"))
            dumps = " / ".join(f"{med(t, test, p, 'dumps_per_k'):.0f}" for t in ("write-through", "write-behind"))
            lines.append(f"| {test} | {p} | {d:,.0f} | {cells[0]} | {cells[1]} | {cpu} | {dumps} |")
    name, test, p, bound = THRESHOLD
    ratio = med(name, test, p, "rps") / med("direct", test, p, "rps")
    failed = ratio < bound
    lines += ["", f"| issue 10 threshold | measured | result |", "|---|---:|---|",
              f"| {name} {test} -P {p} >= {bound}x direct | {ratio:.2f} | {'FAIL' if failed else 'PASS'} |"]
    return "\n".join(lines), failed


if __name__ == "__main__":
    main()
