"""auth-mode proxy (issue 12): the proxy authenticates clients itself with `requirepass` and
`user` lines in Redis's ACL syntax and answers NOAUTH, WRONGPASS and NOPERM with Redis 7.0's
words. Every reply here is compared byte for byte with a reference redis-server given the same
`requirepass` and `user` lines, on a fresh connection each: the proxy's upstream is another
Redis, where the proxy is one ACL user of its own (`tp`) and the clients' users do not exist.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import redis

from harness import RawConn, RedisServer, encode_command as C, run_proxy_cli, wait_for

pytestmark = pytest.mark.proxy_process

REQUIREPASS = "default-pw-1"
DAVE_HASH = hashlib.sha256(b"dave-pw-2").hexdigest()
USERS = [
    "alice on >alice-pw ~a:* %R~r:* %W~w:* &chan:* +@all -@dangerous",
    "bob off >bob-pw ~* &* +@all",
    "carol on nopass ~* -@all +get +config|get +acl|whoami",
    f"dave on #{DAVE_HASH} ~* &* +@read -get +acl",
    "erin on >erin-1 >erin-2 <erin-1 allkeys allchannels +@all -@write",
    "frank on >frank-pw resetpass >frank-2 ~* resetkeys ~k:* allcommands -set",
    "gina on >gina-pw nocommands +@read +@connection ~* resetchannels &news.* +publish +subscribe +psubscribe",
    "henry on >henry-pw ~* +@all",
]
PASSWORDS = [REQUIREPASS, "alice-pw", "bob-pw", "dave-pw-2", "erin-1", "erin-2", "frank-pw", "frank-2",
             "gina-pw", "henry-pw", "tp-upstream-pw"]
UPSTREAM_USER = ("tp", "tp-upstream-pw")


def conf_lines(requirepass: str = REQUIREPASS) -> list[str]:
    lines = [f"user {u}" for u in USERS]
    return lines + ([f"requirepass {requirepass}"] if requirepass else [])


def reference_args(requirepass: str = REQUIREPASS) -> list[str]:
    args: list[str] = []
    for u in USERS:
        args += ["--user", *u.split()]
    return args + (["--requirepass", requirepass] if requirepass else [])


class Pair:
    """The proxy (auth-mode proxy) and the reference Redis with the same users."""

    def __init__(self, proxy, reference: RedisServer, upstream: RedisServer):
        self.proxy, self.reference, self.upstream = proxy, reference, upstream

    def replies(self, port: int, commands: list[tuple], pipeline: bool) -> list[bytes]:
        with RawConn(port, timeout=20) as c:
            if pipeline:
                c.send(b"".join(C(*cmd) for cmd in commands))
                return [r.raw for r in c.read_replies(len(commands), timeout=20)]
            return [c.cmd(*cmd).raw for cmd in commands]

    def same(self, *commands: tuple, pipeline: bool = False) -> list[bytes]:
        """Runs `commands` on a fresh connection to each; their replies must be byte-equal."""
        self.flush()
        via = self.replies(self.proxy.port, list(commands), pipeline)
        self.flush()
        direct = self.replies(self.reference.port, list(commands), pipeline)
        via, direct = [[mask_id(r) for r in rs] for rs in (via, direct)]
        for cmd, v, d in zip(commands, via, direct):
            assert v == d, f"{cmd}: proxy {v!r} != redis {d!r}\nall via: {via}\nall direct: {direct}"
        return via

    def flush(self) -> None:
        self.reference.client(password=REQUIREPASS).flushall()
        self.upstream.client(username=UPSTREAM_USER[0], password=UPSTREAM_USER[1]).flushall()


def mask_id(reply: bytes) -> bytes:
    """HELLO's reply holds the connection's id, which differs between any two servers."""
    return re.sub(rb"\$2\r\nid\r\n:\d+\r\n", b"$2\r\nid\r\n:<id>\r\n", reply)


def upstream_with_proxy_user(make_redis) -> RedisServer:
    """Redis where the proxy is user `tp` and the default user is off: only the proxy gets in."""
    return make_redis(args=["--user", "tp", "on", f">{UPSTREAM_USER[1]}", "~*", "&*", "+@all",
                            "--user", "default", "off"])


def proxy_conf(tmp_path: Path, lines: list[str], name: str = "acl.conf") -> Path:
    conf = tmp_path / name
    conf.write_text("auth-mode proxy\n" + "\n".join(lines) + "\n")
    return conf


@pytest.fixture
def pair(make_redis, make_proxy, tmp_path) -> Pair:
    upstream = upstream_with_proxy_user(make_redis)
    reference = make_redis(args=reference_args())
    prx = make_proxy(f"redis://{UPSTREAM_USER[0]}:{UPSTREAM_USER[1]}@127.0.0.1:{upstream.port}",
                     flags={"warm": "none", "cold": "none", "loglevel": "debug"},
                     config_file=proxy_conf(tmp_path, conf_lines()))
    p = Pair(prx, reference, upstream)
    # Categories come from the upstream's COMMAND reply, read once the proxy has started.
    wait_for(lambda: p.replies(prx.port, [("AUTH", "carol", "x"), ("GET", "k")], False)[1] == b"$-1\r\n",
             30, desc="the proxy to have read the upstream's command table")
    return p


def test_auth_replies(pair):
    pair.same(("GET", "k"), ("PING",), ("AUTH",), ("AUTH", "a", "b", "c"), ("AUTH", "wrong"),
              ("AUTH", "default", "wrong"), ("AUTH", "nosuchuser", "x"), ("AUTH", "bob", "bob-pw"),
              ("EXEC",), ("ACL", "WHOAMI"), ("AUTH", REQUIREPASS), ("ACL", "WHOAMI"), ("PING",))
    pair.same(("AUTH", "default", REQUIREPASS), ("SET", "k", "v"), ("GET", "k"), ("AUTH", "alice", "alice-pw"),
              ("ACL", "WHOAMI"), ("GET", "k"), ("AUTH", "alice", "wrong"), ("ACL", "WHOAMI"))
    # nopass, a #sha256 password, two passwords with one removed, resetpass.
    pair.same(("AUTH", "carol", "anything"), ("ACL", "WHOAMI"), ("AUTH", "dave", "dave-pw-2"), ("ACL", "WHOAMI"),
              ("AUTH", "erin", "erin-1"), ("AUTH", "erin", "erin-2"), ("ACL", "WHOAMI"),
              ("AUTH", "frank", "frank-pw"), ("AUTH", "frank", "frank-2"), ("ACL", "WHOAMI"))


def test_unknown_commands(pair):
    """Redis's unknown-command error comes before NOAUTH; the proxy makes it for users not allowed
    every command (the upstream may know a command its table, read at start, did not)."""
    long = "x" * 200
    pair.same(("NOSUCH",), ("NOSUCH", "a", "b"), ("nosuch", long, "c"), ("NOSUCH", "line\r\nbreak"), ("CONFIG", "NOSUCH"),
              ("GET",), ("AUTH", "alice", "alice-pw"), ("NOSUCH", "a"), ("MULTI",), ("NOSUCH",), ("SET", "a:1", "v"),
              ("EXEC",), ("GET", "a:1"))
    pair.same(("AUTH", REQUIREPASS), ("NOSUCH", "a"), ("GET",))


def test_hello_auth_and_reset(pair):
    pair.same(("HELLO",), ("HELLO", "3"), ("HELLO", "4"), ("HELLO", "x"), ("HELLO", "3", "AUTH"),
              ("HELLO", "3", "FOO"), ("HELLO", "3", "AUTH", "alice", "wrong"), ("HELLO", "2", "AUTH", "bob", "bob-pw"),
              ("PING",), ("RESET",), ("PING",))
    for port in (pair.proxy.port, pair.reference.port):
        with RawConn(port) as c:
            r = c.cmd("HELLO", "3", "AUTH", "alice", "alice-pw", "SETNAME", "acl-test")
            assert r.t == "%", r
            fields = r.py()
            assert fields[b"proto"] == 3 and fields[b"server"] == b"redis"
            assert c.cmd("ACL", "WHOAMI").raw == b"$5\r\nalice\r\n"
            assert c.cmd("CLIENT", "GETNAME").raw == b"$8\r\nacl-test\r\n"
            assert c.cmd("GET", "w:1").raw.startswith(b"-NOPERM")
            assert c.cmd("RESET").raw == b"+RESET\r\n"
            assert c.cmd("GET", "a:1").raw == b"-NOAUTH Authentication required.\r\n"
            # RESET made the upstream connection its default user: the proxy authenticated it again.
            assert c.cmd("AUTH", REQUIREPASS).raw == b"+OK\r\n"
            assert c.cmd("SET", "a:1", "v").raw == b"+OK\r\n"
            assert c.cmd("GET", "a:1").raw == b"$1\r\nv\r\n"


def test_inline_auth_and_hello(pair):
    """Inline requests (telnet style) are judged the same way."""
    out = []
    for port in (pair.proxy.port, pair.reference.port):
        with RawConn(port) as c:
            c.send(b"GET k\r\nAUTH alice wrong\r\nHELLO 3 AUTH alice alice-pw\r\nACL WHOAMI\r\nGET w:1\r\n"
                   b"AUTH dave dave-pw-2\r\nACL WHOAMI\r\n")
            out.append([mask_id(r.raw) for r in c.read_replies(7)])
    assert out[0] == out[1], out


def test_redis_py_clients(pair):
    for port in (pair.proxy.port, pair.reference.port):
        pair.flush()
        c = redis.Redis(host="127.0.0.1", port=port, username="alice", password="alice-pw", socket_timeout=20)
        assert c.set("a:1", "v") is True and c.get("a:1") == b"v"
        with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to access one of the keys"):
            c.get("w:1")
        with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to run the 'keys' command"):
            c.keys("*")
        c3 = redis.Redis(host="127.0.0.1", port=port, username="alice", password="alice-pw", protocol=3,
                         socket_timeout=20)
        assert c3.get("a:1") == b"v" and c3.acl_whoami() in (b"alice", "alice")
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, username="alice", password="nope", socket_timeout=20).ping()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=20).ping()


def test_key_patterns_with_read_write_split(pair):
    pair.same(("AUTH", "alice", "alice-pw"), ("SET", "a:1", "v"), ("GET", "a:1"), ("SET", "r:1", "v"),
              ("GET", "r:1"), ("SET", "w:1", "v"), ("GET", "w:1"), ("LPUSH", "w:l", "x"), ("LRANGE", "w:l", 0, -1),
              ("EXISTS", "w:1"), ("EXISTS", "r:1"), ("GETSET", "w:1", "x"), ("MSET", "a:2", "x", "w:2", "y"),
              ("MSET", "a:3", "x", "r:3", "y"), ("MGET", "a:1", "r:1"), ("MGET", "a:1", "w:1"),
              ("COPY", "r:1", "w:9"), ("COPY", "a:1", "r:9"), ("SET", "w:1", "v", "GET"), ("SET", "a:1", "v", "GET"),
              ("BITFIELD", "r:1", "GET", "u4", 0), ("BITFIELD", "r:1", "SET", "u4", 0, 1),
              ("BITFIELD", "w:1", "GET", "u4", 0), ("BITFIELD", "w:1", "INCRBY", "u4", 0, 1), ("GET", "other"), ("DEL", "a:1", "zz"),
              ("EVAL", "return 1", 1, "w:1"), ("EVAL", "return 1", 1, "a:1"), ("OBJECT", "ENCODING", "w:1"))
    # frank: allkeys then resetkeys then ~k:*; every command but SET.
    pair.same(("AUTH", "frank", "frank-2"), ("SET", "k:1", "v"), ("INCR", "k:1"), ("INCR", "x"), ("GET", "k:1"),
              ("RPUSH", "k:l", "b", "a"), ("SORT", "k:l", "ALPHA", "STORE", "other"),
              ("SORT", "k:l", "ALPHA", "STORE", "k:s"), ("LRANGE", "k:s", 0, -1),
              ("SORT", "k:l", "BY", "k:w_*", "ALPHA"), ("SORT", "k:l", "BY", "nosort"), ("SORT", "k:l", "GET", "#"),
              ("SORT_RO", "k:l", "ALPHA", "GET", "k:*"), ("SORT", "k:l", "LIMIT", 0, 1, "ALPHA", "DESC"))


def test_categories_and_commands(pair):
    pair.same(("AUTH", "alice", "alice-pw"), ("KEYS", "*"), ("FLUSHALL",), ("CONFIG", "GET", "maxmemory"),
              ("DEBUG", "SLEEP", 0), ("PING",), ("INFO", "nosuchsection"))
    pair.same(("AUTH", "carol", "x"), ("GET", "k"), ("SET", "k", "v"), ("CONFIG", "GET", "maxmemory"),
              ("CONFIG", "SET", "maxmemory", "1"), ("CONFIG", "RESETSTAT"), ("PING",), ("ACL", "WHOAMI"),
              ("NOSUCHCOMMAND", "x"), ("CONFIG", "NOSUCH"), ("GET",), ("MULTI",))
    pair.same(("AUTH", "dave", "dave-pw-2"), ("GET", "k"), ("MGET", "k"), ("STRLEN", "k"), ("SET", "k", "v"),
              ("ACL", "WHOAMI"), ("HGETALL", "h"))
    pair.same(("AUTH", "erin", "erin-2"), ("GET", "k"), ("SET", "k", "v"), ("DEL", "k"), ("PING",))
    pair.same(("AUTH", "gina", "gina-pw"), ("GET", "k"), ("SET", "k", "v"), ("HELLO", "2"), ("ECHO", "hi"))


def test_channels(pair):
    pair.same(("AUTH", "gina", "gina-pw"), ("PUBLISH", "news.1", "x"), ("PUBLISH", "other", "x"),
              ("SUBSCRIBE", "other"), ("SUBSCRIBE", "news.1", "other"), ("PSUBSCRIBE", "news.x*"),
              ("PSUBSCRIBE", "*"), ("PING",))
    pair.same(("AUTH", "henry", "henry-pw"), ("PUBLISH", "x", "y"), ("SUBSCRIBE", "x"), ("PING",))
    pair.same(("AUTH", "alice", "alice-pw"), ("PUBLISH", "chan:1", "y"), ("PUBLISH", "chat", "y"))
    pair.same(("AUTH", REQUIREPASS), ("PUBLISH", "anything", "y"))
    # Allowed subscriptions are the upstream's, as they would be Redis's; a refusal after them
    # (replies not counted any more) is the proxy's.
    pair.same(("AUTH", "gina", "gina-pw"), ("SUBSCRIBE", "news.1"), ("PSUBSCRIBE", "news.*"), ("SUBSCRIBE", "other"),
              ("PSUBSCRIBE", "news.1*"), ("SUBSCRIBE", "news.2"))


def test_pipeline_mixing_allowed_and_denied(pair):
    cmds = [("GET", "a:1"), ("AUTH", "alice", "alice-pw")]
    for i in range(20):
        cmds += [("SET", f"a:{i}", i), ("SET", f"r:{i}", i), ("GET", f"a:{i}"), ("GET", f"w:{i}"), ("KEYS", "*"),
                 ("INCR", f"a:{i}"), ("PING",)]
    cmds += [("AUTH", "dave", "dave-pw-2"), ("MGET", "a:1", "a:2"), ("SET", "a:1", "x"), ("GET", "a:1")]
    pair.same(*cmds, pipeline=True)
    # HELLO 3 AUTH in a pipeline: the requests after it run as its user, in RESP3.
    pair.same(("GET", "a:1"), ("HELLO", "3", "AUTH", "alice", "alice-pw"), ("SET", "a:1", "v"), ("GET", "w:1"),
              ("HGETALL", "a:1"), ("HELLO", "2", "AUTH", "dave", "dave-pw-2"), ("GET", "a:1"), ("MGET", "a:1"),
              ("ACL", "WHOAMI"), pipeline=True)
    # The same on a client pinned to its own upstream connection (CLIENT SETNAME) first.
    pair.same(("AUTH", "alice", "alice-pw"), ("CLIENT", "SETNAME", "x"), *cmds[2:30], pipeline=True)


def test_multi_with_a_denied_command(pair):
    pair.same(("AUTH", "alice", "alice-pw"), ("MULTI",), ("SET", "a:1", "x"), ("GET", "w:1"), ("SET", "a:2", "y"),
              ("EXEC",), ("GET", "a:1"), ("MULTI",), ("KEYS", "*"), ("DISCARD",), ("MULTI",), ("SET", "a:3", "z"),
              ("EXEC",), ("GET", "a:3"))
    pair.same(("AUTH", "alice", "alice-pw"), ("MULTI",), ("SET", "a:1", "x"), ("GET", "w:1"), ("EXEC",),
              ("GET", "a:1"), pipeline=True)
    # A user without EXEC: the refused EXEC ends the transaction.
    pair.same(("AUTH", "carol", "x"), ("EXEC",))
    assert pair.upstream.client(username=UPSTREAM_USER[0], password=UPSTREAM_USER[1]).exists("a:1") == 0


def test_acl_subcommands(pair):
    via = pair.replies(pair.proxy.port, [("AUTH", REQUIREPASS), ("ACL", "USERS"), ("ACL", "WHOAMI"),
                                         ("ACL", "SETUSER", "zed", "on"), ("ACL", "DELUSER", "alice"),
                                         ("ACL", "LIST"), ("ACL", "CAT", "dangerous")], False)
    direct = pair.replies(pair.reference.port, [("AUTH", REQUIREPASS), ("ACL", "USERS"), ("ACL", "WHOAMI")], False)
    assert via[:3] == direct
    assert via[3] == b"-ERR tierproxy: ACL SETUSER is not available with auth-mode proxy: users are the proxy's 'user' lines\r\n"
    assert via[4].startswith(b"-ERR tierproxy: ACL DELUSER is not available")
    listing = via[5].decode()
    assert "user alice on #" + hashlib.sha256(b"alice-pw").hexdigest() + " ~a:* %R~r:* %W~w:* resetchannels &chan:*" in listing
    assert f"user dave on #{DAVE_HASH} ~* &*" in listing and "user carol on nopass ~* resetchannels" in listing
    assert not any(p in listing for p in PASSWORDS), listing
    assert b"keys" in via[6]


def test_client_credentials_never_reach_the_upstream(pair):
    """The upstream sees only the proxy's user: no client AUTH (its ACL LOG would list failures),
    and HELLO 3 AUTH arrives as HELLO 3."""
    up = pair.upstream.client(username=UPSTREAM_USER[0], password=UPSTREAM_USER[1])
    up.acl_log_reset()
    with RawConn(pair.proxy.port) as c:
        assert c.cmd("AUTH", "alice", "wrong").raw.startswith(b"-WRONGPASS")
        assert c.cmd("AUTH", "nosuch", "wrong").raw.startswith(b"-WRONGPASS")
        assert c.cmd("HELLO", "3", "AUTH", "alice", "alice-pw", "SETNAME", "acl-hello").t == "%"
        assert c.cmd("SET", "a:1", "v").raw == b"+OK\r\n"
        clients = wait_for(lambda: [x for x in up.client_list() if x.get("name") == "acl-hello"], 10,
                           desc="the client's upstream connection")
        assert clients[0]["user"] == "tp" and clients[0]["resp"] == "3", clients
    assert up.acl_log() == []
    out = pair.proxy.output()
    assert not any(p in out for p in PASSWORDS), "a password in the proxy's debug log"
    info = pair.proxy.client(password=REQUIREPASS).info("all")
    assert not any(p in str(info) for p in PASSWORDS)


def test_tiers_needs_every_command(pair):
    with RawConn(pair.proxy.port) as c:
        assert c.cmd("TIERS", "HELP").raw == b"-NOAUTH Authentication required.\r\n"
        assert c.cmd("AUTH", "alice", "alice-pw").raw == b"+OK\r\n"
        assert c.cmd("TIERS", "HELP").raw == b"-NOPERM this user has no permissions to run the 'tiers' command\r\n"
        assert c.cmd("AUTH", REQUIREPASS).raw == b"+OK\r\n"
        assert c.cmd("TIERS", "HELP").t == "*"


def test_auth_without_a_password_configured(make_redis, make_proxy, tmp_path):
    upstream = upstream_with_proxy_user(make_redis)
    reference = make_redis(args=reference_args(requirepass=""))
    prx = make_proxy(f"redis://{UPSTREAM_USER[0]}:{UPSTREAM_USER[1]}@127.0.0.1:{upstream.port}",
                     flags={"warm": "none", "cold": "none"}, config_file=proxy_conf(tmp_path, conf_lines("")))
    p = Pair(prx, reference, upstream)
    p.flush = lambda: None
    p.same(("GET", "k"), ("AUTH", "x"), ("AUTH", "default", "whatever"), ("ACL", "WHOAMI"),
           ("AUTH", "alice", "alice-pw"), ("ACL", "WHOAMI"), ("RESET",), ("ACL", "WHOAMI"))


def test_denied_key_is_never_looked_up_below(make_redis, make_proxy, tmp_path):
    """The ACL check comes before the tiering path: a denied GET of a key that lives only in
    warm costs no warm read; the same GET by a user allowed the key reads it from warm."""
    upstream = upstream_with_proxy_user(make_redis)
    lines = [f"requirepass {REQUIREPASS}", "user tina on >tina-pw ~pub:* +@all"]
    prx = make_proxy(f"redis://{UPSTREAM_USER[0]}:{UPSTREAM_USER[1]}@127.0.0.1:{upstream.port}",
                     flags={"dir": str(tmp_path), "negative-cache-ms": "0"}, config_file=proxy_conf(tmp_path, lines))
    admin = prx.client(password=REQUIREPASS)
    wait_for(lambda: admin.set("secret:1", "v") and admin.set("pub:1", "p"), 30, desc="writes through the proxy",
             ignore=(redis.exceptions.ResponseError,))
    hot = upstream.client(username=UPSTREAM_USER[0], password=UPSTREAM_USER[1])
    assert hot.delete("secret:1", "pub:1") == 2       # evicted: only warm has them now

    def warm_reads() -> int:
        return int(admin.info("tiers")["warm_requests"])

    before = warm_reads()
    with RawConn(prx.port) as c:
        assert c.cmd("AUTH", "tina", "tina-pw").raw == b"+OK\r\n"
        denied = [C("GET", "secret:1"), C("MGET", "secret:1", "pub:2"), C("STRLEN", "secret:1"),
                  C("EXISTS", "secret:1"), C("TTL", "secret:1"), C("GETRANGE", "secret:1", 0, -1),
                  C("APPEND", "secret:1", "x"), C("TIERS", "WHERE", "secret:1")]
        c.send(b"".join(denied))
        for r in c.read_replies(len(denied)):
            assert r.raw.startswith(b"-NOPERM"), r
        assert warm_reads() == before, "a denied key was looked up in the warm tier"
        assert c.cmd("GET", "pub:1").raw == b"$1\r\np\r\n"      # an allowed one is brought up
    assert warm_reads() > before
    assert hot.exists("secret:1") == 0
    assert admin.get("secret:1") == b"v"


def test_passthrough_mode_is_unchanged(make_redis, make_proxy, tmp_path):
    """The default auth-mode: the client's AUTH goes to its own upstream connection, and the
    proxy's requirepass and user lines are not used."""
    upstream = make_redis(args=["--requirepass", "up-pw"])
    conf = tmp_path / "pt.conf"
    conf.write_text("requirepass unused-pw\nuser alice on >alice-pw ~* +@all\n")
    prx = make_proxy(upstream.url, flags={"warm": "none", "cold": "none"}, config_file=conf)
    for port in (prx.port, upstream.port):
        with RawConn(port) as c:
            assert c.cmd("GET", "k").raw == b"-NOAUTH Authentication required.\r\n"
            assert c.cmd("AUTH", "unused-pw").raw.startswith(b"-WRONGPASS")
            assert c.cmd("AUTH", "alice", "alice-pw").raw.startswith(b"-WRONGPASS")
            assert c.cmd("AUTH", "up-pw").raw == b"+OK\r\n"
            assert c.cmd("ACL", "WHOAMI").raw == b"$7\r\ndefault\r\n"


def test_config_errors_never_show_passwords(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("auth-mode proxy\nuser alice on >secret-one ~* +@nosuchcategory\n")
    r = run_proxy_cli([str(bad), "--check-config"])
    assert r.returncode != 0 and b"Unknown command or category name in ACL" in r.stderr, r.stderr
    assert b"secret-one" not in r.stdout + r.stderr
    bad.write_text("auth-mode proxy\nuser alice on secret-two\n")
    r = run_proxy_cli([str(bad), "--check-config"])
    assert r.returncode != 0 and b"Error in user declaration 'alice'" in r.stderr, r.stderr
    assert b"secret-two" not in r.stdout + r.stderr
    good = proxy_conf(tmp_path, conf_lines(), "good.conf")
    r = run_proxy_cli([str(good), "--check-config"])
    assert r.returncode == 0, r.stderr
    r2 = run_proxy_cli(["--print-config"])
    for out in (r.stdout + r.stderr, r2.stdout + r2.stderr):
        assert not any(p.encode() in out for p in PASSWORDS)
    assert re.search(rb"^auth-mode passthrough$", r2.stdout, re.M) and re.search(rb'^requirepass ""$', r2.stdout, re.M)
