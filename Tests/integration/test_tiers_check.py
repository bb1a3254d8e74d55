"""`tierproxy tiers check`: one line per configured tier, ok or what is wrong, with the real
credentials path (the seed library's env vars) against the emulators."""

from __future__ import annotations

import os
import sys

import pytest

from harness import run_proxy_cli

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from Tests.emulators.harness import EmulatorProcess  # noqa: E402

pytestmark = pytest.mark.proxy_process
pytest.importorskip("azure.cosmos")
from azure.cosmos import CosmosClient, PartitionKey  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402

WRONG_KEY = "AAAA" * 22


@pytest.fixture(scope="module")
def emu():
    with EmulatorProcess() as e:
        # The containers exist, as they would in a deployment; made with Microsoft's SDKs.
        CosmosClient(e.cosmos_url, credential=e.cosmos_key).create_database_if_not_exists("memory") \
            .create_container_if_not_exists("state", partition_key=PartitionKey(path="/id"), default_ttl=-1)
        BlobServiceClient.from_connection_string(e.blob_connection_string).create_container("memory")
        yield e


def check(env: dict, *args: str, cwd: str | None = None):
    r = run_proxy_cli(["tiers", "check", *args], env=env, timeout=60, cwd=cwd)
    return r.returncode, r.stdout.decode()


def test_embedded_defaults_are_checked(tmp_path):
    code, out = check({}, "--dir", str(tmp_path))
    lines = out.strip().splitlines()
    assert code == 0, out
    assert lines[0].startswith(f"warm sqlite:{tmp_path}/warm.db: ok"), out
    assert lines[1].startswith(f"cold dir:{tmp_path}/cold: ok"), out


def test_seed_env_vars_reach_the_emulated_services(emu, tmp_path):
    code, out = check(emu.env(), "--dir", str(tmp_path))
    lines = out.strip().splitlines()
    assert code == 0, out
    assert lines[0].startswith("warm cosmos ") and lines[0].endswith(("ok", ")")) and ": ok" in lines[0], out
    assert lines[1].startswith("cold blob ") and ": ok" in lines[1], out


def test_wrong_keys_are_named_per_tier(emu, tmp_path):
    env = emu.env()
    env["COSMOS_KEY"] = WRONG_KEY
    env["AZURE_STORAGE_CONNECTION_STRING"] = env["AZURE_STORAGE_CONNECTION_STRING"].replace(
        emu.blob_key, WRONG_KEY)
    code, out = check(env, "--dir", str(tmp_path))
    lines = out.strip().splitlines()
    assert code == 1, out
    assert lines[0].startswith("warm cosmos ") and "FAILED" in lines[0] and "401" in lines[0], out
    assert lines[1].startswith("cold blob ") and "FAILED" in lines[1] and "403" in lines[1], out


def test_missing_container_and_unreachable_endpoint(emu, tmp_path):
    env = emu.env()
    env["COSMOS_CONTAINER"] = "nope"
    code, out = check(env, "--dir", str(tmp_path), "--cold", "blob+http://127.0.0.1:1/devstoreaccount1/memory")
    lines = out.strip().splitlines()
    assert code == 1, out
    assert "FAILED" in lines[0] and "404" in lines[0] or "not found" in lines[0].lower(), out
    assert lines[1].startswith("cold blob ") and "FAILED" in lines[1], out
