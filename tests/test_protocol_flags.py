"""memcached's -B (binding protocol) and -R (requests per event), held against memcached.

Each case sends the same bytes to memcached and to ratmemcached (both I/O engines) started with
the same flag, and compares what comes back and whether the connection was closed.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest

from servers import ENGINES, exchange, memcached, ratmemcached, requires_memcached

pytestmark = requires_memcached


def binary_request(opcode: int, key: bytes = b"") -> bytes:
    return struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), 0, 0, 0, len(key), 0, 0) + key


def conversation(address: tuple[str, int], data: bytes, wait: float = 0.5) -> tuple[bytes, bool]:
    """Send ``data``; return what came back within ``wait`` seconds of quiet, and whether the
    server closed the connection."""
    with socket.create_connection(address, timeout=5) as s:
        s.settimeout(wait)
        s.sendall(data)
        got = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                return got, False
            except ConnectionResetError:
                return got, True
            if not chunk:
                return got, True
            got += chunk
        return got, False


CASES: dict[str, list[bytes]] = {
    "ascii": [
        b"version\r\n",
        # a binary request is read as a text line: no newline yet, so nothing
        binary_request(0x0B),
        # with a newline in it (NOOP's opcode is 0x0a): an unknown command
        binary_request(0x0A),
        b"get a\r\n",
    ],
    "binary": [
        binary_request(0x0B),
        binary_request(0x00, b"a"),
        # a text request: nothing until 24 bytes, then the connection is closed
        b"version\r\n",
        b"get aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
    ],
    "auto": [b"version\r\n", binary_request(0x0B), b"\r\n"],
}


@pytest.mark.parametrize("binding", ["ascii", "binary", "auto"])
@pytest.mark.parametrize("engine", ENGINES)
def test_binding_protocol_answers_as_memcached(binding: str, engine: str) -> None:
    with (
        memcached("-B", binding) as theirs,
        ratmemcached("-B", binding, engine=engine) as ours,
    ):
        for data in CASES[binding]:
            assert conversation(ours.address, data) == conversation(theirs.address, data), data
        if binding != "binary":  # stats over text; a binary STAT needs no -B of its own
            with ours.connect() as s:
                settings = exchange(s, b"stats settings\r\n", until=b"END\r\n")
            name = {"auto": "auto-negotiate"}.get(binding, binding)
            assert f"STAT binding_protocol {name}\r\n".encode() in settings


def stat(address: tuple[str, int], name: str, group: bytes = b"") -> str:
    with socket.create_connection(address, timeout=5) as s:
        text = exchange(s, b"stats " + group + b"\r\n", until=b"END\r\n").decode()
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[1] == name:
            return parts[2]
    raise AssertionError(f"no {name} in {text!r}")


@pytest.mark.parametrize("engine", ENGINES)
def test_reqs_per_event_yields_as_memcached_counts(engine: str) -> None:
    """-R 5: pipelined requests in one write are all answered, and conn_yields counts as
    memcached's does: 6 requests on a read, 5 per resumed turn, and a turn that used its whole
    budget counts even when nothing is left; so does one that used all but one and then wrote
    its pending replies (unless a get, whose reply went at once, ended it)."""
    batches = [
        b"version\r\n" * 50,
        b"version\r\n" * 6,
        b"version\r\n" * 5 + b"get nope\r\n",
        b"version\r\n" * 3,
        b"version\r\n" * 5,
        b"version\r\n" * 4 + b"get nope\r\n",
    ]
    counts: list[list[int]] = []
    for start in (memcached, ratmemcached):
        kwargs = {"engine": engine} if start is ratmemcached else {}
        mine = []
        with start("-R", "5", **kwargs) as srv:
            assert stat(srv.address, "reqs_per_event", b"settings") == "5"
            for batch in batches:
                before = int(stat(srv.address, "conn_yields"))
                want = b"VERSION 1.6.18\r\n" * batch.count(b"version")
                if batch.endswith(b"nope\r\n"):
                    want += b"END\r\n"
                with srv.connect() as s:
                    s.sendall(batch)
                    got = b""
                    while len(got) < len(want):
                        chunk = s.recv(65536)
                        assert chunk, got
                        got += chunk
                    assert got == want
                mine.append(int(stat(srv.address, "conn_yields")) - before)
        counts.append(mine)
    assert counts[1] == counts[0] == [10, 1, 1, 0, 1, 0]
