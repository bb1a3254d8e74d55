"""Helpers for the three-tier suite (issue 4): a *stack* (hot redis-server + tierproxy with its
warm and cold tiers) and *inspectors* that read what each lower tier really holds, straight
from the SQLite file, the cold directory, or the Cosmos/Blob emulators, without asking the
proxy.

The generic pieces (RedisServer, Proxy, RawConn, wait_for, free ports) are imported from
Tests/integration/harness.py; nothing is copied from it.

Two targets (env `TIERED_TARGET`):

* `proxy` (default): hot redis-server + tierproxy + real tiers. Tier-internal assertions run.
* `ideal`: the "one Redis with unlimited memory" the issue says a client cannot tell tierproxy
  from. The stack's client port is the redis-server itself, and everything that would make hot
  lose data (evict(), lose_hot(), maxmemory) is a no-op. Client-visible assertions must pass
  here: this validates each test's own logic today, before the feature exists. Tier-internal
  assertions (inspectors, emulator counters, TIERS WHERE, refusals) are skipped (`stack.tiered`
  is False) and tests that are only about tier internals skip themselves.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import os
import sqlite3
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for p in (str(REPO / "Tests" / "integration"), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

import redis  # noqa: E402

from harness import (HOST, Closed, Deadline, Proxy, RawConn, RedisServer,  # noqa: E402,F401
                     encode_command, free_port, tail, wait_for)

TARGET = os.environ.get("TIERED_TARGET", "proxy")
assert TARGET in ("proxy", "ideal"), f"TIERED_TARGET must be proxy or ideal, not {TARGET!r}"
IDEAL = TARGET == "ideal"

TIER_NAMES = ("hot", "warm", "cold")

# Re-exported for the test modules (one import site for the integration harness).
__all__ = ["HOST", "Closed", "Deadline", "Proxy", "RawConn", "RedisServer", "encode_command", "free_port",
           "tail", "wait_for", "IDEAL", "TARGET", "TIER_NAMES", "StoredEntry", "decode_envelope", "Inspector",
           "SQLiteWarm", "DirCold", "CosmosWarm", "BlobCold", "Stack", "unique_name", "chunks"]


# --------------------------------------------------------------------------------------------
# What a lower tier holds
# --------------------------------------------------------------------------------------------

@dataclass
class StoredEntry:
    """One entry as a lower tier stores it, decoded by the test (not by the proxy)."""
    db: int
    key: bytes
    value: bytes            # decoded (gunzipped) value
    expires_ms: Optional[int]
    encoding: str           # "raw" or "gzip": how the tier stores it
    stored_bytes: int       # size of what is stored (compressed size when gzip)
    where: str              # file path, row, document id or blob name, for messages
    type: str = "string"    # the Redis type; any but a string is a DUMP payload in `value`

    def live(self, now_ms: Optional[int] = None) -> bool:
        import time
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return self.expires_ms is None or self.expires_ms > now_ms


TYPES = ("string", "list", "set", "zset", "hash", "stream")      # the envelope's type codes


def decode_envelope(data: bytes, where: str) -> StoredEntry:
    """EntryEnvelope v1 (Sources/Tiers/EntryEnvelope.swift), written independently here so the
    test does not trust the proxy's decoder: magic TPE\\x01, type, encoding, flags, reserved,
    expiry i64, db i64, key len u32, key, value len u64, value, CRC-32 of all before it."""
    assert len(data) >= 40, f"{where}: {len(data)} bytes is shorter than any envelope"
    assert data[:4] == b"TPE\x01", f"{where}: bad magic {data[:4]!r}"
    vtype, enc, flags, reserved = data[4], data[5], data[6], data[7]
    assert vtype in range(len(TYPES)), f"{where}: unknown type code {vtype}"
    assert enc in (0, 1) and flags & ~1 == 0 and reserved == 0, f"{where}: bad header {data[4:8]!r}"
    crc = struct.unpack_from("<I", data, len(data) - 4)[0]
    assert crc == zlib.crc32(data[:-4]) & 0xFFFFFFFF, f"{where}: CRC mismatch (torn entry?)"
    expiry, db, klen = struct.unpack_from("<qqI", data, 8)
    key = data[28:28 + klen]
    (vlen,) = struct.unpack_from("<Q", data, 28 + klen)
    stored = data[36 + klen:36 + klen + vlen]
    assert 36 + klen + vlen == len(data) - 4, f"{where}: lengths do not add up"
    value = gzip.decompress(stored) if enc == 1 else stored
    return StoredEntry(db=db, key=bytes(key), value=bytes(value),
                       expires_ms=expiry if flags & 1 else None,
                       encoding="gzip" if enc == 1 else "raw", stored_bytes=len(stored), where=where,
                       type=TYPES[vtype])


class Inspector:
    """Reads a lower tier directly. `entries()` lists every entry; `get()` finds one (db, key),
    whether or not it has expired (callers decide; see StoredEntry.live)."""
    tier: str = "?"

    def entries(self) -> list[StoredEntry]:
        raise NotImplementedError

    def get(self, key: Any, db: int = 0) -> Optional[StoredEntry]:
        key = key.encode() if isinstance(key, str) else bytes(key)
        found = [e for e in self.entries() if e.key == key and e.db == db]
        assert len(found) <= 1, f"{self.tier}: {len(found)} entries for db {db} key {key!r}: {found}"
        return found[0] if found else None

    def live_keys(self, db: Optional[int] = None) -> set[tuple[int, bytes]]:
        return {(e.db, e.key) for e in self.entries() if e.live() and (db is None or e.db == db)}


class SQLiteWarm(Inspector):
    """`entries(db, key, expires_ms, entry)` rows (Sources/Tiers/SQLiteDatabase.swift), each an
    envelope. Read with a separate connection; WAL lets it read while the proxy writes."""
    tier = "warm"

    def __init__(self, path: Path):
        self.path = Path(path)

    def entries(self) -> list[StoredEntry]:
        if not self.path.exists():
            return []
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            try:
                rows = con.execute("SELECT db, key, expires_ms, entry FROM entries").fetchall()
            except sqlite3.OperationalError as e:
                if "no such table" in str(e):
                    return []
                raise
        finally:
            con.close()
        out = []
        for db, key, exp, blob in rows:
            e = decode_envelope(bytes(blob), f"{self.path} row db={db} key={bytes(key)!r}")
            assert (e.db, e.key) == (db, bytes(key)), f"row ({db}, {key!r}) holds envelope of {e}"
            out.append(e)
        return out


class DirCold(Inspector):
    """One envelope file per entry under `root/ab/cd/name` (Sources/Tiers/DirectoryTier.swift).
    Temp files (`.tmp.*`) are in-flight writes and are skipped."""
    tier = "cold"

    def __init__(self, root: Path):
        self.root = Path(root)

    def entries(self) -> list[StoredEntry]:
        out = []
        if not self.root.exists():
            return out
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                if f.startswith("."):
                    continue
                p = Path(dirpath) / f
                try:
                    data = p.read_bytes()
                except FileNotFoundError:   # deleted between walk and read
                    continue
                out.append(decode_envelope(data, str(p)))
        return out


class CosmosWarm(Inspector):
    """Every document of the container via the feed (ReadFeedDocuments: never counted as a
    ReadDocument, so it does not disturb tests that count the proxy's point reads). Document
    format: Sources/Tiers/CosmosDocument.swift and EntryMetadata.swift."""
    tier = "warm"

    def __init__(self, container: Any, name: str):
        self.container = container
        self.name = name

    def entries(self) -> list[StoredEntry]:
        out = []
        for d in self.container.read_all_items():
            key = base64.b64decode(d["tp_key"]) if d.get("tp_key") else d["id"].encode()
            if d.get("tp_b64") is not None:
                value = base64.b64decode(d["tp_b64"])
            else:
                value = (d.get("value") or "").encode()
            if d.get("tp_exp") is not None:
                exp = int(d["tp_exp"])
            elif d.get("ttl") is not None:
                exp = (int(d["_ts"]) + int(d["ttl"])) * 1000
            else:
                exp = None
            enc = d.get("tp_enc", "raw")
            if enc == "gzip":
                value = gzip.decompress(value)
            out.append(StoredEntry(db=int(d.get("tp_db", 0)), key=key, value=value, expires_ms=exp,
                                   encoding=enc, stored_bytes=len(value),
                                   where=f"cosmos {self.name} id={d['id']!r}", type=d.get("tp_type", "string")))
        return out


class BlobCold(Inspector):
    """Every blob of the container, listed with metadata and downloaded *without* the SDK's
    transparent gunzip, so `encoding` is what is really stored (Content-Encoding / tp_enc)."""
    tier = "cold"

    def __init__(self, container: Any, name: str):
        self.container = container
        self.name = name

    def entries(self) -> list[StoredEntry]:
        out = []
        for b in self.container.list_blobs(include=["metadata"]):
            md = b.metadata or {}
            try:
                dl = self.container.download_blob(b.name, decompress=False)
            except Exception as e:  # deleted between list and get
                if "BlobNotFound" in str(e):
                    continue
                raise
            stored = dl.readall()
            ce = (dl.properties.content_settings.content_encoding or "").lower()
            enc = "gzip" if ce == "gzip" or md.get("tp_enc") == "gzip" else "raw"
            value = gzip.decompress(stored) if enc == "gzip" else stored
            key = base64.b64decode(md["tp_key"]) if md.get("tp_key") else b.name.encode()
            exp = int(md["tp_exp"]) if md.get("tp_exp") else None
            e = StoredEntry(db=int(md.get("tp_db", 0)), key=key, value=value, expires_ms=exp,
                            encoding=enc, stored_bytes=len(stored),
                            where=f"blob {self.name}/{b.name}", type=md.get("tp_type", "string"))
            e.content_encoding = ce  # type: ignore[attr-defined]
            out.append(e)
        return out


# --------------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------------

_names = itertools.count(1)


def unique_name(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_names)}"


class Stack:
    """hot redis-server + tierproxy (+ warm/cold inspectors), or in ideal mode the redis-server
    alone standing in for "one Redis with unlimited memory".

    client(db) / raw()   talk to what the test is testing (the proxy, or the ideal Redis)
    hot(db)              a direct client to the hot redis-server (authenticates if needed)
    evict(*keys, db)     delete keys directly on hot, bypassing the proxy (no-op when ideal)
    lose_hot(how)        hot loses everything: "flushall" directly, "maxmemory" (real eviction of every
                         key), or "restart" (no-op when ideal)
    warm / cold          inspectors of the lower tiers (None when ideal or tier disabled)
    """

    def __init__(self, backend: str, server: RedisServer, proxy: Optional[Proxy],
                 warm: Optional[Inspector], cold: Optional[Inspector], emu: Any = None,
                 password: Optional[str] = None, start_proxy: Optional[Callable[[], Proxy]] = None):
        self.backend = backend
        self.server = server
        self.proxy = proxy
        self.warm = warm
        self.cold = cold
        self.emu = emu
        self.password = password
        self._start_proxy = start_proxy

    @property
    def tiered(self) -> bool:
        return self.proxy is not None

    @property
    def port(self) -> int:
        return self.proxy.port if self.proxy else self.server.port

    def client(self, db: int = 0, **kw: Any) -> redis.Redis:
        kw.setdefault("socket_timeout", 30)
        return redis.Redis(host=HOST, port=self.port, db=db, **kw)

    def raw(self, timeout: float = 30.0) -> RawConn:
        return RawConn(self.port, timeout=timeout)

    def hot(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.server.port, db=db, password=self.password,
                           socket_timeout=30)

    def evict(self, *keys: Any, db: int = 0) -> int:
        """Delete keys directly on hot (what eviction does). Returns how many hot had."""
        if not self.tiered:
            return 0
        with self.hot(db) as h:
            return h.delete(*keys)

    def lose_hot(self, how: str = "flushall") -> None:
        if not self.tiered:
            return
        if how == "flushall":
            with self.hot() as h:
                h.flushall()
                assert h.dbsize() == 0
        elif how == "maxmemory":
            self._evict_everything()
        elif how == "restart":
            self.server.kill()
            self.server.start()
            with self.hot() as h:
                assert h.dbsize() == 0, "hot restarted with data (persistence should be off)"
        else:
            raise ValueError(how)

    def _evict_everything(self) -> None:
        """Real eviction, not a delete: hot's maxmemory drops to 1 byte (policy allkeys-random)
        until Redis has evicted every key of every db, then both settings are put back. Nothing
        else may write meanwhile (its writes would get -OOM), so only sequential tests use it."""
        with self.hot() as h:
            saved = h.config_get("maxmemory*")
            evicted = h.info("stats")["evicted_keys"]
            had = sum(v.get("keys", 0) for k, v in h.info("keyspace").items() if k.startswith("db"))
            h.config_set("maxmemory-policy", "allkeys-random")
            h.config_set("maxmemory", 1)
            try:
                wait_for(lambda: not h.info("keyspace"), 10, desc="maxmemory eviction to empty hot")
            finally:
                h.config_set("maxmemory", saved["maxmemory"])
                h.config_set("maxmemory-policy", saved["maxmemory-policy"])
            assert h.info("stats")["evicted_keys"] - evicted >= had, "hot lost keys other than by eviction"

    def restart_proxy(self, kill: bool = True) -> None:
        assert self.proxy is not None
        if kill:
            self.proxy.kill()
        else:
            self.proxy.stop()
        self.proxy.start()

    def where(self, key: Any, conn: Optional[RawConn] = None) -> list[bytes]:
        """TIERS WHERE key, as a list of tier names (see test_tiered_visibility for the format)."""
        own = conn is None
        c = conn or self.raw()
        try:
            r = c.cmd("TIERS", "WHERE", key)
        finally:
            if own:
                c.close()
        assert r.t == "*" and r.v is not None, f"TIERS WHERE {key!r}: expected an array, got {r!r}"
        names = [x.v for x in r.v]
        assert all(x.t == "$" for x in r.v), f"TIERS WHERE {key!r}: not all bulk strings: {r!r}"
        return names

    def output(self) -> str:
        return self.proxy.output() if self.proxy else tail(self.server.log)


def chunks(seq: list, n: int) -> Iterable[list]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]
