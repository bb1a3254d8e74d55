"""Fixtures for the three-tier suite (issue 4). See README.md in this folder.

Run:   python3 -m pytest -q Tests/tiered
Env:   TIERPROXY_BIN        the binary (default .build/release, then .build/debug), as in Tests/integration
       TIERED_TARGET=ideal  check the tests' own logic against one plain Redis "with unlimited memory"
       TIERED_BACKENDS      comma list of local,azure (default both)
       TIERED_SEED          differential seed (an integer, or "random"); TIERED_DIFF_OPS op count
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tierstack  # noqa: E402  (puts Tests/integration and the repo root on sys.path)
from tierstack import (IDEAL, BlobCold, CosmosWarm, DirCold, Proxy, RedisServer, SQLiteWarm,  # noqa: E402
                    Stack, unique_name)

BACKENDS = [b for b in os.environ.get("TIERED_BACKENDS", "local,azure").split(",") if b]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "tiers_only: asserts tier internals only; skipped with TIERED_TARGET=ideal")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if not IDEAL:
        return
    skip = pytest.mark.skip(reason="TIERED_TARGET=ideal: the test is about tier internals")
    for item in items:
        if "tiers_only" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str:
    return f"tiered target: {tierstack.TARGET}; backends: {','.join(BACKENDS)}"


@pytest.fixture(scope="session")
def tiered_tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="tierproxy-tiered-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def emulators() -> Iterator[Any]:
    """One Cosmos + Blob emulator process for the session (tests use their own containers;
    tests that count operations reset the counters first, and only one proxy runs at a time)."""
    pytest.importorskip("azure.cosmos")
    pytest.importorskip("azure.storage.blob")
    from Tests.emulators.harness import EmulatorProcess
    with EmulatorProcess() as e:
        yield e


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """local = SQLite warm + directory cold; azure = Cosmos + Blob emulators."""
    return request.param


def _azure_containers(emu: Any) -> tuple[str, Any, str, str, Any, str]:
    from azure.cosmos import CosmosClient, PartitionKey
    from azure.storage.blob import BlobServiceClient
    db, cont, bcont = unique_name("db"), unique_name("state"), unique_name("mem")
    container = CosmosClient(emu.cosmos_url, credential=emu.cosmos_key) \
        .create_database_if_not_exists(db) \
        .create_container_if_not_exists(cont, partition_key=PartitionKey(path="/id"), default_ttl=-1)
    blob = BlobServiceClient.from_connection_string(emu.blob_connection_string).create_container(bcont)
    return db, container, cont, bcont, blob, emu.cosmos_url.split("://", 1)[1]


@pytest.fixture
def make_stack(tiered_tmp: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Stack]]:
    """make_stack(backend, rules=[...], flags={...}, hot_maxmemory="8mb", password=None,
    warm=True, cold=True, redis_args=()) -> Stack. Everything it starts is stopped afterwards,
    and a proxy that died during the test fails it with its output."""
    servers: list[RedisServer] = []
    proxies: list[Proxy] = []
    cleanup: list[Proxy] = []

    def make(backend: str = "local", rules: tuple = (), flags: Optional[dict] = None,
             hot_maxmemory: Optional[str] = None, password: Optional[str] = None,
             warm: bool = True, cold: bool = True, redis_args: tuple = (),
             env: Optional[dict] = None) -> Stack:
        if backend not in BACKENDS:
            pytest.skip(f"TIERED_BACKENDS={','.join(BACKENDS)} excludes {backend}")
        args = list(redis_args)
        if password:
            args += ["--requirepass", password]
        if hot_maxmemory and not IDEAL:
            args += ["--maxmemory", hot_maxmemory, "--maxmemory-policy", "allkeys-lru"]
        server = RedisServer(tiered_tmp, args=args)
        servers.append(server)
        server.start()
        server.password = password
        if IDEAL:
            return Stack(backend, server, None, None, None, password=password)

        data = Path(tempfile.mkdtemp(prefix="tiers-", dir=tiered_tmp))
        pflags: dict = {"loglevel": "notice", "dir": str(data)}
        penv = dict(env or {})
        emu = None
        warm_i = cold_i = None
        if backend == "local":
            pflags["warm"] = f"sqlite:{data}/warm.db" if warm else "none"
            pflags["cold"] = f"dir:{data}/cold" if cold else "none"
            warm_i = SQLiteWarm(data / "warm.db") if warm else None
            cold_i = DirCold(data / "cold") if cold else None
        elif backend == "azure":
            emu = request.getfixturevalue("emulators")
            db, container, cont, bcont, blob, hostport = _azure_containers(emu)
            blob_base = emu.blob_account_url.split("://", 1)[1]       # 127.0.0.1:P/devstoreaccount1
            pflags["warm"] = f"cosmos+http://{hostport}/{db}/{cont}" if warm else "none"
            pflags["cold"] = f"blob+http://{blob_base}/{bcont}" if cold else "none"
            penv.update(emu.env())
            warm_i = CosmosWarm(container, f"{db}/{cont}") if warm else None
            cold_i = BlobCold(blob, bcont) if cold else None
        else:
            raise ValueError(backend)
        pflags.update(flags or {})
        extra: list[str] = []
        for r in rules:
            extra += ["--rule", r]
        proxy = Proxy(tiered_tmp, upstream=server.url, flags=pflags, env=penv, extra_args=extra)
        cleanup.append(proxy)
        proxy.start()
        proxies.append(proxy)   # started: from now on, an exit the test did not cause is a crash
        return Stack(backend, server, proxy, warm_i, cold_i, emu=emu, password=password)

    yield make
    # Died on its own (not killed by the test with SIGKILL/SIGTERM): a crash, fail the test.
    dead = [f"exit {p.proc.returncode}:\n{p.output()[-3000:]}" for p in proxies
            if p.proc is not None and p.proc.poll() not in (None, 0, -9, -15)]
    for p in cleanup:
        p.cleanup()
    for srv in servers:
        srv.cleanup()
    if dead:
        pytest.fail("tierproxy died during the test (not killed by it):\n" + "\n---\n".join(dead))


@pytest.fixture
def stack(make_stack: Callable[..., Stack], backend: str) -> Stack:
    """The default stack for `backend`: write-through to warm for every key."""
    return make_stack(backend)


@pytest.fixture
def reference(tiered_tmp: Path) -> Iterator[RedisServer]:
    """A plain redis-server that never loses anything: the "one Redis with unlimited memory" a
    test compares the stack with."""
    srv = RedisServer(tiered_tmp).start()
    yield srv
    srv.cleanup()
