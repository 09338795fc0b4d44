"""The anyio engine's lean asyncio stream (ratmemcache.fast_stream): framing, end of stream,
flow control both ways, and cancellation, on asyncio and on uvloop."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from ratmemcache.fast_stream import HIGH_WATER, FastStream, adopt

BACKENDS = [
    pytest.param({}, id="asyncio"),
    pytest.param({"use_uvloop": True}, id="uvloop"),
]


def run_pair(
    options: dict[str, bool],
    server: Callable[[FastStream, socket.socket], Awaitable[None]],
) -> None:
    """Accepts one connection from a blocking client socket, adopts it, runs ``server``."""
    if options.get("use_uvloop"):
        pytest.importorskip("uvloop")

    async def main() -> None:
        multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
        listener = multi.listeners[0]
        assert isinstance(listener, anyio.abc.SocketListener)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client = socket.create_connection(("127.0.0.1", port))
        try:
            stream = await listener.accept()
            fast = adopt(stream)
            assert isinstance(fast, FastStream)
            try:
                await server(fast, client)
            finally:
                await fast.aclose()
        finally:
            client.close()
            await listener.aclose()

    anyio.run(main, backend="asyncio", backend_options=options)


@pytest.mark.parametrize("options", BACKENDS)
def test_receive_joins_what_arrived_and_splits_at_max_bytes(options: dict[str, bool]) -> None:
    async def server(fast: FastStream, client: socket.socket) -> None:
        client.sendall(b"get a\r\n")
        assert await fast.receive() == b"get a\r\n"
        client.sendall(b"0123456789")
        await anyio.sleep(0.05)
        client.sendall(b"abcdef")
        await anyio.sleep(0.05)
        # Two arrivals come back as one read, cut at max_bytes; the rest stays for the next.
        assert await fast.receive(12) == b"0123456789ab"
        assert await fast.receive(12) == b"cdef"
        await fast.send(b"VALUE\r\n")
        assert client.recv(100) == b"VALUE\r\n"
        client.shutdown(socket.SHUT_WR)
        with pytest.raises(anyio.EndOfStream):
            await fast.receive()
        await fast.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await fast.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await fast.send(b"x")

    run_pair(options, server)


@pytest.mark.parametrize("options", BACKENDS)
def test_reading_pauses_above_the_high_water_mark_and_resumes(options: dict[str, bool]) -> None:
    async def server(fast: FastStream, client: socket.socket) -> None:
        client.setblocking(False)
        sent = 0
        chunk = b"x" * 65536
        # Without the server reading, the client fills the server's queue, then the kernel's
        # buffers, then blocks: the server stops reading instead of buffering without bound.
        with anyio.move_on_after(3):
            while True:
                try:
                    sent += client.send(chunk)
                except BlockingIOError:
                    await anyio.sleep(0.05)
                    try:
                        sent += client.send(chunk)
                    except BlockingIOError:
                        break
                await anyio.lowlevel.checkpoint()
        protocol = fast._p
        assert protocol.reading_paused
        assert HIGH_WATER <= protocol.buffered < HIGH_WATER + 4 * 65536
        assert sent > protocol.buffered  # the rest waits in the kernel, not in the server
        client.setblocking(True)
        got = 0
        while got < sent:
            got += len(await fast.receive(1 << 20))
        assert got == sent and not protocol.reading_paused

    run_pair(options, server)


@pytest.mark.parametrize("options", BACKENDS)
def test_a_waiting_receive_is_cancelled_cleanly(options: dict[str, bool]) -> None:
    async def server(fast: FastStream, client: socket.socket) -> None:
        with anyio.move_on_after(0.1) as timer:
            await fast.receive()
        assert timer.cancelled_caught
        client.sendall(b"after\r\n")
        assert await fast.receive() == b"after\r\n"

    run_pair(options, server)


@pytest.mark.parametrize("options", BACKENDS)
def test_send_waits_for_a_slow_reader_and_fails_once_it_is_gone(options: dict[str, bool]) -> None:
    async def server(fast: FastStream, client: socket.socket) -> None:
        big = b"v" * (8 << 20)
        with anyio.move_on_after(0.5) as timer:
            await fast.send(big)  # the client reads nothing: the send can't complete
        assert timer.cancelled_caught
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()  # RST
        with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
            for _ in range(100):
                await fast.send(b"more")
                await anyio.sleep(0.01)
            await fast.receive()

    run_pair(options, server)


def test_other_streams_are_not_adopted() -> None:
    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[bytes](1)
        async with send, receive:
            assert adopt(send) is None

    anyio.run(main)
