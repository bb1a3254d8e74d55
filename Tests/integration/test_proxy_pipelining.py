"""Request framing and reply ordering under stress: fragmented writes, mixed inline and
multibulk pipelines, concurrent clients, slow readers of big replies (backpressure)."""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest

from conftest import DIRECT
from harness import Deadline, RawConn, encode_command as C, exchange, rss_kb, wait_for


def test_byte_by_byte_writes(proxy):
    with proxy.raw() as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        payload = C("SET", "frag", "a\r\nb") + b"GET frag\r\n" + C("GET", "frag")
        for i in range(len(payload)):
            c.send(payload[i:i + 1])
        assert [r.raw for r in c.read_replies(3)] == \
            [b"+OK\r\n", b"$4\r\na\r\nb\r\n", b"$4\r\na\r\nb\r\n"]


def test_random_fragmentation_of_big_pipeline(proxy, direct):
    rnd = random.Random(1234)
    cmds = []
    for i in range(3000):
        v = b"v" * rnd.choice([0, 1, 100, 5000, 70_000]) + str(i).encode()
        cmds.append((C("SET", f"rf:{i}", v), v))
    payload = b"".join(c for c, _ in cmds) + b"".join(C("GET", f"rf:{i}") for i in range(3000))
    with proxy.raw(timeout=60) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pos = 0
        while pos < len(payload):  # bounded: pos strictly increases
            n = rnd.choice([1, 2, 3, 7, 100, 4096, 65_537, 300_000])
            c.send(payload[pos:pos + n])
            pos += n
        replies = c.read_replies(6000, timeout=60)
    assert all(r.raw == b"+OK\r\n" for r in replies[:3000])
    assert [r.v for r in replies[3000:]] == [v for _, v in cmds]


def test_mixed_inline_and_multibulk_equal_direct(proxy, redis_server):
    script = (b"SET a 1\r\n" + C("INCR", "a") + b"INCR a\r\n" + C("GET", "a") +
              b"\r\n" + b"MGET a b\r\n" + C("DEL", "a") + b"EXISTS a\n")
    redis_server.admin().flushall()
    want, closed = exchange(redis_server.port, script)
    redis_server.admin().flushall()
    got, _ = exchange(proxy.port, script)
    assert not closed and got == want
    assert len(want) == 7


def test_binary_keys_and_values(proxy, direct):
    with proxy.raw() as c:
        key = b"\x00key\r\n\xff*1\r\n$3"
        val = bytes(range(256)) * 4
        assert c.cmd("SET", key, val).raw == b"+OK\r\n"
        assert c.cmd("GET", key).v == val
    assert direct.get(key) == val


def test_concurrent_clients_replies_not_crossed(proxy, direct):
    n_clients, n = 8, 3000
    errors: list[str] = []

    def worker(w: int) -> None:
        try:
            with proxy.raw(timeout=60) as c:
                c.send(b"".join(C("INCR", f"cc:{w}") + C("ECHO", f"{w}:{i}") for i in range(n)))
                replies = c.read_replies(2 * n, timeout=60)
                if [r.v for r in replies[0::2]] != list(range(1, n + 1)):
                    errors.append(f"client {w}: INCR replies out of order")
                if [r.v for r in replies[1::2]] != [f"{w}:{i}".encode() for i in range(n)]:
                    errors.append(f"client {w}: ECHO replies crossed or out of order")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"client {w}: {e!r}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "worker threads did not finish"
    assert not errors, errors
    assert [direct.get(f"cc:{w}") for w in range(n_clients)] == [str(n).encode()] * n_clients


def net_output(direct) -> int:
    return int(direct.info("stats")["total_net_output_bytes"])


@pytest.mark.skipif(DIRECT, reason="measures the proxy's memory")
def test_slow_reader_big_replies_backpressure(proxy, direct):
    """256 pipelined GETs of a 1 MiB value while the client reads nothing: the proxy must not
    pull 256 MiB out of Redis and hold it (it should stop reading upstream, or stop reading
    the client); once the client reads, every reply arrives intact. Normal clients have no
    output limit, so nobody may be disconnected."""
    value = b"x" * (1 << 20)
    direct.set("bigv", value)
    n = 256
    out0 = net_output(direct)
    rss0 = rss_kb(proxy.pid)
    peak = rss0
    with RawConn(proxy.port, timeout=60, rcvbuf=64 * 1024) as c:
        c.send(C("GET", "bigv") * n)
        # Wait for quiescence: the bytes Redis has sent stop growing (by more than our own
        # INFO replies, < 64 KiB) over 300 ms, within 10 s. A buffering proxy pulls ~256 MiB
        # out of Redis before that.
        deadline = Deadline(10)
        last, stable_since = -1, time.monotonic()
        while not deadline.expired():
            peak = max(peak, rss_kb(proxy.pid))
            out = net_output(direct) - out0
            if out - last > 64 * 1024:
                last, stable_since = out, time.monotonic()
            elif time.monotonic() - stable_since > 0.3:
                break
            if out > 128 << 20:
                break
            time.sleep(0.02)
        assert last <= 64 << 20, \
            f"{last >> 20} MiB left Redis for a client that read nothing: the proxy buffers them"
        assert peak - rss0 < 128 * 1024, f"proxy RSS grew {rss0} -> {peak} kB for a slow reader"
        replies = c.read_replies(n, timeout=60)
    assert all(r.v == value for r in replies)


def test_200_simultaneous_connections(proxy, redis_server):
    track = redis_server.tracker()
    conns = [proxy.raw(timeout=20) for _ in range(200)]
    try:
        for i, c in enumerate(conns):
            c.send(C("SET", f"conn:{i}", str(i)) + C("GET", f"conn:{i}") + C("CLIENT", "SETNAME", f"c{i}"))
        for i, c in enumerate(conns):
            assert [r.raw for r in c.read_replies(3)] == \
                [b"+OK\r\n", b"$%d\r\n%d\r\n" % (len(str(i)), i), b"+OK\r\n"]
        names = {c["name"] for c in track.new()}
        assert {f"c{i}" for i in range(200)} <= names
    finally:
        for c in conns:
            c.close()
    wait_for(lambda: not track.new(), 10, desc="all 200 upstream connections to close")


def test_command_with_500k_arguments(proxy, direct):
    members = [str(i).encode() for i in range(500_000)]
    with proxy.raw(timeout=60) as c:
        c.send(C("SADD", "huge", *members))
        assert c.read_reply(60).v == 500_000
        c.send(C("DEL", "huge"))
        assert c.read_reply(60).v == 1
