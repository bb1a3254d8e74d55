#!/usr/bin/env python3
"""Issue 12 figure: what TLS costs through the proxy.

redis-benchmark -c 50 -r 100000 GET and SET at -P 1 and -P 16 against four targets, alternating
(the starting one rotates each round) for --rounds rounds:
  direct          redis-server, plain TCP
  tierproxy       tierproxy (plain port) -> that redis-server, plain TCP
  direct TLS      a TLS-only redis-server (--port 0 --tls-port), redis-benchmark --tls
  tierproxy TLS   tierproxy's tls-port (redis-benchmark --tls) -> the TLS redis-server (rediss://)
  TLS clients only  tierproxy's tls-port -> the plain redis-server: the client side's share,
                  as a ratio to direct TLS (the client pays for TLS either way)
Medians; the plain ratio (tierproxy / direct) and the TLS ratio (tierproxy TLS / direct TLS) of
the same run, and the points between them (issue 12: the TLS ratio no more than 10 points below
the plain one). Both proxies run the core only (--warm none --cold none) with --threads.
Client certificates are not asked for (tls-auth-clients no on both TLS servers). The proxy CPU
column is utime+stime of each proxy process (/proc/PID/stat) over its runs, per request: robust
to the machine's noise where requests per second are not.

Usage: bench/tls_bench.py [--rounds 5] [--requests 200000] [--p1-requests 100000] [--threads N]
                          [--write-results]
Needs redis-server and redis-benchmark with TLS (Debian's have it), openssl, a release build of
tierproxy (.build/release/tierproxy or TIERPROXY_BIN). Everything starts here on free loopback
ports and stops at the end.
"""
import argparse, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxy_bench import ROOT, free_port, run_benchmark, wait_ping  # noqa: E402
import tiered_bench  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))
from tls_support import make_pki  # noqa: E402

SECTION = "## TLS on both sides (issue 12)"


def wait_tls_ping(port, ca, proc, deadline=30.0):
    end = time.time() + deadline
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the server for port {port} exited with {proc.returncode}")
        r = subprocess.run(["redis-cli", "--tls", "--cacert", ca, "-p", str(port), "PING"],
                           capture_output=True, text=True)
        if r.stdout.strip() == "PONG":
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered PING over TLS on port {port} within {deadline}s")


def start(argv, cwd):
    return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="rounds of alternating targets")
    ap.add_argument("--requests", type=int, default=200000, help="-n at -P 16")
    ap.add_argument("--p1-requests", type=int, default=100000, help="-n at -P 1")
    # Redis, the benchmark client and the proxies share this machine's cores: the README's advice
    # for a proxy next to them is threads = cores - 1 (a second loop on two cores buys more
    # wake-ups per request, not more throughput, and TLS pays for every wake-up's records).
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                    help="tierproxy --threads (all three proxies; default cores - 1)")
    ap.add_argument("--write-results", action="store_true", help=f"replace '{SECTION}' in bench/RESULTS.md")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tls-bench-")
    binary = tiered_bench.snapshot_binary(os.environ.get("TIERPROXY_BIN", os.path.join(ROOT, ".build/release/tierproxy")), tmp) \
        or os.path.join(tmp, "tierproxy")
    pki = make_pki(Path(tmp) / "pki")
    plain_port, tls_port, via_plain, via_tls, via_tls_plain = (free_port() for _ in range(5))
    common = ["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
    tls_server = ["--tls-cert-file", pki.server_crt, "--tls-key-file", pki.server_key,
                  "--tls-ca-cert-file", pki.ca_crt, "--tls-auth-clients", "no"]
    proxy_common = [binary, "--bind", "127.0.0.1", "--warm", "none", "--cold", "none", "--threads", str(args.threads)]
    procs = {}
    try:
        procs["redis"] = start(["redis-server", "--port", str(plain_port), *common], tmp)
        procs["redis-tls"] = start(["redis-server", "--port", "0", "--tls-port", str(tls_port), *common, *tls_server], tmp)
        wait_ping(plain_port)
        wait_tls_ping(tls_port, pki.ca_crt, procs["redis-tls"])
        procs["proxy"] = start([*proxy_common, "--port", str(via_plain), "--upstream", f"redis://127.0.0.1:{plain_port}"], tmp)
        procs["proxy-tls"] = start([*proxy_common, "--port", "0", "--tls-port", str(via_tls), *tls_server,
                                    "--upstream", f"rediss://127.0.0.1:{tls_port}", "--upstream-tls-ca-cert-file", pki.ca_crt], tmp)
        procs["proxy-tls-plain"] = start([*proxy_common, "--port", "0", "--tls-port", str(via_tls_plain), *tls_server,
                                          "--upstream", f"redis://127.0.0.1:{plain_port}"], tmp)
        wait_ping(via_plain)
        wait_tls_ping(via_tls, pki.ca_crt, procs["proxy-tls"])
        wait_tls_ping(via_tls_plain, pki.ca_crt, procs["proxy-tls-plain"])
        tls_args = ("--tls", "--cacert", pki.ca_crt)
        targets = [("direct", plain_port, "redis", ()), ("tierproxy", via_plain, "proxy", ()),
                   ("direct TLS", tls_port, "redis-tls", tls_args), ("tierproxy TLS", via_tls, "proxy-tls", tls_args),
                   ("TLS clients only", via_tls_plain, "proxy-tls-plain", tls_args)]
        results = {}
        cases = [(test, pipeline) for test in ("get", "set") for pipeline in (1, 16)]
        for rnd in range(args.rounds):
            order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
            for test, pipeline in cases:
                n = args.p1_requests if pipeline == 1 else args.requests
                for name, port, proc, extra in order:
                    if procs[proc].poll() is not None:
                        raise RuntimeError(f"{name} exited with {procs[proc].returncode}")
                    r = run_benchmark(port, test, pipeline, n, procs[proc].pid, extra)
                    results.setdefault((test, pipeline, name), []).append(r)
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    lines = ["| test | direct rps | tierproxy rps | plain ratio | direct TLS rps | tierproxy TLS rps | TLS ratio "
             "| TLS − plain (points) | within 10 points | TLS clients only rps (ratio to direct TLS) "
             "| proxy CPU µs/req plain / TLS / TLS clients only (TLS ÷ plain) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|"]
    for test, pipeline in cases:
        med = {name: statistics.median(r["rps"] for r in results[(test, pipeline, name)]) for name, *_ in targets}
        cpu = {name: statistics.median(r["cpu_us"] for r in results[(test, pipeline, name)]) for name, *_ in targets}
        plain = med["tierproxy"] / med["direct"]
        tls = med["tierproxy TLS"] / med["direct TLS"]
        points = 100 * (tls - plain)
        lines.append(f"| {test.upper()} -P {pipeline} | {med['direct']:,.0f} | {med['tierproxy']:,.0f} | {plain:.2f} "
                     f"| {med['direct TLS']:,.0f} | {med['tierproxy TLS']:,.0f} | {tls:.2f} | {points:+.0f} "
                     f"| {'yes' if points >= -10 else 'no'} "
                     f"| {med['TLS clients only']:,.0f} ({med['TLS clients only'] / med['direct TLS']:.2f}) "
                     f"| {cpu['tierproxy']:.1f} / {cpu['tierproxy TLS']:.1f} / {cpu['TLS clients only']:.1f} "
                     f"(×{cpu['tierproxy TLS'] / cpu['tierproxy']:.2f}) |")
    table = "\n".join(lines) + (
        f"\n\n{args.rounds} rounds alternating (the first target rotates), medians; redis-benchmark -c 50 -r 100000, "
        f"-n {args.p1_requests} at -P 1, {args.requests} at -P 16; all three proxies `--threads {args.threads}`, core only. "
        f"Host: {os.cpu_count()} cores shared by redis-benchmark, both Redis servers, the proxy under test and, "
        f"on this machine, other people's work (builds, tests): the figures are noisy. {tiered_bench.BINARY_NOTE}.")
    print(table)
    if args.write_results:
        tiered_bench.write_results(os.path.join(HERE, "RESULTS.md"), table, " ".join(sys.argv), title=SECTION)


if __name__ == "__main__":
    main()
