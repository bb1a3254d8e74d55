"""Commands whose reply count is not one-per-request: the proxy must not lose its place.
Each script is sent as one write to Redis and to the proxy; the replies must be identical."""

from __future__ import annotations

import re

import pytest

from harness import encode_command as C, exchange, wait_for

SCRIPTS = {
    # CLIENT REPLY SKIP/OFF: Redis sends nothing for some requests.
    "client-reply-skip-off-on": C("CLIENT", "REPLY", "SKIP") + C("SET", "a", "1") + C("GET", "a")
    + C("CLIENT", "REPLY", "OFF") + C("SET", "b", "2") + C("GET", "b") + C("CLIENT", "REPLY", "ON")
    + C("GET", "b"),
    # One SUBSCRIBE/UNSUBSCRIBE with N channels: N replies; RESP2 PING inside pub/sub.
    "pubsub-reply-counts": C("SUBSCRIBE", "a", "b", "c") + C("PSUBSCRIBE", "p*", "q*") + C("PING")
    + C("PING", "x") + C("GET", "k") + C("UNSUBSCRIBE") + C("PUNSUBSCRIBE") + C("UNSUBSCRIBE")
    + C("GET", "k"),
    "ssubscribe-counts": C("SSUBSCRIBE", "s1", "s2") + C("SUNSUBSCRIBE") + C("GET", "k"),
    "reset-leaves-subscribe": C("SUBSCRIBE", "a") + C("RESET") + C("GET", "k"),
    # Protocol switches mid-connection.
    "hello-switch": C("HSET", "h", "f", "v") + C("HELLO", "3") + C("HGETALL", "h") + C("HELLO", "2")
    + C("HGETALL", "h") + C("HELLO", "3", "SETNAME", "n") + C("CLIENT", "GETNAME") + C("HELLO", "2"),
    "hello-bad-version": C("HELLO", "4") + C("HELLO", "x") + C("PING"),
    # Errors inside and around transactions.
    "multi-errors": C("EXEC") + C("MULTI") + C("WATCH", "k") + C("MULTI") + C("PING")
    + C("EXEC") + C("MULTI") + C("BLPOP", "nolist", "0") + C("EXEC"),
    # Blocking commands that do not block (data present, or inside MULTI as above).
    "blpop-immediate": C("RPUSH", "q", "1", "2", "3") + C("BLPOP", "q", "0") + C("BRPOP", "q", "0")
    + C("BLMPOP", "1", "1", "q", "LEFT"),
    "eval-multi-reply": C("EVAL", "return {1,{2,{3,'x'}},redis.call('ping')}", "0")
    + C("EVAL", "return redis.error_reply('MY err')", "0")
    + C("EVAL", "return redis.status_reply('FINE')", "0"),
}


def mask_ids(replies: list[bytes]) -> list[bytes]:
    """HELLO's client id legitimately differs between two connections."""
    return [re.sub(rb"\$2\r\nid\r\n:\d+\r\n", b"$2\r\nid\r\n:<id>\r\n", r) for r in replies]


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_reply_sequence_equal_direct(name, proxy, redis_server):
    admin = redis_server.admin()
    admin.flushall()
    want, closed = exchange(redis_server.port, SCRIPTS[name], timeout=5)
    assert not closed
    admin.flushall()
    try:
        got, closed_p = exchange(proxy.port, SCRIPTS[name], timeout=5)
    except TimeoutError as e:
        raise AssertionError(f"proxy stopped answering ({e}); redis replied {want!r}") from None
    assert mask_ids(got) == mask_ids(want)
    assert not closed_p


def test_quit_mid_pipeline_equal_direct(proxy, redis_server):
    script = C("SET", "a", "1") + C("QUIT") + C("SET", "b", "2")
    admin = redis_server.admin()
    admin.flushall()
    want = exchange(redis_server.port, script, timeout=5)
    assert want == ([b"+OK\r\n", b"+OK\r\n"], True) and admin.exists("b") == 0
    admin.flushall()
    assert exchange(proxy.port, script, timeout=5) == want
    assert admin.get("a") == b"1" and admin.exists("b") == 0


@pytest.mark.parametrize("blocking", [("BLPOP", "nolist", "0"), ("SUBSCRIBE", "chan"),
                                      ("XREAD", "BLOCK", "0", "STREAMS", "s", "$")],
                         ids=["blpop", "subscribe", "xread"])
def test_client_gone_while_blocked_releases_upstream(proxy, redis_server, blocking):
    track = redis_server.tracker()
    admin = redis_server.admin()
    with proxy.raw() as c:
        c.send(C(*blocking))
        wait_for(lambda: any(x.get("cmd") == blocking[0].lower() for x in track.new()), 5,
                 desc="the blocking command to reach Redis")
        ids = track.new_ids()
    wait_for(lambda: not track.alive(ids), 10,
             desc="Redis to see the upstream connection close after the client left")
    assert admin.pubsub_numsub("chan")[0][1] == 0
