"""Encryption at rest in the lower tiers (issue 12, `tier-encryption-key`).

What is checked, against a real redis-server + tierproxy + real tiers (SQLite file and directory,
or the Cosmos + Blob emulators):

* the bytes every lower tier really holds (the SQLite file and its WAL, every file of the
  directory tier and of `dir` with the write-behind key log, every Cosmos document and blob with
  its metadata) contain none of the values written, in clear or base64, for write-through,
  write-behind, non-ASCII, binary, db-1 and large (cold, compressed) values (collections are
  not tiered yet: docs/semantics.md §13);
* with hot emptied, the values come back through the proxy;
* rotation: a new key with the old one in `tier-encryption-old-keys` reads old entries and seals
  new ones under the new key; without the old key, old entries are an error reply, not a miss;
* a tampered SQLite row or directory file, or a row moved to another key, is an error reply and
  a log line, and nothing is deleted;
* entries written before encryption was turned on stay readable;
* a bad key refuses to start, and no key ever shows in output, INFO or TIERS replies.

Envelope format: Sources/Tiers/EntryEnvelope.swift (version 2), sealed values:
Sources/Tiers/EntryCipher.swift. The decoding here is written independently of the proxy's.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest

from harness import run_proxy_cli
from tierstack import IDEAL, RawConn, wait_for

pytestmark = [pytest.mark.tiers_only,
              pytest.mark.skipif(IDEAL, reason="about what the lower tiers store")]

KEY_A = base64.b64encode(bytes(range(1, 33))).decode()
KEY_B = base64.b64encode(hashlib.sha256(b"second key").digest()).decode()
RULES = ("wb:* policy write-behind", "big:* policy write-through tier cold")


def key_id(b64: str) -> bytes:
    return hashlib.sha256(b"tierproxy-key-id" + base64.b64decode(b64)).digest()[:8]


def marker(name: str) -> bytes:
    return f"PLAINTEXT-{name}-{os.urandom(6).hex()}".encode()


def needles(value: bytes) -> list[bytes]:
    """The value's distinctive part in clear and as base64 at each of the three alignments."""
    out = [value]
    for skip in range(3):
        b64 = base64.b64encode(value[skip:])
        out.append(b64[4:len(b64) - 4])          # whole groups only, away from both ends
    return out


def values() -> dict[str, bytes]:
    big_unit = marker("big") + b" " + "Größe ✓ ".encode()
    return {
        "wt:ascii": marker("ascii"),
        "wt:utf8": marker("utf8") + " Grüße 機密 ✓".encode(),
        "wt:binary": marker("bin") + bytes(range(256)),
        "wb:behind": marker("behind"),
        # Fits a 2 MB Cosmos item in clear, not base64-sealed: placed in cold.
        "wt:near-limit": marker("near") + os.urandom(1_800_000),
        # Over the warm limit (2 MB) and over compress-threshold: cold, gzip, then sealed.
        "big:large": big_unit * (3 * 1024 * 1024 // len(big_unit)),
    }


def write_all(stack, vals: dict[str, bytes], db1_value: bytes) -> None:
    c = stack.client()
    for k, v in vals.items():
        assert c.set(k, v) is True
    assert stack.client(db=1).set("wt:db1", db1_value) is True           # another db: its own AAD
    # Write-behind: wait until the key log has been flushed to the lower tier.
    wait_for(lambda: b"warm" in stack.where("wb:behind"), 30, desc="write-behind flush of wb:behind")


def read_all_back(stack, vals: dict[str, bytes], db1_value: bytes) -> None:
    stack.lose_hot("flushall")
    c = stack.client()
    for k, v in vals.items():
        assert c.get(k) == v, k
    assert stack.client(db=1).get("wt:db1") == db1_value


# --------------------------------------------------------------------------------------------
# What the tiers hold, raw
# --------------------------------------------------------------------------------------------

def local_bytes(data_dir: Path) -> dict[str, bytes]:
    """Every file under the proxy's data dir: SQLite file + WAL, directory tier, key log."""
    out = {}
    for dirpath, _dirs, files in os.walk(data_dir):
        for f in files:
            p = Path(dirpath) / f
            try:
                out[str(p)] = p.read_bytes()
            except FileNotFoundError:
                pass
    return out


def azure_bytes(stack) -> dict[str, bytes]:
    """Every Cosmos document as the emulator serves it, every blob raw with its metadata."""
    import json
    out = {}
    for d in stack.warm.container.read_all_items():
        out[f"cosmos {d['id']}"] = json.dumps(d).encode()
    for b in stack.cold.container.list_blobs(include=["metadata"]):
        raw = stack.cold.container.download_blob(b.name, decompress=False).readall()
        out[f"blob {b.name}"] = raw + json.dumps(b.metadata or {}).encode()
    return out


def data_dir(stack) -> Path:
    return Path(stack.proxy.flags["dir"])


def stored_bytes(stack) -> dict[str, bytes]:
    return local_bytes(data_dir(stack)) if stack.backend == "local" else azure_bytes(stack)


def assert_no_plaintext(stored: dict[str, bytes], vals: list[bytes]) -> None:
    assert stored, "the lower tiers hold nothing at all"
    for where, data in stored.items():
        for v in vals:
            for n in needles(v[:200]):
                assert n not in data, f"{where} holds {n[:40]!r}… of a value in clear"


def sqlite_rows(stack) -> dict[bytes, bytes]:
    con = sqlite3.connect(f"file:{data_dir(stack)}/warm.db?mode=ro", uri=True, timeout=10)
    try:
        return {bytes(k): bytes(e) for k, e in con.execute("SELECT key, entry FROM entries WHERE db = 0")}
    finally:
        con.close()


def envelope_key_id(envelope: bytes) -> bytes:
    """Version 2 envelope: the sealed value starts after key and value length; its key id at +4."""
    assert envelope[:4] == b"TPE\x02", envelope[:4]
    (klen,) = struct.unpack_from("<I", envelope, 24)
    sealed = envelope[36 + klen:]
    assert sealed[:4] == b"TPS\x01"
    return sealed[4:12]


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def cold_file(stack, key: str) -> Path:
    files = [Path(p) for p in local_bytes(data_dir(stack) / "cold") if Path(p).name == key]
    assert len(files) == 1, files
    return files[0]


def restart_with(stack, **flags: str) -> None:
    stack.proxy.stop()
    for name, value in flags.items():
        if value is None:
            stack.proxy.flags.pop(name, None)
        else:
            stack.proxy.flags[name] = value
    stack.proxy.start()


def error_of(stack, *command) -> str:
    with RawConn(stack.port, timeout=30) as c:
        r = c.cmd(*command)
    assert r.t == "-", f"{command}: expected an error reply, got {r!r}"
    return r.v.decode()


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["local", "azure"])
def test_no_plaintext_below_and_values_come_back(make_stack, backend):
    stack = make_stack(backend, rules=RULES, flags={"tier-encryption-key": KEY_A, "loglevel": "debug"})
    vals, db1_value = values(), marker("db1")
    write_all(stack, vals, db1_value)
    assert stack.where("big:large") == [b"hot", b"cold"] and stack.where("wt:near-limit") == [b"hot", b"cold"]
    assert_no_plaintext(stored_bytes(stack), list(vals.values()) + [db1_value])
    if backend == "local":
        rows = sqlite_rows(stack)
        assert rows and all(e[:4] == b"TPE\x02" and envelope_key_id(e) == key_id(KEY_A) for e in rows.values())
        assert cold_file(stack, "big:large").read_bytes()[:4] == b"TPE\x02"
        assert len(cold_file(stack, "big:large").read_bytes()) < 1024 * 1024     # compressed before sealing
    else:
        docs = {d["id"]: d for d in stack.warm.container.read_all_items()}
        assert docs["wt:ascii"]["tp_enc"] == "aes-256-gcm" and docs["wt:ascii"]["value"] is None
        assert all(d.get("tp_enc") == "aes-256-gcm" and d.get("value") is None for d in docs.values())
        md = stack.cold.container.get_blob_client("big:large").get_blob_properties()
        assert md.metadata["tp_enc"] == "aes-256-gcm" and md.size < 1024 * 1024
    read_all_back(stack, vals, db1_value)
    info = stack.client().info("tiers")
    assert info["tier_encryption"] == "aes-256-gcm" and info["tier_encryption_key_id"] == key_id(KEY_A).hex()
    # The key never shows: not in the log (debug level), INFO, TIERS STATS or TIERS CHECK.
    with RawConn(stack.port, timeout=30) as c:
        shown = [c.cmd("INFO", "everything").raw, c.cmd("TIERS", "STATS").raw, c.cmd("TIERS", "CHECK").raw]
    for text in [stack.output().encode()] + shown:
        assert KEY_A.encode() not in text and base64.b64decode(KEY_A) not in text


def test_rotation_with_old_keys_and_without(make_stack):
    stack = make_stack("local", rules=RULES, flags={"tier-encryption-key": KEY_A})
    c = stack.client()
    old_warm, old_cold = marker("old-warm"), marker("old-cold") * 100_000
    assert c.set("k:old", old_warm) and c.set("big:old", old_cold)

    restart_with(stack, **{"tier-encryption-key": KEY_B, "tier-encryption-old-keys": KEY_A})
    stack.lose_hot("flushall")
    c = stack.client()
    assert c.get("k:old") == old_warm and c.get("big:old") == old_cold
    new_warm = marker("new-warm")
    assert c.set("k:new", new_warm)
    rows = sqlite_rows(stack)
    assert envelope_key_id(rows[b"k:new"]) == key_id(KEY_B)
    assert envelope_key_id(rows[b"k:old"]) == key_id(KEY_A)                    # no background re-encryption

    # Without the old key, its entries are an error reply (not a miss), in both tiers.
    restart_with(stack, **{"tier-encryption-old-keys": None})
    stack.lose_hot("flushall")
    for key, tier in (("k:old", "warm sqlite:"), ("big:old", "cold dir:")):
        message = error_of(stack, "GET", key)
        assert "tier-encryption-old-keys" in message and key_id(KEY_A).hex() in message, message
        assert message.startswith(f"ERR tierproxy: corrupt entry: {tier}"), message
    assert stack.client().get("k:new") == new_warm
    assert cold_file(stack, "big:old").exists() and b"k:old" in sqlite_rows(stack)   # nothing deleted
    wait_for(lambda: "Tier entry unreadable" in stack.output(), 10, desc="the warning line")


def test_tampered_or_moved_entries_are_errors_and_stay(make_stack):
    stack = make_stack("local", rules=RULES, flags={"tier-encryption-key": KEY_A})
    c = stack.client()
    assert c.set("t:one", marker("one")) and c.set("t:two", marker("two")) and c.set("big:t", marker("t") * 200_000)
    stack.lose_hot("flushall")
    db_path = data_dir(stack) / "warm.db"

    # A flipped ciphertext byte with the CRC forged, so only the GCM tag can notice.
    rows = sqlite_rows(stack)
    env = bytearray(rows[b"t:one"])
    env[-4 - 16 - 1] ^= 0x01
    con = sqlite3.connect(str(db_path), timeout=10)
    con.execute("UPDATE entries SET entry = ? WHERE db = 0 AND key = ?", (with_crc(bytes(env[:-4])), b"t:one"))
    # t:two's row replaced by t:one's entry, its clear key rewritten to t:two (same length).
    moved = bytearray(rows[b"t:one"])
    moved[28:28 + 5] = b"t:two"
    con.execute("UPDATE entries SET entry = ? WHERE db = 0 AND key = ?", (with_crc(bytes(moved[:-4])), b"t:two"))
    con.commit()
    con.close()
    path = cold_file(stack, "big:t")
    data = bytearray(path.read_bytes())
    data[60] ^= 0x80
    path.write_bytes(with_crc(bytes(data[:-4])))

    for key, tier in (("t:one", "warm sqlite:"), ("t:two", "warm sqlite:"), ("big:t", "cold dir:")):
        message = error_of(stack, "GET", key)
        assert message.startswith(f"ERR tierproxy: corrupt entry: {tier}") and "failed authentication" in message, message
        assert error_of(stack, "GET", key) == message                          # not deleted, not cached as absent
    assert set(sqlite_rows(stack)) >= {b"t:one", b"t:two"} and path.exists()
    wait_for(lambda: stack.output().count("Tier entry unreadable") >= 6, 10, desc="one warning per failed read")
    # A plain flip without forging the CRC is caught too (as a damaged entry).
    data = bytearray(path.read_bytes())
    data[61] ^= 0x01
    path.write_bytes(bytes(data))
    assert "checksum mismatch" in error_of(stack, "GET", "big:t")


def test_entries_written_before_encryption_stay_readable(make_stack):
    stack = make_stack("local", rules=RULES)
    c = stack.client()
    plain, plain_big = marker("before"), marker("before-big") * 100_000
    assert c.set("p:before", plain) and c.set("big:before", plain_big)
    assert sqlite_rows(stack)[b"p:before"][:4] == b"TPE\x01"                   # no key: format 1 as always
    restart_with(stack, **{"tier-encryption-key": KEY_A})
    stack.lose_hot("flushall")
    c = stack.client()
    assert c.get("p:before") == plain and c.get("big:before") == plain_big
    assert c.set("p:after", marker("after"))
    assert envelope_key_id(sqlite_rows(stack)[b"p:after"]) == key_id(KEY_A)


@pytest.mark.parametrize("bad, why", [("not-base64!", "is not base64"),
                                      (base64.b64encode(b"x" * 31).decode(), "decodes to 31 bytes")])
def test_bad_keys_refuse_to_start_without_showing_them(tmp_path, bad, why):
    r = run_proxy_cli(["--check-config", "--tier-encryption-key", bad])
    assert r.returncode != 0 and why in r.stderr.decode() and bad not in (r.stdout + r.stderr).decode()
    r = run_proxy_cli(["--check-config"], env={"TIERPROXY_TIER_ENCRYPTION_KEY": bad})
    assert r.returncode != 0 and why in r.stderr.decode() and bad not in (r.stdout + r.stderr).decode()
    conf = tmp_path / "t.conf"
    conf.write_text(f"tier-encryption-key {KEY_A}\ntier-encryption-old-keys {KEY_B} {bad}\n")
    r = run_proxy_cli([str(conf), "--check-config"])
    out = (r.stdout + r.stderr).decode()
    assert r.returncode != 0 and "tier-encryption-old-keys entry 2" in out and why in out, out
    assert bad not in out and KEY_A not in out and KEY_B not in out, out
    good = tmp_path / "ok.conf"
    good.write_text(f"tier-encryption-key {KEY_A}\ntier-encryption-old-keys {KEY_B}\n")
    r = run_proxy_cli([str(good), "--check-config"])
    assert r.returncode == 0 and KEY_A not in (r.stdout + r.stderr).decode()
    r = run_proxy_cli(["--print-config"])
    assert b"tier-encryption-key \"\"" in r.stdout


def info_tiers(stack) -> dict:
    return stack.client().info("tiers")


@pytest.fixture(scope="module")
def emu_tls():
    pytest.importorskip("azure.cosmos")
    from Tests.emulators.harness import EmulatorProcess
    with EmulatorProcess(tls=True) as e:
        yield e


def test_key_from_key_vault_rotated_on_sighup(make_stack, emu_tls):
    """tier-encryption-key keyvault://…: fetched at start over verified TLS with an Entra ID
    token; a new secret version picked up on SIGHUP seals new writes while the replaced key still
    reads; a fetched value that is not a key is refused and the key in use stays."""
    import signal
    from urllib.parse import urlparse
    emu = emu_tls
    vault = urlparse(emu.info["key_vault"]).netloc
    emu.set_secret("tier-key", KEY_A)
    env = {k: v for k, v in emu.env().items() if k.startswith(("AZURE_", "IDENTITY_", "KEY_VAULT"))}
    stack = make_stack("local", env=env, flags={"tier-encryption-key": f"keyvault://{vault}/tier-key",
                                                "tier-tls-ca-cert-file": emu.info["ca_cert"]})
    wait_for(lambda: str(info_tiers(stack)["tier_encryption_key_id"]) == key_id(KEY_A).hex(), 30,
             desc="the key fetched from the vault")
    c = stack.client()
    first, second = marker("kv-first"), marker("kv-second")
    assert c.set("kv:first", first)
    assert envelope_key_id(sqlite_rows(stack)[b"kv:first"]) == key_id(KEY_A)

    emu.set_secret("tier-key", KEY_B)
    stack.proxy.signal(signal.SIGHUP)
    wait_for(lambda: str(info_tiers(stack)["tier_encryption_key_id"]) == key_id(KEY_B).hex(), 30,
             desc="the rotated key in use after SIGHUP")
    assert c.set("kv:second", second)
    assert envelope_key_id(sqlite_rows(stack)[b"kv:second"]) == key_id(KEY_B)
    stack.lose_hot("flushall")
    assert c.get("kv:first") == first and c.get("kv:second") == second

    emu.set_secret("tier-key", "not a key")
    stack.proxy.signal(signal.SIGHUP)
    wait_for(lambda: "tier-encryption-key (keyvault://" in stack.output(), 30, desc="the refused value logged")
    assert str(info_tiers(stack)["tier_encryption_key_id"]) == key_id(KEY_B).hex()
    for secret in (KEY_A, KEY_B, "not a key"):
        assert secret not in stack.output()


def test_tampered_cosmos_item_and_blob_are_errors(make_stack):
    stack = make_stack("azure", rules=RULES, flags={"tier-encryption-key": KEY_A})
    c = stack.client()
    assert c.set("az:t", marker("az")) and c.set("big:az", marker("big-az") * 100_000)
    stack.lose_hot("flushall")
    doc = stack.warm.container.read_item("az:t", partition_key="az:t")
    sealed = bytearray(base64.b64decode(doc["tp_b64"]))
    sealed[-1] ^= 0x01                                                       # the GCM tag
    doc["tp_b64"] = base64.b64encode(bytes(sealed)).decode()
    stack.warm.container.upsert_item({k: v for k, v in doc.items() if not k.startswith("_")})
    blob = stack.cold.container.get_blob_client("big:az")
    metadata = blob.get_blob_properties().metadata
    body = bytearray(blob.download_blob(decompress=False).readall())
    body[30] ^= 0x01                                                         # ciphertext
    blob.upload_blob(bytes(body), overwrite=True, metadata=metadata)
    for key, tier in (("az:t", "warm cosmos "), ("big:az", "cold blob ")):
        message = error_of(stack, "GET", key)
        assert message.startswith(f"ERR tierproxy: corrupt entry: {tier}") and "failed authentication" in message, message
    assert stack.warm.container.read_item("az:t", partition_key="az:t") and blob.exists()   # nothing deleted
