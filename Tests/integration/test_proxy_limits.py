"""Malformed input (differential against Redis), maxclients, query-buffer limit, slow readers,
clients that vanish mid-pipeline."""

from __future__ import annotations

import socket
import struct

import pytest

from conftest import DIRECT, DirectTarget
from harness import (Closed, Deadline, pin, Proxy, RawConn, RedisServer, encode_command as C, exchange, fd_count,
                     rss_kb, wait_for)

BIG = b"1" * 70_000  # longer than Redis's 64 KiB inline / count-line limit

# (id, payload, marker): marker=False where the payload must stay incomplete (no newline).
MALFORMED = [
    ("bad-type-in-multibulk", b"*1\r\nx\r\n", True),
    ("int-type-in-multibulk", b"*2\r\n$4\r\nECHO\r\n:1\r\n", True),
    ("nested-array", b"*1\r\n*1\r\n", True),
    ("negative-multibulk-ignored", b"*-5\r\n", True),
    ("zero-multibulk-ignored", b"*0\r\n", True),
    ("empty-inline-line", b"\r\n\r\n", True),
    ("non-numeric-multibulk", b"*abc\r\n", True),
    ("plus-sign-multibulk", b"*+1\r\n$4\r\nPING\r\n", True),
    ("space-in-multibulk", b"*1 \r\n$4\r\nPING\r\n", True),
    ("lf-only-count", b"*1\n$4\r\nPING\r\n", True),
    ("huge-multibulk", b"*3000000000\r\n", True),
    ("non-numeric-bulk", b"*1\r\n$abc\r\n", True),
    ("negative-bulk", b"*1\r\n$-1\r\n", True),
    ("space-in-bulk-len", b"*1\r\n$4 \r\nPING\r\n", True),
    ("bulk-over-proto-max-bulk-len", b"*2\r\n$3\r\nSET\r\n$2000000\r\n", True),
    ("bulk-not-followed-by-crlf", b"*1\r\n$4\r\nPINGxx\r\n", True),
    ("too-big-mbulk-count", b"*" + BIG, False),
    ("too-big-bulk-count", b"*1\r\n$" + BIG, False),
    ("unbalanced-double-quote", b'SET "a b\r\n', True),
    ("quote-then-char", b'ECHO "a"b\r\n', True),
    ("unbalanced-single-quote", b"SET 'a b\r\n", True),
    ("too-big-inline", b"PING " + b"x" * 70_000, False),
    ("dollar-inline", b"$4\r\nPING\r\n", True),
    ("good-then-bad", C("SET", "k", "v") + C("GET", "k") + b"*1\r\n$x\r\n", True),
]


@pytest.fixture(scope="module")
def small_bulk(tmp_root):
    """Redis and the proxy with the same small proto-max-bulk-len."""
    srv = RedisServer(tmp_root, args=["--proto-max-bulk-len", "1mb"]).start()
    if DIRECT:
        yield srv, DirectTarget(srv)
    else:
        prx = Proxy(tmp_root, upstream=srv.url, flags={"proto-max-bulk-len": "1mb"}).start()
        yield srv, prx
        prx.cleanup()
    srv.cleanup()


@pytest.mark.parametrize("payload,marker", [(p, m) for _, p, m in MALFORMED],
                         ids=[i for i, _, _ in MALFORMED])
def test_malformed_input_same_as_redis(small_bulk, payload, marker):
    srv, prx = small_bulk
    want = exchange(srv.port, payload, marker=marker, timeout=5)
    try:
        got = exchange(prx.port, payload, marker=marker, timeout=5)
    except TimeoutError as e:
        raise AssertionError(f"proxy neither replied nor closed within 5 s ({e}); "
                             f"redis (replies, closed)={want!r}") from None
    assert got == want, f"proxy (replies, closed)={got!r}\nredis (replies, closed)={want!r}"
    assert prx.alive()


def test_bulk_at_proto_max_bulk_len_is_fine(small_bulk):
    srv, prx = small_bulk
    value = b"v" * (1024 * 1024)
    r = prx.client()
    assert r.set("max", value) is True
    assert r.strlen("max") == len(value)


@pytest.mark.proxy_process
def test_maxclients(make_proxy, redis_server):
    prx = make_proxy(redis_server.url, flags={"maxclients": 3})

    def three_clients():
        # The start-up probe's own connection may not be released yet: retry until 3 fit.
        cs = [prx.raw(timeout=2) for _ in range(3)]
        try:
            if all(c.cmd("PING").raw == b"+PONG\r\n" for c in cs):
                return cs
        except (Closed, OSError, TimeoutError):
            pass
        for c in cs:
            c.close()
        return None

    conns = wait_for(three_clients, 5, desc="3 clients connected")
    try:
        with prx.raw() as extra:
            assert extra.read_until_close(5) == b"-ERR max number of clients reached\r\n"
        conns.pop().close()

        def fourth_ok():
            with prx.raw(timeout=2) as c:
                return c.cmd("PING").raw == b"+PONG\r\n"
        wait_for(fourth_ok, 5, desc="a slot to free up after one client closed",
                 ignore=(Closed, OSError, TimeoutError))
    finally:
        for c in conns:
            c.close()


def test_query_buffer_limit_closes_connection(target):
    # Redis keeps its default limit (1gb) so that only the proxy can be the one enforcing 1mb;
    # in direct mode Redis itself gets the 1mb limit.
    srv, prx = target(redis_args=("--client-query-buffer-limit", "1mb") if DIRECT else (),
                      proxy_flags={"client-query-buffer-limit": "1mb"})
    with prx.raw() as c:
        c.cmd("SET", "small", b"x" * (256 * 1024))  # under the limit: fine
        c.send(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$8000000\r\n")
        sent = 0
        try:
            for _ in range(80):  # up to 8 MB, bounded
                c.send(b"x" * 100_000)
                sent += 100_000
        except OSError:
            pass  # closed while we were still sending: that is the point
        assert c.is_closed(10), "connection not closed after exceeding client-query-buffer-limit"
    assert srv.admin().exists("big") == 0
    assert prx.client().get("small") is not None


@pytest.mark.proxy_process
@pytest.mark.parametrize("redis_limit", ["pubsub 0 0 0", "pubsub 4mb 2mb 1"],
                         ids=["proxy-limit-only", "redis-limit-too"])
def test_slow_pubsub_reader_disconnected_rss_bounded(target, redis_limit):
    """A subscriber that never reads while a publisher floods: it is disconnected and the
    proxy's RSS stays bounded. proxy-limit-only: Redis has no pubsub limit, so the proxy's own
    client-output-buffer-limit (hard 2mb, or over 1mb for 2 s) must act. redis-limit-too:
    Redis drops the proxy's upstream connection first; the proxy must then drop the client."""
    srv, prx = target(redis_args=("--client-output-buffer-limit", redis_limit),
                      proxy_flags={"client-output-buffer-limit": "pubsub 2mb 1mb 2"})
    admin = srv.admin()
    sub = RawConn(prx.port, rcvbuf=16 * 1024)

    def subscribed() -> bool:
        return admin.pubsub_numsub("flood")[0][1] > 0

    try:
        assert sub.cmd("SUBSCRIBE", "flood").py() == [b"subscribe", b"flood", 1]
        rss0 = rss_kb(prx.pid)
        peak = rss0
        msg = b"m" * 64 * 1024
        published = 0
        deadline = Deadline(15)
        while published < 320 << 20 and not deadline.expired() and subscribed():
            p = admin.pipeline(transaction=False)
            for _ in range(64):
                p.publish("flood", msg)
            p.execute()
            published += 64 * len(msg)
            peak = max(peak, rss_kb(prx.pid))
        # The soft limit may need its seconds to pass after the flood.
        try:
            wait_for(lambda: not subscribed(), 5, desc="the slow subscriber to be dropped")
        except AssertionError:
            raise AssertionError(f"subscriber still subscribed after {published >> 20} MiB "
                                 f"published; proxy RSS {rss0} -> {peak} kB") from None
        assert peak - rss0 < 100 * 1024, f"proxy RSS grew {rss0} -> {peak} kB"
        assert sub.is_closed(10), "slow subscriber's connection was not closed"
    finally:
        sub.close()
    assert prx.client().ping()


def rst_close(c: RawConn) -> None:
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def test_disconnect_mid_pipeline_closes_pinned_upstream(proxy, redis_server):
    """A client with its own upstream connection vanishes mid-pipeline: that connection closes."""
    admin = redis_server.admin()
    c = proxy.raw()
    up = pin(c, admin, "vanisher")
    c.send(b"".join(C("SET", f"mp:{i}", "x" * 100) for i in range(20_000)))
    rst_close(c)
    wait_for(lambda: up not in {int(x["id"]) for x in admin.client_list()}, 10,
             desc="the proxy's upstream connection to close after its client vanished")
    assert proxy.client().ping()


def test_disconnect_mid_pipeline_replies_not_misdelivered(proxy, direct):
    """A stateless client vanishes with 20k replies owed (on whatever upstream it used); the
    next clients get their own replies, not the leftovers."""
    direct.set("mine:a", "A" * 100)
    direct.set("mine:b", "B")
    for _ in range(3):
        c = proxy.raw()
        c.send(C("GET", "mine:a") * 20_000)
        rst_close(c)
        with proxy.raw() as other:
            for i in range(50):
                assert other.cmd("GET", "mine:b").raw == b"$1\r\nB\r\n", f"round trip {i}"
                assert other.cmd("ECHO", str(i)).v == str(i).encode()


@pytest.mark.proxy_process
def test_many_client_disconnects_no_fd_leak(proxy, redis_server):
    admin = redis_server.admin()

    def vanish(i: int, prefix: str) -> None:
        c = proxy.raw()
        if i % 2:
            pin(c, admin, f"{prefix}-{i}")
        c.send(C("INCR", "ctr") * 200)
        if i % 4 < 2:
            rst_close(c)
        else:
            c.close()

    def gone(prefix: str) -> None:
        wait_for(lambda: not [x for x in admin.client_list() if x.get("name", "").startswith(prefix)],
                 10, desc=f"the upstream connections of the vanished pinned clients ({prefix}) to close")

    # One round of each way to vanish first, so that every descriptor the proxy opens once and
    # keeps (the lower tiers' files, the loop's own link to hot, which the writes of a client
    # gone mid-pipeline use) exists before counting.
    for i in range(4):
        vanish(i, "warm-up")
    gone("warm-up")
    fds0 = fd_count(proxy.pid)
    for i in range(50):
        vanish(i, "gone")
    gone("gone")
    wait_for(lambda: fd_count(proxy.pid) <= fds0, 10,
             desc=f"proxy fd count back to {fds0} (now {fd_count(proxy.pid)})")
