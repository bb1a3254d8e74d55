"""Configuration: --check-config, precedence flags > env > file, --version, --help, logging."""

from __future__ import annotations

import json
import re

import pytest

from harness import HOST, free_port, run_proxy_cli, wait_for

pytestmark = pytest.mark.proxy_process

DIRECTIVES = ["port", "bind", "upstream", "threads", "loglevel", "logfile", "log-format",
              "maxclients", "client-query-buffer-limit", "proto-max-bulk-len",
              "upstream-connect-timeout", "shutdown-timeout", "client-output-buffer-limit"]


def write(path, text):
    path.write_text(text)
    return path


def out(r) -> str:
    return (r.stdout + r.stderr).decode(errors="replace")


GOOD_CONF = """# a comment
port 6390
bind 127.0.0.1
upstream redis://127.0.0.1:6379/0
threads 2
loglevel notice
log-format redis
maxclients 1000
client-query-buffer-limit 1gb
proto-max-bulk-len 512mb
upstream-connect-timeout 1500
shutdown-timeout 5
client-output-buffer-limit pubsub 32mb 8mb 60
"""


def test_check_config_good_file(tmp_path):
    r = run_proxy_cli([str(write(tmp_path / "good.conf", GOOD_CONF)), "--check-config"])
    assert r.returncode == 0, out(r)


def test_check_config_good_flags_with_units():
    r = run_proxy_cli(["--check-config", "--port", "6391", "--client-query-buffer-limit", "100k",
                       "--proto-max-bulk-len", "1mb", "--upstream", "redis://u:p@127.0.0.1:1/3",
                       "--client-output-buffer-limit", "pubsub 32mb 8mb 60"])
    assert r.returncode == 0, out(r)


@pytest.mark.parametrize("bad", [
    "nosuchdirective yes\n",
    "port notanumber\n",
    "port 99999999\n",
    "client-query-buffer-limit 12zz\n",
    "loglevel shouty\n",
    "log-format xml\n",
    "upstream ftp://127.0.0.1:6379\n",
    'bind 127.0.0.1\nport 6390 6391\n',
])
def test_check_config_bad_file(tmp_path, bad):
    r = run_proxy_cli(["--config", str(write(tmp_path / "bad.conf", bad)), "--check-config"])
    assert r.returncode == 1, f"exit {r.returncode} for {bad!r}: {out(r)}"
    assert out(r).strip(), "no error message printed"


def test_check_config_names_the_bad_directive(tmp_path):
    r = run_proxy_cli([str(write(tmp_path / "bad.conf", "port 6390\nfrobnicate 3\n")),
                       "--check-config"])
    assert r.returncode == 1
    assert "frobnicate" in out(r), out(r)


def test_bad_flag_exits_1():
    r = run_proxy_cli(["--check-config", "--no-such-flag", "x"])
    assert r.returncode == 1, out(r)


def test_version():
    r = run_proxy_cli(["--version"])
    assert r.returncode == 0, out(r)
    assert re.search(r"\d+\.\d+", out(r)), out(r)


def test_help_lists_directives():
    r = run_proxy_cli(["--help"])
    assert r.returncode == 0, out(r)
    text = out(r)
    missing = [d for d in DIRECTIVES if d not in text]
    assert not missing, f"--help does not mention {missing}:\n{text}"
    assert "--check-config" in text


@pytest.fixture
def three_redis(make_redis):
    servers = {}
    for name in ("file", "env", "flag"):
        s = make_redis()
        s.admin().set("whoami", name)
        servers[name] = s
    return servers


def whoami(prx) -> bytes:
    return prx.client().get("whoami")


def test_precedence_flags_over_env_over_file(tmp_path, three_redis, make_proxy):
    file_port = free_port()
    conf = write(tmp_path / "p.conf", f"port {file_port}\nbind {HOST}\n"
                                      f"upstream {three_redis['file'].url}\n")
    # file only
    p = make_proxy(config_file=conf, port=file_port, port_flag=False)
    assert whoami(p) == b"file"
    assert p.stop() == 0

    # env REDIS_URL beats the file; the file's port still applies
    p = make_proxy(config_file=conf, port=file_port, port_flag=False,
                   env={"REDIS_URL": three_redis["env"].url})
    assert whoami(p) == b"env"
    assert p.stop() == 0

    # flags beat env and file (port and upstream)
    flag_port = free_port()
    p = make_proxy(three_redis["flag"].url, config_file=conf, port=flag_port,
                   env={"REDIS_URL": three_redis["env"].url})
    assert whoami(p) == b"flag"
    assert p.port == flag_port


def test_env_host_port_password(make_redis, make_proxy):
    srv = make_redis(args=("--requirepass", "envpw"))
    srv.password = "envpw"
    srv.admin().set("whoami", "hostport")
    p = make_proxy(None, env={"REDIS_HOST": HOST, "REDIS_PORT": str(srv.port),
                              "REDIS_PASSWORD": "envpw"})
    assert whoami(p) == b"hostport"


def test_config_file_via_flag_and_positional(tmp_path, three_redis, make_proxy):
    conf = write(tmp_path / "q.conf", f"upstream {three_redis['file'].url}\nloglevel warning\n")
    p = make_proxy(None, extra_args=["--config", str(conf)])
    assert whoami(p) == b"file"


def test_ready_line_logged(proxy):
    wait_for(lambda: "Ready to accept connections" in proxy.output(), 5,
             desc="'Ready to accept connections' in the proxy's output")


def test_log_format_json(tmp_path, redis_server, make_proxy):
    logfile = tmp_path / "proxy.json.log"
    p = make_proxy(redis_server.url, flags={"log-format": "json", "logfile": logfile,
                                            "loglevel": "verbose"})
    p.client().ping()
    assert p.stop() == 0
    lines = [ln for ln in logfile.read_text().splitlines() if ln.strip()]
    assert lines, "empty log file"
    records = []
    for ln in lines:
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError:
            raise AssertionError(f"log line is not JSON: {ln!r}") from None
        assert isinstance(rec, dict), ln
        records.append(rec)
    assert any("Ready to accept connections" in json.dumps(r) for r in records), lines


def test_logfile_redis_format(tmp_path, redis_server, make_proxy):
    logfile = tmp_path / "proxy.log"
    p = make_proxy(redis_server.url, flags={"logfile": logfile})
    wait_for(lambda: logfile.exists() and "Ready to accept connections" in logfile.read_text(), 5,
             desc="ready line in --logfile")
    assert p.stop() == 0
