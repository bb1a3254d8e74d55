"""Upstream Redis down, killed and restarted: errors not hangs, recovery, no leaks."""

from __future__ import annotations

import socket
import time

import pytest

from harness import HOST, Closed, named_upstream, pin, Deadline, RawConn, encode_command as C, fd_count, free_port, rss_kb, wait_for

pytestmark = pytest.mark.proxy_process

CONNECT_TIMEOUT_MS = 500


def error_reply(port: int, within: float) -> tuple[bytes, "RawConn"]:
    """A new client sends PING while Redis is down: it must get an -ERR reply within `within`
    seconds (never a hang). Such a client holds no connection state, so the proxy keeps its
    connection open for the next request. Returns the error and the (open) connection."""
    t0 = time.monotonic()
    c = RawConn(port, timeout=within)
    c.send(C("PING"))
    try:
        r = c.read_reply(within)
    except Closed:
        c.close()
        raise AssertionError("connection closed without an -ERR reply") from None
    except TimeoutError:
        c.close()
        raise AssertionError(f"no reply within {within}s while upstream is down (hang)") from None
    assert r.t == "-" and r.v.startswith(b"ERR"), r
    assert time.monotonic() - t0 < within
    return r.v, c


def error_then_close(port: int, within: float) -> bytes:
    """error_reply, for tests that only need the error."""
    err, c = error_reply(port, within)
    c.close()
    return err


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
    err, c = error_reply(prx.port, CONNECT_TIMEOUT_MS / 1000 + 3)
    assert err
    make_redis(port=port)
    # The same connection recovers: it never held state that the outage could have lost.
    wait_for(lambda: c.cmd("PING").raw == b"+PONG\r\n", 10, desc="the same client to succeed once Redis is up",
             ignore=(AssertionError,))
    c.close()
    wait_for(lambda: pong(prx.port), 10, desc="a new client to succeed once Redis is up",
             ignore=(Closed, OSError, TimeoutError))


def test_upstream_blackholed_error_within_connect_timeout(make_proxy):
    """An upstream that never completes the TCP handshake (its accept queue is full): the
    client's -ERR must come from the proxy's upstream-connect-timeout, not a hang."""
    lsock = socket.socket()
    lsock.bind((HOST, 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # bounded: fill the accept queue until a connect no longer completes
            s = socket.socket()
            s.settimeout(0.3)
            try:
                s.connect((HOST, port))
            except (socket.timeout, TimeoutError):
                s.close()
                break
            fillers.append(s)
        else:
            pytest.fail("could not fill the listener's accept queue")
        prx = make_proxy(f"redis://{HOST}:{port}", wait="port",
                         flags={"upstream-connect-timeout": CONNECT_TIMEOUT_MS})
        t0 = time.monotonic()
        error_then_close(prx.port, CONNECT_TIMEOUT_MS / 1000 + 2)
        assert time.monotonic() - t0 >= CONNECT_TIMEOUT_MS / 1000 * 0.8, \
            "the error came before the connect timeout: was the upstream really unresponsive?"
    finally:
        for s in fillers:
            s.close()
        lsock.close()


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

    def cycle(i: int) -> None:
        c = RawConn(prx.port, timeout=5)
        try:
            if i % 10:
                # A client with its own upstream connection (CLIENT SETNAME pins it), killed.
                up = pin(c, admin, "cycle")
                admin.client_kill_filter(_id=up)
                c.send(C("PING"))
                error_or_close(c, 5)
            else:
                # A stateless client; every normal connection Redis has (shared ones too) is
                # killed. Its next command may be answered (on a fresh connection), or fail,
                # but must not hang or get someone else's reply.
                assert c.cmd("PING").raw == b"+PONG\r\n"
                admin.client_kill_filter(_type="normal", skipme=True)
                c.send(C("ECHO", f"cycle-{i}"))
                try:
                    r = c.read_reply(5)
                    assert r.is_error or r.v == f"cycle-{i}".encode(), r
                except Closed:
                    pass
        finally:
            c.close()

    for i in range(100):  # warm-up: allocator pools, lazily created structures
        cycle(i)
    conns0 = int(admin.info("stats")["total_connections_received"])
    fds0, rss0 = fd_count(prx.pid), rss_kb(prx.pid)
    deadline = Deadline(120)
    for i in range(1000):
        assert not deadline.expired(), f"1000 cycles took more than 120s (at {i})"
        cycle(i)
    assert int(admin.info("stats")["total_connections_received"]) - conns0 >= 900
    wait_for(lambda: not named_upstream(admin, "cycle"), 10,
             desc="no pinned upstream connection left from the cycles")
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


def redis_busy(port: int) -> bool:
    """True while Redis does not answer a PING within 100 ms (it is inside DEBUG SLEEP)."""
    try:
        with RawConn(port, timeout=0.1) as c:
            c.cmd("PING", timeout=0.1)
            return False
    except (TimeoutError, OSError):
        return True


def test_upstream_killed_with_pipeline_in_flight(make_redis, make_proxy):
    """Redis dies while it owes replies: the client gets complete replies only (errors for what
    is owed, no partial reply), then the connection closes; nothing hangs."""
    srv = make_redis()
    prx = make_proxy(srv.url, flags={"upstream-connect-timeout": CONNECT_TIMEOUT_MS})
    with prx.raw(timeout=10) as c:
        assert c.cmd("PING").raw == b"+PONG\r\n"
        c.send(C("DEBUG", "SLEEP", "2") + C("INCR", "n") * 100)
        wait_for(lambda: redis_busy(srv.port), 5, desc="Redis to be inside DEBUG SLEEP")
        srv.kill()
        replies = []
        for _ in range(101):  # bounded: at most one reply per request
            try:
                replies.append(c.read_reply(5))
            except Closed:
                break
            except TimeoutError:
                raise AssertionError(f"hang after {len(replies)} replies") from None
        assert not c.buf, f"partial reply before close: {bytes(c.buf[:100])!r}"
        assert all(r.is_error for r in replies), replies[:3]
        assert c.is_closed(5)


def test_pinned_client_killed_by_redis_is_closed_without_a_reply(target):
    """CLIENT KILL (or a timeout) closes a connection Redis had accepted: a direct client's
    next request meets the close. Through the proxy the pinned client's connection is closed
    the same way; a request that reached the proxy before it saw Redis's close gets no
    composed error reply either."""
    srv, p = target()
    killer = srv.admin()
    for _ in range(3):  # the request lands before or after the proxy sees the close: both ways
        with RawConn(p.port, timeout=10) as c:
            my_id = c.cmd("CLIENT", "ID").v      # pins: the client has a connection of its own
            assert killer.execute_command("CLIENT", "KILL", "ID", my_id) == 1
            c.send(C("PING"))
            assert c.read_until_close(5) == b"", "a reply after Redis closed the connection"
    with RawConn(p.port, timeout=10) as c:
        # Killed by its own request: Redis answers it, closes, and never reads the PING behind it.
        my_id = c.cmd("CLIENT", "ID").v
        c.send(C("CLIENT", "KILL", "ID", my_id, "SKIPME", "no") + C("PING"))
        assert c.read_until_close(5) == b":1\r\n"
    killer.close()
