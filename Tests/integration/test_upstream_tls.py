"""TLS from tierproxy to Redis (rediss://): a real redis-server that listens only on a TLS port
(`--port 0 --tls-port P`), certificates made by the `openssl` CLI for each module, and the proxy
in front of it, driven by redis-py and redis-cli over plain TCP."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import redis

from harness import (HOST, Closed, RawConn, REDIS_CLI, free_port, pin, run_proxy_cli, run_tool,
                     wait_for)
from tls_support import PKI, TLSRedis, make_pki

pytestmark = pytest.mark.proxy_process

NO_TIERS = {"warm": "none", "cold": "none"}


@pytest.fixture(scope="module")
def pki(tmp_root: Path) -> PKI:
    return make_pki(tmp_root / "pki-upstream-tls")


@pytest.fixture
def make_tls_redis(tmp_root: Path, pki: PKI) -> Iterator:
    made: list[TLSRedis] = []

    def make(**kw) -> TLSRedis:
        srv = TLSRedis(tmp_root, pki, **kw)
        made.append(srv)
        return srv.start()

    yield make
    for s in made:
        s.cleanup()


def trusting(pki: PKI, **extra) -> dict:
    return {**NO_TIERS, "upstream-tls-ca-cert-file": pki.ca_crt, **extra}


def startup_check(proxy, within: float = 15) -> str:
    """The proxy's one log line about its check of the upstream at start."""
    def line():
        return next((l for l in proxy.output().splitlines() if "Upstream check" in l), None)
    return wait_for(line, within, desc="the proxy's startup check of the upstream")


def error_reply(port: int, *command: str, within: float = 10) -> bytes:
    """A request's reply must be an error, within `within` seconds (never a hang)."""
    with RawConn(port, timeout=within) as c:
        r = c.cmd(*command, timeout=within)
        assert r.is_error, f"expected an error reply, got {r!r}"
        return r.v


def test_commands_pipelines_transactions_pubsub_through_tls(make_tls_redis, make_proxy, pki):
    """Every kind of upstream connection speaks TLS: the shared one (GET/SET, a pipeline), a
    pinned one (MULTI/EXEC, SUBSCRIBE), the health probe (/readyz), the check at start."""
    srv = make_tls_redis()
    metrics = free_port()
    prx = make_proxy(srv.url, flags=trusting(pki, **{"metrics-port": metrics, "health-probe-interval": 200}))
    assert "Upstream check ok" in startup_check(prx) and "TLS, certificate verified for 127.0.0.1" in prx.output()
    c = prx.client()
    assert c.set("k", "v") and c.get("k") == b"v"
    direct = srv.client()
    assert direct.get("k") == b"v"
    p = c.pipeline(transaction=False)
    for i in range(200):
        p.set(f"p{i}", i)
        p.get(f"p{i}")
    out = p.execute()
    assert out[1::2] == [str(i).encode() for i in range(200)]
    t = c.pipeline(transaction=True)
    t.incr("n").incr("n").get("n")
    assert t.execute() == [1, 2, b"2"]
    big = b"x" * (3 << 20)                      # many TLS records each way
    assert c.set("big", big) and c.get("big") == big

    sub = prx.client().pubsub()
    sub.subscribe("ch")
    wait_for(lambda: (m := sub.get_message(timeout=0.5)) and m["type"] == "subscribe", 10, desc="subscribe")
    wait_for(lambda: direct.publish("ch", "hello") == 1, 10, desc="the proxy's subscription on Redis")
    msg = wait_for(lambda: sub.get_message(timeout=0.5), 10, desc="the published message")
    assert msg["data"] == b"hello"
    sub.close()

    with prx.raw() as raw:                      # a pinned client: its own TLS connection
        rid = pin(raw, direct, "tls-pinned")
        assert raw.cmd("SELECT", "3").raw == b"+OK\r\n" and raw.cmd("SET", "s", "1").raw == b"+OK\r\n"
        assert srv.client(db=3).get("s") == b"1"
        assert rid in {int(x["id"]) for x in direct.client_list()}

    ready = f"http://{HOST}:{metrics}/readyz"
    wait_for(lambda: urllib.request.urlopen(ready, timeout=2).status == 200, 15,
             desc="/readyz 200 (the health probe's PING over TLS)", ignore=(OSError,))

    cli = run_tool([REDIS_CLI, "-p", str(prx.port), "SET", "cli", "yes"])
    assert cli.stdout.strip() == b"OK", cli
    assert run_tool([REDIS_CLI, "-p", str(prx.port), "GET", "cli"]).stdout.strip() == b"yes"


def test_system_store_and_redis_ssl_env(make_tls_redis, make_proxy, pki):
    """With no CA directive the system store is used and verification is on: OpenSSL's default
    paths honour SSL_CERT_FILE, so pointing it at the test CA plays the system store. The seed's
    REDIS_SSL=true with REDIS_HOST/REDIS_PORT selects TLS."""
    srv = make_tls_redis()
    env = {"REDIS_HOST": HOST, "REDIS_PORT": str(srv.port), "REDIS_SSL": "true", "SSL_CERT_FILE": pki.ca_crt}
    prx = make_proxy(flags=NO_TIERS, env=env)
    assert "Upstream check ok" in startup_check(prx)
    assert "against the system CA store" in prx.output()
    c = prx.client()
    assert c.set("a", "1") and c.get("a") == b"1"
    # The same proxy without the test CA in the "system store": refused.
    env["SSL_CERT_FILE"] = pki.other_ca_crt
    bad = make_proxy(flags=NO_TIERS, env=env, wait="port")
    assert "TLS certificate verification failed" in startup_check(bad)


def test_wrong_ca_refused_at_start_and_per_client(make_tls_redis, make_proxy, pki):
    srv = make_tls_redis()
    prx = make_proxy(srv.url, flags={**NO_TIERS, "upstream-tls-ca-cert-file": pki.other_ca_crt,
                                     "upstream-connect-timeout": 1000}, wait="port")
    line = startup_check(prx)
    assert "Upstream check failed" in line and "TLS certificate verification failed" in line, line
    # The server sends its chain up to its CA (OpenSSL builds it), which the proxy does not trust.
    assert "self-signed certificate in certificate chain" in line, line
    # A shared-path client gets the reason and keeps its connection; a pinned one gets it and
    # is closed (its connection state would be gone); neither hangs.
    with RawConn(prx.port, timeout=10) as c:
        for _ in range(2):
            r = c.cmd("GET", "k", timeout=10)
            assert r.is_error and b"certificate verification failed" in r.v, r
    with RawConn(prx.port, timeout=10) as c:
        r = c.cmd("MULTI", timeout=10)
        assert r.is_error and b"certificate verification failed" in r.v, r
        assert c.is_closed(10)
    with pytest.raises(redis.ResponseError, match="certificate verification failed"):
        prx.client().set("k", "v")
    assert prx.alive()


def test_wrong_host_name_refused(make_tls_redis, make_proxy, pki):
    """A certificate made for other.example: refused by address (no IP SAN) and by another
    name; accepted when upstream-tls-server-name says other.example."""
    srv = make_tls_redis(cert="other-name")
    by_ip = make_proxy(srv.url, flags=trusting(pki), wait="port")
    assert "IP address mismatch" in startup_check(by_ip)
    assert b"IP address mismatch" in error_reply(by_ip.port, "PING")
    by_name = make_proxy(f"rediss://localhost:{srv.port}", flags=trusting(pki), wait="port")
    assert "hostname mismatch" in startup_check(by_name)
    assert b"hostname mismatch" in error_reply(by_name.port, "GET", "k")
    named = make_proxy(srv.url, flags=trusting(pki, **{"upstream-tls-server-name": "other.example"}))
    assert "Upstream check ok" in startup_check(named)
    assert named.client().ping()
    # And the good certificate (SAN DNS:localhost, IP:127.0.0.1) is accepted by name too.
    good = make_tls_redis()
    local = make_proxy(f"rediss://localhost:{good.port}", flags=trusting(pki))
    assert local.client().set("x", "1")


def test_mtls_with_and_without_client_certificate(make_tls_redis, make_proxy, pki):
    srv = make_tls_redis(auth_clients=True)
    without = make_proxy(srv.url, flags=trusting(pki), wait="port")
    line = startup_check(without)
    assert "Upstream check failed" in line and "certificate required" in line, line
    # TLS 1.3: the client's side of the handshake completes before the server judges its
    # certificate, so the refusal arrives as an alert on the first read.
    assert b"certificate required" in error_reply(without.port, "GET", "k")
    assert without.alive()
    with_cert = make_proxy(srv.url, flags=trusting(pki, **{"upstream-tls-cert-file": pki.client_crt,
                                                           "upstream-tls-key-file": pki.client_key}))
    assert "Upstream check ok" in startup_check(with_cert) and "client certificate" in with_cert.output()
    c = with_cert.client()
    assert c.set("m", "1") and c.get("m") == b"1"
    t = c.pipeline(transaction=True)
    assert t.set("m", "2").get("m").execute() == [True, b"2"]


def test_tls_upstream_restarted_mid_test(make_tls_redis, make_proxy, pki):
    """Redis restarts under load: requests meanwhile get error replies (no hang), shared clients
    keep their connection and succeed again, a pinned client is closed, new clients work."""
    srv = make_tls_redis()
    prx = make_proxy(srv.url, flags=trusting(pki, **{"upstream-connect-timeout": 500}))
    shared = prx.raw(timeout=10)
    assert shared.cmd("SET", "a", "1").raw == b"+OK\r\n"
    pinned = prx.raw(timeout=10)
    pin(pinned, srv.client(), "before-restart")
    stop = threading.Event()
    failures: list[str] = []

    def load():
        c = prx.client(socket_timeout=10)
        while not stop.is_set():
            try:
                c.incr("load")
            except redis.ResponseError:
                pass                            # -ERR tierproxy: … while Redis is down
            except Exception as e:  # noqa: BLE001 - anything else (a hang, a close) is a failure
                failures.append(repr(e))
                return

    t = threading.Thread(target=load)
    t.start()
    try:
        wait_for(lambda: (srv.client().get("load") or b"0") != b"0", 15, desc="load through the proxy")
        srv.kill()
        r = shared.cmd("GET", "a", timeout=10)
        assert r.is_error, r
        try:
            r = pinned.cmd("PING", timeout=10)
            assert r.is_error, r
        except Closed:
            pass
        assert pinned.is_closed(10)
        srv.start()
        wait_for(lambda: shared.cmd("SET", "b", "2", timeout=10).raw == b"+OK\r\n", 20,
                 desc="the same shared client to succeed after the restart", ignore=(AssertionError,))
        before = int(srv.client().get("load") or 0)
        wait_for(lambda: int(srv.client().get("load") or 0) > before + 10, 20,
                 desc="the load to reach the restarted Redis through the proxy")
    finally:
        stop.set()
        t.join(30)
    assert not failures, failures
    with prx.raw(timeout=10) as again:
        pin(again, srv.client(), "after-restart")
        assert again.cmd("GET", "b").raw == b"$1\r\n2\r\n"
    shared.close()
    pinned.close()


def test_insecure_accepts_self_signed_with_a_warning(make_tls_redis, make_proxy, pki):
    srv = make_tls_redis(cert="self-signed")
    strict = make_proxy(srv.url, flags=trusting(pki), wait="port")
    assert "self-signed certificate" in startup_check(strict)
    loose = make_proxy(srv.url, flags={**NO_TIERS, "upstream-tls-insecure": "yes"})
    assert "Upstream check ok" in startup_check(loose)
    warning = [l for l in loose.output().splitlines() if "upstream-tls-insecure yes" in l]
    assert warning and " # " in warning[0], loose.output()     # Redis-style warning level
    c = loose.client()
    assert c.set("i", "1") and c.get("i") == b"1"


def test_bad_tls_files_are_configuration_errors(pki, tmp_path):
    """Unreadable CA, a certificate without its key, a key that is not the certificate's: the
    proxy refuses to start (and --check-config says why), instead of failing every client."""
    base = ["--upstream", "rediss://127.0.0.1:6380", "--check-config"]
    r = run_proxy_cli(base + ["--upstream-tls-ca-cert-file", str(tmp_path / "missing.pem")])
    assert r.returncode == 1 and b"cannot load CA certificates" in r.stderr, r
    r = run_proxy_cli(base + ["--upstream-tls-cert-file", pki.client_crt])
    assert r.returncode == 1 and b"both its certificate file and its key file" in r.stderr, r
    r = run_proxy_cli(base + ["--upstream-tls-cert-file", pki.client_crt, "--upstream-tls-key-file", pki.server_key])
    assert r.returncode == 1 and b"mismatch" in r.stderr, r
    r = run_proxy_cli(base + ["--upstream-tls-cert-file", pki.client_crt, "--upstream-tls-key-file", pki.client_key,
                              "--upstream-tls-ca-cert-file", pki.ca_crt])
    assert r.returncode == 0, r
    r = run_proxy_cli(["--upstream", "redis://127.0.0.1:6379", "--upstream-tls-ca-cert-file", pki.ca_crt, "--check-config"])
    assert r.returncode == 0 and b"ignored" in r.stdout, r


def test_tiered_hot_behind_tls(make_tls_redis, make_proxy, pki, tmp_path):
    """Embedded tiers with hot behind TLS: a write-through value and a write-behind one (the
    flusher reads hot on the loop's own TLS connection) reach warm; hot emptied with FLUSHALL
    directly; both read back from warm and promoted. WATCH stays exact (the probe connection)."""
    srv = make_tls_redis()
    prx = make_proxy(srv.url, flags={"upstream-tls-ca-cert-file": pki.ca_crt, "dir": str(tmp_path / "data"),
                                     "rule": "wb:* policy write-behind", "threads": 2})
    c = prx.client()
    assert c.set("wt", "through") and c.set("wb:1", "behind")
    wait_for(lambda: b"warm" in c.execute_command("TIERS", "WHERE", "wb:1"), 20,
             desc="the write-behind flusher to copy wb:1 to warm")
    assert b"warm" in c.execute_command("TIERS", "WHERE", "wt")
    direct = srv.client()
    direct.flushall()
    assert direct.dbsize() == 0
    assert c.get("wt") == b"through" and c.get("wb:1") == b"behind"
    assert direct.get("wt") == b"through", "the value read from warm was not promoted to hot"

    # WATCH, then the client's own tiered write (the proxy's MULTI on its connection, with the
    # loop's WATCH probe connection watching beside it): its EXEC must fail, as on Redis.
    with c.pipeline() as p:
        p.watch("wt")
        assert p.append("wt", "!") == 8
        p.multi()
        p.get("wt")
        with pytest.raises(redis.WatchError):
            p.execute()
    assert c.get("wt") == b"through!"
    # And a tiered write of another key keeps an unconflicted WATCH committing: the probe's own
    # MULTI/PING/EXEC answered over TLS (an error there would fail this EXEC too).
    with c.pipeline() as p:
        p.watch("other")
        assert p.append("wt", "?") == 9
        p.multi()
        p.get("wt")
        assert p.execute() == [b"through!?"]


def test_sni_sent_for_names_not_for_addresses(make_proxy, pki):
    """SNI carries the upstream's host name (what Azure's front ends route on), and is left out
    for an IP address (RFC 6066). A Python TLS server records what each handshake asked for."""
    import socket
    import ssl

    seen: list = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_crt, pki.server_key)
    ctx.sni_callback = lambda sock, name, _ctx: seen.append(name)
    lsock = socket.socket()
    lsock.bind((HOST, 0))
    lsock.listen(16)
    lsock.settimeout(0.2)
    port = lsock.getsockname()[1]
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                continue
            try:
                conn.settimeout(5)
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    if tls.recv(1024):
                        tls.sendall(b"+PONG\r\n")
            except (OSError, ssl.SSLError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        by_name = make_proxy(f"rediss://localhost:{port}", flags=trusting(pki), wait="port")
        assert "Upstream check ok" in startup_check(by_name)
        assert "localhost" in seen, seen
        by_name.stop()        # its later connections (probes, reconnects) would name localhost too
        seen.clear()
        by_ip = make_proxy(f"rediss://{HOST}:{port}", flags=trusting(pki), wait="port")
        assert "Upstream check ok" in startup_check(by_ip)
        wait_for(lambda: seen, 10, desc="a handshake by address")
        assert set(seen) == {None}, seen
    finally:
        stop.set()
        t.join(10)
        lsock.close()


def test_ca_cert_dir(make_tls_redis, make_proxy, pki, tmp_path):
    """upstream-tls-ca-cert-dir: a hashed directory (openssl rehash) instead of a bundle."""
    d = tmp_path / "cadir"
    d.mkdir()
    (d / "test-ca.pem").write_bytes(Path(pki.ca_crt).read_bytes())
    assert run_tool(["openssl", "rehash", str(d)]).returncode == 0
    srv = make_tls_redis()
    prx = make_proxy(srv.url, flags={**NO_TIERS, "upstream-tls-ca-cert-dir": str(d)})
    assert "Upstream check ok" in startup_check(prx)
    assert prx.client().set("d", "1")


def test_backpressure_over_tls(make_tls_redis, make_proxy, pki):
    """A pinned client that stops reading: the proxy stops reading its TLS upstream (Redis holds
    the rest), its RSS stays bounded, and once the client reads again every reply arrives whole:
    reading resumes over TLS without losing what OpenSSL had already decrypted."""
    from harness import rss_kb

    srv = make_tls_redis()
    prx = make_proxy(srv.url, flags=trusting(pki))
    value = b"v" * (4 << 20)
    srv.client().set("big", value)
    c = RawConn(prx.port, timeout=60, rcvbuf=16 * 1024)
    try:
        pin(c, srv.client(), "slow-reader")
        rss0 = rss_kb(prx.pid)
        n = 30
        c.send(b"".join(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" for _ in range(n)))

        def redis_holds_output() -> bool:
            me = [x for x in srv.client().client_list() if x.get("name") == "slow-reader"]
            return bool(me) and int(me[0]["omem"]) > 8 << 20
        wait_for(redis_holds_output, 30, desc="Redis to hold the replies the proxy stopped reading")
        assert rss_kb(prx.pid) - rss0 < 64 * 1024, "the proxy buffered what its client did not read"
        for _ in range(n):
            r = c.read_reply(60)
            assert r.t == "$" and r.v == value
    finally:
        c.close()
