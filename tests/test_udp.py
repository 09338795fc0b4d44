"""memcached's UDP protocol (``-U PORT``), held against memcached -U byte for byte.

The same datagrams go to memcached and to ratmemcached (both I/O engines); every reply datagram,
its 8-byte frame header included, must be the same. memcached runs with one worker thread: its
UDP connections keep state between datagrams (a request still waiting for its value swallows
the next datagram, and after a ``quit`` every later batch ends the datagram), so each case here
sends what a fresh connection answers the same way every time, and ``quit`` comes last.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest

from servers import ENGINES, exchange, memcached, ratmemcached, requires_memcached

HOST = "127.0.0.1"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def header(request_id: int, sequence: int = 0, total: int = 1, reserved: int = 0) -> bytes:
    return struct.pack(">HHHH", request_id, sequence, total, reserved)


def ask(port: int, datagram: bytes, *, quiet_for: float = 0.3) -> list[bytes]:
    """Send one datagram; collect the replies until none comes for ``quiet_for`` seconds."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.settimeout(quiet_for)
        s.sendto(datagram, (HOST, port))
        replies: list[bytes] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                replies.append(s.recv(65536))
            except TimeoutError:
                break
        return replies


def binary_request(opcode: int, key: bytes = b"", opaque: int = 0) -> bytes:
    return struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), 0, 0, 0, len(key), opaque, 0) + key


VALUE_5000 = bytes(i % 251 for i in range(5000))

#: (name, payload after the header): sent in this order, each with its own request id.
CASES: list[tuple[str, bytes]] = [
    ("set", b"set a 5 0 3\r\nabc\r\n"),
    ("get hit", b"get a\r\n"),
    ("multi-get, hits and a miss", b"get a a nope a\r\n"),
    ("a miss first: a lone header", b"get nope a\r\n"),
    ("a miss last", b"get a nope\r\n"),
    ("misses only", b"get nope nope2\r\n"),
    ("gets", b"gets a\r\n"),
    ("gat", b"gat 0 nope a\r\n"),
    ("two gets", b"get nope\r\nget nope a\r\n"),
    ("pipelined requests", b"version\r\nget nope a\r\ndelete nope\r\nincr a 1\r\n"),
    ("noreply sends nothing", b"set q 0 0 1 noreply\r\nx\r\n"),
    ("noreply then a miss", b"set q 0 0 1 noreply\r\nx\r\nget nope a\r\n"),
    ("meta, with a quiet miss", b"mg a v\r\nmg nope v q\r\nmn\r\n"),
    ("unknown command", b"bogus\r\n"),
    ("an empty line", b"\r\n"),
    ("a bad data chunk", b"set x 0 0 3\r\nabcde\r\n"),
    ("a key too long drops earlier replies", b"version\r\nget " + b"k" * 300 + b"\r\nversion\r\n"),
    ("bad exptime", b"gat x a\r\nversion\r\n"),
    ("verbosity", b"verbosity 1\r\nverbosity 0 noreply\r\n"),
    ("a 5000-byte value", b"set big 1 0 5000\r\n" + VALUE_5000 + b"\r\n"),
    ("four datagrams", b"get big\r\n"),
    ("two large values and a small one", b"get big a big\r\n"),
    ("exactly one datagram of data", b"set b1392 0 0 1359\r\n" + b"y" * 1359 + b"\r\n"),
    ("1392 bytes", b"get b1392\r\n"),
    ("1393 bytes", b"get b1392 b1392\r\n"),
    ("25 requests", b"version\r\n" * 25),
    (
        "binary: quiet miss, hit, noop",
        binary_request(0x09, b"nope", 1) + binary_request(0x09, b"a", 2) + binary_request(0x0A),
    ),
    ("binary version twice", binary_request(0x0B) + binary_request(0x0B)),
    # malformed datagrams: no reply at all
    ("a short header", header(99)[:6]),
    ("a header alone", header(98)),
    ("a multi-datagram request", b""),
    ("no newline", b"version"),
    ("a line too long", b"version\r\n" + b"x" * 3000),
    ("an HTTP request", b"GET / HTTP/1.1\r\nversion\r\n"),
    # quit: its empty object, then nothing of the rest (last: it changes memcached's state)
    ("quit", b"quit\r\nversion\r\n"),
]


def datagrams() -> Iterator[tuple[str, bytes]]:
    for n, (name, payload) in enumerate(CASES, start=1):
        if name in ("a short header", "a header alone"):
            yield name, payload
        elif name == "a multi-datagram request":
            yield name, header(n, 0, 2) + b"version\r\n"
        else:
            yield name, header(n) + payload


def transcript(port: int) -> list[tuple[str, list[bytes]]]:
    return [(name, ask(port, d)) for name, d in datagrams()]


@pytest.fixture(scope="module")
def memcached_transcript() -> list[tuple[str, list[bytes]]]:
    port = free_udp_port()
    with memcached("-U", str(port), "-t", "1"):
        return transcript(port)


@requires_memcached
@pytest.mark.parametrize("engine", ENGINES)
def test_udp_replies_are_memcached_s_bytes(
    engine: str, memcached_transcript: list[tuple[str, list[bytes]]]
) -> None:
    port = free_udp_port()
    # one shard: CAS uniques count 1, 2, 3 as memcached's do
    with ratmemcached("-U", str(port), "-t", "1", engine=engine, config={"l1": {"shards": 1}}):
        ours = transcript(port)
    for (name, theirs), (_, mine) in zip(memcached_transcript, ours, strict=True):
        assert mine == theirs, f"{name}: memcached {theirs!r}\n ratmemcached {mine!r}"
    by_name = dict(ours)
    four = by_name["four datagrams"]
    assert [d[:8] for d in four] == [header(21, i, 4) for i in range(4)]
    assert b"".join(d[8:] for d in four) == (b"VALUE big 1 5000\r\n" + VALUE_5000 + b"\r\nEND\r\n")
    assert max(len(d) for d in four) == 1400
    assert by_name["a miss first: a lone header"][0] == header(4, 0, 0)
    assert not by_name["a multi-datagram request"] and not by_name["a short header"]


@pytest.mark.parametrize("engine", ENGINES)
def test_udp_and_tcp_serve_the_same_cache_and_udp_is_off_by_default(engine: str) -> None:
    port = free_udp_port()
    with ratmemcached("-U", str(port), engine=engine) as srv, srv.connect() as s:
        assert exchange(s, b"set k 0 0 2\r\nhi\r\n") == b"STORED\r\n"
        assert ask(port, header(7) + b"get k\r\n") == [header(7) + b"VALUE k 0 2\r\nhi\r\nEND\r\n"]
        settings = exchange(s, b"stats settings\r\n", until=b"END\r\n")
        assert f"STAT udpport {port}\r\n".encode() in settings
    with ratmemcached(engine=engine) as srv, srv.connect() as s:
        assert b"STAT udpport 0\r\n" in exchange(s, b"stats settings\r\n", until=b"END\r\n")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            # nothing listens on UDP: the port is free to bind
            u.bind((HOST, srv.port))


@requires_memcached
@pytest.mark.parametrize("engine", ENGINES)
def test_pymemcache_style_client_over_a_raw_udp_socket(engine: str) -> None:
    """A client that speaks UDP as memcached's protocol.txt describes it: request ids it picks,
    replies reassembled by sequence number, the same outcome from both servers."""

    def client(port: int) -> list[bytes]:
        got = []
        for rid, req in enumerate(
            [b"set k 3 0 3000\r\n" + b"v" * 3000 + b"\r\n", b"get k\r\n", b"delete k\r\n"],
            start=500,
        ):
            parts = ask(port, header(rid) + req)
            assert all(struct.unpack(">H", p[:2])[0] == rid for p in parts)
            ordered = sorted(parts, key=lambda p: struct.unpack(">H", p[2:4])[0])
            got.append(b"".join(p[8:] for p in ordered))
        return got

    theirs_port, ours_port = free_udp_port(), free_udp_port()
    with memcached("-U", str(theirs_port)), ratmemcached("-U", str(ours_port), engine=engine):
        assert client(ours_port) == client(theirs_port)
        assert client(ours_port)[1] == b"VALUE k 3 3000\r\n" + b"v" * 3000 + b"\r\nEND\r\n"
