"""Replies that do not frame as RESP. Redis 6.2 sends a Lua `{big_number='123\\r\\n123'}` to a
RESP3 client as `(123\\r\\n123\\r\\n` (7.0 turns the CRLF into spaces), and keeps the connection
open. A pinned client must get exactly those bytes and keep its connection: the proxy then passes
that connection through as bytes. Redis 7.0 itself no longer sends such bytes, so a relay in front
of a real redis-server puts them in place of one reply (the reply to `ECHO <TRIGGER>`); the client
is compared with one talking to the same relay directly."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from harness import HOST, Deadline, RawConn, encode_command as C

TRIGGER = b"__unframed__"
TRIGGER_REPLY = b"$%d\r\n%s\r\n" % (len(TRIGGER), TRIGGER)
UNFRAMED = b"(123\r\n123\r\n"       # Redis 6.2's bytes for big_number='123\r\n123'


class CorruptingRelay:
    """TCP relay to a real Redis that replaces every reply to `ECHO TRIGGER` with UNFRAMED."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}"

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            upstream = socket.create_connection((HOST, self.upstream_port))
            self.socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    @staticmethod
    def _held_back(buf: bytes) -> int:
        """Bytes at the end of `buf` that may be the start of a trigger reply."""
        for n in range(min(len(buf), len(TRIGGER_REPLY) - 1), 0, -1):
            if TRIGGER_REPLY.startswith(buf[-n:]):
                return n
        return 0

    def _pump(self, src: socket.socket, dst: socket.socket, corrupt: bool) -> None:
        pending = b""
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                if not corrupt:
                    dst.sendall(chunk)
                    continue
                pending = (pending + chunk).replace(TRIGGER_REPLY, UNFRAMED)
                keep = self._held_back(pending)
                dst.sendall(pending[:len(pending) - keep])
                pending = pending[len(pending) - keep:]
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.closed = True
        for s in [self.lsock, *self.socks]:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def relayed(make_redis, make_proxy):
    """(relay, proxy in front of the relay)."""
    srv = make_redis()
    relay = CorruptingRelay(srv.port)
    proxy = make_proxy(relay.url, flags={"warm": "none", "cold": "none"})
    yield relay, proxy
    relay.close()


def session(port: int, first: tuple, pipeline: list[tuple], count: int) -> tuple[bytes, bytes]:
    """`first` alone (it pins the connection), then `pipeline` in one write; returns the raw
    replies to the pipeline (up to the unframed bytes, and the `count` framed replies after
    them) and the reply to a command sent afterwards."""
    with RawConn(port) as c:
        c.cmd(*first)
        c.send(b"".join(C(*cmd) for cmd in pipeline))
        deadline = Deadline(10)
        while UNFRAMED not in c.buf:
            c._fill(deadline)
        head, tail = bytes(c.buf).split(UNFRAMED, 1)
        c.buf[:] = tail
        # What follows the unframed bytes frames again: read it reply by reply.
        rest = b"".join(r.raw for r in c.read_replies(count))
        after = c.cmd("ECHO", "after").raw
        return head + UNFRAMED + rest, after


PIPELINE = [("SET", "k", "v"), ("ECHO", TRIGGER), ("PING",), ("GET", "k"), ("ECHO", "tail")]


@pytest.mark.parametrize("first", [("HELLO", "3"), ("CLIENT", "SETNAME", "pinned")],
                         ids=["resp3", "resp2-pinned"])
def test_unframed_reply_passes_through_and_connection_stays(relayed, first):
    relay, proxy = relayed
    want = session(relay.port, first, PIPELINE, 3)
    got = session(proxy.port, first, PIPELINE, 3)
    assert want[0].startswith(b"+OK\r\n" + UNFRAMED)       # the relay really did its part
    assert got == want
    # The proxy itself is unharmed, and a fresh client sees ordinary replies.
    with RawConn(proxy.port) as c:
        assert c.cmd("GET", "k").raw == b"$1\r\nv\r\n"


def test_unframed_reply_then_quit_closes_as_redis_does(relayed):
    relay, proxy = relayed
    for port in (relay.port, proxy.port):
        with RawConn(port) as c:
            c.cmd("HELLO", "3")
            c.send(C("ECHO", TRIGGER) + C("QUIT"))
            assert c.read_until_close() == UNFRAMED + b"+OK\r\n"
