"""Large values (issue 4, Semantics 3 and 7): an 8 MB value is over the warm tier's item limit,
so it lands in cold (not warm), gzip-encoded because it is over `compress-threshold` (1 MB by
default): on Blob `Content-Encoding: gzip`, in the directory tier an envelope whose encoding
byte says gzip. After hot loses it, GET, STRLEN and GETRANGE read it back byte-equal, and the
promotion from cold does not put it into warm either.

Decision (the issue names Cosmos' 2 MB): the warm item limit is 2 MB whatever the warm
backend, so the embedded SQLite warm tier routes the same values to cold as Cosmos would.
"""

from __future__ import annotations

import hashlib

from tierstack import wait_for

SIZE = 8 * 1024 * 1024


def large_value() -> bytes:
    """Compressible (gzip must win) but not a single repeated byte: numbered lines with a hash."""
    out, i = [], 0
    total = 0
    while total < SIZE:
        line = b"%08d %s the large value\n" % (i, hashlib.md5(b"%d" % (i % 97)).hexdigest().encode())
        out.append(line)
        total += len(line)
        i += 1
    return b"".join(out)[:SIZE]


def test_eight_megabytes_go_to_cold_gzipped(make_stack, backend):
    """Semantics 3 (too large for warm goes to cold) and 7 (gzip in cold, transparent)."""
    s = make_stack(backend)
    value = large_value()
    with s.client(socket_timeout=60) as c:
        assert c.set("big", value) is True
        if s.tiered:
            e = s.cold.get("big")
            assert e is not None, "the 8 MB value is not in cold after its write-through SET"
            assert e.encoding == "gzip" and e.stored_bytes < SIZE // 2, \
                f"cold stores it {e.encoding}, {e.stored_bytes} bytes ({e.where})"
            if s.backend == "azure":
                assert getattr(e, "content_encoding", "") == "gzip", "Blob lacks Content-Encoding: gzip"
            assert e.value == value, "cold holds different bytes"
            assert s.warm.get("big") is None, "an 8 MB value was written to warm"
        s.lose_hot()
        assert c.strlen("big") == SIZE
        assert c.getrange("big", SIZE - 20, -1) == value[-20:]
        got = c.get("big")
        assert got is not None and len(got) == SIZE and got == value, "8 MB value not byte-equal"
        if s.tiered:
            assert s.warm.get("big") is None, "promotion from cold put an 8 MB value into warm"
            with s.hot() as h:
                assert h.strlen("big") == SIZE, "GET did not promote the value to hot"
        # Overwritten with a small value: the small one goes to warm, the big one leaves cold.
        assert c.set("big", "small") is True
        s.lose_hot()
        assert c.get("big") == b"small"
    if s.tiered:
        def old_gone() -> bool:
            e = s.cold.get("big")
            return e is None or e.value == b"small"
        wait_for(old_gone, 10, desc="cold to drop the overwritten 8 MB value")
