"""Generic fixtures for integration tests: real redis-server and tierproxy processes.

Run the proxy suite:   python3 -m pytest -q Tests/integration -k proxy
Environment:
  TIERPROXY_BIN=/path/to/tierproxy   the binary (default .build/release, then .build/debug);
                                     a missing binary fails the tests that need it, loudly.
  ITEST_TARGET=direct                point the `proxy` fixture at redis-server itself, to check
                                     the tests' own logic against the reference; tests marked
                                     `proxy_process` (flags, signals, limits, /proc) are skipped
                                     in that mode only.
  REDIS_SERVER_BIN, REDIS_CLI_BIN, REDIS_BENCHMARK_BIN   other Redis binaries.
  TIERPROXY_TEST_HOT_TLS=1           every redis-server also listens on a TLS port and hands the
                                     proxy a rediss:// URL to it (harness.py; CI runs both ways).
Every process listens on 127.0.0.1 on a free port and lives in a temp dir removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from harness import Proxy, RawConn, RedisServer, tail

DIRECT = os.environ.get("ITEST_TARGET", "") == "direct"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "proxy_process: needs the tierproxy process itself (skipped with ITEST_TARGET=direct)")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if not DIRECT:
        return
    skip = pytest.mark.skip(reason="ITEST_TARGET=direct: test needs the tierproxy process")
    for item in items:
        if "proxy_process" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="tierproxy-itests-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class DirectTarget:
    """Stands in for a Proxy in ITEST_TARGET=direct mode: the redis-server itself."""

    def __init__(self, server: RedisServer):
        self.server = server
        self.port = server.port
        self.pid = server.proc.pid

    def client(self, **kw: Any):
        return self.server.client(**kw)

    def raw(self, **kw: Any) -> RawConn:
        return RawConn(self.port, **kw)

    def alive(self) -> bool:
        return self.server.proc.poll() is None

    def output(self) -> str:
        return tail(self.server.log)


@pytest.fixture(scope="module")
def redis_server(tmp_root: Path) -> Iterator[RedisServer]:
    """One redis-server per test module."""
    srv = RedisServer(tmp_root).start()
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def _shared_proxy(tmp_root: Path, redis_server: RedisServer) -> Iterator[Any]:
    if DIRECT:
        yield DirectTarget(redis_server)
        return
    # The proxy core on its own: lower tiers would remember keys across the per-test FLUSHALL
    # done directly on hot (Tests/tiered is where tiering is tested).
    p = Proxy(tmp_root, upstream=redis_server.url,
              flags={"loglevel": "notice", "warm": "none", "cold": "none"}).start()
    yield p
    p.cleanup()


@pytest.fixture
def proxy(_shared_proxy: Any, redis_server: RedisServer) -> Iterator[Any]:
    """The module's tierproxy in front of `redis_server`, with an empty database.
    Fails the test (at teardown) if the proxy died during it."""
    redis_server.admin().flushall()
    assert _shared_proxy.alive(), "tierproxy was already dead before this test"
    yield _shared_proxy
    if not _shared_proxy.alive():
        pytest.fail(f"tierproxy died during this test (exit {_shared_proxy.proc.returncode})\n"
                    f"--- output ---\n{_shared_proxy.output()[-4000:]}")


@pytest.fixture
def direct(redis_server: RedisServer):
    """A redis-py client straight to redis-server (bypassing the proxy)."""
    c = redis_server.admin()
    yield c
    c.close()


@pytest.fixture
def via(proxy: Any):
    """A redis-py client through the proxy."""
    c = proxy.client()
    yield c
    c.close()


@pytest.fixture
def make_redis(tmp_root: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory for extra redis-servers owned by one test: make_redis(args=[...])."""
    made: list[RedisServer] = []

    def make(args: tuple = (), port: Optional[int] = None, start: bool = True) -> RedisServer:
        srv = RedisServer(tmp_root, port=port, args=args)
        made.append(srv)
        return srv.start() if start else srv

    yield make
    for s in made:
        s.cleanup()


@pytest.fixture
def make_proxy(tmp_root: Path) -> Iterator[Callable[..., Proxy]]:
    """Factory for tierproxy processes owned by one test: make_proxy(upstream, flags={...})."""
    made: list[Proxy] = []

    def make(upstream: Optional[str] = None, flags: Optional[dict] = None, wait: str = "ping",
             start: bool = True, **kw: Any) -> Proxy:
        p = Proxy(tmp_root, upstream=upstream, flags=flags, **kw)
        made.append(p)
        return p.start(wait=wait) if start else p

    yield make
    for p in made:
        p.cleanup()


@pytest.fixture
def target(make_redis: Callable[..., RedisServer], make_proxy: Callable[..., Proxy]):
    """Factory: a fresh redis-server (with `redis_args`) and a proxy in front of it
    (`proxy_flags`), or in direct mode the server itself. Returns (server, proxy-or-direct)."""

    def make(redis_args: tuple = (), proxy_flags: Optional[dict] = None,
             upstream: Optional[str] = None, wait: str = "ping"):
        srv = make_redis(args=redis_args)
        if DIRECT:
            return srv, DirectTarget(srv)
        return srv, make_proxy(upstream or srv.url, flags=proxy_flags, wait=wait)

    return make
