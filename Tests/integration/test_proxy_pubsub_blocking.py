"""Pub/sub and blocking commands across two clients through the proxy."""

from __future__ import annotations

import time

from harness import wait_for


def blocked_clients(direct) -> int:
    return int(direct.info("clients")["blocked_clients"])


def test_subscribe_message_delivered(proxy, direct):
    with proxy.raw() as sub, proxy.raw() as pub:
        assert sub.cmd("SUBSCRIBE", "news", "other").raw == \
            b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
        assert sub.read_reply().raw == b"*3\r\n$9\r\nsubscribe\r\n$5\r\nother\r\n:2\r\n"
        assert pub.cmd("PUBLISH", "news", "hello").v == 1
        assert sub.read_reply(5).raw == b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
        direct.publish("other", b"\x00bin\r\n")  # published straight to Redis
        assert sub.read_reply(5).py() == [b"message", b"other", b"\x00bin\r\n"]
        # RESP2 subscriber PING and UNSUBSCRIBE
        assert sub.cmd("PING").raw == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
        assert sub.cmd("UNSUBSCRIBE", "news").py() == [b"unsubscribe", b"news", 1]
        assert pub.cmd("PUBLISH", "news", "gone").v == 0


def test_psubscribe_pmessage(proxy):
    with proxy.raw() as sub, proxy.raw() as pub:
        assert sub.cmd("PSUBSCRIBE", "ev.*").py() == [b"psubscribe", b"ev.*", 1]
        assert pub.cmd("PUBLISH", "ev.click", "x").v == 1
        assert pub.cmd("PUBLISH", "nomatch", "y").v == 0
        assert sub.read_reply(5).py() == [b"pmessage", b"ev.*", b"ev.click", b"x"]


def test_ssubscribe_smessage(proxy):
    with proxy.raw() as sub, proxy.raw() as pub:
        assert sub.cmd("SSUBSCRIBE", "shard").py() == [b"ssubscribe", b"shard", 1]
        assert pub.cmd("SPUBLISH", "shard", "s1").v == 1
        assert sub.read_reply(5).py() == [b"smessage", b"shard", b"s1"]


def test_many_messages_in_order(proxy, direct):
    n = 5000
    with proxy.raw() as sub:
        sub.cmd("SUBSCRIBE", "seq")
        p = direct.pipeline(transaction=False)
        for i in range(n):
            p.publish("seq", str(i))
        assert p.execute() == [1] * n
        msgs = sub.read_replies(n, timeout=30)
    assert [m.py()[2] for m in msgs] == [str(i).encode() for i in range(n)]


def test_blpop_woken_by_other_client(proxy, direct):
    with proxy.raw() as a, proxy.raw() as b:
        base = blocked_clients(direct)
        a.send(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$2\r\n10\r\n")
        wait_for(lambda: blocked_clients(direct) == base + 1, 5, desc="BLPOP to block in Redis")
        t0 = time.monotonic()
        assert b.cmd("LPUSH", "q", "job").v == 1
        assert a.read_reply(5).py() == [b"q", b"job"]
        assert time.monotonic() - t0 < 5
        # The blocked connection is reusable afterwards.
        assert a.cmd("PING").raw == b"+PONG\r\n"


def test_blpop_timeout_returns_nil(proxy):
    with proxy.raw() as a:
        t0 = time.monotonic()
        assert a.cmd("BLPOP", "empty", "0.2", timeout=5).raw == b"*-1\r\n"
        assert time.monotonic() - t0 >= 0.15


def test_xread_block_woken(proxy, direct):
    with proxy.raw() as a, proxy.raw() as b:
        base = blocked_clients(direct)
        a.send(b"*6\r\n$5\r\nXREAD\r\n$5\r\nBLOCK\r\n$5\r\n10000\r\n$7\r\nSTREAMS\r\n$2\r\nxs\r\n$1\r\n$\r\n")
        wait_for(lambda: blocked_clients(direct) == base + 1, 5, desc="XREAD BLOCK to block")
        assert b.cmd("XADD", "xs", "7-1", "f", "v").v == b"7-1"
        assert a.read_reply(5).py() == [[b"xs", [[b"7-1", [b"f", b"v"]]]]]


def test_wait(proxy):
    with proxy.raw() as a:
        a.cmd("SET", "k", "v")
        assert a.cmd("WAIT", "0", "0").raw == b":0\r\n"
        t0 = time.monotonic()
        assert a.cmd("WAIT", "1", "300", timeout=5).raw == b":0\r\n"  # no replicas: times out
        assert time.monotonic() - t0 >= 0.25
