"""Upstream Redis down, killed and restarted: errors not hangs, recovery, no leaks."""

from __future__ import annotations

import time

import pytest

from harness import Closed, Deadline, RawConn, encode_command as C, fd_count, free_port, rss_kb, wait_for

pytestmark = pytest.mark.proxy_process

CONNECT_TIMEOUT_MS = 500


def error_then_close(port: int, within: float) -> bytes:
    """A new client sends PING: it must get an -ERR reply, then the connection closes,
    all within `within` seconds. Returns the error line."""
    t0 = time.monotonic()
    with RawConn(port, timeout=within) as c:
        c.send(C("PING"))
        try:
            r = c.read_reply(within)
        except Closed:
            raise AssertionError("connection closed without an -ERR reply") from None
        except TimeoutError:
            raise AssertionError(f"no reply within {within}s while upstream is down (hang)") from None
        assert r.t == "-" and r.v.startswith(b"ERR"), r
        assert c.is_closed(within), "connection not closed after the upstream error"
    assert time.monotonic() - t0 < within
    return r.v


def error_or_close(c: RawConn, within: float) -> None:
    """An existing client's command gets an error reply or the connection closes; no hang."""
    try:
        r = c.read_reply(within)
    except Closed:
        return
    except TimeoutError:
        raise AssertionError(f"no reply and no close within {within}s (hang)") from None
    assert r.is_error, f"expected an error after the upstream died, got {r!r}"


def pong(port: int) -> bool:
    with RawConn(port, timeout=2) as c:
        return c.cmd("PING").raw == b"+PONG\r\n"


def test_upstream_down_at_start_then_up(make_redis, make_proxy):
    port = free_port()
    prx = make_proxy(f"redis://127.0.0.1:{port}", wait="port",
                     flags={"upstream-connect-timeout": CONNECT_TIMEOUT_MS})
    err = error_then_close(prx.port, CONNECT_TIMEOUT_MS / 1000 + 3)
    assert err
    make_redis(port=port)
    wait_for(lambda: pong(prx.port), 10, desc="a new client to succeed once Redis is up",
             ignore=(Closed, OSError, TimeoutError))


def test_upstream_killed_mid_session_then_restarted(make_redis, make_proxy):
    srv = make_redis()
    prx = make_proxy(srv.url, flags={"upstream-connect-timeout": CONNECT_TIMEOUT_MS})
    idle, blocked = prx.raw(), prx.raw()
    try:
        assert idle.cmd("SET", "k", "v").raw == b"+OK\r\n"
        blocked.send(C("BLPOP", "never", "0"))
        wait_for(lambda: int(srv.admin().info("clients")["blocked_clients"]) == 1, 5,
                 desc="BLPOP to block")
        srv.kill()
        error_or_close(blocked, 5)  # blocked forever otherwise
        idle.send(C("GET", "k"))
        error_or_close(idle, 5)
        error_then_close(prx.port, CONNECT_TIMEOUT_MS / 1000 + 3)
    finally:
        idle.close()
        blocked.close()
    srv.start()
    wait_for(lambda: pong(prx.port), 10, desc="new clients to succeed after the restart",
             ignore=(Closed, OSError, TimeoutError))
    assert prx.client().set("after", "restart") is True


def test_no_leak_across_1000_reconnect_cycles(make_redis, make_proxy):
    srv = make_redis()
    prx = make_proxy(srv.url, flags={"upstream-connect-timeout": CONNECT_TIMEOUT_MS})
    admin = srv.admin()

    def cycle():
        c = RawConn(prx.port, timeout=5)
        try:
            assert c.cmd("PING").raw == b"+PONG\r\n"
            admin.client_kill_filter(_type="normal", skipme=True)
            c.send(C("PING"))
            error_or_close(c, 5)
        finally:
            c.close()

    base_clients = len(admin.client_list(_type="normal"))
    for _ in range(100):  # warm-up: allocator pools, lazily created structures
        cycle()
    wait_for(lambda: len(admin.client_list(_type="normal")) == base_clients, 10,
             desc="upstream connections to drain after warm-up")
    fds0, rss0 = fd_count(prx.pid), rss_kb(prx.pid)
    deadline = Deadline(120)
    for i in range(1000):
        assert not deadline.expired(), f"1000 cycles took more than 120s (at {i})"
        cycle()
    wait_for(lambda: len(admin.client_list(_type="normal")) == base_clients, 10,
             desc="upstream connections to drain")
    wait_for(lambda: fd_count(prx.pid) <= fds0, 10,
             desc=f"fd count to return to {fds0} (now {fd_count(prx.pid)})")
    rss1 = rss_kb(prx.pid)
    assert rss1 - rss0 < 8 * 1024, f"RSS grew {rss0} -> {rss1} kB over 1000 cycles"

    # A few real redis-server kill/restart cycles with clients connected.
    fds_before = fd_count(prx.pid)
    for _ in range(3):
        conns = [prx.raw(timeout=5) for _ in range(5)]
        for c in conns:
            assert c.cmd("PING").raw == b"+PONG\r\n"
        srv.kill()
        for c in conns:
            c.send(C("PING"))
            error_or_close(c, 5)
            c.close()
        srv.start()
        wait_for(lambda: pong(prx.port), 10, desc="recovery after restart",
                 ignore=(Closed, OSError, TimeoutError))
    wait_for(lambda: fd_count(prx.pid) <= fds_before, 10,
             desc=f"fd count to return to {fds_before} after kill/restart cycles "
                  f"(now {fd_count(prx.pid)})")
