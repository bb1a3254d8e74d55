"""The differential's write-rule ops (issue 9): on top of difftest.Generator's tiered string
commands, scripts (EVAL/EVALSHA with declared keys doing GET/SET/DEL/INCR/EXPIRE, one turning
a key into a hash), functions (one FUNCTION LOAD in setup, FCALL/FCALL_RO), SORT … STORE, BITOP,
SETBIT/GETBIT/BITCOUNT, MOVE, SUNIONSTORE/SDIFFSTORE/SINTERSTORE over sets, and type changes
(HSET/SADD/RPUSH, also as DEL + HSET/SADD/RPUSH in one pipeline, read back in it with
HGET/SCARD/LRANGE).

Every type is tiered (docs/semantics.md §13), so the reference loses nothing when the target's hot
does: a hash, list or set must come back as the reference holds it, and a key that was a string
before it became a hash must come back as that hash, never as the string.

Members of lists and sets come from a small pool of distinct small integers and letters, so SORT
is deterministic across processes (no equal scores of different elements; intsets sorted, ALPHA
over distinct strings), and no reply depends on a hash table's order (no SMEMBERS/HGETALL).
"""

from __future__ import annotations

import hashlib

from difftest import Generator, keys_of

SCRIPTS = [  # (body, numkeys, number of ARGV)
    ("return redis.call('GET', KEYS[1])", 1, 0),
    ("return redis.call('SET', KEYS[1], ARGV[1])", 1, 1),
    ("return redis.call('DEL', KEYS[1], KEYS[2])", 2, 0),
    ("return redis.call('INCR', KEYS[1])", 1, 0),
    ("local v = redis.call('GET', KEYS[1]) if v then redis.call('SET', KEYS[2], v) return 1 end return 0", 2, 0),
    ("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", 1, 1),
    ("return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])", 1, 2),
    ("return redis.call('EXPIRE', KEYS[1], ARGV[1])", 1, 1),
    ("redis.call('DEL', KEYS[1]) return redis.call('HSET', KEYS[1], 'f', ARGV[1])", 1, 1),
    ("local n = redis.call('INCRBY', KEYS[1], ARGV[1]) redis.call('SET', KEYS[2], n) return n", 2, 1),
]

LIB = """#!lua name=difflib
redis.register_function('d_set', function(keys, args) return redis.call('SET', keys[1], args[1]) end)
redis.register_function('d_del', function(keys, args) return redis.call('DEL', unpack(keys)) end)
redis.register_function('d_incr', function(keys, args) return redis.call('INCRBY', keys[1], args[1]) end)
redis.register_function('d_swap', function(keys, args)
  local a, b = redis.call('GET', keys[1]), redis.call('GET', keys[2])
  if b then redis.call('SET', keys[1], b) else redis.call('DEL', keys[1]) end
  if a then redis.call('SET', keys[2], a) else redis.call('DEL', keys[2]) end
  return {a, b}
end)
redis.register_function{function_name='d_get', flags={'no-writes'},
  callback=function(keys, args) return redis.call('GET', keys[1]) end}
"""
FUNCTIONS = [("d_set", 1, 1), ("d_del", 2, 0), ("d_incr", 1, 1), ("d_swap", 2, 0)]

WRITE_WEIGHTS = {
    "EVAL": 6, "EVALSHA": 3, "FCALL": 4, "FCALL_RO": 1, "SORT": 2, "BITOP": 2, "SETBIT": 2,
    "GETBIT": 1, "BITCOUNT": 1, "MOVE": 2, "SUNIONSTORE": 1, "SDIFFSTORE": 1, "SINTERSTORE": 1,
    "HSET": 1, "SADD": 2, "RPUSH": 2, "TYPECHANGE": 3, "SORTSTORE": 2, "SETSTORE": 2,
}
# Every type's common commands (issue 10): reads and writes of keys that may live only below.
COLLECTION_WEIGHTS = {
    "HGET": 2, "HINCRBY": 2, "HDEL": 1, "HLEN": 1, "LPUSH": 2, "LPOP": 1, "LRANGE": 2, "LLEN": 1,
    "ZADD": 2, "ZINCRBY": 1, "ZRANGE": 2, "ZREM": 1, "ZCARD": 1, "SREM": 1, "SISMEMBER": 1, "SCARD": 1,
    "XADD": 2, "XLEN": 1, "XRANGE": 1, "XDEL": 1,
}
WRITE_WEIGHTS.update(COLLECTION_WEIGHTS)
COMPOUND = ("TYPECHANGE", "SORTSTORE", "SETSTORE")      # several commands in one pipeline (next())
WRITE_COMMANDS = [n for n in WRITE_WEIGHTS if n not in COMPOUND]
MEMBERS = [b"%d" % i for i in range(12)] + [b"a", b"b", b"c", b"d", b"e"]


def sha(body: str) -> str:
    return hashlib.sha1(body.encode()).hexdigest()


class WriteRuleGenerator(Generator):
    def __init__(self, seed: int, **kw):
        super().__init__(seed, **kw)
        self.db = 0                 # the db the stream is in (SELECT always succeeds)
        self.names = self.names + list(WRITE_WEIGHTS)
        self.weights = self.weights + list(WRITE_WEIGHTS.values())
        self.stream_ms = 1          # XADD ids only grow, so they are the same on both sides

    def setup(self) -> list:
        return [["FUNCTION", "FLUSH"], ["FUNCTION", "LOAD", LIB]]

    def members(self) -> list:
        return self.rnd.sample(MEMBERS, self.rnd.randint(1, 4))

    def _script_args(self, numkeys: int, nargs: int) -> list:
        args = [self.key() for _ in range(numkeys)]
        for i in range(nargs):
            args.append(self.rnd.randint(100_000, 10_000_000) if i == 1 else self.arg())
        return [numkeys, *args]

    def arg(self) -> bytes:
        r = self.rnd.random()
        return b"%d" % self.secs() if r < 0.3 else self.value()

    def build(self, name: str) -> list:
        rnd, k = self.rnd, self.key
        if name not in WRITE_WEIGHTS:
            return super().build(name)
        if name in ("EVAL", "EVALSHA"):
            body, nk, na = rnd.choice(SCRIPTS)
            return [name, body if name == "EVAL" else sha(body), *self._script_args(nk, na)]
        if name == "FCALL":
            fn, nk, na = rnd.choice(FUNCTIONS)
            return [name, fn, *self._script_args(nk, na)]
        if name == "FCALL_RO":
            return [name, "d_get", 1, k()]
        if name == "SORT":
            return [name, k(), *(["ALPHA"] if rnd.random() < 0.5 else []), "STORE", k()]
        if name == "BITOP":
            op = rnd.choice(["AND", "OR", "XOR", "NOT"])
            return [name, op, k(), *([k()] if op == "NOT" else self.keys(1, 3))]
        if name == "SETBIT":
            return [name, k(), rnd.randint(0, 63), rnd.randint(0, 1)]
        if name == "GETBIT":
            return [name, k(), rnd.randint(0, 63)]
        if name == "BITCOUNT":
            return [name, k()]
        if name == "MOVE":
            return [name, k(), 1 - self.db if rnd.random() < 0.9 else self.db]
        if name in ("SUNIONSTORE", "SDIFFSTORE", "SINTERSTORE"):
            return [name, k(), *self.keys(1, 3)]
        if name == "HSET":
            return [name, k(), rnd.choice(["f", "g"]), self.value()]
        if name in ("SADD", "RPUSH", "LPUSH", "SREM", "ZREM", "HDEL"):
            members = self.members() if name != "HDEL" else rnd.sample(["f", "g", "h"], rnd.randint(1, 2))
            return [name, k(), *members]
        if name in ("HGET", "HINCRBY"):
            return [name, k(), rnd.choice(["f", "g", "h"]), *([rnd.randint(-5, 5)] if name == "HINCRBY" else [])]
        if name in ("HLEN", "LLEN", "ZCARD", "SCARD", "XLEN"):
            return [name, k()]
        if name == "LPOP":
            return [name, k(), *([rnd.randint(1, 3)] if rnd.random() < 0.3 else [])]
        if name == "LRANGE":
            return [name, k(), 0, rnd.choice([-1, 2])]
        if name == "ZADD":
            flags = rnd.choice([[], [], ["GT"], ["LT"], ["NX"], ["XX", "CH"]])
            return [name, k(), *flags, *[x for m in self.members() for x in (rnd.randint(-9, 9), m)]]
        if name == "ZINCRBY":
            return [name, k(), rnd.choice(["1.5", "-2", "3"]), rnd.choice(MEMBERS)]
        if name == "ZRANGE":
            return [name, k(), 0, -1, *(["WITHSCORES"] if rnd.random() < 0.5 else [])]
        if name == "SISMEMBER":
            return [name, k(), rnd.choice(MEMBERS)]
        if name == "XADD":
            self.stream_ms += 1
            return [name, k(), f"{self.stream_ms}-0", "f", self.value()]
        if name == "XRANGE":
            return [name, k(), "-", "+", "COUNT", 3]
        if name == "XDEL":
            return [name, k(), f"{max(1, self.stream_ms - rnd.randint(0, 20))}-0"]
        if name in COMPOUND:          # expanded by next()
            return [name]
        raise AssertionError(name)

    def compound(self, name: str) -> list:
        """A key turned into another type and used, in one pipeline (so the non-string value
        is there to use even if hot lost keys just before)."""
        rnd, k = self.rnd, self.key
        a, b = k(), k()
        if name == "TYPECHANGE":      # a string (maybe below) becomes a hash, set or list, read back
            make, read = rnd.choice([(["HSET", a, "f", self.value()], ["HGET", a, "f"]),
                                     (["SADD", a, *self.members()], ["SCARD", a]),
                                     (["RPUSH", a, *self.members()], ["LRANGE", a, 0, -1])])
            return [["DEL", a], make, read]
        if name == "SORTSTORE":       # SORT … STORE onto a key that may be a string below
            fill = [rnd.choice(["RPUSH", "SADD"]), a, *self.members()]
            alpha = ["ALPHA"] if rnd.random() < 0.5 else []
            return [["DEL", a], fill, ["SORT", a, *alpha, "STORE", b]]
        store = rnd.choice(["SUNIONSTORE", "SDIFFSTORE", "SINTERSTORE"])
        return [["DEL", a], ["SADD", a, *self.members()], [store, b, a, *self.keys(0, 2)]]

    def next(self) -> tuple:
        step = super().next()
        if step[0] != "cmds":
            return step
        cmds = []
        for argv in step[1]:
            if argv[0] in COMPOUND:
                cmds += self.compound(argv[0])
            else:
                cmds.append(argv)
            if cmds[-1][0] == "SELECT":
                self.db = cmds[-1][1]
        return ("cmds", cmds)

    def keys_of(self, argv: list) -> list[bytes]:
        name, args = argv[0], argv[1:]
        if name in ("EVAL", "EVALSHA", "FCALL", "FCALL_RO"):
            return list(args[2:2 + int(args[1])])
        if name == "SORT":
            return [args[0], args[-1]]
        if name == "BITOP":
            return list(args[1:])
        if name in ("SUNIONSTORE", "SDIFFSTORE", "SINTERSTORE"):
            return list(args)
        if name in WRITE_WEIGHTS:
            return [args[0]]
        return keys_of(argv)
