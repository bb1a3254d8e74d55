#!/usr/bin/env python3
"""Throughput and latency of tierproxy beside direct Redis and twemproxy, in one run.

For GET and SET at -P 1 and -P 16 (redis-benchmark -c 50 -r 100000), targets are run in
alternation for several rounds; the table shows medians, each proxy's ratio to direct, p50
latency, and the proxy's CPU time per request (utime+stime from /proc/PID/stat over the run),
which is the fair figure at -P 1 where the 2-core box makes the benchmark client the bottleneck.
Then: RSS growth per idle client with 1000 clients connected.

Usage: bench/proxy_bench.py [--rounds 3] [--requests 200000] [--write bench/RESULTS.md]
Extra targets: PEER_<NAME>=/path/to/binary:'args with {port} and {upstream_port}' (e.g. a
locally built predixy; never committed).
"""
import argparse, csv, io, os, platform, shutil, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ping(port, deadline=20.0):
    end = time.time() + deadline
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered PING on port {port} within {deadline}s")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime + stime


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_benchmark(port, test, pipeline, requests, pid, extra=()):
    before = cpu_seconds(pid)
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "50", "-r", "100000",
                          "-n", str(requests), "-P", str(pipeline), "-t", test, "--csv", *extra],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    cpu = cpu_seconds(pid) - before
    rows = list(csv.DictReader(io.StringIO(out)))
    row = rows[-1]
    return {"rps": float(row["rps"]), "p50": float(row["p50_latency_ms"]), "cpu_us": cpu / requests * 1e6}


def idle_client_rss(port, pid, clients=1000):
    """RSS growth per connected idle client (each sent one PING so its upstream side exists too)."""
    socks = []
    base = rss_kib(pid)
    try:
        for _ in range(clients):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            socks.append(s)
        for s in socks:
            assert s.recv(16).startswith(b"+PONG")
        grown = rss_kib(pid) - base
    finally:
        for s in socks:
            s.close()
    return grown * 1024 / clients


class Target:
    def __init__(self, name, argv, port, cwd=None):
        self.name, self.port = name, port
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
        wait_ping(port)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--p1-requests", type=int, default=100000)
    ap.add_argument("--threads", default="1,0",
                    help="tierproxy thread counts to run, comma-separated (0 = one per core)")
    ap.add_argument("--write", help="replace the proxy section of this markdown file")
    args = ap.parse_args()

    binary = os.environ.get("TIERPROXY_BIN", os.path.join(ROOT, ".build/release/tierproxy"))
    tmp = tempfile.mkdtemp(prefix="tierproxy-bench-")
    rport = free_port()
    targets = []
    try:
        redis = Target("direct", ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", tmp], rport)
        targets.append(redis)
        tport = free_port()
        with open(os.path.join(tmp, "nutcracker.yml"), "w") as f:
            f.write(f"bench:\n  listen: 127.0.0.1:{tport}\n  hash: fnv1a_64\n  distribution: ketama\n"
                    f"  redis: true\n  auto_eject_hosts: false\n  servers:\n   - 127.0.0.1:{rport}:1\n")
        if shutil.which("nutcracker"):
            # Its stats server defaults to 0.0.0.0:22222: keep it on loopback, on a port of its own.
            targets.append(Target("twemproxy", ["nutcracker", "-c", os.path.join(tmp, "nutcracker.yml"),
                                                "-o", os.path.join(tmp, "nutcracker.log"),
                                                "-a", "127.0.0.1", "-s", str(free_port())], tport))
        for threads in args.threads.split(","):
            pport = free_port()
            name = f"tierproxy -t{threads}" if threads != "0" else f"tierproxy -t{os.cpu_count()}"
            targets.append(Target(name, [binary, "--port", str(pport), "--bind", "127.0.0.1",
                                         "--upstream", f"redis://127.0.0.1:{rport}", "--threads", threads,
                                         "--loglevel", "warning", "--warm", "none", "--cold", "none"], pport))
        for key, spec in sorted(os.environ.items()):
            if key.startswith("PEER_"):
                path, _, extra = spec.partition(":")
                port = free_port()
                argv = [path] + extra.format(port=port, upstream_port=rport, tmp=tmp).split()
                targets.append(Target(key[5:].lower(), argv, port, cwd=tmp))

        cases = [("get", 1), ("set", 1), ("get", 16), ("set", 16)]
        results = {(t.name, c): [] for t in targets for c in cases}
        for rnd in range(args.rounds):
            for case in cases:
                for t in targets:       # alternate targets within each case and round
                    n = args.p1_requests if case[1] == 1 else args.requests
                    results[(t.name, case)].append(run_benchmark(t.port, case[0], case[1], n, t.proc.pid))
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)

        memory = {t.name: idle_client_rss(t.port, t.proc.pid) for t in targets if t.name != "direct"}
    finally:
        for t in targets:
            t.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [f"Host: {os.cpu_count()} cores, {cpu_model}, {platform.platform()}; redis-benchmark -c 50 -r 100000, "
             f"{args.rounds} rounds alternating, medians; -n {args.p1_requests} at P1, {args.requests} at P16; "
             f"tierproxy -tN: N event-loop threads.", "",
             "| target | test | rps | ratio to direct | p50 ms | server CPU µs/req |",
             "|---|---|---:|---:|---:|---:|"]
    for case in cases:
        direct = statistics.median(r["rps"] for r in results[("direct", case)])
        for t in targets:
            rs = results[(t.name, case)]
            rps = statistics.median(r["rps"] for r in rs)
            lines.append(f"| {t.name} | {case[0].upper()} -P {case[1]} | {rps:,.0f} | {rps / direct:.2f} | "
                         f"{statistics.median(r['p50'] for r in rs):.3f} | "
                         f"{statistics.median(r['cpu_us'] for r in rs):.1f} |")
    lines += ["", "| proxy | RSS growth per idle client (1000 clients) |", "|---|---:|"]
    for name, per in memory.items():
        lines.append(f"| {name} | {per / 1024:.1f} KiB |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        begin, end = "<!-- proxy-bench:begin -->", "<!-- proxy-bench:end -->"
        text = open(args.write).read() if os.path.exists(args.write) else f"# Benchmark results\n\n{begin}\n{end}\n"
        if begin not in text:
            text += f"\n{begin}\n{end}\n"
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        with open(args.write, "w") as f:
            f.write(f"{head}{begin}\n_Measured {stamp}._\n\n{table}\n{end}{tail}")


if __name__ == "__main__":
    main()
