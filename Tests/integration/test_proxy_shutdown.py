"""SIGTERM / SIGINT: exit 0 within shutdown-timeout, replies already received are flushed."""

from __future__ import annotations

import signal
import time

import pytest

from harness import Closed, encode_command as C, wait_for

pytestmark = pytest.mark.proxy_process


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_idle_signal_exits_0(make_proxy, redis_server, sig):
    p = make_proxy(redis_server.url, flags={"shutdown-timeout": 5})
    with p.raw() as c:
        assert c.cmd("PING").raw == b"+PONG\r\n"
        t0 = time.monotonic()
        p.signal(sig)
        assert p.wait_exit(5 + 2) == 0
        assert time.monotonic() - t0 < 5 + 1
        assert c.is_closed(5)


# Without lower tiers the pipeline is one burst (20 000 INCRs run in a fraction of a second);
# with the embedded tiers, the proxy's default, each INCR of the one key is a write-through that
# waits for the one before (key lock, a round trip to hot, a SQLite write: ~0.3 ms each here,
# several times that on a loaded machine), which is why this test, run with the defaults, once
# missed a 10 s bound. The tiered case keeps fewer requests.
@pytest.mark.parametrize("tiers,n", [("none", 20_000), ("embedded", 2_000)], ids=["core", "tiered"])
def test_sigterm_flushes_pipeline_replies(make_proxy, redis_server, tiers, n):
    """Redis has executed the whole pipeline before SIGTERM: every reply reaches the client."""
    flags = {"shutdown-timeout": 5}
    if tiers == "none":
        flags.update({"warm": "none", "cold": "none"})
    p = make_proxy(redis_server.url, flags=flags)
    admin = redis_server.admin()
    admin.delete("sd:ctr")
    with p.raw(timeout=30) as c:
        c.send(b"".join(C("INCR", "sd:ctr") for _ in range(n)))
        wait_for(lambda: admin.get("sd:ctr") == str(n).encode(), 60,
                 desc="Redis to execute the pipeline")
        p.signal(signal.SIGTERM)
        replies = c.read_replies(n, timeout=30)
        assert [r.v for r in replies] == list(range(1, n + 1))
        assert c.is_closed(7)
    assert p.wait_exit(7) == 0


def test_sigterm_with_blpop_in_flight(make_proxy, redis_server):
    """A client blocked in BLPOP 1: exit 0 within shutdown-timeout; the client gets the nil
    reply or a clean close, never a partial reply."""
    p = make_proxy(redis_server.url, flags={"shutdown-timeout": 5})
    admin = redis_server.admin()
    with p.raw() as c:
        c.send(C("BLPOP", "sd:q", "1"))
        wait_for(lambda: int(admin.info("clients")["blocked_clients"]) >= 1, 5, desc="BLPOP to block")
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        try:
            r = c.read_reply(7)
            assert r.raw == b"*-1\r\n", r
        except Closed as e:
            assert not c.buf, f"partial reply before close: {e}"
        assert p.wait_exit(5 + 2) == 0
        assert time.monotonic() - t0 < 5 + 1


def test_sigterm_shutdown_timeout_bounds_wait(make_proxy, redis_server):
    """A client blocked forever must not keep the proxy alive past shutdown-timeout."""
    p = make_proxy(redis_server.url, flags={"shutdown-timeout": 1})
    admin = redis_server.admin()
    with p.raw() as c:
        c.send(C("BLPOP", "sd:forever", "0"))
        wait_for(lambda: int(admin.info("clients")["blocked_clients"]) >= 1, 5, desc="BLPOP to block")
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        assert p.wait_exit(1 + 3) == 0
        assert time.monotonic() - t0 < 1 + 1.5
        assert c.is_closed(2)
