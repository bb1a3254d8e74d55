"""Differential testing: the same seeded random stream of tiered string commands goes to a
*target* (tierproxy) and to a *reference* (a plain redis-server); every reply must be equal.
Between commands the target's hot Redis loses keys behind the proxy's back (direct DEL =
"eviction") and now and then everything (direct FLUSHALL). The reference never loses anything:
it is the "one Redis with unlimited memory" the target must be indistinguishable from.

Replies are compared byte for byte (raw RESP), except the four TTL readers: TTL and
EXPIRETIME within 1 s, PTTL and PEXPIRETIME within 1000 ms, when both are >= 0 (-1 and -2 must be
equal). Relative expiries are sent to the two servers milliseconds apart, so their absolute
expiries differ by that much; nothing in the stream expires during a run (relative TTLs are
>= 100 s; expiries in the past or <= 0 delete at once, which both servers do identically).

Everything random comes from one seed (printed; set TIERED_SEED to replay). Absolute times
(EXAT/PXAT/EXPIREAT) are offsets from the wall clock at generation time, sent identically to
both servers.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from tierstack import Deadline, RawConn, encode_command

# The tiered commands of issue 4, every one of which the generator must produce.
TIERED_COMMANDS = (
    "GET MGET SET SETEX PSETEX SETNX GETSET GETEX GETDEL MSET MSETNX APPEND INCR INCRBY "
    "INCRBYFLOAT DECR DECRBY SETRANGE GETRANGE STRLEN EXISTS TYPE DEL UNLINK EXPIRE PEXPIRE "
    "EXPIREAT PEXPIREAT PERSIST TTL PTTL EXPIRETIME PEXPIRETIME RENAME RENAMENX COPY TOUCH"
).split()

TOLERANCE = {"TTL": 1, "EXPIRETIME": 1, "PTTL": 1000, "PEXPIRETIME": 1000}

# 33 plain keys and 7 that no tier can use as a name verbatim (binary, empty, '/', '?', '#',
# space, upper case, non-ASCII), so the names scheme is exercised on every backend.
KEYS: list[bytes] = [b"k%d" % i for i in range(33)] + [
    b"bin\x00\xff", b"with space", b"UPPER:Case", b"slash/key", b"q?#%", "\u00e9t\u00e9".encode(), b"",
]

WEIGHTS = {
    "GET": 10, "MGET": 4, "SET": 10, "SETEX": 2, "PSETEX": 2, "SETNX": 2, "GETSET": 2, "GETEX": 3,
    "GETDEL": 2, "MSET": 3, "MSETNX": 2, "APPEND": 3, "INCR": 3, "INCRBY": 2, "INCRBYFLOAT": 2,
    "DECR": 2, "DECRBY": 2, "SETRANGE": 2, "GETRANGE": 3, "STRLEN": 3, "EXISTS": 4, "TYPE": 3,
    "DEL": 3, "UNLINK": 2, "EXPIRE": 3, "PEXPIRE": 2, "EXPIREAT": 2, "PEXPIREAT": 2, "PERSIST": 2,
    "TTL": 4, "PTTL": 3, "EXPIRETIME": 2, "PEXPIRETIME": 2, "RENAME": 2, "RENAMENX": 2, "COPY": 2,
    "TOUCH": 2, "SELECT": 1,
}
assert set(TIERED_COMMANDS) <= set(WEIGHTS)


def pick_seed(env_value: Optional[str], default: int) -> int:
    if env_value in (None, ""):
        return default
    if env_value == "random":
        return random.SystemRandom().randrange(1, 2**31)
    return int(env_value)


class Generator:
    """Seeded stream of commands over KEYS in dbs 0 and 1. `next()` returns one step:
    ("cmds", [argv, ...])  one command, or 2-5 pipelined in one write;
    ("evict", db, [keys])  keys deleted directly on the target's hot;
    ("flush",)             FLUSHALL directly on the target's hot."""

    def __init__(self, seed: int, evict_rate: float = 0.0, flush_rate: float = 0.0,
                 pipeline_rate: float = 0.05):
        self.rnd = random.Random(seed)
        self.evict_rate = evict_rate
        self.flush_rate = flush_rate
        self.pipeline_rate = pipeline_rate
        self.names = list(WEIGHTS)
        self.weights = [WEIGHTS[n] for n in self.names]

    # ---- arguments -------------------------------------------------------------------------
    def key(self) -> bytes:
        return self.rnd.choice(KEYS)

    def keys(self, lo: int, hi: int) -> list[bytes]:
        return [self.key() for _ in range(self.rnd.randint(lo, hi))]

    def value(self) -> bytes:
        r = self.rnd.random()
        if r < 0.30:
            return b"%d" % self.rnd.randint(-1000, 1000)
        if r < 0.38:
            return b"%d.%d" % (self.rnd.randint(-100, 100), self.rnd.randint(0, 99))
        if r < 0.42:
            return b""
        if r < 0.55:
            return bytes(self.rnd.randrange(256) for _ in range(self.rnd.randint(1, 8)))
        return bytes(self.rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(self.rnd.randint(1, 12)))

    def secs(self) -> int:
        r = self.rnd.random()
        if r < 0.04:
            return 0
        if r < 0.08:
            return -self.rnd.randint(1, 5)
        return self.rnd.randint(100, 10_000)

    def at_s(self) -> int:
        now = int(time.time())
        return now - self.rnd.randint(1, 1000) if self.rnd.random() < 0.06 else now + self.rnd.randint(100, 10_000)

    def expiry_option(self, allow_keepttl: bool) -> list:
        r = self.rnd.random()
        s = self.secs() if self.rnd.random() < 0.1 else self.rnd.randint(100, 10_000)
        if r < 0.2:
            return ["EX", s]
        if r < 0.35:
            return ["PX", s * 1000 + self.rnd.randint(0, 999)]
        if r < 0.45:
            return ["EXAT", self.at_s()]
        if r < 0.55:
            return ["PXAT", self.at_s() * 1000 + self.rnd.randint(0, 999)]
        if r < 0.65 and allow_keepttl:
            return ["KEEPTTL"]
        return []

    # ---- commands --------------------------------------------------------------------------
    def command(self) -> list:
        return self.build(self.rnd.choices(self.names, self.weights)[0])

    def build(self, name: str) -> list:
        rnd, k, v = self.rnd, self.key, self.value
        if name in ("GET", "GETDEL", "STRLEN", "TYPE", "PERSIST", "TTL", "PTTL", "EXPIRETIME",
                    "PEXPIRETIME", "INCR", "DECR"):
            return [name, k()]
        if name == "MGET":
            return [name, *self.keys(1, 6)]
        if name in ("EXISTS", "DEL", "UNLINK", "TOUCH"):
            return [name, *self.keys(1, 4)]
        if name == "SET":
            args = ["SET", k(), v()]
            r = rnd.random()
            if r < 0.15:
                args.append("NX")
            elif r < 0.3:
                args.append("XX")
            if rnd.random() < 0.15:
                args.append("GET")
            return args + self.expiry_option(allow_keepttl=True)
        if name == "SETEX":
            return [name, k(), self.secs() if rnd.random() < 0.1 else rnd.randint(100, 10_000), v()]
        if name == "PSETEX":
            return [name, k(), rnd.randint(100_000, 10_000_000), v()]
        if name in ("SETNX", "GETSET", "APPEND"):
            return [name, k(), v()]
        if name == "GETEX":
            r = rnd.random()
            if r < 0.15:
                return [name, k(), "PERSIST"]
            return [name, k(), *self.expiry_option(allow_keepttl=False)]
        if name in ("MSET", "MSETNX"):
            args = [name]
            for _ in range(rnd.randint(1, 4)):
                args += [k(), v()]
            return args
        if name in ("INCRBY", "DECRBY"):
            n = rnd.choice([9223372036854775807, -9223372036854775807]) if rnd.random() < 0.03 \
                else rnd.randint(-50, 50)
            return [name, k(), n]
        if name == "INCRBYFLOAT":
            return [name, k(), rnd.choice(["1", "-1", "0.5", "2.25", "-3.75", "1e2", "0.1", "abc"])]
        if name == "SETRANGE":
            return [name, k(), rnd.randint(0, 24), v()]
        if name == "GETRANGE":
            return [name, k(), rnd.randint(-12, 24), rnd.randint(-12, 24)]
        if name in ("EXPIRE", "PEXPIRE"):
            n = self.secs()
            args = [name, k(), n * 1000 + (rnd.randint(0, 999) if n > 0 else 0) if name == "PEXPIRE" else n]
            if rnd.random() < 0.2:
                args.append(rnd.choice(["NX", "XX", "GT", "LT"]))
            return args
        if name in ("EXPIREAT", "PEXPIREAT"):
            t = self.at_s()
            args = [name, k(), t * 1000 + rnd.randint(0, 999) if name == "PEXPIREAT" else t]
            if rnd.random() < 0.2:
                args.append(rnd.choice(["NX", "XX", "GT", "LT"]))
            return args
        if name in ("RENAME", "RENAMENX"):
            a = k()
            return [name, a, a if rnd.random() < 0.05 else k()]
        if name == "COPY":
            args = [name, k(), k()]
            if rnd.random() < 0.3:
                args += ["DB", rnd.randint(0, 1)]
            if rnd.random() < 0.4:
                args.append("REPLACE")
            return args
        if name == "SELECT":
            return [name, rnd.randint(0, 1)]
        raise AssertionError(name)

    def next(self) -> tuple:
        r = self.rnd.random()
        if r < self.flush_rate:
            return ("flush",)
        if r < self.flush_rate + self.evict_rate:
            return ("evict", self.rnd.randint(0, 1), self.keys(1, 3))
        if self.rnd.random() < self.pipeline_rate:
            return ("cmds", [self.command() for _ in range(self.rnd.randint(2, 5))])
        return ("cmds", [self.command()])

    # ---- hooks for subclasses (difftest_writes) ---------------------------------------------
    def setup(self) -> list:
        """Commands sent to both sides before the stream (replies must be equal)."""
        return []

    def keys_of(self, argv: list) -> list[bytes]:
        return keys_of(argv)

    def after_loss(self, ref_port: int, lost: list) -> list[str]:
        """Told which (db, key) the target's hot just lost; may adjust the reference to what the
        contract says survives. Returns lines for the history."""
        return []


# --------------------------------------------------------------------------------------------

class Divergence(AssertionError):
    pass


@dataclass
class Stats:
    seed: int
    ops: int = 0
    steps: int = 0
    evictions: int = 0
    evicted_on_hot: int = 0         # keys the hot really had when evicted
    flushes: int = 0
    touched_after_eviction: int = 0  # commands that named a key the hot had lost
    commands: Counter = field(default_factory=Counter)
    reply_types: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"seed={self.seed} ops={self.ops} evictions={self.evictions} "
                f"(keys really on hot: {self.evicted_on_hot}) flushes={self.flushes} "
                f"commands touching lost keys={self.touched_after_eviction} in {self.seconds:.1f}s")


def _show(a: Any) -> str:
    return repr(a) if isinstance(a, bytes) else str(a)


def fmt_cmd(argv: list) -> str:
    return " ".join(_show(a) for a in argv)


def keys_of(argv: list) -> list[bytes]:
    """The key arguments of one generated command."""
    name, args = argv[0], argv[1:]
    if name in ("MGET", "EXISTS", "DEL", "UNLINK", "TOUCH"):
        return list(args)
    if name in ("MSET", "MSETNX"):
        return list(args[0::2])
    if name in ("RENAME", "RENAMENX", "COPY"):
        return [args[0], args[1]]
    if name == "SELECT":
        return []
    return [args[0]]


def reply_class(r: Any) -> str:
    """A coarse class of a reply, for coverage checks: nil, $, +OK, :-2, :-1, :0, :1, :+, -ERR..."""
    if r.v is None:
        return "nil"
    if r.t == ":":
        return f":{r.v}" if r.v in (-2, -1, 0, 1) else (":+" if r.v > 0 else ":-")
    if r.t in "+-":
        return r.t + r.v.split(b" ", 1)[0].decode(errors="replace")
    return r.t


def same(name: str, a: Any, b: Any) -> bool:
    if a.raw == b.raw:
        return True
    tol = TOLERANCE.get(name)
    return (tol is not None and a.t == ":" and b.t == ":" and a.v >= 0 and b.v >= 0
            and abs(a.v - b.v) <= tol)


def run(target_port: int, ref_port: int, seed: int, ops: int, hot_port: Optional[int] = None,
        hot_password: Optional[str] = None, evict_rate: float = 0.0, flush_rate: float = 0.0,
        time_budget: float = 60.0, reply_timeout: float = 10.0, label: str = "target",
        generator: type = None) -> Stats:
    """Run `ops` commands against target and reference; raise Divergence at the first unequal
    reply (with the seed, the op and the history of the keys involved). Evictions/flushes go to
    `hot_port` (the target's hot Redis) directly. Fails if it takes longer than `time_budget`.
    `generator`: a Generator subclass (difftest_writes.WriteRuleGenerator); its setup() commands
    go to both sides first (replies equal), and its after_loss() is told what hot lost."""
    if evict_rate or flush_rate:
        assert hot_port is not None, "evictions need the target's hot port"
    gen = (generator or Generator)(seed, evict_rate=evict_rate, flush_rate=flush_rate)
    stats = Stats(seed=seed)
    history: list[str] = []
    lost: set[tuple[int, bytes]] = set()   # (db, key) the hot lost since the last command on it
    db = 0
    budget = Deadline(time_budget)
    t0 = time.monotonic()
    tgt, ref = RawConn(target_port, timeout=reply_timeout), RawConn(ref_port, timeout=reply_timeout)
    hot = RawConn(hot_port, timeout=reply_timeout) if hot_port else None
    hot_db = 0
    try:
        if hot and hot_password:
            assert hot.cmd("AUTH", hot_password).raw == b"+OK\r\n"
        for argv in gen.setup():
            g, w = tgt.cmd(*argv), ref.cmd(*argv)
            assert g.raw == w.raw, f"setup {fmt_cmd(argv)}: {label} {g.raw!r}, reference {w.raw!r}"
        while stats.ops < ops:
            if budget.expired():
                raise AssertionError(f"differential over its time budget: only {stats.ops} of {ops} "
                                     f"ops in {time_budget}s ({stats.summary()})")
            step = gen.next()
            stats.steps += 1
            if step[0] == "flush":
                r = hot.cmd("FLUSHALL")
                assert r.raw == b"+OK\r\n", r
                stats.flushes += 1
                lost.update((d, k) for d in (0, 1) for k in KEYS)
                history.append(f"#{stats.ops} [hot] FLUSHALL")
                history += gen.after_loss(ref_port, [(d, k) for d in (0, 1) for k in KEYS])
                continue
            if step[0] == "evict":
                _, edb, keys = step
                if edb != hot_db:
                    assert hot.cmd("SELECT", edb).raw == b"+OK\r\n"
                    hot_db = edb
                r = hot.cmd("DEL", *keys)
                assert r.t == ":", r
                stats.evictions += 1
                stats.evicted_on_hot += r.v
                lost.update((edb, k) for k in keys)
                history.append(f"#{stats.ops} [hot db{edb}] DEL {fmt_cmd(keys)} -> {r.v}")
                history += gen.after_loss(ref_port, [(edb, k) for k in keys])
                continue
            batch = step[1]
            payload = b"".join(encode_command(*argv) for argv in batch)
            tgt.send(payload)
            ref.send(payload)
            try:
                got = tgt.read_replies(len(batch))
            except Exception as e:  # noqa: BLE001 - report it with the seed and history
                raise Divergence(_message(label, stats, batch[0], f"<no reply: {e!r}>", "?", history, db)) from None
            want = ref.read_replies(len(batch))
            for argv, g, w in zip(batch, got, want):
                name = argv[0]
                named = gen.keys_of(argv)
                if any((db, k) in lost for k in named):
                    stats.touched_after_eviction += 1
                if name == "COPY" and "DB" in argv:
                    ddb = argv[argv.index("DB") + 1]
                    lost.discard((ddb, argv[2]))
                if name == "MOVE":
                    lost.discard((argv[2], argv[1]))
                for k in named:
                    lost.discard((db, k))
                history.append(f"#{stats.ops} [db{db}] {fmt_cmd(argv)} -> {g.raw[:60]!r}")
                if not same(name, g, w):
                    raise Divergence(_message(label, stats, argv, g.raw, w.raw, history, db))
                stats.ops += 1
                stats.commands[name] += 1
                stats.reply_types[(name, reply_class(g))] += 1
                if name == "SELECT" and g.raw == b"+OK\r\n":
                    db = argv[1]
    finally:
        stats.seconds = time.monotonic() - t0
        for c in (tgt, ref, hot):
            if c:
                c.close()
    return stats


def _message(label: str, stats: Stats, argv: list, got: Any, want: Any, history: list[str], db: int) -> str:
    keys = keys_of(argv)
    related = [h for h in history if any(_show(k) in h for k in keys)][-25:]
    return (f"{label} diverged from the reference at op #{stats.ops} (seed={stats.seed}; replay with "
            f"TIERED_SEED={stats.seed})\n  command (db {db}): {fmt_cmd(argv)}\n  {label}:    {got!r}\n"
            f"  reference: {want!r}\n  history of these keys:\n    " + "\n    ".join(related)
            + "\n  last steps:\n    " + "\n    ".join(history[-8:]))
