"""Replication streams through the proxy: after SYNC or PSYNC a client's connection is a replica
link (keepalive newlines, `+FULLRESYNC`, an RDB payload with no CRLF after it, then the command
stream, and REPLCONF ACKs that get no reply). The proxy must pass it as bytes, both ways, exactly
as Redis sends it; redis-cli --rdb and --replica must work through it as they do direct."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
from pathlib import Path

from conftest import DIRECT
from harness import (HOST, REDIS_CLI, Deadline, RawConn, encode_command as C, rss_kb, run_tool,
                     wait_for)


# --- reading a replica link from a raw socket -------------------------------------------------

def read_line(c: RawConn, deadline: Deadline) -> bytes:
    """One line up to LF (the LF-only keepalive is the line b"\\n"), with its terminator."""
    while b"\n" not in c.buf:
        c._fill(deadline)
    end = c.buf.index(b"\n") + 1
    line = bytes(c.buf[:end])
    del c.buf[:end]
    return line


def read_exact(c: RawConn, n: int, deadline: Deadline) -> bytes:
    while len(c.buf) < n:
        c._fill(deadline)
    data = bytes(c.buf[:n])
    del c.buf[:n]
    return data


def read_until(c: RawConn, needle: bytes, deadline: Deadline) -> bytes:
    """Everything up to and including `needle`."""
    while needle not in c.buf:
        c._fill(deadline)
    end = c.buf.index(needle) + len(needle)
    data = bytes(c.buf[:end])
    del c.buf[:end]
    return data


def read_rdb(c: RawConn, timeout: float = 20.0) -> tuple[int, bytes, bytes]:
    """After SYNC/PSYNC: (keepalive newlines seen, the `$…` header line, the RDB payload)."""
    deadline = Deadline(timeout)
    keepalives = 0
    line = read_line(c, deadline)
    while line == b"\n":
        keepalives += 1
        line = read_line(c, deadline)
    assert line.startswith(b"$"), line
    if line.startswith(b"$EOF:"):
        mark = line[5:-2]
        assert len(mark) == 40, line
        payload = read_until(c, mark, deadline)[:-40]
    else:
        payload = read_exact(c, int(line[1:-2]), deadline)
    return keepalives, line, payload


def digest_of_rdb(make_redis, path: Path) -> bytes:
    """Loads an RDB file into a fresh redis-server and returns its DEBUG DIGEST."""
    srv = make_redis(args=("--dir", str(path.parent), "--dbfilename", path.name))
    return srv.admin().execute_command("DEBUG", "DIGEST")


def sample_data(direct) -> None:
    direct.set("str", "value")
    direct.rpush("list", "a", "b", "c")
    direct.hset("hash", mapping={"f": "1", "g": "2"})
    direct.zadd("zset", {"m": 1.5})
    direct.set("big", "x" * 100_000)          # an RDB spread over several reads


def connected_replicas(admin, state: str = "online") -> int:
    info = admin.info("replication")
    return sum(1 for k, v in info.items()
               if k.startswith("slave") and isinstance(v, dict) and v.get("state") == state)


# --- the tests ----------------------------------------------------------------------------------

def test_sync_rdb_then_command_stream_byte_equal_direct(proxy, redis_server, direct, make_redis, tmp_path):
    """The Tcl suite's attach_to_replication_stream: an inline SYNC on a fresh connection, the
    RDB skipped by its length, then commands read as they are propagated."""
    direct.config_set("repl-ping-replica-period", 3600)   # no PINGs in the streams compared
    sample_data(direct)
    with RawConn(redis_server.port) as d, RawConn(proxy.port) as p:
        for c in (d, p):
            c.send(b"SYNC\r\n")
        _, _, rdb_direct = read_rdb(d)
        _, header, rdb_proxy = read_rdb(p)
        assert header == b"$%d\r\n" % len(rdb_proxy)
        assert rdb_proxy.startswith(b"REDIS")
        # The same data, whichever way it came (ctime and used-mem differ between snapshots).
        for name, rdb in (("direct.rdb", rdb_direct), ("proxy.rdb", rdb_proxy)):
            (tmp_path / name).write_bytes(rdb)
        want = direct.execute_command("DEBUG", "DIGEST")
        assert digest_of_rdb(make_redis, tmp_path / "proxy.rdb") == want
        assert digest_of_rdb(make_redis, tmp_path / "direct.rdb") == want

        direct.set("after", "1")
        direct.incr("counter")
        direct.execute_command("MULTI")
        direct.lpush("list", "z")
        direct.execute_command("EXEC")
        direct.set("end-of-stream", "x")
        end = C("SET", "end-of-stream", "x")
        deadline = Deadline(10)
        stream_direct = read_until(d, end, deadline)
        stream_proxy = read_until(p, end, deadline)
        assert stream_proxy == stream_direct
        assert stream_proxy.startswith(C("SELECT", "0")), stream_proxy[:100]

        # The other way: a REPLCONF ACK reaches Redis (which records the offset) and gets no reply.
        p.send(C("REPLCONF", "ACK", "4242"))
        wait_for(lambda: any(isinstance(v, dict) and v.get("offset") == 4242
                             for v in direct.info("replication").values()),
                 desc="Redis to record the replica's ACK offset 4242")
        direct.set("last", "y")
        assert read_until(p, C("SET", "last", "y"), Deadline(10)) == C("SET", "last", "y")
        assert bytes(p.buf) == b"", "REPLCONF ACK must get no reply"
    assert proxy.alive()


def test_psync_fullresync_line_keepalives_and_diskless_rdb(target, make_redis, tmp_path):
    """PSYNC after REPLCONF capa eof, with a diskless delay: `\\n` keepalives while Redis waits
    to fork, `+FULLRESYNC <replid> <offset>`, `$EOF:<mark>`, the RDB up to the mark, then the
    stream; the same through the proxy as direct."""
    srv, p = target(redis_args=("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "2",
                                "--repl-ping-replica-period", "3600"))
    admin = srv.admin()
    sample_data(admin)
    results = []
    for port in (srv.port, p.port):
        with RawConn(port, timeout=30) as c:
            assert c.cmd("REPLCONF", "capa", "eof").raw == b"+OK\r\n"
            c.send(C("PSYNC", "?", "-1"))
            # Redis answers PSYNC only when it forks: until then it sends a newline a second.
            deadline = Deadline(10)
            keepalives = 0
            line = read_line(c, deadline)
            while line == b"\n":
                keepalives += 1
                line = read_line(c, deadline)
            assert keepalives >= 1, "Redis sends a newline each second while it waits to fork"
            m = re.fullmatch(rb"\+FULLRESYNC ([0-9a-f]{40}) (\d+)\r\n", line)
            # (the first replica makes Redis start a new replication history: read it now)
            assert m and m.group(1) == admin.info("replication")["master_replid"].encode(), line
            _, header, rdb = read_rdb(c, timeout=30)
            assert header.startswith(b"$EOF:"), header
            (tmp_path / f"{port}.rdb").write_bytes(rdb)
            # After a diskless RDB, Redis streams commands once the replica acknowledges it,
            # which counts only once Redis has seen its fork finish: ACK as replicas do.
            def online() -> bool:
                c.send(C("REPLCONF", "ACK", "0"))
                return connected_replicas(admin) == 1
            wait_for(online, desc="the replica online after its ACK", interval=0.1)
            admin.set("after-rdb", str(port))
            want = C("SET", "after-rdb", str(port))
            got = read_until(c, want, Deadline(10))
            assert got.endswith(want) and C("SELECT", "0") in got
            results.append(digest_of_rdb(make_redis, tmp_path / f"{port}.rdb"))
        admin.delete("after-rdb")
    assert results[1] == results[0]


def redis_cli_rdb(port: int, path: Path) -> subprocess.CompletedProcess:
    return run_tool([REDIS_CLI, "-h", HOST, "-p", str(port), "--rdb", str(path)], timeout=60)


def test_redis_cli_rdb_through_proxy(target, make_redis, tmp_path):
    srv, p = target(redis_args=("--repl-diskless-sync-delay", "0"))
    admin = srv.admin()
    sample_data(admin)
    want = admin.execute_command("DEBUG", "DIGEST")
    direct = redis_cli_rdb(srv.port, tmp_path / "direct.rdb")
    via = redis_cli_rdb(p.port, tmp_path / "proxy.rdb")
    assert via.returncode == direct.returncode == 0, via.stderr
    assert b"Transfer finished with success" in via.stderr, via.stderr
    assert digest_of_rdb(make_redis, tmp_path / "proxy.rdb") == want
    assert digest_of_rdb(make_redis, tmp_path / "direct.rdb") == want


class LineReader:
    """A child's stdout, read line by line against a deadline (no blocking read)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(proc.stdout, selectors.EVENT_READ)

    def lines_until(self, last: bytes, timeout: float = 15.0) -> list[bytes]:
        deadline = Deadline(timeout)
        while last + b"\n" not in self.buf:
            assert not deadline.expired(), f"no {last!r} in {self.buf[-500:]!r}"
            if self.sel.select(deadline.remaining()):
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, f"redis-cli exited ({self.proc.poll()}): {self.buf[-500:]!r}"
                self.buf += chunk
        return self.buf[:self.buf.index(last + b"\n") + len(last)].split(b"\n")


def test_redis_cli_replica_through_proxy(target):
    """redis-cli --replica prints each propagated command: the same lines through the proxy."""
    srv, p = target(redis_args=("--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "3600"))
    admin = srv.admin()
    procs = [subprocess.Popen(["stdbuf", "-oL", REDIS_CLI, "-h", HOST, "-p", str(port), "--replica"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
             for port in (srv.port, p.port)]
    try:
        # redis-cli acknowledges (and so goes online) a second after the RDB.
        wait_for(lambda: connected_replicas(admin) == 2, 20, desc="both redis-cli replicas online")
        admin.set("k", "v")
        admin.incr("n")
        admin.hset("h", "f", "1")
        admin.set("the-end", "1")
        direct, via = (LineReader(pr).lines_until(b'"SET","the-end","1"') for pr in procs)
        assert b'"SET","k","v"' in direct
        assert via == direct
    finally:
        for pr in procs:
            pr.kill()
            pr.wait(10)
            pr.stdout.close()


def test_replica_that_stops_reading_meets_redis_own_limit(target):
    """A replica link that is not read: the proxy holds at most its high-water mark and stops
    reading Redis, so Redis's client-output-buffer-limit replica drops the link (as it would a
    direct replica's), and the proxy then closes the client. The proxy's own `replica` line, far
    below what is streamed, cuts nothing: that class is Redis's."""
    srv, p = target(redis_args=("--client-output-buffer-limit", "replica 4mb 0 0",
                                "--repl-ping-replica-period", "3600"),
                    proxy_flags={"client-output-buffer-limit": "replica 16kb 16kb 0"})
    admin = srv.admin()
    with RawConn(p.port, rcvbuf=65536) as c:
        c.send(b"SYNC\r\n")
        read_rdb(c)
        wait_for(lambda: connected_replicas(admin) == 1, desc="the replica online")
        admin.set("probe", "p" * 65536)         # 64 kB streamed, read by the replica
        read_until(c, b"p" * 65536 + b"\r\n", Deadline(20))
        rss_before = rss_kb(p.pid)
        chunk = "v" * (1 << 20)
        for i in range(40):                       # 40 MB propagated to a replica that reads none
            admin.set(f"big:{i % 4}", chunk)
            if connected_replicas(admin) == 0:
                break
        wait_for(lambda: connected_replicas(admin) == 0, desc="Redis dropping the replica at its limit")
        if not DIRECT:
            assert rss_kb(p.pid) - rss_before < 16 * 1024, "the proxy buffered the stream itself"
        assert c.is_closed(timeout=10)


def test_refused_sync_leaves_the_connection_request_reply(proxy, direct):
    """Redis may refuse SYNC/PSYNC (here ACL: a user without +sync/+psync): one error reply, and
    the connection stays request/reply. Requests pipelined behind the refused command get their
    replies in order, and the proxy still answers its own commands (TIERS) there, as it does
    on any counted connection."""
    direct.execute_command("ACL", "SETUSER", "nosync", "on", ">pw", "+@all", "-sync", "-psync", "~*", "&*")
    try:
        with RawConn(proxy.port) as c:
            assert c.cmd("AUTH", "nosync", "pw").raw == b"+OK\r\n"
            for refused in (["SYNC"], ["PSYNC", "?", "-1"]):
                c.send(C(*refused) + C("SET", "after-sync", "1") + C("GET", "after-sync") + C("TIERS", "HELP"))
                sync, set_, get, tiers = c.read_replies(4)
                assert sync.raw.startswith(b"-NOPERM"), sync
                assert (set_.raw, get.raw) == (b"+OK\r\n", b"$1\r\n1\r\n")
                assert tiers.t == ("-" if DIRECT else "*"), tiers
            assert c.cmd("PING").raw == b"+PONG\r\n"
    finally:
        direct.execute_command("ACL", "DELUSER", "nosync")
