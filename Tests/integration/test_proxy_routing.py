"""Shared and pinned routes: stateless clients share a pipelined upstream connection per loop;
the first connection-scoped command pins a client to its own connection, in order."""

from __future__ import annotations

import threading

import pytest

from harness import RawConn, encode_command as C, wait_for

pytestmark = pytest.mark.proxy_process


def upstream_clients(direct) -> list[dict]:
    return [c for c in direct.client_list(_type="normal") if c.get("name") != "admin"]


def test_stateless_clients_share_upstream_connections(proxy, direct):
    before = len(upstream_clients(direct))
    conns = [proxy.raw() for _ in range(40)]
    try:
        for i, c in enumerate(conns):
            assert c.cmd("SET", f"k{i}", str(i)).raw == b"+OK\r\n"
        for i, c in enumerate(conns):
            assert c.cmd("GET", f"k{i}").v == str(i).encode()
        # 40 clients, but at most one shared connection per loop (plus whatever existed before).
        assert len(upstream_clients(direct)) - before <= 2
    finally:
        for c in conns:
            c.close()


def test_pinning_mid_pipeline_keeps_order_and_state(proxy, direct):
    """SET/GET ride the shared connection; SELECT pins; what follows runs in db 1, in order."""
    with proxy.raw() as c:
        c.send(C("SET", "a", "zero") + C("GET", "a") + C("SELECT", "1") + C("GET", "a")
               + C("SET", "a", "one") + C("GET", "a") + C("CLIENT", "GETNAME"))
        replies = c.read_replies(7, timeout=10)
    assert [r.raw for r in replies] == [b"+OK\r\n", b"$4\r\nzero\r\n", b"+OK\r\n", b"$-1\r\n",
                                        b"+OK\r\n", b"$3\r\none\r\n", b"$-1\r\n"]
    assert direct.get("a") == b"zero"
    direct.execute_command("SELECT", "1")
    try:
        assert direct.get("a") == b"one"
        direct.delete("a")
    finally:
        direct.execute_command("SELECT", "0")


def test_pin_waits_for_slow_shared_replies(proxy, direct):
    """A shared request still running when the client pins must be answered first."""
    with proxy.raw() as c:
        # EVAL busy-loops ~200 ms on the shared connection; CLIENT ID pins right behind it.
        slow = "local t = redis.call('TIME'); local s = t[1]*1000000 + t[2]; " \
               "repeat t = redis.call('TIME') until t[1]*1000000 + t[2] - s > 200000; return 7"
        c.send(C("EVAL", slow, "0") + C("CLIENT", "ID") + C("PING"))
        replies = c.read_replies(3, timeout=10)
    assert replies[0].raw == b":7\r\n"
    assert replies[1].t == ":"
    assert replies[2].raw == b"+PONG\r\n"


def test_shared_clients_survive_upstream_connection_loss(proxy, direct):
    """Killing the shared upstream connection costs in-flight requests an error at most; the
    client keeps its connection (it holds no state) and its next request succeeds."""
    with proxy.raw() as c:
        assert c.cmd("SET", "s", "1").raw == b"+OK\r\n"
        for info in upstream_clients(direct):
            direct.client_kill_filter(_id=info["id"])
        wait_for(lambda: c.cmd("GET", "s").raw == b"$1\r\n1\r\n", 5, desc="a request to succeed again",
                 ignore=(AssertionError,))


def test_many_clients_interleaved_replies_are_routed_to_their_owner(proxy):
    """32 clients pipelining distinct values concurrently each get exactly their own replies."""
    errors: list[str] = []

    def worker(n: int) -> None:
        try:
            with proxy.raw() as c:
                payload = b"".join(C("SET", f"r{n}:{i}", f"{n}-{i}") + C("GET", f"r{n}:{i}") for i in range(300))
                c.send(payload)
                replies = c.read_replies(600, timeout=30)
                for i in range(300):
                    if replies[2 * i].raw != b"+OK\r\n" or replies[2 * i + 1].v != f"{n}-{i}".encode():
                        errors.append(f"client {n} reply {i}: {replies[2 * i + 1]!r}")
                        return
        except Exception as e:   # reported below, with the others
            errors.append(f"client {n}: {e!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]


def test_refused_select_after_auth_is_reported_on_the_shared_connection(make_redis, make_proxy):
    """The upstream URL's AUTH succeeds and its SELECT is refused (db out of range): stateless
    clients must get that error, never silently run in another database."""
    srv = make_redis(args=("--requirepass", "pw"))
    srv.password = "pw"
    prx = make_proxy(f"redis://:pw@127.0.0.1:{srv.port}/99", wait="port")
    with RawConn(prx.port) as c:
        r = c.cmd("SET", "k", "v")
    assert r.t == "-" and b"AUTH/SELECT" in r.v and b"DB index is out of range" in r.v, r
    assert srv.admin().dbsize() == 0
