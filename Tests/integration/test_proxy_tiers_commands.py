"""TIERS WHERE / CHECK / HELP and INFO's `# Tiers` section: replies the proxy composes, in their
place among the client's other replies, on the shared and the pinned route alike."""

from __future__ import annotations

import os
import sys

import pytest

from harness import RawConn, encode_command as C

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from Tests.emulators.harness import EmulatorProcess  # noqa: E402

pytestmark = pytest.mark.proxy_process


def names(reply) -> list[bytes]:
    assert reply.t == "*", reply
    return [item.v for item in reply.v]


def test_where_on_embedded_tiers_and_pipeline_order(make_redis, make_proxy, tmp_path):
    srv = make_redis()
    prx = make_proxy(srv.url, flags={"dir": str(tmp_path)})
    with RawConn(prx.port) as c:
        c.send(C("SET", "a", "1") + C("TIERS", "WHERE", "a") + C("GET", "a") + C("TIERS", "WHERE", "nope")
               + C("TIERS", "HELP") + C("PING"))
        r = c.read_replies(6, timeout=10)
        assert r[0].raw == b"+OK\r\n"
        assert names(r[1]) == [b"hot", b"warm"]           # written through to warm
        assert r[2].raw == b"$1\r\n1\r\n"
        assert names(r[3]) == []
        assert names(r[4])[0].startswith(b"TIERS <subcommand>")
        assert r[5].raw == b"+PONG\r\n"
        # Pinned (SELECT): the key lives in db 1 only, and WHERE answers for the current db.
        c.send(C("SELECT", "1") + C("SET", "b", "2") + C("TIERS", "WHERE", "b") + C("SELECT", "0")
               + C("TIERS", "WHERE", "b"))
        r = c.read_replies(5, timeout=10)
        assert [x.raw for x in (r[0], r[1], r[3])] == [b"+OK\r\n"] * 3
        assert names(r[2]) == [b"hot", b"warm"] and names(r[4]) == []


def test_where_errors_and_check_lines(make_redis, make_proxy, tmp_path):
    srv = make_redis()
    prx = make_proxy(srv.url, flags={"dir": str(tmp_path)})
    with RawConn(prx.port) as c:
        assert c.cmd("TIERS").v == b"ERR wrong number of arguments for 'tiers' command"
        assert c.cmd("TIERS", "WHERE").v == b"ERR wrong number of arguments for 'tiers|where' command"
        assert c.cmd("TIERS", "NOPE").v == b"ERR unknown subcommand 'NOPE'. Try TIERS HELP."
        lines = names(c.cmd("TIERS", "CHECK"))
        assert lines == [f"warm sqlite:{tmp_path}/warm.db: ok".encode(), f"cold dir:{tmp_path}/cold: ok".encode()]


def test_info_gains_a_tiers_section(make_redis, make_proxy, tmp_path):
    srv = make_redis()
    prx = make_proxy(srv.url, flags={"dir": str(tmp_path)})
    info = prx.client().info()
    assert info["warm_tier"] == f"sqlite:{tmp_path}/warm.db" and info["cold_tier"] == f"dir:{tmp_path}/cold"
    assert "redis_version" in info                         # Redis's own sections are all still there
    with RawConn(prx.port) as c:
        only = c.cmd("INFO", "tiers").v.decode()
    assert only.startswith("# Tiers\r\n") and "warm_tier:" in only
    assert "warm_tier" not in prx.client().info("server")
    # RESP3 answers INFO as a verbatim string; the section goes inside it.
    import redis
    r3 = redis.Redis(host="127.0.0.1", port=prx.port, protocol=3)
    assert r3.info()["cold_tier"] == f"dir:{tmp_path}/cold"


def test_noauth_is_redis_s_answer_not_the_proxy_s(make_redis, make_proxy, tmp_path):
    """Errors are not misses: an unauthenticated WHERE gets Redis's NOAUTH, tiers unasked."""
    srv = make_redis(args=("--requirepass", "pw"))
    prx = make_proxy(srv.url, flags={"dir": str(tmp_path)}, wait="port")
    with RawConn(prx.port) as c:
        assert c.cmd("TIERS", "WHERE", "k").v.startswith(b"NOAUTH")


@pytest.fixture(scope="module")
def emu():
    pytest.importorskip("azure.cosmos")
    with EmulatorProcess() as e:
        yield e


def test_where_finds_seed_written_items_in_cosmos_and_blob(emu, make_redis, make_proxy, tmp_path):
    """Items written the way the seed library writes them (Cosmos `{"id","pk","value"}`, blob
    named by the key) are found under db 0 by their plain key."""
    from azure.cosmos import CosmosClient, PartitionKey
    from azure.storage.blob import BlobServiceClient
    container = CosmosClient(emu.cosmos_url, credential=emu.cosmos_key).create_database_if_not_exists("memory") \
        .create_container_if_not_exists("state", partition_key=PartitionKey(path="/id"), default_ttl=-1)
    container.upsert_item({"id": "profile:7", "pk": "profile:7", "value": "{\"name\": \"Ada\"}"})
    blobs = BlobServiceClient.from_connection_string(emu.blob_connection_string)
    try:
        blobs.create_container("memory")
    except Exception:
        pass
    blobs.get_blob_client("memory", "catalog:2026").upload_blob(b"snapshot", overwrite=True)
    srv = make_redis()
    prx = make_proxy(srv.url, flags={"dir": str(tmp_path)}, env=emu.env())
    emu.reset_stats()
    with RawConn(prx.port) as c:
        assert names(c.cmd("TIERS", "WHERE", "profile:7")) == [b"warm"]
        assert names(c.cmd("TIERS", "WHERE", "catalog:2026")) == [b"cold"]
        assert names(c.cmd("TIERS", "WHERE", "elsewhere")) == []
        c.send(C("SELECT", "3"))
        assert c.read_reply().raw == b"+OK\r\n"
        assert names(c.cmd("TIERS", "WHERE", "profile:7")) == []     # db 3 is another keyspace
    assert emu.ops("cosmos").get("ReadDocument", 0) >= 3


@pytest.fixture(scope="module")
def emu_tls():
    pytest.importorskip("azure.cosmos")
    with EmulatorProcess(tls=True) as e:
        yield e


def test_keyvault_secret_resolved_at_start_and_again_on_sighup(emu_tls, make_redis, make_proxy, tmp_path):
    """COSMOS_KEY=keyvault://…: fetched with an Entra ID token (client secret flow) over verified
    TLS (tier-tls-ca-cert-file) at start; rotated in the vault, it is fetched again on SIGHUP."""
    import signal
    from urllib.parse import urlparse
    from harness import wait_for
    from azure.cosmos import CosmosClient, PartitionKey
    emu = emu_tls
    CosmosClient(emu.cosmos_url, credential=emu.cosmos_key, connection_verify=emu.info["ca_cert"]) \
        .create_database_if_not_exists("memory") \
        .create_container_if_not_exists("state", partition_key=PartitionKey(path="/id"), default_ttl=-1)
    vault = urlparse(emu.info["key_vault"]).netloc
    emu.set_secret("cosmos-key", emu.cosmos_key)
    env = {k: v for k, v in emu.env().items() if not k.startswith(("AZURE_STORAGE", "BLOB_"))}
    env["COSMOS_KEY"] = f"keyvault://{vault}/cosmos-key"
    srv = make_redis()
    prx = make_proxy(srv.url, env=env, flags={"dir": str(tmp_path), "tier-tls-ca-cert-file": emu.info["ca_cert"]})

    def warm_line() -> bytes:
        with RawConn(prx.port) as c:
            return names(c.cmd("TIERS", "CHECK", timeout=30))[0]

    wait_for(lambda: b": ok" in warm_line(), 30, desc="the warm tier to be reachable with the vault's key")
    emu.set_secret("cosmos-key", "AAAA" * 22)            # rotated to a key Cosmos refuses
    prx.signal(signal.SIGHUP)
    wait_for(lambda: b"FAILED" in warm_line() and b"401" in warm_line(), 30, desc="the rotated (wrong) key in use")
    emu.set_secret("cosmos-key", emu.cosmos_key)
    prx.signal(signal.SIGHUP)
    wait_for(lambda: b": ok" in warm_line(), 30, desc="the right key in use again")
    assert "AAAA" * 22 not in prx.output() and emu.cosmos_key not in prx.output()   # secrets never logged
