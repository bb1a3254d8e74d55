"""Load check for the emulators: requests/s and emulator CPU per request (reproducible).

    python3 -m Tests.emulators.loadcheck [--seconds 5] [--conns 50] [--latency-ms 0] [--procs 2]
                                         [--only cosmos-read,blob-get,...]

Starts the emulators with harness.EmulatorProcess (as the tests do), creates a Cosmos container
with one document and a Blob container with one 1 KiB blob, then drives each scenario from
`--procs` client processes holding `--conns` keep-alive connections in total. Every request is
a correctly signed request the emulators check in full (Cosmos master key, Blob Shared Key);
the client builds each scenario's bytes once (an x-ms-date stays valid for 15 minutes) and
reads responses with a minimal parser, so the client costs little and the emulators are what is
measured. Every response must have the expected status, else the run fails. Emulator CPU is that
of every emulator process (the launcher and its Blob child). Prints one line per scenario:

    cosmos-read    conns=50  reqs/s=4606  emu_cpu_us/req=217  emu_cpu=0.99  p50_ms=10.8  p99_ms=21.1
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import multiprocessing as mp
import os
import socket
import sys
import threading
import time
from email.utils import formatdate
from urllib.parse import quote

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from Tests.emulators.harness import EmulatorProcess  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids) -> float:
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except OSError:
            pass
    return total


def emulator_pids(root: int) -> list[int]:
    """The emulator process and its descendants (one or several processes)."""
    pids, todo = [], [root]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return pids


# ---------------------------------------------------------------- request builders
def cosmos_request(key: str, method: str, link: str, rtype: str, path: str, hostport: str,
                   body: bytes = b"", extra: dict | None = None) -> bytes:
    date = formatdate(usegmt=True)
    text = f"{method.lower()}\n{rtype}\n{link}\n{date.lower()}\n\n"
    sig = base64.b64encode(hmac.new(base64.b64decode(key), text.encode(), hashlib.sha256).digest()).decode()
    auth = quote(f"type=master&ver=1.0&sig={sig}", safe="")
    h = {"Host": hostport, "x-ms-date": date, "x-ms-version": "2018-12-31", "authorization": auth,
         "Accept": "application/json", "Content-Type": "application/json", "x-ms-consistency-level": "Session",
         "User-Agent": "loadcheck", "Content-Length": str(len(body))}
    h.update(extra or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode() + body


def blob_request(key: str, account: str, method: str, path: str, hostport: str, body: bytes = b"",
                 query: str = "", extra: dict | None = None) -> bytes:
    from Tests.emulators.blob import shared_key_string_to_sign, sign
    h = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2025-01-05",
         "x-ms-client-request-id": "0f8e3b62-loadcheck"}
    h.update(extra or {})
    if body or method == "PUT":
        h["Content-Length"] = str(len(body))

    msg = http.client.HTTPMessage()          # the case-insensitive mapping the emulator signs from
    for k, v in h.items():
        msg[k] = v
    sts = shared_key_string_to_sign(method, path, query, msg, account)
    h["Authorization"] = f"SharedKey {account}:{sign(key, sts)}"
    h["Host"] = hostport
    h["User-Agent"] = "loadcheck"
    target = path + ("?" + query if query else "")
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode() + body


def scenarios(info: dict) -> dict:
    """name -> (host:port, request bytes, expected status), or a list of those (spread over the
    connections)."""
    ckey, bkey, account = info["cosmos_key"], info["blob_key"], info["blob_account"]
    chost = info["cosmos"].split("://", 1)[1]
    bhost = info["blob"].split("://", 1)[1].split("/", 1)[0]
    doc = json.dumps({"id": "k1", "v": "x" * 200}).encode()
    pk = {"x-ms-documentdb-partitionkey": '["k1"]'}
    out = {
        "cosmos-read": (chost, cosmos_request(ckey, "GET", "dbs/load/colls/c/docs/k1", "docs",
                                              "/dbs/load/colls/c/docs/k1", chost, extra=pk), 200),
        "cosmos-upsert": (chost, cosmos_request(ckey, "POST", "dbs/load/colls/c", "docs", "/dbs/load/colls/c/docs",
                                                chost, doc, dict(pk, **{"x-ms-documentdb-is-upsert": "True"})), 200),
        "cosmos-miss": (chost, cosmos_request(ckey, "GET", "dbs/load/colls/c/docs/nope", "docs",
                                              "/dbs/load/colls/c/docs/nope", chost,
                                              extra={"x-ms-documentdb-partitionkey": '["nope"]'}), 404),
        "blob-get": (bhost, blob_request(bkey, account, "GET", f"/{account}/load/b1", bhost), 200),
        "blob-put": (bhost, blob_request(bkey, account, "PUT", f"/{account}/load/b1", bhost, b"y" * 1024,
                                         extra={"x-ms-blob-type": "BlockBlob",
                                                "Content-Type": "application/octet-stream"}), 201),
        "blob-head": (bhost, blob_request(bkey, account, "HEAD", f"/{account}/load/b1", bhost), 200),
    }
    # half the connections on Cosmos point reads, half on Blob GETs (the tiered tests' mix)
    out["mixed"] = [out["cosmos-read"], out["blob-get"]]
    return out


def setup(info: dict):
    """Database, container, one document, one blob container and blob (plain signed requests)."""
    ckey, bkey, account = info["cosmos_key"], info["blob_key"], info["blob_account"]
    chost = info["cosmos"].split("://", 1)[1]
    bhost = info["blob"].split("://", 1)[1].split("/", 1)[0]
    steps = [
        (chost, cosmos_request(ckey, "POST", "", "dbs", "/dbs", chost, b'{"id":"load"}'), (201, 409)),
        (chost, cosmos_request(ckey, "POST", "dbs/load", "colls", "/dbs/load/colls", chost,
                               b'{"id":"c","partitionKey":{"paths":["/id"],"kind":"Hash"},"defaultTtl":-1}'),
         (201, 409)),
        (bhost, blob_request(bkey, account, "PUT", f"/{account}/load", bhost, query="restype=container"),
         (201, 409)),
    ]
    sc = scenarios(info)
    steps += [(sc["cosmos-upsert"][0], sc["cosmos-upsert"][1], (200, 201)),
              (sc["blob-put"][0], sc["blob-put"][1], (201,))]
    for hostport, raw, ok in steps:
        conn = Conn(hostport)
        st = conn.roundtrip(raw)
        conn.close()
        if st not in ok:
            raise SystemExit(f"setup request failed with {st}: {raw[:200]!r}")


# ---------------------------------------------------------------- client
class Conn:
    def __init__(self, hostport: str):
        h, p = hostport.rsplit(":", 1)
        self.s = socket.create_connection((h, int(p)))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.head_only = False

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the emulator")
        self.buf += chunk

    def roundtrip(self, raw: bytes) -> int:
        self.s.sendall(raw)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        n = 0
        closing = False
        for l in lines[1:]:
            k, _, v = l.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                n = int(v)
            elif k == b"connection" and v.strip().lower() == b"close":
                closing = True
        if raw.startswith(b"HEAD "):
            n = 0
        while len(self.buf) < n:
            self._fill()
        self.buf = self.buf[n:]
        if closing:
            raise ConnectionError("emulator closed the keep-alive connection")
        return status

    def close(self):
        self.s.close()


def _client_proc(targets, first, conns, seconds, q):
    lat: list[float] = []
    errors: list[str] = []
    count = [0]
    lock = threading.Lock()
    start = threading.Barrier(conns + 1)
    stop_at = [0.0]

    def worker(i):
        hostport, raw, expect = targets[(first + i) % len(targets)]
        try:
            c = Conn(hostport)
        except OSError as e:
            errors.append(str(e))
            start.wait()
            return
        start.wait()
        mine, n = [], 0
        try:
            while True:
                t = time.perf_counter()
                if t >= stop_at[0]:
                    break
                st = c.roundtrip(raw)
                mine.append(time.perf_counter() - t)
                n += 1
                if st != expect:
                    errors.append(f"status {st} (expected {expect})")
                    break
        except OSError as e:
            errors.append(str(e))
        c.close()
        with lock:
            lat.extend(mine)
            count[0] += n

    ts = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(conns)]
    for t in ts:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    start.wait()
    for t in ts:
        t.join()
    q.put((count[0], lat, errors[:3]))


def run_scenario(emu_pid: int, targets, conns: int, procs: int, seconds: float) -> dict:
    """Drive `targets` from `procs` client processes with `conns` connections in all for `seconds`;
    emulator CPU is that of emu_pid and its child processes."""
    if not isinstance(targets, list):
        targets = [targets]
    q = mp.Queue()
    per = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    firsts = [sum(per[:i]) for i in range(procs)]
    pids = emulator_pids(emu_pid)
    cpu0, t0 = cpu_seconds(pids), time.perf_counter()
    ps = [mp.Process(target=_client_proc, args=(targets, f, n, seconds, q)) for n, f in zip(per, firsts) if n]
    for p in ps:
        p.start()
    results = [q.get(timeout=seconds + 60) for _ in ps]
    for p in ps:
        p.join()
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pids) - cpu0
    n = sum(r[0] for r in results)
    lat = sorted(x for r in results for x in r[1])
    errors = [e for r in results for e in r[2]]
    if errors:
        raise SystemExit(f"errors: {errors}")
    pct = (lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1e3 if lat else 0.0)
    # wall includes process start-up; the client loop runs `seconds`
    return {"n": n, "rate": n / seconds, "cpu_us": cpu / max(n, 1) * 1e6, "cpu_frac": cpu / wall,
            "p50": pct(0.5), "p99": pct(0.99)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--procs", type=int, default=2, help="client processes (their threads share the conns)")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="emulator latency (global, per request)")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    a = ap.parse_args(argv)
    with EmulatorProcess(latency_ms=a.latency_ms) as emu:
        setup(emu.info)
        sc = scenarios(emu.info)
        names = [n for n in sc if not a.only or n in a.only.split(",")]
        print(f"# cpus={os.cpu_count()} conns={a.conns} procs={a.procs} latency_ms={a.latency_ms} "
              f"seconds={a.seconds}", flush=True)
        for name in names:
            r = run_scenario(emu.proc.pid, sc[name], a.conns, a.procs, a.seconds)
            print(f"{name:14s} conns={a.conns:<3d} reqs/s={r['rate']:<7.0f} emu_cpu_us/req={r['cpu_us']:<6.0f} "
                  f"emu_cpu={r['cpu_frac']:.2f}  p50_ms={r['p50']:.1f}  p99_ms={r['p99']:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
