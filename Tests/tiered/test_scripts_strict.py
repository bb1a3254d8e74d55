"""Scripts that touch undeclared keys (issue 9). docs/semantics.md §11 (scripts): Redis lets a script outside
cluster mode touch keys it did not declare, and the proxy cannot see them, so their writes are not
tiered: a documented gap, logged once per script SHA. `tiers-scripts strict` closes it by refusing,
before anything runs, EVAL/EVALSHA/FCALL with numkeys 0 that may write, judged by Redis's own
flags: a script without a `#!lua flags=no-writes` shebang, or a function registered without the
`no-writes` flag, may write; EVAL_RO/EVALSHA_RO/FCALL_RO never write and are allowed.

The refusal's text is worded like Redis's own cluster-mode script errors (Redis 7.0.15,
src/script.c: "Script attempted to access a non local key in a cluster node"; "Can not execute a
script with write flag using *_ro command."): contract fixed here, change it with a reason:
  * an `-ERR` error reply, nothing run (hot unchanged), no tier asked;
  * the text says what Redis says (a script and a key it did not declare: "non local key" or
    "declar…"), names the directive (`tiers-scripts`) and the way out (`no-writes`).
"""

from __future__ import annotations

import hashlib

import pytest

from tierstack import wait_for
from twin import Twin

WRITER = "redis.call('SET', 'ss:undeclared', 'v') return 1"
WRITER_SHEBANG = "#!lua\nredis.call('SET', 'ss:undeclared', 'v') return 1"
NO_FLAGS_NO_WRITE = "return 1"            # writes nothing, but nothing tells the proxy so
READER = "#!lua flags=no-writes\nreturn redis.call('GET', 'ss:r')"
DECLARED = "return redis.call('SET', KEYS[1], ARGV[1])"
LIB = """#!lua name=sslib
redis.register_function('ss_write', function(keys, args) return redis.call('SET', 'ss:undeclared', 'f') end)
redis.register_function{function_name='ss_read', flags={'no-writes'},
  callback=function(keys, args) return redis.call('GET', 'ss:r') end}
redis.register_function('ss_declared', function(keys, args) return redis.call('SET', keys[1], args[1]) end)
"""


def sha(s: str) -> str:
    return hashlib.sha1(s.encode()).hexdigest()


REFUSED = {
    "EVAL writing an undeclared key": ["EVAL", WRITER, "0"],
    "EVAL with a shebang but no no-writes flag": ["EVAL", WRITER_SHEBANG, "0"],
    "EVAL without flags (may write)": ["EVAL", NO_FLAGS_NO_WRITE, "0"],
    "EVALSHA of a loaded writer": ["EVALSHA", sha(WRITER), "0"],
    "FCALL of a function without no-writes": ["FCALL", "ss_write", "0"],
}

ALLOWED = {
    "EVAL no-writes": ["EVAL", READER, "0"],
    "EVAL_RO": ["EVAL_RO", "return redis.call('GET', 'ss:r')", "0"],
    "EVALSHA_RO": ["EVALSHA_RO", sha(READER), "0"],
    "EVALSHA of a loaded no-writes script": ["EVALSHA", sha(READER), "0"],
    "FCALL of a no-writes function": ["FCALL", "ss_read", "0"],
    "FCALL_RO": ["FCALL_RO", "ss_read", "0"],
    "EVAL with declared keys": ["EVAL", DECLARED, "1", "ss:d", "x"],
    "FCALL with declared keys": ["FCALL", "ss_declared", "1", "ss:d2", "y"],
}


def _prepare(c) -> None:
    """Load the scripts and the library, seed ss:r (on whichever server `c` talks to)."""
    for body in (WRITER, READER):
        assert c.execute_command("SCRIPT", "LOAD", body) == sha(body).encode()
    c.execute_command("FUNCTION", "LOAD", "REPLACE", LIB)
    c.set("ss:r", "readable")


@pytest.fixture
def strict(make_stack, backend):
    s = make_stack(backend, flags={"tiers-scripts": "strict"})
    with s.client() as c:
        _prepare(c)
    return s


@pytest.mark.tiers_only
@pytest.mark.parametrize("case", list(REFUSED))
def test_strict_refuses_numkeys_0_scripts_that_may_write(strict, case):
    """docs/semantics.md §11, `tiers-scripts strict`: refused, worded like Redis's
    cluster-mode script errors, nothing run."""
    s = strict
    with s.raw() as c:
        r = c.cmd(*REFUSED[case])
        assert r.t == "-" and r.v.startswith(b"ERR "), f"{case}: expected an -ERR refusal, got {r.raw!r}"
        text = r.v.decode(errors="replace")
        assert "non local key" in text or "declar" in text.lower(), f"not worded like Redis's: {text!r}"
        assert "tiers-scripts" in text and "no-writes" in text, f"says neither directive nor way out: {text!r}"
        assert c.cmd("PING").raw == b"+PONG\r\n", "the connection is still usable"
    with s.hot() as h:
        assert h.get("ss:undeclared") is None, f"{case}: the refused script ran on hot"


@pytest.mark.parametrize("case", list(ALLOWED))
def test_strict_allows_read_only_and_declared_scripts(strict, reference, case):
    """docs/semantics.md §11: no-writes scripts and functions, *_RO, and scripts with declared keys
    run under strict exactly as on Redis (byte-equal), and declared writes reach the lower tiers."""
    with reference.client() as r:
        _prepare(r)
    keys = {0: ["ss:r", "ss:d", "ss:d2", "ss:undeclared"]}
    with Twin(strict, reference, keys) as tw:
        tw.step(ALLOWED[case])


def test_without_strict_undeclared_writers_run(make_stack, backend, reference):
    """docs/semantics.md §11, the documented gap: without `tiers-scripts strict` (the default) a
    script or function with numkeys 0 that writes runs, answering as Redis does."""
    s = make_stack(backend)
    with s.client() as c:
        _prepare(c)
    with reference.client() as r:
        _prepare(r)
    with Twin(s, reference, {0: ["ss:undeclared"]}) as tw:
        for argv in REFUSED.values():
            tw.send(argv)
        tw.send(["GET", "ss:undeclared"])


@pytest.mark.tiers_only
def test_undeclared_writer_logged_once_per_sha(make_stack):
    """docs/semantics.md §11: an undeclared-key script is logged once per script SHA when detectable
    (numkeys 0 without the no-writes flag): three runs of one script and one of another log each
    SHA once."""
    s = make_stack("local")
    other = "redis.call('SET', 'ss:other', 'v') return 2"
    with s.client() as c:
        c.set("ss:r", "readable")
        for _ in range(3):
            assert c.eval(WRITER, 0) == 1
        assert c.eval(other, 0) == 2
        assert c.eval(READER, 0) == b"readable"      # no-writes: not a gap
    wait_for(lambda: sha(other) in s.output(), 10, desc=f"the log to name script {sha(other)}")
    out = s.output()
    assert out.count(sha(WRITER)) == 1, f"{sha(WRITER)} logged {out.count(sha(WRITER))} times:\n{out[-2000:]}"
    assert out.count(sha(other)) == 1, out[-2000:]
