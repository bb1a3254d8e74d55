"""Differential test of issue 4: tierproxy vs a plain redis-server, over >= 30 000 seeded random
tiered commands on ~40 keys (every type's common commands among them: issue 10), while the proxy's hot Redis loses keys (direct DEL) and everything
(direct FLUSHALL). Proves the issue's headline: a client cannot tell tierproxy from one Redis
with unlimited memory (Semantics 1 read-through, 3 writes reach the lower tiers, 4 deletes and
expiries reach every tier, 5 TTL fidelity; TTL/PTTL/EXPIRETIME/PEXPIRETIME within one second).

The first three tests check the generator and the comparator themselves and pass today:
reference vs reference must agree, reference vs an evicted Redis (no proxy) must diverge,
and the stream must cover every tiered command. See difftest.py for the rules.
"""

from __future__ import annotations

import os

import pytest

import difftest
import difftest_writes
from tierstack import IDEAL, RedisServer

OPS = int(os.environ.get("TIERED_DIFF_OPS", "30000"))
SEED = difftest.pick_seed(os.environ.get("TIERED_SEED"), default=20_250_401)
EVICT_RATE = 0.03     # ~900 evictions of 1-3 keys in 30 000 ops
FLUSH_RATE = 0.0008   # ~24 FLUSHALLs directly on hot
# A bound against a hang, not a speed target: the azure run spends most of its time in the
# Python emulators (35-50 s for 20 000 ops here on a quiet 2-core machine, 60+ s when it shares
# the cores; CI shares them with everything else).
BUDGET_S = 400.0
# Issue 9's op kinds (scripts, functions, SORT STORE, BITOP, SETBIT, MOVE, set stores, type
# changes: difftest_writes.py) in the runs against the proxy; TIERED_DIFF_WRITE_RULE=0 leaves
# them out (their generator is self-checked either way).
WRITE_RULE = os.environ.get("TIERED_DIFF_WRITE_RULE", "1") == "1"


@pytest.fixture
def reference2(tiered_tmp):
    srv = RedisServer(tiered_tmp).start()
    yield srv
    srv.cleanup()


def test_selfcheck_reference_vs_reference_agrees(reference, reference2):
    """Generator + comparator sanity: two plain redis-servers, no evictions, the full op count:
    every reply equal. If this fails the generator is non-deterministic, not the proxy."""
    print(f"differential seed={SEED} ops={OPS}")
    stats = difftest.run(reference.port, reference2.port, SEED, OPS, time_budget=BUDGET_S,
                         label="reference2")
    print(stats.summary())
    # Every tiered command was generated, often, and exercised more than the trivial reply.
    missing = [c for c in difftest.TIERED_COMMANDS if stats.commands[c] < 0.002 * OPS]
    assert not missing, f"commands (almost) never generated: {missing}; counts {stats.commands}"
    assert stats.reply_types[("GET", "$")] > 0.01 * OPS, stats.reply_types
    assert stats.reply_types[("GET", "nil")] > 0.002 * OPS, stats.reply_types
    want = {"TTL": {":-2", ":-1", ":+"}, "PTTL": {":-2", ":-1", ":+"}, "EXPIRETIME": {":-2", ":-1", ":+"},
            "INCR": {":+", "-ERR"}, "INCRBYFLOAT": {"$", "-ERR"}, "SET": {"+OK", "nil", "$"},
            "SETNX": {":0", ":1"}, "RENAME": {"+OK", "-ERR"}, "RENAMENX": {":0", ":1", "-ERR"},
            "COPY": {":0", ":1"}, "EXPIRE": {":0", ":1"}, "EXPIREAT": {":0", ":1"}, "PERSIST": {":0", ":1"},
            "GETEX": {"$", "nil"}, "GETDEL": {"$", "nil"}, "MSETNX": {":0", ":1"}, "TYPE": {"+string", "+none"},
            "EXISTS": {":0", ":1", ":+"}, "DEL": {":0", ":1", ":+"}, "GETRANGE": {"$"}, "SETRANGE": {":0", ":+"}}
    for name, classes in want.items():
        seen = {c for (n, c) in stats.reply_types if n == name}
        assert classes <= seen, f"{name} never answered {classes - seen} (saw {seen}): generator too narrow"
    assert stats.commands["SELECT"] > 0


def test_selfcheck_write_rule_stream_agrees(reference, reference2):
    """The write-rule generator (difftest_writes) on two plain redis-servers: every reply equal,
    every new command generated often, with its interesting replies (errors included)."""
    stats = difftest.run(reference.port, reference2.port, SEED, OPS, time_budget=BUDGET_S,
                         label="reference2", generator=difftest_writes.WriteRuleGenerator)
    print(stats.summary())
    missing = [c for c in difftest_writes.WRITE_COMMANDS if stats.commands[c] < 0.002 * OPS]
    assert not missing, f"commands (almost) never generated: {missing}; counts {stats.commands}"
    want = {"EVAL": {":0", ":1", "$", "nil", "+OK", "-ERR", "-WRONGTYPE"}, "FCALL": {"+OK", ":0", ":1", "*"},
            "SORT": {":0", ":+", "-WRONGTYPE"}, "BITOP": {":0", ":+"}, "MOVE": {":0", ":1", "-ERR"},
            "SUNIONSTORE": {":0", ":1", "-WRONGTYPE"}, "SETBIT": {":0", ":1", "-WRONGTYPE"}, "HSET": {":0", ":1"},
            "GET": {"$", "nil", "-WRONGTYPE"}, "FCALL_RO": {"$", "nil"}}
    for name, classes in want.items():
        seen = {c for (n, c) in stats.reply_types if n == name}
        assert classes <= seen, f"{name} never answered {classes - seen} (saw {seen}): generator too narrow"
    assert stats.reply_types[("TYPE", "+hash")] and stats.reply_types[("TYPE", "+string")], stats.reply_types


def test_selfcheck_evictions_without_a_proxy_diverge(reference, reference2):
    """The test can fail: the same stream with evictions and FLUSHALLs applied to a plain
    redis-server (no lower tiers) must diverge from the reference, soon."""
    with pytest.raises(difftest.Divergence) as exc:
        difftest.run(reference.port, reference2.port, SEED, OPS, hot_port=reference.port,
                     evict_rate=EVICT_RATE, flush_rate=FLUSH_RATE, time_budget=BUDGET_S,
                     label="evicted redis")
    msg = str(exc.value)
    print(msg)
    assert f"seed={SEED}" in msg and "[hot" in msg, msg


def test_selfcheck_evictions_matter(reference, reference2):
    """Evictions must bite: count how many commands name a key right after the hot lost it
    (the proxy must then answer from a lower tier). Hundreds are needed or the differential
    proves little. Here the evictions go to a third, idle server, so the pair stays equal."""
    idle = reference2  # evictions land on a server nobody reads: the pair below stays equal
    ref_a = reference
    ref_b = RedisServer(ref_a.dir.parent).start()
    try:
        stats = difftest.run(ref_a.port, ref_b.port, SEED, OPS, hot_port=idle.port,
                             evict_rate=EVICT_RATE, flush_rate=FLUSH_RATE, time_budget=BUDGET_S)
    finally:
        ref_b.cleanup()
    print(stats.summary())
    assert stats.flushes >= 5 and stats.evictions >= 300, stats.summary()
    assert stats.touched_after_eviction >= 1000, stats.summary()


def _run_against_proxy(make_stack, backend, reference):
    print(f"differential seed={SEED} ops={OPS} backend={backend} write rule ops={WRITE_RULE}")
    s = make_stack(backend)
    try:
        stats = difftest.run(s.port, reference.port, SEED, OPS, hot_port=s.server.port,
                             evict_rate=0 if IDEAL else EVICT_RATE,
                             flush_rate=0 if IDEAL else FLUSH_RATE,
                             time_budget=BUDGET_S, label="tierproxy" if s.tiered else "ideal",
                             generator=difftest_writes.WriteRuleGenerator if WRITE_RULE else None)
    except difftest.Divergence as e:
        raise AssertionError(f"{e}\n--- tierproxy output ---\n{s.output()[-3000:]}") from None
    print(stats.summary())
    if s.tiered:
        assert stats.evicted_on_hot > 100 and stats.flushes > 0, stats.summary()


def test_differential_local_tiers(make_stack, reference):
    """Semantics 1, 3, 4, 5 on the embedded tiers (SQLite warm, directory cold)."""
    if "local" not in os.environ.get("TIERED_BACKENDS", "local,azure"):
        pytest.skip("TIERED_BACKENDS excludes local")
    _run_against_proxy(make_stack, "local", reference)


def test_differential_azure_tiers(make_stack, reference):
    """Semantics 1, 3, 4, 5 on the emulated Cosmos DB (warm) and Blob Storage (cold)."""
    if "azure" not in os.environ.get("TIERED_BACKENDS", "local,azure"):
        pytest.skip("TIERED_BACKENDS excludes azure")
    _run_against_proxy(make_stack, "azure", reference)
