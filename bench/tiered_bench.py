#!/usr/bin/env python3
"""Issue 4 figures: what the tiers cost on the hit path, and how far misses overlap.

1. Hot hits. redis-benchmark -t get -c 50 -r 100000 at -P 1 and -P 16 against direct Redis,
   tierproxy core-only (--warm none --cold none) and tierproxy with the embedded tiers
   (sqlite + dir), --threads 1 (and 2 with --threads2, the default). All 100 000 keys
   key:000000000000..key:000000099999 are written to Redis first (deterministically: a
   `redis-benchmark -t set -r 100000 -n 300000` fill leaves ~5% of them absent, and a GET of
   those would be a miss on the tiered proxy). Targets alternate (the starting target rotates)
   for --rounds rounds; medians. Checked per run: Redis saw no keyspace miss, and the tiered
   proxy made no lower-tier lookup (INFO tiers `lookups` unchanged).
2. Misses. K keys written through the proxy (write-through to warm), then FLUSHALL directly on
   the hot Redis; then GETs of distinct keys, each a miss served from warm and promoted: 50
   connections with one GET in flight each, and 1 connection (the serial rate). Every reply is
   compared with the value written. Warm = SQLite (cold = dir), and warm = the Cosmos emulator
   (cold = the Blob emulator) with 20 ms added to each ReadDocument (emulator fault rule). The
   issue asks the emulator case for >= 25x the serial rate at 50 clients.
   The client is one Python thread multiplexing the connections with `selectors`; its own CPU
   share is reported (near 100% = the client, not the proxy, bounds the figure).
3. A markdown table; --write-results replaces the "## Tiered (issue 4)" section of
   bench/RESULTS.md.

Usage: bench/tiered_bench.py [--rounds 5] [--miss-rounds 5] [--write-results]
Everything it needs (redis-server, tierproxy, the emulators) is started here on free loopback
ports and stopped at the end. Exit status 1 if any reply was wrong or a process died.
"""
import argparse, hashlib, os, platform, selectors, shlex, shutil, socket, statistics, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxy_bench import ROOT, Target, cpu_seconds, free_port, run_benchmark, wait_ping  # noqa: E402

sys.path.insert(0, ROOT)
import redis  # noqa: E402

SECTION = "## Tiered (issue 4)"
PROBLEMS = []           # human-readable failures: wrong replies, dead processes, failed checks


def problem(msg):
    PROBLEMS.append(msg)
    print(f"PROBLEM: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

def start_redis(tmp):
    port = free_port()
    d = tempfile.mkdtemp(prefix="redis-", dir=tmp)
    return Target("direct", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", d], port)


class Proxy(Target):
    """tierproxy with its output kept (warnings and crashes are reported)."""

    def __init__(self, name, binary, tmp, upstream_port, threads, warm, cold, env=None, extra=(), prefix=()):
        self.name, self.port = name, free_port()
        self.dir = tempfile.mkdtemp(prefix="proxy-", dir=tmp)
        warm = warm.format(dir=self.dir)
        cold = cold.format(dir=self.dir)
        self.argv = [*prefix, binary, "--port", str(self.port), "--bind", "127.0.0.1",
                     "--upstream", f"redis://127.0.0.1:{upstream_port}", "--threads", str(threads),
                     "--warm", warm, "--cold", cold, "--dir", self.dir, "--loglevel", "notice", *extra]
        self.log = os.path.join(self.dir, "proxy.log")
        penv = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "TIERPROXY_"))}
        penv.update(env or {})
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, env=penv, cwd=self.dir)
        try:
            wait_ping(self.port)
        except RuntimeError:
            self.proc.kill()
            raise RuntimeError(f"{name} did not start: {shlex.join(self.argv)}\n{self.output()[-2000:]}")

    def output(self):
        try:
            return open(self.log, errors="replace").read()
        except OSError:
            return ""

    def alive(self, where):
        if self.proc.poll() is not None:
            problem(f"{self.name} exited with {self.proc.returncode} during {where}; output tail:\n"
                    f"{self.output()[-3000:]}")
            return False
        return True

    def info_tiers(self):
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=30) as c:
            return c.info("tiers")

    def stop(self):
        super().stop()
        rc = self.proc.returncode
        if rc not in (0, -15):
            problem(f"{self.name} exit status {rc} on SIGTERM; output tail:\n{self.output()[-3000:]}")
        odd = [l for l in self.output().splitlines()
               if " # " in l or "rror" in l or "atal" in l or "anic" in l]
        if odd:
            problem(f"{self.name} logged {len(odd)} warning/error line(s), e.g.:\n  " + "\n  ".join(odd[:10]))


class InFlightSampler:
    """Polls the emulator's /__stats `in_flight` every `interval` s while a phase runs: the mean
    (by Little's law = rate x the emulator's own time per request) tells whether the proxy keeps
    the requests outstanding or the emulator is slow to serve them."""

    def __init__(self, emu, service="cosmos", interval=0.05):
        self.emu, self.service, self.interval = emu, service, interval
        self.samples, self.stop_ev = [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.samples.append(self.emu.stats(self.service)["in_flight"])
            except Exception:
                pass
            self.stop_ev.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join(5)

    def mean(self):
        return statistics.mean(self.samples) if self.samples else float("nan")


def hot_stats(port):
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=30) as c:
        s = c.info("stats")
        return s["keyspace_hits"], s["keyspace_misses"]


# ---------------------------------------------------------------------------------------------
# A multiplexing RESP client: N connections, one request in flight on each, replies checked
# ---------------------------------------------------------------------------------------------

def resp_command(*parts):
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        p = p if isinstance(p, bytes) else str(p).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


def resp_bulk(v):
    return b"$%d\r\n%s\r\n" % (len(v), v)


def reply_end(buf, pos=0):
    """Index just past one complete RESP reply starting at pos, or -1 if incomplete."""
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        return -1
    t = buf[pos:pos + 1]
    if t in (b"+", b"-", b":", b"_", b",", b"#"):
        return nl + 2
    if t == b"$":
        n = int(buf[pos + 1:nl])
        if n < 0:
            return nl + 2
        end = nl + 2 + n + 2
        return end if len(buf) >= end else -1
    if t == b"*":
        n = int(buf[pos + 1:nl])
        p = nl + 2
        for _ in range(max(n, 0)):
            p = reply_end(buf, p)
            if p < 0:
                return -1
        return p
    raise ValueError(f"unparseable reply {bytes(buf[pos:pos + 80])!r}")


def drive(port, jobs, conns, timeout_s=180.0):
    """jobs: list of (request bytes, expected reply bytes). Spread over `conns` connections
    (connection j takes jobs j, j+conns, ...), one request in flight per connection.
    Returns dict(wall, client_cpu, ok, wrong (examples), wrong_count, lat (sorted seconds))."""
    conns = max(1, min(conns, len(jobs)))
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(conns)]
    try:
        for s in socks:                 # each connection established end to end (upstream too)
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
        for s in socks:
            got = b""
            while not got.endswith(b"\r\n"):
                got += s.recv(64)
            if got != b"+PONG\r\n":
                raise RuntimeError(f"PING answered {got!r}")
        sel = selectors.DefaultSelector()
        queues = [jobs[j::conns] for j in range(conns)]
        state = []
        for j, s in enumerate(socks):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            state.append({"q": queues[j], "i": 0, "buf": bytearray(), "t": 0.0})
            sel.register(s, selectors.EVENT_READ, j)
        lat, wrong, wrong_count, ok = [], [], 0, 0
        pending = conns
        cpu0, t0 = time.process_time(), time.perf_counter()
        deadline = t0 + timeout_s
        for j, s in enumerate(socks):
            st = state[j]
            st["t"] = time.perf_counter()
            s.sendall(st["q"][0][0])
        while pending:
            events = sel.select(timeout=max(0.0, deadline - time.perf_counter()))
            if not events:
                done = sum(st["i"] for st in state)
                raise TimeoutError(f"{done} of {len(jobs)} replies after {timeout_s}s")
            for key, _ in events:
                j = key.data
                st, s = state[j], socks[j]
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError(f"connection {j} closed by the proxy after {st['i']} replies")
                st["buf"] += chunk
                while True:
                    end = reply_end(st["buf"])
                    if end < 0:
                        break
                    now = time.perf_counter()
                    lat.append(now - st["t"])
                    got = bytes(st["buf"][:end])
                    del st["buf"][:end]
                    req, want = st["q"][st["i"]]
                    if got == want:
                        ok += 1
                    else:
                        wrong_count += 1
                        if len(wrong) < 5:
                            wrong.append((req[:120], want[:80], got[:200]))
                    st["i"] += 1
                    if st["i"] < len(st["q"]):
                        st["t"] = now
                        s.sendall(st["q"][st["i"]][0])
                    else:
                        pending -= 1
                        sel.unregister(s)
                        break
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        for s in socks:
            s.close()
    lat.sort()
    return {"wall": wall, "client_cpu": cpu / wall if wall else 0.0, "ok": ok, "wrong": wrong,
            "wrong_count": wrong_count, "lat": lat, "n": len(jobs)}


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(p / 100 * len(sorted_vals)))]


# ---------------------------------------------------------------------------------------------
# Part 1: hot hits
# ---------------------------------------------------------------------------------------------

def populate(port, keys=100000, value="xxx"):
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=60) as c:
        for start in range(0, keys, 5000):
            p = c.pipeline(transaction=False)
            for i in range(start, min(keys, start + 5000)):
                p.set(f"key:{i:012d}", value)
            p.execute()
        n = c.dbsize()
    if n != keys:
        raise RuntimeError(f"populated {n} keys, expected {keys}")


def hit_path(args, binary, tmp):
    redis_t = start_redis(tmp)
    targets = [redis_t]
    try:
        populate(redis_t.port)
        thread_counts = [1, 2] if args.threads2 else [1]
        for th in thread_counts:
            targets.append(Proxy(f"core-only -t{th}", binary, tmp, redis_t.port, th, "none", "none"))
            targets.append(Proxy(f"tiered sqlite+dir -t{th}", binary, tmp, redis_t.port, th,
                                 "sqlite:{dir}/warm.db", "dir:{dir}/cold"))
        cases = [("get", 1), ("get", 16)]
        results = {(t.name, c): [] for t in targets for c in cases}
        for rnd in range(args.rounds):
            for case in cases:
                k = rnd % len(targets)
                for t in targets[k:] + targets[:k]:         # rotate who goes first
                    n = args.p1_requests if case[1] == 1 else args.requests
                    hits0, miss0 = hot_stats(redis_t.port)
                    tiers0 = t.info_tiers() if isinstance(t, Proxy) and "tiered" in t.name else None
                    r = run_benchmark(t.port, case[0], case[1], n, t.proc.pid)
                    hits1, miss1 = hot_stats(redis_t.port)
                    if miss1 != miss0:
                        problem(f"{t.name} GET -P {case[1]}: Redis counted {miss1 - miss0} keyspace misses "
                                f"(every key was populated)")
                    if hits1 - hits0 < n:
                        problem(f"{t.name} GET -P {case[1]}: Redis counted {hits1 - hits0} hits for {n} GETs "
                                f"(replies not from Redis?)")
                    if tiers0 is not None:
                        tiers1 = t.info_tiers()
                        d = {f: tiers1.get(f, 0) - tiers0.get(f, 0)
                             for f in ("lookups", "lower_read_errors", "warm_hits", "misses")}
                        if any(d.values()):
                            problem(f"{t.name} GET -P {case[1]} on hot hits touched the tiers: {d}")
                    if isinstance(t, Proxy):
                        t.alive(f"GET -P {case[1]} round {rnd + 1}")
                    results[(t.name, case)].append(r)
            print(f"hit path: round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for t in targets:
            t.stop()
    return targets, cases, results


# ---------------------------------------------------------------------------------------------
# Part 2: misses served from warm
# ---------------------------------------------------------------------------------------------

def value_for(key, size):
    """The value written to `key`: distinct per key, `size` bytes."""
    v = (key + "|").encode()
    return (v * (size // len(v) + 1))[:size]


def miss_path(args, binary, tmp, backend):
    """backend: sqlite or cosmos. Returns a dict of figures."""
    redis_t = start_redis(tmp)
    emu = proxy = None
    out = {"backend": backend}
    try:
        if backend == "sqlite":
            warm, cold, env = "sqlite:{dir}/warm.db", "dir:{dir}/cold", {}
            n_conc, n_serial = args.sqlite_keys, args.sqlite_serial_keys
            label = "SQLite (cold: dir)"
        else:
            from Tests.emulators.harness import EmulatorProcess
            from azure.cosmos import CosmosClient, PartitionKey
            from azure.storage.blob import BlobServiceClient
            emu = EmulatorProcess(latency_ms=0).start()
            CosmosClient(emu.cosmos_url, credential=emu.cosmos_key) \
                .create_database_if_not_exists("bench") \
                .create_container_if_not_exists("state", partition_key=PartitionKey(path="/id"), default_ttl=-1)
            BlobServiceClient.from_connection_string(emu.blob_connection_string).create_container("mem")
            hostport = emu.cosmos_url.split("://", 1)[1]
            blob_base = emu.blob_account_url.split("://", 1)[1]          # 127.0.0.1:P/devstoreaccount1
            warm, cold, env = f"cosmos+http://{hostport}/bench/state", f"blob+http://{blob_base}/mem", emu.env()
            n_conc, n_serial = args.cosmos_keys, args.cosmos_serial_keys
            label = f"Cosmos emulator, +{args.latency_ms:g} ms per ReadDocument (cold: Blob emulator)"
        out["label"] = label
        proxy = Proxy(f"tiered {backend} -t{args.miss_threads}", binary, tmp, redis_t.port, args.miss_threads,
                      warm, cold, env)
        keys = [f"miss:{i:07d}" for i in range(n_conc + n_serial)]
        conc_keys, serial_keys = keys[:n_conc], keys[n_conc:]

        # write-through SETs, 50 connections
        if emu is not None:
            emu.reset_stats(("cosmos", "blob"))
        tiers0 = proxy.info_tiers()
        t0 = cpu_seconds(proxy.proc.pid)
        w = drive(proxy.port, [(resp_command("SET", k, value_for(k, args.value_size)), b"+OK\r\n") for k in keys],
                  args.clients)
        out["set_rate"] = w["n"] / w["wall"]
        out["set_client_cpu"] = w["client_cpu"]
        out["set_proxy_us"] = (cpu_seconds(proxy.proc.pid) - t0) / w["n"] * 1e6
        if w["wrong_count"]:
            problem(f"{backend}: {w['wrong_count']} of {w['n']} write-through SETs answered wrongly, "
                    f"e.g. {w['wrong']}")
        proxy.alive("SETs")
        tiers1 = proxy.info_tiers()
        out["set_tiers"] = {f: (tiers1.get(f, 0) - tiers0.get(f, 0)) / w["n"]
                            for f in ("lower_writes", "lower_deletes", "lower_write_failures")}
        if emu is not None:
            out["set_ops"] = {svc: {op: n / w["n"] for op, n in emu.ops(svc).items()} for svc in ("cosmos", "blob")}
        hot = redis.Redis(host="127.0.0.1", port=redis_t.port, socket_timeout=30)
        if hot.dbsize() != len(keys):
            problem(f"{backend}: hot holds {hot.dbsize()} keys after {len(keys)} SETs")

        if emu is not None:
            emu.add_fault("cosmos", kind="latency", ms=args.latency_ms, op="ReadDocument", count=-1)

        phases = {"serial": [], "conc": []}
        for rnd in range(args.miss_rounds):
            for phase, ks, nconn in (("serial", serial_keys, 1), ("conc", conc_keys, args.clients)):
                hot.flushall()
                assert hot.dbsize() == 0
                if emu is not None:
                    emu.reset_stats(("cosmos", "blob"))
                tiers0 = proxy.info_tiers()
                pcpu0 = cpu_seconds(proxy.proc.pid)
                ecpu0 = cpu_seconds(emu.proc.pid) if emu is not None else 0.0
                jobs = [(resp_command("GET", k), resp_bulk(value_for(k, args.value_size))) for k in ks]
                if emu is not None:
                    with InFlightSampler(emu) as sampler:
                        r = drive(proxy.port, jobs, nconn, timeout_s=args.phase_timeout)
                    r["mean_in_flight"] = sampler.mean()
                else:
                    r = drive(proxy.port, jobs, nconn, timeout_s=args.phase_timeout)
                r["proxy_us"] = (cpu_seconds(proxy.proc.pid) - pcpu0) / r["n"] * 1e6
                r["emu_cpu"] = (cpu_seconds(emu.proc.pid) - ecpu0) / r["wall"] if emu is not None else None
                tiers1 = proxy.info_tiers()
                d = {f: tiers1.get(f, 0) - tiers0.get(f, 0)
                     for f in ("lookups", "warm_hits", "cold_hits", "misses", "promotions", "lower_read_errors",
                               "negative_cache_hits")}
                r["tiers"] = d
                where = f"{backend} {phase} round {rnd + 1} ({r['n']} GETs, {nconn} connection(s))"
                if r["wrong_count"]:
                    problem(f"{where}: {r['wrong_count']} wrong replies, e.g. (request, expected, got): {r['wrong']}")
                if d["warm_hits"] != r["n"] or d["cold_hits"] or d["misses"] or d["lower_read_errors"]:
                    problem(f"{where}: INFO tiers deltas {d} (expected warm_hits = {r['n']}, no cold hit, "
                            f"miss or read error)")
                promoted = hot.dbsize()
                if promoted != r["n"]:
                    problem(f"{where}: hot holds {promoted} keys after the GETs (each should be promoted)")
                if emu is not None:
                    cs, bs = emu.stats("cosmos"), emu.stats("blob")
                    r["reads"] = cs["ops"].get("ReadDocument", 0)
                    r["max_in_flight"] = cs.get("max_in_flight")
                    r["blob_ops"] = sum(bs["ops"].values())
                    if r["reads"] != r["n"]:
                        problem(f"{where}: Cosmos saw {r['reads']} ReadDocument for {r['n']} misses "
                                f"(ops {cs['ops']})")
                    if r["blob_ops"]:
                        problem(f"{where}: the Blob emulator saw {bs['ops']} although warm held every key")
                proxy.alive(where)
                phases[phase].append(r)
                print(f"miss path {backend} {phase} round {rnd + 1}: {r['n'] / r['wall']:,.0f}/s, "
                      f"client CPU {r['client_cpu']:.0%}", file=sys.stderr, flush=True)
        hot.close()
        out["phases"] = phases
    finally:
        if proxy is not None:
            proxy.stop()
        if emu is not None:
            emu.stop()
        redis_t.stop()
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def report(args, hit, misses):
    targets, cases, results = hit
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [f"Host: {os.cpu_count()} cores, {cpu_model}, {platform.platform()}; {BINARY_NOTE}. The benchmark "
             f"client, Redis, the proxy (and the emulators) share the cores; other work may have been running "
             f"(noisy)."]
    if cases:
        lines += ["", f"### GET, every key a hot hit (redis-benchmark -t get -c 50 -r 100000; {args.rounds} rounds "
                      f"alternating, medians, min–max in brackets; -n {args.p1_requests} at -P 1, {args.requests} "
                      f"at -P 16)", "",
                  "| target | test | rps | (min–max) | ratio to direct | tiered / core-only rps | p50 ms | "
                  "server CPU µs/req | tiered / core-only CPU |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for case in cases:
        direct = med([r["rps"] for r in results[("direct", case)]])
        for t in targets:
            rs = results[(t.name, case)]
            rps = med([r["rps"] for r in rs])
            cpu = med([r["cpu_us"] for r in rs])
            vs_core = cpu_core = ""
            if t.name.startswith("tiered"):
                core_rs = results[(t.name.replace("tiered sqlite+dir", "core-only"), case)]
                core = med([r["rps"] for r in core_rs])
                vs_core = f"{rps / core:.3f} {'✓' if rps / core >= 0.95 else '✗ (< 0.95)'}"
                cpu_core = f"{cpu / med([r['cpu_us'] for r in core_rs]):.2f}"
            lines.append(f"| {t.name} | GET -P {case[1]} | {rps:,.0f} | {min(r['rps'] for r in rs):,.0f}–"
                         f"{max(r['rps'] for r in rs):,.0f} | {rps / direct:.2f} | {vs_core} | "
                         f"{med([r['p50'] for r in rs]):.3f} | {cpu:.1f} | {cpu_core} |")
    if cases:
        lines += ["", "(server CPU = the target process only: Redis for direct, the proxy otherwise. "
                      "Checked on every run: Redis counted no keyspace miss, and the tiered proxy's INFO tiers "
                      "`lookups` did not move.)"]
    if not misses:
        return "\n".join(lines + problem_lines())
    lines += ["", f"### GET misses served from warm (distinct keys, each promoted; {args.value_size}-byte values; "
              f"proxy --threads {args.miss_threads}; {args.miss_rounds} rounds, medians)", "",
              "| warm tier | clients | GETs per round | misses/s | (min–max) | × serial | p50 ms | p99 ms | "
              "client CPU | proxy CPU µs/miss | notes |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for m in misses:
        ser = m["phases"]["serial"]
        ser_rate = med([r["n"] / r["wall"] for r in ser])
        for phase, nconn in (("serial", 1), ("conc", args.clients)):
            rs = m["phases"][phase]
            rates = [r["n"] / r["wall"] for r in rs]
            rate = med(rates)
            notes = []
            if phase == "conc" and m["backend"] == "cosmos":
                notes.append(f"{'✓' if rate >= 25 * ser_rate else '✗'} issue asks ≥ 25×")
            if "max_in_flight" in rs[0]:
                inflight = med([r["mean_in_flight"] for r in rs])
                notes.append(f"emulator in flight: mean {inflight:.1f} (so {inflight / rate * 1e3:.0f} ms per "
                             f"ReadDocument inside the emulator), max {max(r['max_in_flight'] for r in rs)}; "
                             f"ReadDocument count = GETs: {'yes' if all(r['reads'] == r['n'] for r in rs) else 'NO'}, "
                             f"emulator CPU {med([r['emu_cpu'] for r in rs]):.0%}")
            cc = med([r["client_cpu"] for r in rs])
            if cc >= 0.9:
                notes.append("client-bound (its CPU saturates)")
            wrong = sum(r["wrong_count"] for r in rs)
            notes.append(f"wrong replies {wrong}")
            lines.append(f"| {m['label']} | {nconn} | {rs[0]['n']:,} | {rate:,.0f} | {min(rates):,.0f}–"
                         f"{max(rates):,.0f} | {rate / ser_rate:.1f} | "
                         f"{med([pct(r['lat'], 50) for r in rs]) * 1e3:.2f} | "
                         f"{med([pct(r['lat'], 99) for r in rs]) * 1e3:.2f} | {cc:.0%} | "
                         f"{med([r['proxy_us'] for r in rs]):.0f} | {'; '.join(notes)} |")
    lines += ["", "| warm tier | write-through SETs at 50 clients (setup) | client CPU | proxy CPU µs/SET | "
                  "per SET (INFO tiers; emulator requests) |",
              "|---|---:|---:|---:|---|"]
    for m in misses:
        per = ", ".join(f"{k} {v:.2f}" for k, v in m["set_tiers"].items())
        if "set_ops" in m:
            per += "; " + "; ".join(f"{svc}: " + ", ".join(f"{op} {n:.2f}" for op, n in sorted(ops.items()))
                                     for svc, ops in m["set_ops"].items() if ops)
        lines.append(f"| {m['label']} | {m['set_rate']:,.0f}/s | {m['set_client_cpu']:.0%} | "
                     f"{m['set_proxy_us']:.0f} | {per} |")
    lines += ["", f"Client: one Python thread multiplexing the connections (selectors), one GET in flight per "
                  f"connection; `client CPU` is its share of one core over the phase. Every reply was compared "
                  f"with the value written; INFO tiers deltas, hot's key count after the GETs (promotions) and, "
                  f"for Cosmos, the emulator's ReadDocument count were checked per phase."]
    return "\n".join(lines + problem_lines())


def problem_lines():
    if not PROBLEMS:
        return []
    return ["", f"**Problems seen ({len(PROBLEMS)}):**", ""] + [f"- {p.splitlines()[0]}" for p in PROBLEMS]


BINARY_NOTE = ""


def snapshot_binary(built, tmp):
    """Copy the binary once, so a rebuild during the run (Sources are edited concurrently) cannot
    mix two builds in one table; note its build time and hash for the report."""
    global BINARY_NOTE
    for _ in range(10):
        st = os.stat(built)
        if time.time() - st.st_mtime > 2:        # not being written right now
            break
        time.sleep(1)
    copy = os.path.join(tmp, "tierproxy")
    shutil.copy2(built, copy)
    version = subprocess.run([copy, "--version"], capture_output=True, text=True, timeout=30)
    if version.returncode != 0:
        sys.exit(f"{built} does not run: {version.stderr or version.stdout}")
    with open(copy, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    head = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h %cI"], capture_output=True,
                          text=True).stdout.split()
    BINARY_NOTE = (f"tierproxy binary built {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(st.st_mtime))} "
                   f"(sha256 {digest}; HEAD then {head[0] if head else '?'} committed {head[1] if head else '?'}"
                   f"{', Sources/ had uncommitted changes' if dirty_sources() else ''})")
    return copy


def dirty_sources():
    r = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "Sources"], capture_output=True, text=True)
    return bool(r.stdout.strip())


def write_results(path, table, argv, title=SECTION):
    """Replace the section headed `title` in `path` (or append it)."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = (f"{title}\n\n_Measured {stamp}_ with `{argv}`.\n\n{table}\n")
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    if title in text:
        head, rest = text.split(title, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1:] if nxt >= 0 else ""
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="hit path: rounds of alternating targets")
    ap.add_argument("--requests", type=int, default=200000, help="hit path: -n at -P 16")
    ap.add_argument("--p1-requests", type=int, default=100000, help="hit path: -n at -P 1")
    ap.add_argument("--threads2", action=argparse.BooleanOptionalAction, default=True,
                    help="also run both proxy variants with --threads 2")
    ap.add_argument("--miss-rounds", type=int, default=5)
    ap.add_argument("--miss-threads", type=int, default=1, help="proxy --threads for the miss path")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--sqlite-keys", type=int, default=20000, help="GETs per round at 50 clients, SQLite")
    ap.add_argument("--sqlite-serial-keys", type=int, default=5000)
    ap.add_argument("--cosmos-keys", type=int, default=2000, help="GETs per round at 50 clients, Cosmos")
    ap.add_argument("--cosmos-serial-keys", type=int, default=100)
    ap.add_argument("--latency-ms", type=float, default=20.0, help="added to each Cosmos ReadDocument")
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--phase-timeout", type=float, default=180.0)
    ap.add_argument("--skip", default="", help="comma list of hit,sqlite,cosmos to leave out")
    ap.add_argument("--write-results", action="store_true", help=f"replace '{SECTION}' in bench/RESULTS.md")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    built = os.environ.get("TIERPROXY_BIN", os.path.join(ROOT, ".build/release/tierproxy"))
    if not os.path.exists(built):
        sys.exit(f"{built} missing: swift build -c release --product tierproxy")
    tmp = tempfile.mkdtemp(prefix="tiered-bench-")
    started = time.time()
    try:
        binary = snapshot_binary(built, tmp)
        hit = hit_path(args, binary, tmp) if "hit" not in skip else ([], [], {})
        misses = [miss_path(args, binary, tmp, b) for b in ("sqlite", "cosmos") if b not in skip]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = report(args, hit, misses)
    print(table)
    print(f"\n(total {time.time() - started:.0f} s)", file=sys.stderr)
    if args.write_results:
        write_results(os.path.join(HERE, "RESULTS.md"), table,
                      "python3 bench/tiered_bench.py " + shlex.join(sys.argv[1:]))
    if PROBLEMS:
        print(f"\n{len(PROBLEMS)} PROBLEM(S):\n" + "\n\n".join(PROBLEMS), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
