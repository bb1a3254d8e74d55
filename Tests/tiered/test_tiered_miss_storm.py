"""Miss storm (issue 4, Semantics 1: concurrent misses on one key share one lookup): 1000
clients GET the same warm-only key (written through the proxy, then deleted directly on hot)
at once; all get the value, and the warm tier saw exactly one read (the Cosmos emulator's
ReadDocument counter), no query, and cold was not asked (warm had it). The same for a key
absent everywhere: one warm read and one cold read for the 1000 misses.

The warm reads are slowed (emulator latency fault, 400 ms on ReadDocument) so every GET
arrives while the first lookup is in flight: sharing is then required, not lucky timing.
The proxy runs its default thread count (one loop per core), so the 1000 clients are spread
over loops and the shared lookup must span them.

Counters exist only on the emulators: on the local backend (and TIERED_TARGET=ideal) the test
checks the 1000 replies only.
"""

from __future__ import annotations

import pytest

from tierstack import RawConn, encode_command

CLIENTS = 1000
VALUE = b"storm-value-\x00\xff-" + b"x" * 100
COLD_READS = ("GetBlob", "GetBlobProperties", "GetBlobMetadata")
WARM_READS = ("ReadDocument", "QueryDocuments", "ReadFeedDocuments")


@pytest.mark.parametrize("case", ["warm-only", "absent"])
def test_thousand_concurrent_misses_one_lookup(make_stack, backend, case):
    """Semantics 1: concurrent misses on one key share one lookup (across loops)."""
    s = make_stack(backend)
    counted = s.tiered and s.backend == "azure"
    with s.client() as c:
        if case == "warm-only":
            assert c.set("storm", VALUE) is True
            assert s.evict("storm") in (0, 1)
            want = VALUE
        else:
            want = None
    if s.tiered:
        with s.hot() as h:
            assert h.exists("storm") == 0
        held = s.warm.get("storm")
        if case == "warm-only":
            assert held is not None and held.value == VALUE, f"warm does not hold the written key: {held}"
        else:
            assert held is None, f"warm holds a key never written: {held}"
    conns = [RawConn(s.port, timeout=30) for _ in range(CLIENTS)]
    try:
        # Every connection is established end to end (the proxy's upstream included) first.
        for conn in conns:
            conn.send(encode_command("PING"))
        for conn in conns:
            assert conn.read_reply().raw == b"+PONG\r\n"
        if counted:
            s.emu.reset_stats(("cosmos", "blob"))
            s.emu.add_fault("cosmos", kind="latency", ms=400, op="ReadDocument", count=-1)
        get = encode_command("GET", "storm")
        for conn in conns:
            conn.send(get)
        replies = [conn.read_reply() for conn in conns]
    finally:
        for conn in conns:
            conn.close()
        if counted:
            s.emu.clear_faults(("cosmos",))
    wrong = [r for r in replies if r.t != "$" or r.v != want]
    assert not wrong, f"{len(wrong)} of {CLIENTS} GETs answered wrongly, e.g. {wrong[:3]}"
    if counted:
        warm_ops = s.emu.ops("cosmos")
        cold_ops = s.emu.ops("blob")
        warm_reads = {k: warm_ops.get(k, 0) for k in WARM_READS}
        cold_reads = sum(cold_ops.get(k, 0) for k in COLD_READS)
        assert warm_reads == {"ReadDocument": 1, "QueryDocuments": 0, "ReadFeedDocuments": 0}, \
            f"{CLIENTS} concurrent misses made warm reads {warm_reads} (all ops: {warm_ops})"
        assert cold_reads == (0 if case == "warm-only" else 1), \
            f"cold reads: {cold_ops} (warm had the key: cold must not be asked)" if case == "warm-only" \
            else f"cold reads: {cold_ops} (one shared lookup should ask cold once)"
