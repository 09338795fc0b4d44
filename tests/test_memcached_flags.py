"""memcached's command-line switches that change what commands answer, held against memcached
1.6.18 started with the same switch, on both I/O engines: ``-A`` (``shutdown`` and its modes),
``-C`` (no CAS uniques), ``-M`` (out of memory instead of evicting) and ``-D`` (the
``stats detail`` delimiter)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from servers import ENGINES, ServerProcess, exchange, memcached, ratmemcached, requires_memcached

pytestmark = requires_memcached


def _replies(srv: ServerProcess, steps: list[tuple[bytes, bytes]]) -> list[bytes]:
    with srv.connect() as s:
        return [exchange(s, send, until=until) for send, until in steps]


def _recv_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


@pytest.mark.parametrize("engine", ENGINES)
def test_shutdown_modes(engine: str) -> None:
    starts: tuple[Callable[[], AbstractContextManager[ServerProcess]], ...] = (
        lambda: memcached("-A"),
        lambda: ratmemcached("-A", engine=engine),
    )
    for start in starts:
        with start() as srv:
            with srv.connect() as s:
                assert exchange(s, b"shutdown now\r\n") == b"CLIENT_ERROR invalid shutdown mode\r\n"
                assert exchange(s, b"shutdown graceful x\r\n") == (
                    b"CLIENT_ERROR invalid shutdown mode\r\n"
                )
                # still serving
                assert exchange(s, b"version\r\n") == b"VERSION 1.6.18\r\n"
                s.sendall(b"shutdown graceful\r\n")
                assert _recv_until_closed(s) == b""
            assert srv.wait(10) == 0


NO_CAS_STEPS = [
    (b"set foo 0 0 3\r\nbar\r\n", b"\r\n"),
    (b"gets foo\r\n", b"END\r\n"),
    (b"cas foo 0 0 1 0\r\nx\r\n", b"\r\n"),
    (b"cas foo 0 0 1 1\r\ny\r\n", b"\r\n"),
    (b"cas nokey 0 0 1 0\r\nx\r\n", b"\r\n"),
    (b"mg foo c v\r\n", b"bar\r\n"),
    (b"ms foo 1 C0\r\nz\r\n", b"\r\n"),
    (b"ms foo 1 MA C7\r\nz\r\n", b"\r\n"),
    (b"append foo 0 0 1\r\nw\r\n", b"\r\n"),
    (b"mg foo v c s\r\n", b"barzw\r\n"),
    (b"set n 0 0 1\r\n5\r\n", b"\r\n"),
    (b"ma n C0 v c\r\n", b"6\r\n"),
    (b"ma n C7\r\n", b"\r\n"),
    (b"incr n 2\r\n", b"\r\n"),
    (b"gets n\r\n", b"END\r\n"),
    (b"md n C3\r\n", b"\r\n"),
    (b"md n C0\r\n", b"\r\n"),
    (b"mg n v\r\n", b"\r\n"),
    (b"ms new 1 C0\r\nz\r\n", b"\r\n"),
    # no 8-byte CAS field: with -I 1k a 1-byte key takes a value of 972 bytes, not 964
    (b"set k 0 0 972\r\n" + b"a" * 972 + b"\r\n", b"\r\n"),
    (b"set k 0 0 973\r\n" + b"a" * 973 + b"\r\n", b"\r\n"),
    (b"stats settings\r\n", b"END\r\n"),
]


@pytest.mark.parametrize("engine", ENGINES)
def test_no_cas(engine: str) -> None:
    with memcached("-C", "-I", "1k", "-o", "slab_chunk_max=512") as ref:
        theirs = _replies(ref, NO_CAS_STEPS)
    with ratmemcached("-C", "-I", "1k", engine=engine, config={"l1": {"shards": 1}}) as ours:
        mine = _replies(ours, NO_CAS_STEPS)
    assert mine[:-1] == theirs[:-1]
    assert b"STAT cas_enabled no\r\n" in theirs[-1]
    assert b"STAT cas_enabled no\r\n" in mine[-1]
    assert theirs[-3:-1] == [b"STORED\r\n", b"SERVER_ERROR object too large for cache\r\n"]


def _stats(sock: socket.socket) -> dict[str, str]:
    reply = exchange(sock, b"stats\r\n", until=b"END\r\n").decode()
    return {k: v for _, k, v in (line.split(" ", 2) for line in reply.splitlines()[:-1])}


@pytest.mark.parametrize("engine", ENGINES)
def test_no_evictions(engine: str) -> None:
    """-M: once memory is full a set is refused with memcached's error, nothing is evicted, the
    refused set's old value is gone, and the counters say so."""
    value = b"x" * 100_000
    results = []
    starts: tuple[Callable[[], AbstractContextManager[ServerProcess]], ...] = (
        lambda: memcached("-M", "-m", "8"),
        lambda: ratmemcached("-M", "-m", "8", engine=engine),
    )
    for start in starts:
        with start() as srv, srv.connect() as s:
            replies = [
                exchange(s, b"set k%d 0 0 %d\r\n%s\r\n" % (i, len(value), value))
                for i in range(150)
            ]
            refused = [r for r in replies if r != b"STORED\r\n"]
            assert refused, "never full"
            assert set(refused) == {b"SERVER_ERROR out of memory storing object\r\n"}
            stored = replies.count(b"STORED\r\n")
            # the first items are all still there
            assert exchange(s, b"get k0\r\n", until=b"END\r\n").startswith(b"VALUE k0 0 100000")
            again = exchange(s, b"set k0 0 0 %d\r\n%s\r\n" % (len(value), value))
            assert again == b"SERVER_ERROR out of memory storing object\r\n"
            assert exchange(s, b"get k0\r\n", until=b"END\r\n") == b"END\r\n"
            st = _stats(s)
            assert st["evictions"] == "0"
            assert int(st["store_no_memory"]) == len(refused) + 1
            assert int(st["cmd_set"]) == stored
            settings = exchange(s, b"stats settings\r\n", until=b"END\r\n")
            assert b"STAT evictions off\r\n" in settings
            results.append(stored)
    # both fill up at about 8 MB (memcached counts slab pages, ratmemcached bytes per item)
    assert abs(results[0] - results[1]) <= 10, results


DETAIL_STEPS = [
    (b"stats detail on\r\n", b"\r\n"),
    (b"get a/1 b:1 a/2\r\n", b"END\r\n"),
    (b"set a/1 0 0 1\r\nx\r\n", b"\r\n"),
    (b"delete a/1\r\n", b"\r\n"),
    (b"stats detail dump\r\n", b"END\r\n"),
    (b"stats settings\r\n", b"END\r\n"),
]


@pytest.mark.parametrize("engine", ENGINES)
def test_detail_delimiter(engine: str) -> None:
    with memcached("-D", "/") as ref:
        theirs = _replies(ref, DETAIL_STEPS)
    with ratmemcached("-D", "/", engine=engine) as ours:
        mine = _replies(ours, DETAIL_STEPS)
    assert mine[:-1] == theirs[:-1]
    assert mine[-2] == b"PREFIX a get 2 hit 0 set 1 del 1\r\nEND\r\n"
    assert b"STAT stat_key_prefix /\r\n" in mine[-1]
    assert b"STAT stat_key_prefix /\r\n" in theirs[-1]
