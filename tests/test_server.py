"""The server through real sockets, with each I/O engine: a subprocess ``ratmemcached`` and an
embedded one (``serve`` for anyio, ``serve_native`` for the native engine)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from pymemcache.client.base import Client

import ratmemcache
from ratmemcache.client import (
    StreamingError,
    astreaming_get,
    astreaming_set,
    streaming_get,
    streaming_set,
)
from servers import (
    ENGINES,
    MEMCACHED,
    ServerProcess,
    exchange,
    free_port,
    memcached,
    ratmemcached,
    requires_memcached,
    wait_for_unix,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX only")
each_engine = pytest.mark.parametrize("engine", ENGINES)


def client(srv: ServerProcess, **kw: object) -> Client:
    return Client(srv.address, connect_timeout=5, timeout=10, **kw)


def recv_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


def send_half_request(srv: ServerProcess, sock: socket.socket, data: bytes) -> None:
    """Sends ``data`` (a request's first part) and returns once the server has read it: its
    ``bytes_read`` counts it, with the ``stats`` requests that ask (7 bytes each)."""
    before = int(stats(srv)["bytes_read"])
    sock.sendall(data)
    deadline = time.monotonic() + 30
    while int(stats(srv)["bytes_read"]) < before + 7 + len(data):
        assert time.monotonic() < deadline, "the server never read the request's first part"
        time.sleep(0.02)


def stats(srv: ServerProcess, *args: str) -> dict[str, str]:
    with srv.connect() as s:
        raw = exchange(s, ("stats " + " ".join(args)).strip().encode() + b"\r\n", until=b"END\r\n")
    out = {}
    for line in raw.decode().splitlines():
        if line.startswith("STAT "):
            _, k, v = line.split(" ", 2)
            out[k] = v
    return out


@pytest.fixture(scope="module", params=ENGINES)
def shared(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """One server per engine for the tests that don't care about its lifecycle."""
    with ratmemcached("-I", "8m", "-m", "64", engine=request.param) as srv:
        yield srv


# -- the basics, with a real client -----------------------------------------------------------


def test_set_get_delete_with_pymemcache(shared: ServerProcess) -> None:
    c = client(shared)
    try:
        assert c.set("basic:a", b"hello", noreply=False) is True
        assert c.get("basic:a") == b"hello"
        assert c.get_many(["basic:a", "basic:missing"]) == {"basic:a": b"hello"}
        assert c.delete("basic:a", noreply=False) is True
        assert c.get("basic:a") is None
        assert c.incr("basic:n", 1) is None
        c.set("basic:n", b"41", noreply=False)
        assert c.incr("basic:n", 1) == 42
    finally:
        c.close()


def test_pipelined_requests_are_answered_together_in_order(shared: ServerProcess) -> None:
    n = 200
    batch = b"".join(b"set pipe:%d 0 0 %d\r\n%d\r\n" % (i, len(str(i)), i) for i in range(n))
    batch += b"".join(b"get pipe:%d\r\n" % i for i in range(n))
    expected = b"STORED\r\n" * n + b"".join(
        b"VALUE pipe:%d 0 %d\r\n%d\r\nEND\r\n" % (i, len(str(i)), i) for i in range(n)
    )
    with shared.connect() as s:
        reply = exchange(s, batch, until=b"VALUE pipe:%d 0 3\r\n%d\r\nEND\r\n" % (n - 1, n - 1))
    assert reply == expected


def test_replies_over_the_budget_and_quit_from_one_small_read(shared: ServerProcess) -> None:
    """One short read whose replies exceed the 1 MB reply budget: the rest is answered after
    the first part is sent (the anyio engine's inline path hands over to the connection's
    task); then a quit in the same read closes the connection after its replies."""
    value = b"b" * 100_000
    with shared.connect() as s:
        assert exchange(s, b"set budget 0 0 %d\r\n%s\r\n" % (len(value), value)) == b"STORED\r\n"
        one = b"VALUE budget 0 %d\r\n%s\r\nEND\r\n" % (len(value), value)
        s.sendall(b"get budget\r\n" * 30 + b"quit\r\n")
        assert recv_until_closed(s) == one * 30


def test_stats_settings_reflect_the_config(shared: ServerProcess) -> None:
    st = stats(shared, "settings")
    assert st["tcpport"] == str(shared.port)
    assert st["maxconns"] == "1024"
    assert st["item_size_max"] == str(8 << 20)
    assert st["maxbytes"] == str(64 << 20)
    assert st["udpport"] == "0"
    assert st["io_engine"] == ("native" if "native" in shared.argv else "anyio")
    general = stats(shared)
    assert int(general["curr_connections"]) >= 1


def test_streaming_helpers_against_the_server(shared: ServerProcess) -> None:
    value = bytes(range(256)) * 1000  # 256000 bytes
    ups: list[tuple[int, int]] = []
    downs: list[tuple[int, int]] = []
    host, port = shared.address
    streaming_set(
        host, port, "stream:v", value, chunk_size=65536, progress=lambda d, t: ups.append((d, t))
    )
    assert ups[-1] == (len(value), len(value)) and len(ups) == 4
    got = streaming_get(
        host, port, "stream:v", chunk_size=100000, progress=lambda d, t: downs.append((d, t))
    )
    assert got == value
    assert downs == [(100000, 256000), (200000, 256000), (256000, 256000)]
    c = client(shared)
    try:
        assert c.get("stream:v") == value  # a normal get sees the streamed upload
    finally:
        c.close()
    with pytest.raises(StreamingError) as err:
        streaming_get(host, port, "stream:missing")
    assert err.value.reason
    with shared.connect() as s:
        assert exchange(s, b"streaming_get stream:v 0\r\n").startswith(b"STREAM_ERROR ")


def test_async_streaming_helpers(shared: ServerProcess) -> None:
    host, port = shared.address
    value = b"x" * 50_000

    async def main() -> bytes:
        await astreaming_set(host, port, "stream:async", value, chunk_size=7000, flags=5)
        return await astreaming_get(host, port, "stream:async", chunk_size=9999)

    assert anyio.run(main) == value
    c = client(shared)
    try:
        raw = c.get("stream:async")
        assert raw == value
    finally:
        c.close()


def test_large_value_does_not_stall_other_clients(shared: ServerProcess) -> None:
    big = b"B" * (5 << 20)
    errors: list[BaseException] = []
    done = threading.Event()

    def mover() -> None:
        c = client(shared)
        try:
            for _ in range(3):
                assert c.set("large:v", big, noreply=False)
                assert c.get("large:v") == big
        except BaseException as e:
            errors.append(e)
        finally:
            c.close()
            done.set()

    small = client(shared)
    small.set("large:small", b"s", noreply=False)
    worst = 0.0
    answered = 0
    t = threading.Thread(target=mover)
    t.start()
    try:
        while not done.is_set():
            t0 = time.perf_counter()
            assert small.get("large:small") == b"s"
            worst = max(worst, time.perf_counter() - t0)
            answered += 1
    finally:
        t.join(60)
        small.close()
    assert not errors, errors
    assert answered >= 10  # small gets kept being answered while 30 MB moved
    assert worst < 1.0, f"a small get waited {worst:.3f}s behind the large value"


@each_engine
def test_unix_socket_alone(tmp_path: Path, engine: str) -> None:
    """memcached's -s: the unix socket, with -a's permissions, and no TCP or UDP at all."""
    if sys.platform == "win32":
        pytest.skip("POSIX only")
    path = tmp_path / "r.sock"
    udp = free_port()
    with ratmemcached("-a", "0750", "-U", str(udp), engine=engine, unix_socket=path) as srv:
        assert stat.S_IMODE(path.stat().st_mode) == 0o750
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(path))
            assert exchange(s, b"set u 0 0 1\r\nz\r\nget u\r\n", until=b"END\r\n") == (
                b"STORED\r\nVALUE u 0 1\r\nz\r\nEND\r\n"
            )
            settings = exchange(s, b"stats settings\r\n", until=b"END\r\n")
        assert f"STAT domain_socket {path}\r\n".encode() in settings
        assert b"STAT umask 750\r\n" in settings
        # nothing listens on the would-be TCP port, nor on UDP
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(srv.address, timeout=5).close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", udp))
    assert srv.returncode == 0
    assert not path.exists()  # removed on exit


@requires_memcached
def test_unix_socket_alone_as_memcached(tmp_path: Path) -> None:
    """memcached -s -a: the same (the oracle for the test above)."""
    path = tmp_path / "m.sock"
    assert MEMCACHED is not None
    argv = [MEMCACHED, "-s", str(path), "-a", "0750", "-p", str(free_port())]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv += ["-u", "root"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_unix(path, proc, 10)
        assert stat.S_IMODE(path.stat().st_mode) == 0o750
        port = int(argv[argv.index("-p") + 1])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        proc.terminate()
        proc.wait(10)


# -- limits -----------------------------------------------------------------------------------


@each_engine
def test_max_connections_refuses_like_memcached_and_stays_healthy(engine: str) -> None:
    with ratmemcached("-c", "2", engine=engine) as srv:
        # The helper's readiness probe connection may still be closing: wait until it's gone.
        deadline = time.monotonic() + 30
        while int(stats(srv)["curr_connections"]) > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        # The probe's own connection may still be closing too: retry until both get in.
        while True:
            a, b = srv.connect(), srv.connect()
            replies = [exchange(s, b"version\r\n") for s in (a, b)]
            if all(r.startswith(b"VERSION ") for r in replies) or time.monotonic() > deadline:
                break
            a.close()
            b.close()
            time.sleep(0.05)
        try:
            for r in replies:
                assert r.startswith(b"VERSION ")
            with srv.connect() as third:
                assert recv_until_closed(third) == b"ERROR Too many open connections\r\n"
            a.close()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # a slot frees up once the server sees the close
                with srv.connect() as again:
                    reply = exchange(again, b"stats\r\n", until=(b"END\r\n", b"connections\r\n"))
                if reply.endswith(b"END\r\n"):
                    break
                time.sleep(0.05)
            assert b"STAT rejected_connections " in reply
            rejected = int(reply.split(b"STAT rejected_connections ")[1].split(b"\r\n")[0])
            assert rejected >= 1
            assert exchange(b, b"version\r\n").startswith(b"VERSION ")  # b was never disturbed
        finally:
            a.close()
            b.close()
    assert srv.returncode == 0
    assert "refused a connection" in srv.output()


@requires_memcached
@each_engine
def test_cache_memlimit_changes_the_limit_at_run_time(engine: str) -> None:
    """memcached's cache_memlimit: both servers report the new limit in ``stats`` and ``stats
    settings``; ratmemcached also evicts down to a lower limit at once (memcached frees slab
    memory only as it is reused), and a higher limit lets it grow again."""
    value = b"v" * 1000
    for srv_cm in (memcached("-m", "64"), ratmemcached("-m", "64", engine=engine)):
        with srv_cm as srv:
            mc = client(srv)
            for i in range(30_000):  # ~30 MB of items
                mc.set(f"k{i}", value, noreply=True)
            assert mc.get("k29999") == value
            with srv.connect() as s:
                assert exchange(s, b"cache_memlimit 8\r\n") == b"OK\r\n"
            assert stats(srv)["limit_maxbytes"] == str(8 << 20)
            assert stats(srv, "settings")["maxbytes"] == str(8 << 20)
            if srv.name.startswith("ratmemcached"):
                s1 = stats(srv)
                assert int(s1["bytes"]) <= 8 << 20
                assert int(s1["evictions"]) > 0
                assert int(s1["curr_items"]) < 8_500
            with srv.connect() as s:
                assert exchange(s, b"cache_memlimit 128\r\n") == b"OK\r\n"
            for i in range(30_000):
                mc.set(f"j{i}", value, noreply=True)
            assert mc.get("j0") == value  # nothing of the new 30 MB was evicted
            assert stats(srv)["limit_maxbytes"] == str(128 << 20)
            mc.close()


@each_engine
def test_idle_timeout_closes_idle_clients_only(engine: str) -> None:
    with ratmemcached("-o", "idle_timeout=1", engine=engine) as srv:
        idle = srv.connect()
        busy = srv.connect()
        try:
            t0 = time.monotonic()
            for _ in range(8):  # ~1.6s of activity, each gap shorter than the timeout
                assert exchange(busy, b"version\r\n").startswith(b"VERSION ")
                time.sleep(0.2)
            assert recv_until_closed(idle, timeout=5) == b""  # closed by the server
            assert 0.9 <= time.monotonic() - t0 < 5
            assert exchange(busy, b"version\r\n").startswith(b"VERSION ")
        finally:
            idle.close()
            busy.close()
    assert "idle timeout" in srv.output()


# -- shutdown ---------------------------------------------------------------------------------


@posix_only
@each_engine
def test_sigterm_exits_0_with_idle_clients(engine: str) -> None:
    # A grace period far longer than a stop takes, even on a busy machine.
    cfg = {"server": {"shutdown_grace": 120}}
    with ratmemcached(config=cfg, engine=engine) as srv, contextlib.ExitStack() as stack:
        socks = [stack.enter_context(srv.connect()) for _ in range(5)]
        for s in socks:
            assert exchange(s, b"version\r\n").startswith(b"VERSION ")
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        assert srv.wait(60) == 0
        assert time.monotonic() - t0 < 60  # idle connections don't wait out the grace period
        for s in socks:
            assert recv_until_closed(s) == b""


@posix_only
@each_engine
def test_sigterm_lets_a_request_in_flight_finish(engine: str) -> None:
    cfg = {"server": {"shutdown_grace": 120}}  # (the default 5 s, on a busy machine...)
    with ratmemcached(config=cfg, engine=engine) as srv, srv.connect() as s:
        send_half_request(srv, s, b"set inflight 0 0 10\r\n01234")
        srv.send_signal(signal.SIGTERM)
        srv.wait_for_output("SIGTERM received")
        time.sleep(0.3)
        assert srv.returncode is None  # still finishing our request
        s.sendall(b"56789\r\n")
        assert exchange(s, b"") == b"STORED\r\n"
        assert recv_until_closed(s) == b""  # then closed
        assert srv.wait(30) == 0


@posix_only
@each_engine
def test_second_signal_forces_exit(engine: str) -> None:
    cfg = {"server": {"shutdown_grace": 60}}
    with ratmemcached(config=cfg, engine=engine) as srv, srv.connect() as s:
        send_half_request(srv, s, b"set stuck 0 0 10\r\n01")  # a request never finished
        srv.send_signal(signal.SIGTERM)
        # Handled before the second is sent: two pending SIGTERMs would merge into one.
        srv.wait_for_output("SIGTERM received")
        time.sleep(0.3)
        assert srv.returncode is None
        srv.send_signal(signal.SIGTERM)
        assert srv.wait(30) == 1
    assert "again: closing all connections now" in srv.output()


@each_engine
def test_shutdown_command_when_enabled(engine: str) -> None:
    with ratmemcached("-A", engine=engine) as srv, srv.connect() as s:
        s.sendall(b"shutdown\r\n")
        recv_until_closed(s)
        assert srv.wait(10) == 0
    assert "shutdown" in srv.output()


def test_shutdown_command_refused_by_default(shared: ServerProcess) -> None:
    with shared.connect() as s:
        reply = exchange(s, b"shutdown\r\n")
    assert reply.startswith(b"ERROR")
    assert shared.returncode is None  # still serving
    with shared.connect() as s:
        assert exchange(s, b"version\r\n").startswith(b"VERSION ")


# -- embedding --------------------------------------------------------------------------------


def test_embedding_in_an_asyncio_app_shares_the_cache() -> None:
    cache = ratmemcache.Cache(max_memory="16MB")

    def network_side(port: int) -> tuple[bytes | None, bool]:
        c = Client(("127.0.0.1", port), connect_timeout=5, timeout=5)
        try:
            seen = c.get("from-app")
            stored = c.set("from-net", b"hello app", noreply=False)
            return seen, stored
        finally:
            c.close()

    async def app() -> tuple[bytes | None, bool, object, int]:
        async with anyio.create_task_group() as tg:
            server = await tg.start(functools.partial(ratmemcache.serve, cache, "127.0.0.1", 0))
            cache.set("from-app", b"set directly")
            seen, stored = await anyio.to_thread.run_sync(network_side, server.port)
            from_net = cache.get("from-net")
            with anyio.fail_after(60):  # the client's close reaches the server soon after
                # Polled: the server has no event for its connection count.
                while server.connection_count:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            conns = server.connection_count
            server.request_shutdown()
        return seen, stored, from_net, conns

    seen, stored, from_net, conns = asyncio.run(app())
    assert seen == b"set directly"
    assert stored is True
    assert from_net == b"hello app"
    assert conns == 0
    assert not cache.closed  # the app's cache outlives the server
    cache.set("after", b"1")
    cache.close()


def test_embedding_cancel_and_options() -> None:
    cache = ratmemcache.Cache()

    async def app() -> bytes:
        async with anyio.create_task_group() as tg:
            server = await tg.start(
                functools.partial(
                    ratmemcache.serve, cache, "127.0.0.1", 0, max_connections=3, idle_timeout=30
                )
            )
            assert server.config.server.max_connections == 3
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            async with stream:
                await stream.send(b"set e 0 0 1\r\nq\r\nget e\r\n")
                reply = b""
                while not reply.endswith(b"END\r\n"):
                    reply += await stream.receive()
            tg.cancel_scope.cancel()  # cancelling the task stops the server
        return reply

    assert anyio.run(app) == b"STORED\r\nVALUE e 0 1\r\nq\r\nEND\r\n"
    assert cache.get("e") == b"q"
    with pytest.raises(TypeError, match="unexpected option 'colour'"):
        anyio.run(functools.partial(ratmemcache.serve, cache, "127.0.0.1", 0, colour=1))
    cache.close()


def test_embedded_server_port_in_use_raises_a_clear_error() -> None:
    from ratmemcache.errors import ServerStartError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServerStartError, match="address already in use"):
            anyio.run(functools.partial(ratmemcache.serve, None, "127.0.0.1", port))


def test_serve_native_shares_the_cache_with_in_process_callers() -> None:
    cache = ratmemcache.Cache(max_memory="16MB")
    with ratmemcache.serve_native(cache, "127.0.0.1", 0, worker_threads=2) as server:
        assert server.port > 0 and server.running
        cache.set("from-app", b"set directly")
        c = Client(("127.0.0.1", server.port), connect_timeout=5, timeout=5)
        try:
            assert c.get("from-app") == b"set directly"
            assert c.set("from-net", b"hello app", noreply=False) is True
            assert cache.get("from-net") == b"hello app"  # seen in process at once

            # Both sides keep writing the same keys concurrently.
            def app_writes() -> None:
                for i in range(2000):
                    cache.set(f"shared:{i % 50}", b"app")

            t = threading.Thread(target=app_writes)
            t.start()
            for i in range(2000):
                c.set(f"shared:{i % 50}", b"net", noreply=False)
            t.join(30)
            assert all(cache.get(f"shared:{i}") in (b"app", b"net") for i in range(50))
            assert c.stats()[b"curr_connections"] >= 1
            assert c.get_many(["from-app", "from-net"]) == {
                "from-app": b"set directly",
                "from-net": b"hello app",
            }
        finally:
            c.close()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            st = exchange(s, b"stats settings\r\n", until=b"END\r\n")
        assert b"STAT io_engine native\r\n" in st
    assert not server.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    assert not cache.closed  # the app's cache outlives the server
    cache.set("after", b"1")
    cache.close()


def test_serve_native_options_shutdown_command_and_errors() -> None:
    from ratmemcache.errors import ServerStartError

    cache = ratmemcache.Cache()
    server = ratmemcache.serve_native(
        cache, "127.0.0.1", 0, max_connections=1, allow_shutdown=True, shutdown_grace=1
    )
    try:
        assert server.config.server.max_connections == 1
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
                assert recv_until_closed(extra) == b"ERROR Too many open connections\r\n"
            s.sendall(b"shutdown\r\n")
            assert recv_until_closed(s) == b""
        deadline = time.monotonic() + 30
        while server.running and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not server.running  # the shutdown command stopped it
    finally:
        server.stop()
    with pytest.raises(TypeError, match="unexpected option 'colour'"):
        ratmemcache.serve_native(cache, "127.0.0.1", 0, colour=1)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServerStartError, match="address already in use"):
            ratmemcache.serve_native(cache, "127.0.0.1", port)
    cache.close()


# -- against the reference ----------------------------------------------------------------------


@requires_memcached
@each_engine
def test_same_bytes_as_memcached_for_a_basic_session(engine: str) -> None:
    session = (
        b"set a 5 0 3\r\nabc\r\n"
        b"get a b\r\n"
        b"add a 0 0 1\r\nx\r\n"
        b"append a 0 0 2\r\nde\r\n"
        b"gets a\r\n"
        b"incr a 1\r\n"
        b"set n 0 0 2\r\n10\r\n"
        b"incr n 5\r\ndecr n 100\r\n"
        b"touch n 100\r\n"
        b"delete a\r\ndelete a\r\n"
        b"bogus command\r\n"
        b"get a n\r\n"
    )
    end = b"VALUE n 0 2\r\n0 \r\nEND\r\n"  # decr keeps the length: memcached pads with a space
    replies = []
    for start in (memcached, functools.partial(ratmemcached, engine=engine)):
        with start() as srv, srv.connect() as s:
            replies.append(exchange(s, session, until=end))
    ref, ours = replies
    assert ref.endswith(end)
    # cas values are server-specific; compare everything else byte for byte.
    assert _mask_cas(ours) == _mask_cas(ref)


def _mask_cas(reply: bytes) -> bytes:
    lines = reply.split(b"\r\n")
    for i, line in enumerate(lines):
        parts = line.split(b" ")
        if parts[0] == b"VALUE" and len(parts) == 5:
            lines[i] = b" ".join([*parts[:4], b"<cas>"])
    return b"\r\n".join(lines)
