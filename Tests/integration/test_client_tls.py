"""TLS from clients to tierproxy (Redis's tls-port and tls-* directives): redis-cli --tls,
redis-py with ssl=True and raw TLS sockets against the proxy, certificates made by the `openssl`
CLI for this module (tls_support.make_pki), a plain redis-server behind the proxy."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import threading
from pathlib import Path
from typing import Optional

import pytest
import redis

from harness import (HOST, REDIS_CLI, RawConn, fd_count, free_port, port_accepts, rss_kb, run_proxy_cli,
                     run_tool, wait_for)
from tls_support import PKI, _openssl, _signed, make_pki

pytestmark = pytest.mark.proxy_process

NO_TIERS = {"warm": "none", "cold": "none"}
KEY_PASS = "tls-key-pass-7Qx"


@pytest.fixture(scope="module")
def pki(tmp_root: Path) -> PKI:
    p = make_pki(tmp_root / "pki-client-tls")
    server_ext = ("keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                  "subjectAltName=IP:127.0.0.1,DNS:localhost")
    # The certificate a SIGHUP swaps in: another CA, another key.
    _signed(p.dir, "rotated", "tierproxy-rotated-server", server_ext, ca="other-ca")
    # A client certificate from a CA the proxy does not trust.
    _signed(p.dir, "stranger", "stranger", "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth",
            ca="other-ca")
    _openssl("pkey", "-in", "server.key", "-aes256", "-passout", f"pass:{KEY_PASS}", "-out", "encrypted.key",
             cwd=p.dir)
    return p


def tls_flags(pki: PKI, tls_port: int, **extra) -> dict:
    return {**NO_TIERS, "tls-port": tls_port, "tls-cert-file": pki.server_crt, "tls-key-file": pki.server_key,
            "tls-ca-cert-file": pki.ca_crt, "loglevel": "verbose", **extra}


def context(ca: str, cert: bool = True, pki: Optional[PKI] = None, **versions) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    if cert and pki is not None:
        ctx.load_cert_chain(pki.client_crt, pki.client_key)
    for k, v in versions.items():
        setattr(ctx, k, v)
    return ctx


class TLSConn(RawConn):
    """RawConn over TLS: the handshake happens at once (a refused one raises here or at the
    first read, as TLS 1.3 reports a refused client certificate after the handshake)."""

    def __init__(self, port: int, ctx: ssl.SSLContext, timeout: float = 20.0):
        raw = socket.create_connection((HOST, port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname=HOST)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False

    def peer_der(self) -> bytes:
        return self.sock.getpeercert(binary_form=True)


def der(path: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(Path(path).read_text())


def tls_redis(port: int, pki: PKI, cert: bool = True, **kw) -> redis.Redis:
    extra = {"ssl_certfile": pki.client_crt, "ssl_keyfile": pki.client_key} if cert else {}
    return redis.Redis(host=HOST, port=port, ssl=True, ssl_ca_certs=pki.ca_crt, ssl_check_hostname=False,
                       socket_timeout=30, **extra, **kw)


def cli(port: int, pki: PKI, *args: str, cert: bool = True) -> str:
    tls = ["--tls", "--cacert", pki.ca_crt] + (["--cert", pki.client_crt, "--key", pki.client_key] if cert else [])
    r = run_tool([REDIS_CLI, "-h", HOST, "-p", str(port), *tls, *args], timeout=30)
    return (r.stdout + r.stderr).decode(errors="replace").strip()


def tls_pong(port: int, pki: PKI) -> bool:
    try:
        with TLSConn(port, context(pki.ca_crt, pki=pki), timeout=2) as c:
            return c.cmd("PING").v == b"PONG"
    except (OSError, ssl.SSLError, TimeoutError):
        return False


def refused(port: int, ctx: ssl.SSLContext) -> bool:
    """The handshake, or the first request after it, fails: the proxy closed the connection."""
    try:
        with TLSConn(port, ctx, timeout=20) as c:
            c.send(b"PING\r\n")
            c.read_reply()
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    except Exception as e:  # harness.Closed: the proxy closed without a reply
        return type(e).__name__ == "Closed"
    return False


def log_has(proxy, text: str, within: float = 20) -> str:
    return wait_for(lambda: next((l for l in proxy.output().splitlines() if text in l), None), within,
                    desc=f"a log line with {text!r}")


def test_redis_cli_and_redis_py_with_and_without_client_certificates(make_proxy, redis_server, pki):
    """tls-auth-clients optional: clients with a certificate and without one both work, through
    redis-cli --tls and redis-py ssl=True; the plain port is served by the same proxy at once."""
    tls_port = free_port()
    prx = make_proxy(redis_server.url, flags=tls_flags(pki, tls_port, **{"tls-auth-clients": "optional"}))
    assert "Ready to accept connections tls" in log_has(prx, "Ready to accept connections tls")
    assert cli(tls_port, pki, "SET", "cli:k", "v1") == "OK"
    assert cli(tls_port, pki, "GET", "cli:k", cert=False) == "v1"
    with_cert, without = tls_redis(tls_port, pki), tls_redis(tls_port, pki, cert=False)
    assert with_cert.set("py:k", "v2") and without.get("py:k") == b"v2"
    p = without.pipeline(transaction=False)
    for i in range(300):
        p.set(f"p{i}", "x" * i).get(f"p{i}")
    assert p.execute()[1::2] == [b"x" * i for i in range(300)]
    t = with_cert.pipeline(transaction=True)
    assert t.incr("n").incr("n").get("n").execute() == [1, 2, b"2"]
    big = os.urandom(3 << 20)
    assert with_cert.set("big", big) and without.get("big") == big
    # The plain port, beside it: the same data.
    plain = prx.client()
    assert plain.get("cli:k") == b"v1" and plain.get("big") == big
    assert redis_server.admin().get("py:k") == b"v2"
    # A certificate from an untrusted CA is refused even when certificates are optional.
    stranger = context(pki.ca_crt)
    stranger.load_cert_chain(pki.stranger_crt, pki.stranger_key)
    assert refused(tls_port, stranger)
    assert with_cert.ping() and prx.alive()


def test_auth_clients_yes_refuses_a_client_without_a_certificate(make_proxy, redis_server, pki):
    """Redis's default, yes: no certificate, no connection; with one, it works."""
    tls_port = free_port()
    flags = tls_flags(pki, tls_port)
    prx = make_proxy(redis_server.url, flags=flags)
    assert refused(tls_port, context(pki.ca_crt, cert=False))
    assert "Error accepting a client connection" in log_has(prx, "Error accepting a client connection")
    with pytest.raises(redis.ConnectionError):
        tls_redis(tls_port, pki, cert=False).ping()
    assert "OK" not in cli(tls_port, pki, "SET", "k", "v", cert=False)
    assert cli(tls_port, pki, "SET", "k", "v") == "OK"
    assert tls_redis(tls_port, pki).get("k") == b"v" and prx.alive()


def test_auth_clients_no_asks_for_no_certificate_and_tls_only(make_proxy, redis_server, pki):
    """tls-auth-clients no: any TLS client is served; 'port 0' leaves only the TLS port."""
    tls_port = free_port()
    flags = tls_flags(pki, tls_port, **{"tls-auth-clients": "no", "port": 0})
    flags.pop("tls-ca-cert-file")   # not needed when no client is verified, as in Redis
    prx = make_proxy(redis_server.url, flags=flags, wait="none")
    wait_for(lambda: not prx.alive() or tls_pong(tls_port, pki), 30, desc="the TLS port")
    assert prx.alive(), prx.output()
    assert cli(tls_port, pki, "SET", "k", "v", cert=False) == "OK"
    assert tls_redis(tls_port, pki, cert=False).get("k") == b"v"
    assert "Ready to accept connections tcp" not in prx.output()
    assert "tls-port" in log_has(prx, "started")


def test_sighup_swaps_the_certificate_and_keeps_live_connections(make_proxy, redis_server, pki, tmp_path):
    """SIGHUP re-reads tls-cert-file/tls-key-file: a new handshake sees the new certificate (another
    CA, another key); a connection made before keeps working; a file that does not load leaves the
    current certificate in place, with a warning."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(pki.server_crt, cert)
    shutil.copy(pki.server_key, key)
    tls_port = free_port()
    prx = make_proxy(redis_server.url, flags=tls_flags(pki, tls_port, **{"tls-cert-file": cert, "tls-key-file": key}))
    wait_for(lambda: tls_pong(tls_port, pki), 30, desc="the TLS port")
    trust_both = context(pki.ca_crt, pki=pki)
    trust_both.load_verify_locations(pki.other_ca_crt)
    live = TLSConn(tls_port, trust_both)
    assert live.peer_der() == der(pki.server_crt)
    assert live.cmd("SET", "k", "before").v == b"OK"
    subscriber = TLSConn(tls_port, trust_both)
    assert subscriber.cmd("SUBSCRIBE", "ch").py()[0] == b"subscribe"

    shutil.copy(pki.rotated_crt, cert)
    shutil.copy(pki.rotated_key, key)
    prx.signal(signal.SIGHUP)
    log_has(prx, "TLS certificates for clients reloaded")
    with TLSConn(tls_port, trust_both) as fresh:
        assert fresh.peer_der() == der(pki.rotated_crt)
        assert fresh.cmd("GET", "k").v == b"before"
    # Trusting only the old CA, a new client now refuses the proxy's new certificate.
    with pytest.raises(ssl.SSLCertVerificationError):
        TLSConn(tls_port, context(pki.ca_crt, pki=pki))
    assert live.cmd("GET", "k").v == b"before" and live.peer_der() == der(pki.server_crt)
    assert live.cmd("PUBLISH", "ch", "hello").v == 1
    assert subscriber.read_reply().py() == [b"message", b"ch", b"hello"]

    cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    prx.signal(signal.SIGHUP)
    assert "the current ones stay" in log_has(prx, "TLS certificates for clients not reloaded")
    with TLSConn(tls_port, trust_both) as fresh:
        assert fresh.peer_der() == der(pki.rotated_crt) and fresh.cmd("PING").v == b"PONG"
    assert live.cmd("SET", "k", "after").v == b"OK" and prx.alive()
    live.close()
    subscriber.close()


def test_tls_protocols_refuses_other_versions(make_proxy, redis_server, pki):
    """tls-protocols "TLSv1.3": a client limited to TLSv1.2 is refused, a TLSv1.3 one served."""
    tls_port = free_port()
    prx = make_proxy(redis_server.url, flags=tls_flags(pki, tls_port, **{"tls-protocols": "TLSv1.3"}))
    old = context(pki.ca_crt, pki=pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        TLSConn(tls_port, old)
    with TLSConn(tls_port, context(pki.ca_crt, pki=pki, minimum_version=ssl.TLSVersion.TLSv1_3)) as c:
        assert c.sock.version() == "TLSv1.3" and c.cmd("PING").v == b"PONG"
    # And the other way round: TLSv1.2 only refuses a TLSv1.3-only client.
    tls12 = free_port()
    make_proxy(redis_server.url, flags=tls_flags(pki, tls12, **{"tls-protocols": "tlsv1.2"}))
    with pytest.raises(ssl.SSLError):
        TLSConn(tls12, context(pki.ca_crt, pki=pki, minimum_version=ssl.TLSVersion.TLSv1_3))
    with TLSConn(tls12, context(pki.ca_crt, pki=pki)) as c:
        assert c.sock.version() == "TLSv1.2" and c.cmd("PING").v == b"PONG"
    assert prx.alive()


def test_key_passphrase_and_unloadable_files_refuse_to_start(make_proxy, redis_server, pki, tmp_path):
    """An encrypted key with the right tls-key-file-pass serves; the wrong passphrase, none, a
    missing certificate, a bad tls-protocols stop the start (and --check-config) with Redis's words,
    and the passphrase is never printed."""
    def check(**extra) -> tuple[int, str]:
        flags = tls_flags(pki, free_port(), **extra)
        args = ["--check-config"] + [a for k, v in flags.items() for a in (f"--{k}", str(v))]
        r = run_proxy_cli(args, timeout=30)
        return r.returncode, (r.stdout + r.stderr).decode(errors="replace")

    rc, out = check(**{"tls-key-file": pki.encrypted_key, "tls-key-file-pass": KEY_PASS})
    assert rc == 0 and "tls-port" in out and KEY_PASS not in out, out
    rc, out = check(**{"tls-key-file": pki.encrypted_key, "tls-key-file-pass": "wrong-pass-1"})
    assert rc == 1 and "Failed to configure TLS: Failed to load private key: " + pki.encrypted_key in out, out
    assert "wrong-pass-1" not in out
    rc, out = check(**{"tls-key-file": pki.encrypted_key})
    assert rc == 1 and "Failed to load private key" in out, out
    rc, out = check(**{"tls-cert-file": str(tmp_path / "missing.crt")})
    assert rc == 1 and f"Failed to load certificate: {tmp_path / 'missing.crt'}" in out, out
    rc, out = check(**{"tls-cert-file": '""'})
    assert rc == 1 and "No tls-cert-file configured!" in out, out
    rc, out = check(**{"tls-ca-cert-file": '""'})
    assert rc == 1 and "Either tls-ca-cert-file or tls-ca-cert-dir must be specified" in out, out
    rc, out = check(**{"tls-protocols": "TLSv1.2 SSLv3"})
    assert rc == 1 and "Invalid tls-protocols specified" in out, out
    rc, out = check(**{"tls-auth-clients": "maybe"})
    assert rc == 1 and "must be one of the following: no, yes, optional" in out, out

    bad = make_proxy(redis_server.url, wait="none",
                     flags=tls_flags(pki, free_port(), **{"tls-key-file": pki.encrypted_key,
                                                          "tls-key-file-pass": "wrong-pass-2"}))
    assert bad.wait_exit(30) == 1
    assert "Failed to load private key" in bad.output() and "wrong-pass-2" not in bad.output()
    assert not port_accepts(bad.port)

    tls_port = free_port()
    good = make_proxy(redis_server.url, flags=tls_flags(pki, tls_port, **{"tls-key-file": pki.encrypted_key,
                                                                          "tls-key-file-pass": KEY_PASS}))
    assert tls_redis(tls_port, pki).ping()
    good.signal(signal.SIGHUP)   # the reload reads the encrypted key with the same passphrase
    log_has(good, "TLS certificates for clients reloaded")
    assert tls_redis(tls_port, pki).ping() and KEY_PASS not in good.output()


def test_garbage_on_the_tls_port_does_not_hurt_other_clients(make_proxy, redis_server, pki):
    """Plain RESP, random bytes, a half handshake, connections that say nothing: each is closed
    (or waits), none crashes the proxy or disturbs a TLS client and a plain client at work, and
    file descriptors and memory come back."""
    tls_port = free_port()
    prx = make_proxy(redis_server.url, flags=tls_flags(pki, tls_port))
    good = tls_redis(tls_port, pki)
    plain = prx.client()
    assert good.set("k", "v")
    stop = threading.Event()
    errors: list[BaseException] = []
    done = [0]

    def steady():
        try:
            while not stop.is_set():
                assert good.get("k") == b"v" and plain.get("k") == b"v"
                done[0] += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    worker = threading.Thread(target=steady)
    worker.start()
    base_fds, base_rss = fd_count(prx.pid), rss_kb(prx.pid)
    for _ in range(6):
        socks = []
        for i in range(20):
            s = socket.create_connection((HOST, tls_port), timeout=20)
            kind = i % 4
            if kind == 0:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
            elif kind == 1:
                s.sendall(b"\x00" + os.urandom(4095))   # no TLS record starts with 0
            elif kind == 2:
                s.sendall(b"\x16\x03\x01\x02\x00" + os.urandom(64))   # a record header, then it stalls
            socks.append((kind, s))
        for kind, s in socks:
            # Bytes that cannot be TLS are refused at once; a stalled handshake waits for the
            # client, as Redis's does, until the client leaves.
            if kind in (0, 1):
                s.settimeout(20)
                try:
                    while s.recv(4096):
                        pass
                except OSError:
                    pass
            s.close()
    assert log_has(prx, "Error accepting a client connection")
    wait_for(lambda: done[0] > 20 or errors, 60, desc="steady requests")
    stop.set()
    worker.join(60)
    assert not errors, errors
    assert prx.alive()
    wait_for(lambda: fd_count(prx.pid) <= base_fds + 2, 30, desc="file descriptors released")
    assert rss_kb(prx.pid) < base_rss + 64 * 1024
    assert good.get("k") == b"v" and tls_redis(tls_port, pki).ping()


def test_tiered_get_through_tls_brings_a_key_back(make_proxy, redis_server, pki, tmp_path):
    """Embedded tiers behind the TLS port: a key DEL'd directly on hot comes back on GET."""
    tls_port = free_port()
    flags = tls_flags(pki, tls_port, dir=str(tmp_path))
    for k in NO_TIERS:
        flags.pop(k)
    make_proxy(redis_server.url, flags=flags)
    c = tls_redis(tls_port, pki)
    assert c.set("tiered:k", "kept below") and c.set("tiered:h", "x")
    direct = redis_server.admin()
    assert direct.delete("tiered:k") == 1 and direct.get("tiered:k") is None
    assert c.get("tiered:k") == b"kept below"
    assert direct.get("tiered:k") == b"kept below"
    assert cli(tls_port, pki, "GET", "tiered:k") == "kept below"



@pytest.mark.parametrize("caching", ["yes", "no"])
def test_session_caching_resumes_a_reconnecting_client(make_proxy, redis_server, pki, caching):
    """tls-session-caching yes (Redis's default): a client that reconnects with its session
    resumes it, over TLSv1.2 (the server's session cache) and TLSv1.3 (tickets); no: it gets a
    full handshake, and is served."""
    tls_port = free_port()
    make_proxy(redis_server.url, flags=tls_flags(pki, tls_port, **{"tls-session-caching": caching}))
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = context(pki.ca_crt, pki=pki, minimum_version=version, maximum_version=version)
        with TLSConn(tls_port, ctx) as first:
            assert first.cmd("PING").v == b"PONG"   # TLSv1.3's ticket arrives after the handshake
            session = first.sock.session
        raw = socket.create_connection((HOST, tls_port), timeout=20)
        with ctx.wrap_socket(raw, server_hostname=HOST, session=session) as again:
            assert again.session_reused == (caching == "yes"), version
            again.sendall(b"PING\r\n")
            assert again.recv(64) == b"+PONG\r\n"


def test_ciphers_and_ciphersuites_are_the_ones_configured(make_proxy, redis_server, pki):
    """tls-ciphers (TLSv1.2) and tls-ciphersuites (TLSv1.3) limit what is negotiated, with the
    server's order first under tls-prefer-server-ciphers; unknown names stop the start."""
    tls_port = free_port()
    make_proxy(redis_server.url, flags=tls_flags(pki, tls_port, **{
        "tls-ciphers": "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256",
        "tls-ciphersuites": "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
        "tls-prefer-server-ciphers": "yes"}))
    tls12 = context(pki.ca_crt, pki=pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    tls12.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305")   # the client prefers AES
    with TLSConn(tls_port, tls12) as c:
        assert c.sock.cipher()[0] == "ECDHE-ECDSA-CHACHA20-POLY1305" and c.cmd("PING").v == b"PONG"
    with TLSConn(tls_port, context(pki.ca_crt, pki=pki, minimum_version=ssl.TLSVersion.TLSv1_3)) as c:
        assert c.sock.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256" and c.cmd("PING").v == b"PONG"
    only_aes256 = context(pki.ca_crt, pki=pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    only_aes256.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384")
    with pytest.raises(ssl.SSLError):
        TLSConn(tls_port, only_aes256)
    for flag, value, words in (("tls-ciphers", "NO-SUCH-CIPHER", "Failed to configure ciphers: NO-SUCH-CIPHER"),
                               ("tls-ciphersuites", "TLS_NO_SUCH", "Failed to configure ciphersuites: TLS_NO_SUCH")):
        flags = tls_flags(pki, free_port(), **{flag: value})
        r = run_proxy_cli(["--check-config"] + [a for k, v in flags.items() for a in (f"--{k}", str(v))], timeout=30)
        assert r.returncode == 1 and words in (r.stdout + r.stderr).decode(), r


def test_sighup_rereads_the_client_ca(make_proxy, redis_server, pki, tmp_path):
    """tls-ca-cert-file is read again on SIGHUP too: after the CA file names another CA, client
    certificates from it are accepted and those from the old one refused for new connections."""
    ca = tmp_path / "clients-ca.crt"
    shutil.copy(pki.ca_crt, ca)
    tls_port = free_port()
    prx = make_proxy(redis_server.url, flags=tls_flags(pki, tls_port, **{"tls-ca-cert-file": ca}))
    stranger = context(pki.ca_crt)
    stranger.load_cert_chain(pki.stranger_crt, pki.stranger_key)
    assert refused(tls_port, stranger)
    live = TLSConn(tls_port, context(pki.ca_crt, pki=pki))
    assert live.cmd("PING").v == b"PONG"
    shutil.copy(pki.other_ca_crt, ca)
    prx.signal(signal.SIGHUP)
    log_has(prx, "TLS certificates for clients reloaded")
    with TLSConn(tls_port, stranger) as c:
        assert c.cmd("PING").v == b"PONG"
    assert refused(tls_port, context(pki.ca_crt, pki=pki))
    assert live.cmd("PING").v == b"PONG"
    live.close()
