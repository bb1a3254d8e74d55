"""When the proxy reads a client, and when it must not: nothing after QUIT runs, and a request
that waits (for earlier replies, or a tiered command's turn) holds the client's later bytes in
TCP, not in the proxy's memory, whatever drains meanwhile (issue 13)."""

from __future__ import annotations


import pytest

from conftest import DIRECT
from harness import Deadline, RawConn, encode_command as C, pin, rss_kb, send_until_held, wait_for


def connected_clients(admin) -> int:
    return int(admin.info("clients")["connected_clients"])


def test_nothing_after_quit_runs_when_the_shared_link_drains(target):
    """A request over proxy-buffer-high-water pauses the client (the shared link is full), QUIT
    follows, then more commands: once the link drains, those must not be read and run. Redis
    answers +OK to QUIT, closes, and ignores the rest."""
    srv, prx = target(proxy_flags={"proxy-buffer-high-water": "4096", "threads": "1"})
    admin = srv.admin()
    before = connected_clients(admin)
    # Inline, so that wherever a read splits them the ones after the split still parse.
    after = b"".join(b"SET after:%d 1\r\n" % i for i in range(50_000))
    c = RawConn(prx.port)
    try:
        try:
            c.send(C("SET", "big", b"v" * 200_000) + C("QUIT") + after)
        except OSError:
            pass  # closed while still sending: expected once QUIT has been seen
        got = c.read_until_close(10)
        assert b"+OK\r\n+OK\r\n".startswith(got[:10]), f"replies after QUIT: {got[:200]!r}"
    finally:
        c.close()
    # Every connection the client caused upstream is gone: whatever Redis was given has run.
    wait_for(lambda: connected_clients(admin) <= before, 10, desc="the client's upstream connections to close")
    with prx.client() as other:
        assert other.ping()   # on the shared link, behind anything it carried for the client
    assert admin.get("big") == b"v" * 200_000
    ran = admin.keys("after:*")
    assert not ran, f"{len(ran)} commands after QUIT ran, e.g. {sorted(ran)[:3]}"



@pytest.mark.proxy_process
def test_input_held_in_tcp_while_a_tiered_command_waits_for_earlier_replies(make_redis, make_proxy, tmp_path):
    """A pinned client: BLPOP blocks, a large SET fills the upstream connection past the
    high-water mark, FLUSHDB (tiered) must wait for both replies. When the upstream connection
    drains, the client must stay unread: it may push at most what TCP holds, and the proxy's
    memory does not grow with what it sends."""
    srv = make_redis()
    prx = make_proxy(srv.url, flags={"warm": f"sqlite:{tmp_path}/warm.db", "cold": "none", "threads": "1"})
    admin = srv.admin()
    c = RawConn(prx.port, timeout=30)
    try:
        pin(c, admin, "gated")
        c.send(C("BLPOP", "gate", "0") + C("SET", "big", b"b" * (8 << 20)) + C("FLUSHDB"))
        # Redis keeps reading a blocked client's connection: the SET reaches its query buffer.
        wait_for(lambda: any(int(x.get("qbuf", 0)) > (4 << 20) or int(x.get("tot-net-in", 0)) > (8 << 20)
                             for x in admin.client_list() if x.get("name") == "gated"), 20,
                 desc="the large SET to reach Redis")
        rss0 = rss_kb(prx.pid)
        sent = send_until_held(c.sock, C("PING") * 20_000, most=96 << 20, quiet_s=1.5)
        grown = rss_kb(prx.pid) - rss0
        assert sent < 40 << 20, f"the proxy kept reading a client whose next request waits: {sent >> 20} MiB taken"
        assert grown < 40 * 1024, f"proxy RSS grew {grown} kB while the client waited"
        admin.lpush("gate", "x")
        assert c.read_reply(20).py() == [b"gate", b"x"]
        assert c.read_reply(20).raw == b"+OK\r\n"
        flush = c.read_reply(20)
        assert flush.t == "-" and b"tiers-allow-flush" in flush.v, flush
        pongs = c.read_replies(sent // len(C("PING")), timeout=60)
        assert all(p.raw == b"+PONG\r\n" for p in pongs)
    finally:
        c.close()
    assert prx.client().ping()
