"""`timeout N` closes clients idle for more than N seconds, as Redis's clientsCron does:
subscribers, MONITOR and clients waiting for a reply (a blocking command) are spared, and a
client that keeps talking stays (issue 13). In ITEST_TARGET=direct mode Redis gets the same
`timeout`, so the test checks its own expectations against Redis."""

from __future__ import annotations

import time

from conftest import DIRECT
from harness import Deadline, RawConn, encode_command as C, wait_for


def closed_within(c: RawConn, seconds: float) -> bool:
    return c.is_closed(seconds)


def test_idle_clients_closed_as_redis_closes_them(target):
    srv, prx = target(redis_args=("--timeout", "1") if DIRECT else (), proxy_flags={"timeout": "1"})
    admin = srv.admin()
    idle_shared, idle_pinned = RawConn(prx.port), RawConn(prx.port)
    sub, mon, blocked, talker = (RawConn(prx.port) for _ in range(4))
    conns = [idle_shared, idle_pinned, sub, mon, blocked, talker]
    try:
        t0 = time.monotonic()
        assert idle_shared.cmd("SET", "k", "v").raw == b"+OK\r\n"
        assert idle_pinned.cmd("CLIENT", "SETNAME", "idler").raw == b"+OK\r\n"
        assert sub.cmd("SUBSCRIBE", "ch").py() == [b"subscribe", b"ch", 1]
        assert mon.cmd("MONITOR").raw == b"+OK\r\n"
        blocked.send(C("BLPOP", "wake", "0"))
        wait_for(lambda: int(admin.info("clients")["blocked_clients"]) == 1, 10, desc="BLPOP to block")

        # The idle ones go after more than a second (Redis checks about once a second).
        deadline = Deadline(10)
        for c in (idle_shared, idle_pinned):
            while not deadline.expired():
                assert talker.cmd("PING").raw == b"+PONG\r\n"
                if closed_within(c, 0.3):
                    break
            else:
                raise AssertionError("an idle client was not closed within 10 s of timeout 1")
        assert time.monotonic() - t0 > 1.0, "closed before it had been idle for a second"
        wait_for(lambda: not any(x.get("name") == "idler" for x in admin.client_list()), 10,
                 desc="the idle pinned client's upstream connection to close")

        # Two more seconds (two more checks) with the others silent: they stay.
        quiet = Deadline(2.5)
        while not quiet.expired():
            assert talker.cmd("PING").raw == b"+PONG\r\n"
            time.sleep(0.2)
        assert admin.publish("ch", "hello") >= 1
        assert sub.read_reply(10).py() == [b"message", b"ch", b"hello"]
        admin.lpush("wake", "up")
        assert blocked.read_reply(10).py() == [b"wake", b"up"]
        assert talker.cmd("ECHO", "ok").v == b"ok"
        assert mon.read_reply(10).t == "+"    # still monitoring: a line for the traffic above
    finally:
        for c in conns:
            c.close()
