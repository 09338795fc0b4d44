"""Hostile input, overload and faults against a real ``ratmemcached``: a panicking command, a huge
declared value, a client that never reads its replies, a slow client, and memory under churn."""

from __future__ import annotations

import os
import random
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from servers import ENGINES, exchange, ratmemcached

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def read_until_closed(sock: socket.socket) -> bytes:
    buf = b""
    while chunk := sock.recv(65536):
        buf += chunk
    return buf


@pytest.mark.parametrize("engine", ENGINES)
def test_a_panicking_command_closes_only_its_connection(engine: str) -> None:
    with ratmemcached(env={"RATMEMCACHE_TEST_HOOKS": "1"}, engine=engine) as srv:
        bystander = srv.connect()
        assert exchange(bystander, b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
        victim = srv.connect()
        victim.sendall(b"debug panic\r\n")
        assert read_until_closed(victim).startswith(b"SERVER_ERROR internal error")
        assert exchange(bystander, b"get k\r\n", until=b"END\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"
        fresh = srv.connect()
        assert exchange(fresh, b"version\r\n").startswith(b"VERSION ")
        for s in (bystander, victim, fresh):
            s.close()
    assert srv.returncode == 0, srv.output()
    assert "a bug" in srv.output()


def test_the_panic_hook_is_off_unless_a_test_asks_for_it() -> None:
    with ratmemcached() as srv, srv.connect() as s:
        assert exchange(s, b"debug panic\r\n") == b"ERROR\r\n"


@linux_only
@pytest.mark.parametrize("engine", ENGINES)
def test_a_huge_declared_value_is_refused_before_anything_is_allocated(engine: str) -> None:
    with ratmemcached(engine=engine) as srv, srv.connect() as s:
        before = rss_bytes(srv.pid)
        reply = exchange(s, b"set big 0 0 2000000000\r\n")
        assert reply == b"SERVER_ERROR object too large for cache\r\n"
        # The declared bytes are swallowed as they arrive, never buffered: memory does not grow
        # with what is sent (the allocator may keep some tens of MB of slack after the first).
        chunk = b"x" * (1 << 20)
        for _ in range(64):
            s.sendall(chunk)
        after_64 = rss_bytes(srv.pid)
        for _ in range(192):
            s.sendall(chunk)
        after_256 = rss_bytes(srv.pid)
        assert after_256 - after_64 < 32 << 20, (before, after_64, after_256)
        assert after_256 - before < 128 << 20, (before, after_64, after_256)
        with srv.connect() as other:
            assert exchange(other, b"set ok 0 0 2\r\nhi\r\n") == b"STORED\r\n"


@linux_only
@pytest.mark.parametrize("engine", ENGINES)
def test_a_client_that_never_reads_gets_backpressure_not_unbounded_buffering(engine: str) -> None:
    value = os.urandom(4096)
    keys = 100
    lines = 500  # 500 x 100 x 4 KB = 200 MB of replies if the server buffered them all
    with ratmemcached("-m", "64", engine=engine) as srv:
        c = Client(srv.address)
        c.set("k", value)
        c.close()
        base = rss_bytes(srv.pid)
        s = srv.connect(timeout=60)
        request = b"get" + b" k" * keys + b"\r\n"

        def send() -> None:
            for _ in range(lines):
                s.sendall(request)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        time.sleep(3)
        grown = rss_bytes(srv.pid) - base
        assert grown < 48 << 20, f"the server grew by {grown >> 20} MB for a client not reading"
        # Now read: every reply arrives, complete and in order.
        one = b"VALUE k 0 4096\r\n" + value + b"\r\n"
        want = one * keys + b"END\r\n"
        got, buf = 0, b""
        while got < lines:
            chunk = s.recv(1 << 20)
            assert chunk, f"closed after {got} replies"
            buf += chunk
            k = len(buf) // len(want)
            assert buf[: k * len(want)] == want * k
            buf = buf[k * len(want) :]
            got += k
        sender.join(30)
        s.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_stalled_partial_request_is_dropped_after_the_idle_timeout(engine: str) -> None:
    with ratmemcached("-o", "idle_timeout=1", engine=engine) as srv:
        with srv.connect() as slow:
            slow.sendall(b"set k 0 0 10\r\nabc")  # then nothing: slowloris
            t0 = time.monotonic()
            assert read_until_closed(slow) == b""
            assert 0.5 < time.monotonic() - t0 < 10
        with srv.connect() as ok:
            assert exchange(ok, b"get k\r\n") == b"END\r\n", "the half request stored nothing"


@linux_only
def test_rss_stays_within_a_bound_of_max_memory_under_churn() -> None:
    """Random sizes from 10 B to 100 KB, far more data than fits, RSS sampled as it runs.

    The documented bound (docs/reliability.md): RSS <= 1.5 x max_memory + 60 MB (the
    interpreter, the extension, connection buffers and allocator slack).
    """
    max_memory = 32 << 20
    rng = random.Random(7)
    with ratmemcached("-m", "32", "-I", "1m") as srv:
        c = Client(srv.address)
        payload = os.urandom(100_000)
        written = 0
        samples = []
        deadline = time.monotonic() + 10
        i = 0
        while time.monotonic() < deadline:
            size = int(10 * (10_000 ** rng.random()))  # log-uniform 10 B .. 100 KB
            c.set(f"k{i % 50_000}", payload[:size], noreply=True)
            written += size
            i += 1
            if i % 2000 == 0:
                samples.append(rss_bytes(srv.pid))
        c.close()
        samples.append(rss_bytes(srv.pid))
    peak = max(samples)
    assert written > 4 * max_memory, "the churn never filled the cache"
    assert peak <= 1.5 * max_memory + (60 << 20), f"peak RSS {peak >> 20} MB"
