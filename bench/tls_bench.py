#!/usr/bin/env python3
"""TLS rows: redis-benchmark GET/SET at -P 1 and -P 16 against a TLS-only Redis directly
(`--tls`) and through tierproxy (plain TCP from the benchmark, TLS from the proxy to Redis),
beside the same pair over plain TCP, in one run, so that the TLS ratio (proxy / direct) can be
compared with the plain one (issue 12: no more than 10 points below it).

Client-side TLS (redis-benchmark --tls to the proxy) is not implemented yet; until it is, the
proxy's row measures the upstream side's cost only.

Usage: bench/tls_bench.py [--rounds 3] [--requests 200000] [--p1-requests 100000]
Needs: redis-server and redis-benchmark built with TLS (Debian's are), openssl, a release
build of tierproxy (.build/release/tierproxy or TIERPROXY_BIN). Do not run it while others use
the machine: it saturates every core.
"""
import argparse, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import ROOT, free_port, run_benchmark, wait_ping  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))
from tls_support import make_pki  # noqa: E402


def wait_tls_ping(port, ca, deadline=20.0):
    end = time.time() + deadline
    while time.time() < end:
        r = subprocess.run(["redis-cli", "--tls", "--cacert", ca, "-p", str(port), "PING"],
                           capture_output=True, text=True)
        if r.stdout.strip() == "PONG":
            return
        time.sleep(0.05)
    raise RuntimeError(f"TLS redis on {port} did not answer within {deadline}s")


def start(argv, cwd):
    return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--p1-requests", type=int, default=100000)
    args = ap.parse_args()
    binary = os.environ.get("TIERPROXY_BIN", os.path.join(ROOT, ".build/release/tierproxy"))
    tmp = tempfile.mkdtemp(prefix="tls-bench-")
    pki = make_pki(Path(tmp) / "pki")
    plain_port, tls_port, via_plain, via_tls = free_port(), free_port(), free_port(), free_port()
    common = ["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
    procs = {
        "redis": start(["redis-server", "--port", str(plain_port), *common], tmp),
        "redis-tls": start(["redis-server", "--port", "0", "--tls-port", str(tls_port), *common,
                            "--tls-cert-file", pki.server_crt, "--tls-key-file", pki.server_key,
                            "--tls-ca-cert-file", pki.ca_crt, "--tls-auth-clients", "no"], tmp),
    }
    try:
        wait_ping(plain_port)
        wait_tls_ping(tls_port, pki.ca_crt)
        procs["proxy"] = start([binary, "--port", str(via_plain), "--bind", "127.0.0.1", "--warm", "none",
                                "--cold", "none", "--upstream", f"redis://127.0.0.1:{plain_port}"], tmp)
        procs["proxy-tls"] = start([binary, "--port", str(via_tls), "--bind", "127.0.0.1", "--warm", "none",
                                    "--cold", "none", "--upstream", f"rediss://127.0.0.1:{tls_port}",
                                    "--upstream-tls-ca-cert-file", pki.ca_crt], tmp)
        wait_ping(via_plain)
        wait_ping(via_tls)
        tls_args = ("--tls", "--cacert", pki.ca_crt)
        targets = [("direct", plain_port, "redis", ()), ("tierproxy", via_plain, "proxy", ()),
                   ("direct TLS", tls_port, "redis-tls", tls_args), ("tierproxy, TLS upstream", via_tls, "proxy-tls", ())]
        results = {}
        for test in ("get", "set"):
            for pipeline in (1, 16):
                n = args.p1_requests if pipeline == 1 else args.requests
                for _ in range(args.rounds):
                    for name, port, proc, extra in targets:
                        r = run_benchmark(port, test, pipeline, n, procs[proc].pid, extra)
                        results.setdefault((test, pipeline, name), []).append(r["rps"])
        print("| test | -P | direct | tierproxy | ratio | direct TLS | tierproxy, TLS upstream | TLS ratio | points |")
        print("|---|---|---|---|---|---|---|---|---|")
        for test in ("get", "set"):
            for pipeline in (1, 16):
                m = {name: statistics.median(results[(test, pipeline, name)]) for name, *_ in targets}
                plain = m["tierproxy"] / m["direct"]
                tls = m["tierproxy, TLS upstream"] / m["direct TLS"]
                print(f"| {test.upper()} | {pipeline} | {m['direct']:,.0f} | {m['tierproxy']:,.0f} | {plain:.2f} "
                      f"| {m['direct TLS']:,.0f} | {m['tierproxy, TLS upstream']:,.0f} | {tls:.2f} "
                      f"| {100 * (tls - plain):+.0f} |")
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
