"""Per-connection state through the proxy: AUTH/ACL, SELECT, CLIENT names and tracking,
MONITOR, RESET, QUIT."""

from __future__ import annotations

import pytest

from harness import HOST, encode_command as C, exchange, pin, wait_for

PASSWORD = "s3cr3t-pw"


@pytest.fixture
def secured(target):
    srv, prx = target(redis_args=("--requirepass", PASSWORD))
    srv.password = PASSWORD
    admin = srv.admin()
    admin.acl_setuser("alice", enabled=True, passwords=["+alicepw"], keys=["app:*"],
                      commands=["+@all", "-flushall"])
    return srv, prx


def test_noauth_and_wrongpass_equal_direct(secured):
    srv, prx = secured
    script = b"".join([C("GET", "k"), C("SET", "k", "v"), C("AUTH", "wrong"),
                       C("AUTH", "alice", "nope"), C("AUTH", "a", "b", "c"), C("PING")])
    want, closed = exchange(srv.port, script, count=6)  # unauthenticated: no ECHO marker
    got, closed_p = exchange(prx.port, script, count=6)
    assert got == want
    assert closed is False and closed_p is False
    assert want[0].startswith(b"-NOAUTH")
    assert want[2].startswith(b"-WRONGPASS")


@pytest.mark.parametrize("payload", [
    C("SET", "k", *["x"] * 18),           # more than 10 args before AUTH
    C("SET", "k", "x" * 20_000),          # a bulk over 16 KiB before AUTH
], ids=["unauthenticated-multibulk-length", "unauthenticated-bulk-length"])
def test_unauthenticated_limits_equal_direct(secured, payload):
    srv, prx = secured
    want = exchange(srv.port, payload, marker=False, timeout=5)
    got = exchange(prx.port, payload, marker=False, timeout=5)
    assert got == want
    assert want[1] is True and want[0][0].startswith(b"-ERR Protocol error: unauthenticated")


def test_auth_requirepass(secured):
    srv, prx = secured
    with prx.raw() as c:
        assert c.cmd("GET", "k").v.startswith(b"NOAUTH")
        assert c.cmd("AUTH", PASSWORD).raw == b"+OK\r\n"
        assert c.cmd("SET", "k", "v").raw == b"+OK\r\n"
        assert c.cmd("ACL", "WHOAMI").v == b"default"
    assert srv.admin().get("k") == b"v"
    r = prx.client(password=PASSWORD)
    assert r.get("k") == b"v"


def test_auth_acl_user(secured):
    srv, prx = secured
    script = b"".join([C("AUTH", "alice", "alicepw"), C("ACL", "WHOAMI"), C("SET", "app:1", "x"),
                       C("SET", "other:1", "x"), C("FLUSHALL"), C("GET", "app:1")])
    want, _ = exchange(srv.port, script)
    got, _ = exchange(prx.port, script)
    assert got == want
    assert want[1] == b"$5\r\nalice\r\n"
    assert want[3].startswith(b"-NOPERM")
    # HELLO with AUTH
    with prx.raw() as c:
        hello = c.cmd("HELLO", "3", "AUTH", "alice", "alicepw").py()
        assert hello[b"proto"] == 3
        assert c.cmd("ACL", "WHOAMI").v == b"alice"


@pytest.mark.proxy_process
def test_upstream_url_credentials_acl_user(secured, make_proxy):
    srv, _ = secured
    prx = make_proxy(f"redis://alice:alicepw@{HOST}:{srv.port}")
    with prx.raw() as c:
        assert c.cmd("ACL", "WHOAMI").v == b"alice"
        assert c.cmd("SET", "app:u", "1").raw == b"+OK\r\n"
        assert c.cmd("SET", "nope:u", "1").v.startswith(b"NOPERM")


@pytest.mark.proxy_process
def test_upstream_url_password_default_user(secured, make_proxy):
    srv, _ = secured
    prx = make_proxy(f"redis://:{PASSWORD}@{HOST}:{srv.port}")
    r = prx.client()
    assert r.ping() is True
    assert r.set("pw:k", "v") is True
    assert r.acl_whoami() == "default" or r.acl_whoami() == b"default"
    assert srv.admin().get("pw:k") == b"v"


@pytest.mark.proxy_process
def test_upstream_url_db_number(redis_server, make_proxy):
    prx = make_proxy(f"redis://{HOST}:{redis_server.port}/2")
    admin = redis_server.admin()
    admin.flushall()
    prx.client().set("dbk", "in-db-2")
    assert admin.get("dbk") is None
    assert redis_server.client(db=2).get("dbk") == b"in-db-2"


def test_select_isolation_between_clients(proxy, redis_server):
    with proxy.raw() as a, proxy.raw() as b:
        assert a.cmd("SELECT", "1").raw == b"+OK\r\n"
        a.cmd("SET", "k", "in-1")
        b.cmd("SET", "k", "in-0")
        assert a.cmd("GET", "k").v == b"in-1"
        assert b.cmd("GET", "k").v == b"in-0"
        assert a.cmd("DBSIZE").v == 1
        # A new connection starts in db 0 even though another client selected 1.
        with proxy.raw() as c:
            assert c.cmd("GET", "k").v == b"in-0"
    assert redis_server.client(db=1).get("k") == b"in-1"
    assert redis_server.client(db=0).get("k") == b"in-0"


def test_client_setname_getname(proxy, direct):
    with proxy.raw() as a, proxy.raw() as b:
        assert a.cmd("CLIENT", "GETNAME").raw == b"$-1\r\n"
        assert a.cmd("CLIENT", "SETNAME", "worker-a").raw == b"+OK\r\n"
        assert a.cmd("CLIENT", "GETNAME").v == b"worker-a"
        assert b.cmd("CLIENT", "GETNAME").raw == b"$-1\r\n"
        names = [c["name"] for c in direct.client_list()]
        assert "worker-a" in names
        assert a.cmd("CLIENT", "SETNAME", "bad name").v.startswith(b"ERR")


def test_client_tracking_resp3_invalidation(proxy):
    with proxy.raw() as a, proxy.raw() as b:
        assert a.cmd("HELLO", "3").t == "%"
        assert a.cmd("CLIENT", "TRACKING", "ON").raw == b"+OK\r\n"
        b.cmd("SET", "tk", "1")
        assert a.cmd("GET", "tk").v == b"1"
        b.cmd("SET", "tk", "2")
        push = a.read_reply(5)
        assert push.t == ">", push
        assert push.py() == [b"invalidate", [b"tk"]]
        assert a.cmd("GET", "tk").v == b"2"


def test_monitor_sees_other_clients(proxy):
    with proxy.raw() as mon, proxy.raw() as other:
        assert mon.cmd("MONITOR").raw == b"+OK\r\n"
        other.cmd("SET", "monitored-key", "val")
        other.cmd("GET", "monitored-key")
        seen = []
        for _ in range(50):  # bounded: other connections may issue their own commands
            line = mon.read_reply(5)
            assert line.t == "+", line
            seen.append(line.v)
            if b'"GET" "monitored-key"' in line.v:
                break
        assert any(b'"SET" "monitored-key" "val"' in s for s in seen), seen
        assert any(b'"GET" "monitored-key"' in s for s in seen), seen


def test_reset(proxy, redis_server):
    with proxy.raw() as a:
        a.cmd("HELLO", "3")
        a.cmd("SELECT", "3")
        a.cmd("CLIENT", "SETNAME", "before-reset")
        a.cmd("MULTI")
        a.cmd("SET", "x", "queued")
        assert a.cmd("RESET").raw == b"+RESET\r\n"
        assert a.cmd("CLIENT", "GETNAME").raw == b"$-1\r\n"  # RESP2 again: $-1 not _
        a.cmd("HSET", "h", "f", "v")
        assert a.cmd("HGETALL", "h").raw == b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    assert redis_server.client(db=0).hgetall("h") == {b"f": b"v"}
    assert redis_server.client(db=3).get("x") is None


def test_quit_closes_client_and_upstream(proxy, redis_server):
    admin = redis_server.admin()
    c = proxy.raw()
    up = pin(c, admin, "quitter")
    c.send(C("QUIT"))
    assert c.read_reply(5).raw == b"+OK\r\n"
    assert c.is_closed(5), "connection still open after QUIT"
    c.close()
    wait_for(lambda: up not in {int(x["id"]) for x in admin.client_list()}, 5,
             desc="the client's upstream connection to close after QUIT")
