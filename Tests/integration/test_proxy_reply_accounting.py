"""Commands whose reply count is not one-per-request: the proxy must not lose its place.
Each script is sent as one write to Redis and to the proxy; the replies must be identical."""

from __future__ import annotations

import re

import pytest

from harness import encode_command as C, exchange

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
