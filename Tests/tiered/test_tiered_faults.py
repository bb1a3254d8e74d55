"""Faults (issue 4, Semantics 1/3/10 under failure; "Unavailable lower tier").

* A lower tier stops answering (emulator fault rules on every request: hang, 503, TCP reset):
  hot hits are still served at once; a miss that needs the down tier answers `-ERR` within
  `--tier-timeout` (never a false nil, also for a key absent everywhere); once the tier is
  back, the key is served again. Warm down is tested with a warm-only key; cold down with a
  key that a `tier cold` rule put only in cold.
* A write-through write the tier refuses is recorded in the durable key log and acknowledged
  (docs/semantics.md: an error reply means nothing happened); reads see the new value, and it
  reaches the tier once the tier is back.
* Write-behind: the tier refuses writes so a backlog builds; the proxy is SIGKILLed with it;
  restarted on the same `--dir`, it flushes the backlog (coalesced: final values, deletes
  included) and nothing is lost, even when hot then loses everything.

Fault rules exist on the emulators only: azure backend, tiers only.

Decisions: MGET with any position that needs a down tier answers one `-ERR` for the whole
command (RESP2 clients cannot take an error inside an array). INFO's `# Tiers` section has a
field whose name contains `backlog` with the number of write-behind entries waiting.
"""

from __future__ import annotations

import time

import pytest

from tierstack import RawConn, wait_for

pytestmark = pytest.mark.tiers_only

TIMEOUT_MS = 500
SLACK_S = 1.0        # scheduling on a shared 2-core machine
FAULTS = {
    "hang": dict(kind="hang", ms=20_000),
    "503": dict(kind="status", status=503),
    "reset": dict(kind="reset"),
}


def timed(conn: RawConn, *argv):
    t0 = time.monotonic()
    r = conn.cmd(*argv, timeout=TIMEOUT_MS / 1000 + 10)
    return r, time.monotonic() - t0


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("tier", ["warm", "cold"])
def test_lower_tier_down_errors_not_nils(make_stack, tier, fault):
    """Issue 4 'unavailable lower tier'; Semantics 1 (never a false nil) and 3 (failed write-through leaves no older value)."""
    s = make_stack("azure", rules=("c:* policy write-through tier cold",),
                   flags={"tier-timeout": TIMEOUT_MS})
    below = "w:below" if tier == "warm" else "c:below"
    service = "cosmos" if tier == "warm" else "blob"
    with s.client() as c:
        c.set("w:hot", "h")
        c.set(below, "b")
        c.set("w:old", "old")
    s.evict(below, "w:old")
    s.emu.add_fault(service, count=-1, **FAULTS[fault])
    try:
        with s.raw() as r:
            got, dt = timed(r, "GET", "w:hot")
            assert got.v == b"h" and dt < 0.5, f"hot hit while {tier} is down: {got!r} in {dt:.2f}s"
            for argv in (("GET", below), ("GET", "w:absent"), ("STRLEN", below), ("EXISTS", below),
                         ("MGET", "w:hot", below)):
                got, dt = timed(r, *argv)
                assert got.t == "-" and got.v.startswith(b"ERR"), \
                    f"{argv} while {tier} is down ({fault}): {got!r} (a nil here would be a lie)"
                assert dt <= TIMEOUT_MS / 1000 + SLACK_S, f"{argv}: error after {dt:.2f}s"
            if tier == "warm":
                # A write-through the tier cannot take is recorded in the key log instead and
                # acknowledged (an error would have to mean it did not happen, and hot has it).
                got, dt = timed(r, "SET", "w:old", "new")
                assert got.v == b"OK" and dt <= TIMEOUT_MS / 1000 + SLACK_S, (got, dt)
                info = r.cmd("INFO", "tiers").v.decode()
                assert "write_through_fallbacks:1" in info, info
    finally:
        s.emu.clear_faults((service,))
    with s.client() as c:
        wait_for(lambda: c.get(below) == b"b", 10, desc=f"{below} served again once {tier} is back",
                 ignore=(Exception,))
        assert c.get("w:absent") is None
        if tier == "warm":
            s.lose_hot()
            assert c.get("w:old") == b"new", "a write-through the tier refused was lost or an older value came back"
            wait_for(lambda: any(e.key == b"w:old" and e.value == b"new" for e in s.warm.entries()), 15,
                     desc="the refused write-through to reach warm once it is back")


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_write_behind_backlog_survives_sigkill(make_stack, fsync):
    """Semantics 3 (write-behind: the key recorded before the reply (always) or written to the key
    log within the loop pass (everysec), coalesced batches, survives a restart)."""
    s = make_stack("azure", rules=("wb:* policy write-behind",), flags={"keylog-fsync": fsync})
    for op in ("UpsertDocument", "CreateDocument", "ReplaceDocument", "DeleteDocument"):
        s.emu.add_fault("cosmos", kind="status", status=503, count=-1, op=op)
    final = {}
    with s.client() as c:
        for i in range(100):
            for rev in range(3):                       # coalescing: only rev 2 must land
                assert c.set(f"wb:{i}", f"{i}-rev{rev}") is True
            final[f"wb:{i}"] = f"{i}-rev2".encode()
        for i in range(20):
            c.set(f"wb:del{i}", "doomed")
            assert c.delete(f"wb:del{i}") == 1
        assert c.incr("wb:counter", 5) == 5 and c.incr("wb:counter") == 6
        final["wb:counter"] = b"6"
        info = c.info("tiers")
    backlog = {k: v for k, v in info.items() if "backlog" in k and isinstance(v, int)}
    assert backlog and max(backlog.values()) > 0, f"backlog not visible in INFO tiers: {info}"
    held = {e.key.decode() for e in s.warm.entries() if e.key.startswith(b"wb:")}
    assert not held, f"warm got write-behind keys although it refuses writes: {sorted(held)[:5]}"
    assert info["key_log_fsync"] == fsync
    if fsync == "always":
        assert info["key_log_unwritten"] == 0, "a write-behind reply came before its record was written"
    else:
        # everysec: the records reach the file (not the disk) moments after the replies; a SIGKILL
        # then loses nothing, as the page cache survives the process.
        with s.client() as c:
            wait_for(lambda: c.info("tiers")["key_log_unwritten"] == 0, 10, desc="the key log writer to catch up")

    # The refused flushes are retried, and said in the log (rate-limited), not only counted.
    wait_for(lambda: "Write-behind flushes failed" in s.output(), 20, interval=0.2,
             desc="a log line for the refused flushes")

    s.proxy.kill()                                     # SIGKILL: no chance to flush
    s.emu.clear_faults(("cosmos",))
    s.proxy.start()

    def flushed():
        entries = {e.key.decode(): e.value for e in s.warm.entries() if e.key.startswith(b"wb:")}
        return entries == final
    wait_for(flushed, 30, interval=0.2, desc="the write-behind backlog to reach warm after restart")
    s.lose_hot()
    with s.client() as c:
        for k, v in final.items():
            assert c.get(k) == v, k
        assert all(c.get(f"wb:del{i}") is None for i in range(20))
