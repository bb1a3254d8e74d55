"""A client whose tiered command is still running is not read (issue 13): its later bytes wait
in TCP, whatever drains meanwhile. Here the command waits on a warm tier that does not answer,
after a large request filled the shared upstream connection past its high-water mark."""

from __future__ import annotations


import pytest

from tierstack import RawConn, wait_for
from harness import encode_command as C, rss_kb, send_until_held

pytestmark = pytest.mark.tiers_only

TIMEOUT_MS = 8000



def test_client_held_in_tcp_while_its_tiered_command_waits_on_a_lower_tier(make_stack):
    s = make_stack("azure", rules=("big:* policy hot-only",),
                   flags={"tier-timeout": TIMEOUT_MS, "threads": "1", "proxy-buffer-high-water": "64kb"})
    with s.client() as c:
        c.set("w:n", "41")
    s.evict("w:n")
    s.emu.add_fault("cosmos", kind="hang", ms=30_000, count=-1, op="ReadDocument")
    r = RawConn(s.port, timeout=30)
    try:
        # The SET fills the shared connection; INCR must bring w:n up from warm, which hangs.
        r.send(C("SET", "big:x", b"b" * (1 << 20)) + C("INCR", "w:n"))
        wait_for(lambda: s.emu.ops("cosmos").get("ReadDocument", 0) >= 1, 10, desc="INCR asking warm")
        rss0 = rss_kb(s.proxy.pid)
        sent = send_until_held(r.sock, C("PING") * 20_000, most=96 << 20, quiet_s=1.5)
        grown = rss_kb(s.proxy.pid) - rss0
        assert sent < 40 << 20, f"the proxy kept reading behind a running tiered command: {sent >> 20} MiB taken"
        assert grown < 40 * 1024, f"proxy RSS grew {grown} kB"
        s.emu.clear_faults(("cosmos",))
        assert r.read_reply(TIMEOUT_MS / 1000 + 20).raw == b"+OK\r\n"
        r.read_reply(TIMEOUT_MS / 1000 + 20)            # INCR: 42, or the tier's error after tier-timeout
        pongs = r.read_replies(sent // len(C("PING")), timeout=60)
        assert all(p.raw == b"+PONG\r\n" for p in pongs)
    finally:
        s.emu.clear_faults(("cosmos",))
        r.close()
