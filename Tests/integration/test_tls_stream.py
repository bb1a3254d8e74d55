"""TLS streams as the proxy reads and writes them itself (Connection + TLSChannel: one readv of
ciphertext per wakeup, decrypted in place, replies encrypted into one writev): clients on the
proxy's tls-port, and the proxy's upstream a TLS-only redis-server, so both sides of the proxy
run that code. Records split and joined every way a peer can: a value over many records, a
pipelined megabyte at once, a reply far larger than the socket takes, a record cut off by a
close, close_notify, a KeyUpdate, a refused renegotiation, and a handshake that never ends."""

from __future__ import annotations

import select
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from harness import HOST, Deadline, encode_command as C, free_port, parse_reply, Incomplete, wait_for
from tls_support import PKI, TLSRedis, make_pki

pytestmark = pytest.mark.proxy_process

HANDSHAKE_MS = 400


@pytest.fixture(scope="module")
def pki(tmp_root: Path) -> PKI:
    return make_pki(tmp_root / "pki-tls-stream")


@pytest.fixture(scope="module")
def upstream(tmp_root: Path, pki: PKI):
    srv = TLSRedis(tmp_root, pki).start()
    yield srv
    srv.cleanup()


@pytest.fixture
def proxy(make_proxy, upstream, pki):
    tls_port = free_port()
    prx = make_proxy(upstream.url, flags={
        "warm": "none", "cold": "none", "loglevel": "verbose", "tls-port": tls_port,
        "tls-cert-file": pki.server_crt, "tls-key-file": pki.server_key, "tls-auth-clients": "no",
        "upstream-tls-ca-cert-file": pki.ca_crt, "tls-handshake-timeout": HANDSHAKE_MS})
    prx.tls_port = tls_port
    upstream.admin().flushall()
    return prx


def tls_socket(port: int, timeout: float = 30, **versions) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in versions.items():
        setattr(ctx, k, v)
    raw = socket.create_connection((HOST, port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=HOST)


def read_replies(sock, n: int, timeout: float = 60) -> list:
    """n RESP replies from `sock`, with a deadline (parsed from one bytes copy per recv)."""
    data, pos, out = b"", 0, []
    deadline = Deadline(timeout)
    while len(out) < n:
        try:
            r, pos = parse_reply(data, pos)
            out.append(r)
            continue
        except Incomplete:
            pass
        assert not deadline.expired(), f"{len(out)} of {n} replies within {timeout}s"
        sock.settimeout(max(0.1, deadline.remaining()))
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {len(out)} of {n} replies"
        data, pos = data[pos:] + chunk, 0
    return out


def gone(prx, ports: list[int]):
    """A predicate: none of the clients from these local ports is in the proxy's CLIENT LIST."""
    r = prx.client()

    def check() -> bool:
        listed = {c["addr"] for c in r.client_list()}
        return not listed & {f"{HOST}:{port}" for port in ports}
    return check


def test_a_value_over_many_small_records_and_back_over_many_large_ones(proxy, upstream):
    """A SET sent 100 bytes per record (2,600 records, a record boundary inside every part of the
    command), then its 256 KB value read back, which leaves in full 16 KB records through both
    TLS sides; and a 4 MB value both ways."""
    value = bytes(range(256)) * 1024
    cmd = C("SET", "many:records", value)
    with tls_socket(proxy.tls_port) as s:
        for i in range(0, len(cmd), 100):
            s.sendall(cmd[i:i + 100])
        assert read_replies(s, 1)[0].v == b"OK"
        s.sendall(C("GET", "many:records") + C("STRLEN", "many:records"))
        got, length = read_replies(s, 2)
        assert got.v == value and length.v == len(value)
        big = (b"0123456789abcdef" * 262144)
        s.sendall(C("SET", "big", big) + C("GET", "big"))
        ok, back = read_replies(s, 2)
        assert ok.v == b"OK" and back.v == big
    assert upstream.admin().strlen("big") == len(big)


def test_a_pipelined_megabyte_at_once_and_replies_far_beyond_the_socket(proxy):
    """1 MB of pipelined commands in one send (records the proxy gets many at a time and cut
    anywhere), every reply right and in order; then 200 GETs of a 64 KB value (12.8 MB of
    replies) sent before reading any: the proxy's writes back up, wait for the socket and resume."""
    with tls_socket(proxy.tls_port) as s:
        burst = b"".join(C("RPUSH", "burst", f"element-{i:06d}") for i in range(25000))
        assert len(burst) > 1 << 20
        s.sendall(burst)
        replies = read_replies(s, 25000)
        assert [r.v for r in replies[:3]] == [1, 2, 3] and replies[-1].v == 25000
        s.sendall(C("LRANGE", "burst", "24998", "-1"))
        assert read_replies(s, 1)[0].py() == [b"element-024998", b"element-024999"]
        chunk = b"v" * 65536
        s.sendall(C("SET", "wide", chunk))
        assert read_replies(s, 1)[0].v == b"OK"
        s.sendall(b"".join(C("GET", "wide") for _ in range(200)) + C("PING"))
        replies = read_replies(s, 201, timeout=120)
        assert all(r.v == chunk for r in replies[:200]) and replies[200].v == b"PONG"


def test_a_client_that_closes_mid_record_is_let_go(proxy):
    """A client whose last record is cut short by its close: the proxy drops the connection (no
    reply to half a record, no error to anyone else) and goes on serving."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ports = []
    for cut in (1, 5, 40):
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname=HOST)
        raw = socket.create_connection((HOST, proxy.tls_port), timeout=30)
        ports.append(raw.getsockname()[1])
        deadline = Deadline(30)
        while True:                                # the handshake over our own socket
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                assert not deadline.expired()
                data = raw.recv(65536)
                assert data, "the proxy closed during the handshake"
                incoming.write(data)
        raw.sendall(outgoing.read())
        tls.write(C("SET", "cut", "x" * 200))
        record = outgoing.read()
        raw.sendall(record[:cut])                  # header (or less), never the whole record
        raw.close()
    wait_for(gone(proxy, ports), 20, desc="the cut connections closed")
    with tls_socket(proxy.tls_port) as s:
        s.sendall(C("EXISTS", "cut"))
        assert read_replies(s, 1)[0].v == 0
    assert proxy.alive()


def test_close_notify_is_answered_and_ends_the_connection(proxy):
    """A client's close_notify after its last reply: the proxy answers with its own (unwrap
    returns only once the peer's close_notify came) and lets the connection go."""
    s = tls_socket(proxy.tls_port)
    port = s.getsockname()[1]
    s.sendall(C("SET", "notify", "1") + C("GET", "notify"))
    assert [r.v for r in read_replies(s, 2)] == [b"OK", b"1"]
    raw = s.unwrap()
    raw.settimeout(20)
    assert raw.recv(100) == b""                    # and then the TCP close
    raw.close()
    wait_for(gone(proxy, [port]), 20, desc="the connection closed")


def test_key_update_both_ways_keeps_the_stream(proxy):
    """TLS 1.3 KeyUpdate from the client, asking the proxy to update its keys too (s_client's
    'K' command): replies before and after it are read under the new keys."""
    proc = subprocess.Popen(["openssl", "s_client", "-connect", f"{HOST}:{proxy.tls_port}", "-tls1_3"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = bytearray()

        def saw(n: int) -> bool:
            while select.select([proc.stdout], [], [], 0.05)[0]:
                chunk = proc.stdout.read1(65536)
                if not chunk:
                    break
                out.extend(chunk)
            return out.count(b"+PONG") >= n
        proc.stdin.write(b"PING\n")
        proc.stdin.flush()
        wait_for(lambda: saw(1), 30, desc="the first PONG")
        # s_client takes a whole read of its stdin as one command: K alone, then the PINGs.
        proc.stdin.write(b"K\n")
        proc.stdin.flush()
        wait_for(lambda: saw(1) and b"KEYUPDATE" in out, 30, desc="s_client's KeyUpdate")
        proc.stdin.write(b"PING\nPING\n")
        proc.stdin.flush()
        wait_for(lambda: saw(3), 30, desc="PONGs after the KeyUpdate")
    finally:
        proc.kill()
        proc.wait(10)
    assert b"KEYUPDATE" in out, out[-500:]
    assert proxy.alive()


def test_renegotiation_is_refused_without_harm(proxy):
    """TLS 1.2 client-initiated renegotiation (s_client's 'R'), which the proxy refuses as Redis
    does: that client's connection may end, nobody else notices, the proxy serves on."""
    with tls_socket(proxy.tls_port) as bystander:
        proc = subprocess.Popen(["openssl", "s_client", "-connect", f"{HOST}:{proxy.tls_port}", "-tls1_2"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            proc.communicate(b"PING\nR\nPING\n", timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        bystander.sendall(C("PING"))
        assert read_replies(bystander, 1)[0].v == b"PONG"
    assert proxy.alive()


def test_a_handshake_that_never_completes_is_closed(proxy):
    """tls-handshake-timeout: a client that connects and sends nothing, and one that stops halfway
    through its ClientHello, are closed once the timeout passes (logged as failed accepts); a
    client that finished its handshake and then idles far longer is not."""
    idle = tls_socket(proxy.tls_port)
    silent = socket.create_connection((HOST, proxy.tls_port), timeout=30)
    halfway = socket.create_connection((HOST, proxy.tls_port), timeout=30)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    hello = ctx.wrap_bio(incoming, outgoing, server_hostname=HOST)
    with pytest.raises(ssl.SSLWantReadError):
        hello.do_handshake()
    client_hello = outgoing.read()
    halfway.sendall(client_hello[:len(client_hello) // 2])
    start = time.monotonic()
    for s in (silent, halfway):
        assert s.recv(100) == b"", "the proxy closed it"   # blocks until the close (timeout 30 s)
    assert time.monotonic() - start < 25
    wait_for(lambda: proxy.output().count("TLS handshake timed out") >= 2, 20, desc="two timeout log lines")
    # `idle` connected before `silent`, so it has outlived the timeout too.
    idle.sendall(C("PING"))
    assert read_replies(idle, 1)[0].v == b"PONG"
    idle.close()
    silent.close()
    halfway.close()
