"""redis-cli, raw inline commands and redis-benchmark through the proxy."""

from __future__ import annotations

import re

from harness import HOST, REDIS_BENCHMARK, REDIS_CLI, encode_command, exchange, run_tool


def cli(port: int, *args: str, input: bytes | None = None, timeout: float = 30):
    r = run_tool([REDIS_CLI, "-h", HOST, "-p", str(port), *args], input=input, timeout=timeout)
    assert r.returncode == 0, f"redis-cli {args} exited {r.returncode}: {r.stderr!r} {r.stdout!r}"
    return r.stdout.decode()


def test_redis_cli_ping_set_get(proxy, direct):
    assert cli(proxy.port, "PING").strip() == "PONG"
    assert cli(proxy.port, "SET", "cli:k", "hello world").strip() == "OK"
    assert cli(proxy.port, "GET", "cli:k").strip() == "hello world"
    assert direct.get("cli:k") == b"hello world"
    assert cli(proxy.port, "GET", "cli:missing").strip() == ""
    assert "(nil)" in cli(proxy.port, "--no-raw", "GET", "cli:missing")


def test_redis_cli_stdin_quoted_args(proxy, direct):
    out = cli(proxy.port, input=b'SET "a key" "a \\"quoted\\" value"\nGET "a key"\nDBSIZE\n')
    assert out.splitlines() == ["OK", 'a "quoted" value', "1"]
    assert direct.get("a key") == b'a "quoted" value'


def test_redis_cli_pipe_mass_insert(proxy, direct):
    n = 5000
    payload = b"".join(encode_command("SET", f"mass:{i}", f"v{i}") for i in range(n))
    out = cli(proxy.port, "--pipe", input=payload, timeout=60)
    assert re.search(rf"errors: 0, replies: {n}", out), out
    assert direct.dbsize() == n
    assert direct.get("mass:4999") == b"v4999"


def test_redis_cli_error_reply(proxy):
    r = run_tool([REDIS_CLI, "-h", HOST, "-p", str(proxy.port), "NOSUCHCOMMAND", "x"])
    assert "ERR unknown command" in (r.stdout + r.stderr).decode()


def test_inline_ping_raw_socket(proxy):
    with proxy.raw() as c:
        c.send(b"PING\r\n")
        assert c.read_reply().raw == b"+PONG\r\n"
        c.send(b"PING\n")  # Redis accepts a bare LF in inline commands
        assert c.read_reply().raw == b"+PONG\r\n"
        c.send(b"PING\r\nPING\r\nECHO hi\r\n")
        assert [r.raw for r in c.read_replies(3)] == [b"+PONG\r\n", b"+PONG\r\n", b"$2\r\nhi\r\n"]


def test_inline_quoted_args_equal_direct(proxy, redis_server, direct):
    """Telnet-style inline commands with quoting and escapes: same replies as Redis."""
    script = (b'SET "inline key" "v\\x41\\n\\t\'x\'"\r\n'
              b"GET \"inline key\"\r\n"
              b"SET 'single quoted' 'it\\'s'\r\n"
              b"GET 'single quoted'\r\n"
              b"  ECHO   spaced    \r\n"
              b"EXISTS \"inline key\" 'single quoted' nope\r\n"
              b"DEL \"inline key\" 'single quoted'\r\n")
    want, closed_d = exchange(redis_server.port, script)
    assert not closed_d
    got, closed_p = exchange(proxy.port, script)
    assert got == want
    assert not closed_p
    assert want[1] == b"$7\r\nvA\n\t'x'\r\n"


def test_redis_benchmark_smoke(proxy):
    r = run_tool([REDIS_BENCHMARK, "-h", HOST, "-p", str(proxy.port), "-q", "-n", "20000",
                  "-t", "get,set", "-P", "16", "-c", "10"], timeout=120)
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode == 0, out
    lines = [ln for ln in re.split(r"[\r\n]+", out) if "requests per second" in ln]
    assert any(ln.startswith("SET:") for ln in lines), out
    assert any(ln.startswith("GET:") for ln in lines), out
    assert "error" not in out.lower(), out
