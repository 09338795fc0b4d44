"""A lean byte stream for the anyio engine when it runs on asyncio (and uvloop).

anyio's asyncio ``SocketStream`` is built for any use: every ``receive()`` resumes reading on the
transport, waits, and pauses it again (two ``epoll_ctl`` calls per request under uvloop), and
every ``send()`` first yields to the event loop once (a checkpoint). For a server that answers
one small request per read, that is most of the time it spends per request outside the Rust
``Session``.

:func:`adopt` moves an accepted connection's transport onto :class:`_Protocol`, which keeps
reading enabled and pauses it only when more than :data:`HIGH_WATER` bytes wait unread (standard
asyncio flow control), so a client that sends without reading its replies is still not read
without bound. ``send`` writes at once and waits only while the transport says its buffer is
full; the write buffer limit stays 0, as anyio sets it, so the server holds at most one reply for
a slow reader. Cancellation (anyio's cancel scopes, ``move_on_after``) works as with anyio's own
streams: they await plain asyncio futures.

Only plain TCP connections on asyncio are adopted; unix sockets, TLS and other backends (trio)
keep anyio's streams.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

__all__ = ["HIGH_WATER", "FastStream", "adopt"]

#: Unread bytes at which reading pauses until the connection catches up.
HIGH_WATER = 256 * 1024


class _Protocol(asyncio.Protocol):
    __slots__ = (
        "attention",
        "buffered",
        "chunks",
        "eof",
        "exc",
        "inline",
        "lost",
        "reader",
        "reading_paused",
        "transport",
        "writer",
        "writing_paused",
    )

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.lost = False
        self.exc: BaseException | None = None
        self.reader: asyncio.Future[None] | None = None
        self.writer: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.inline: Callable[[bytes], bool] | None = None
        #: The inline handler handed the connection back: the next receive() returns b"".
        self.attention = False

    def data_received(self, data: bytes) -> None:
        # While the connection's task waits for a request with nothing queued, the inline
        # handler may answer this read on the spot, saving the task's wake-up.
        inline = self.inline
        reader = self.reader
        if (
            inline is not None
            and reader is not None
            and not reader.done()
            and not self.chunks
            and not self.attention
            and inline(data)
        ):
            return
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered >= HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        _wake(self.reader)

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self.reader)
        return True  # keep the write side open, as anyio does; the server closes the connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.exc = exc
        _wake(self.reader)
        _wake(self.writer)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        _wake(self.writer)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class FastStream(anyio.abc.ByteStream):
    """A connected TCP socket's transport, read and written with asyncio flow control."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._tp = transport
        self._p = protocol
        self._loop = asyncio.get_running_loop()
        self._closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Everything that arrived since the last call (up to ``max_bytes``), waiting for some
        only when nothing did."""
        p = self._p
        chunks = p.chunks
        while not chunks:
            if p.attention:
                p.attention = False
                return b""
            if self._closed:
                raise anyio.ClosedResourceError
            if p.exc is not None:
                raise anyio.BrokenResourceError from p.exc
            if p.eof or p.lost:
                raise anyio.EndOfStream
            p.reader = self._loop.create_future()
            try:
                await p.reader
            finally:
                p.reader = None
        data = chunks.popleft()
        if chunks and len(data) < max_bytes:
            parts = [data]
            size = len(data)
            while chunks and size < max_bytes:
                nxt = chunks.popleft()
                parts.append(nxt)
                size += len(nxt)
            data = b"".join(parts)
        if len(data) > max_bytes:
            chunks.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        p.buffered -= len(data)
        if p.reading_paused and p.buffered < HIGH_WATER and not self._tp.is_closing():
            p.reading_paused = False
            self._tp.resume_reading()
        return data

    async def send(self, item: bytes) -> None:
        """Writes ``item``; returns once the transport has room again (at once, usually)."""
        p = self._p
        if self._closed:
            raise anyio.ClosedResourceError
        if p.lost or self._tp.is_closing():
            raise anyio.BrokenResourceError from p.exc
        self._tp.write(item)
        await self.drain()

    async def drain(self) -> None:
        """Returns once the transport has room again (at once, usually)."""
        p = self._p
        while p.writing_paused and not p.lost:
            p.writer = self._loop.create_future()
            try:
                await p.writer
            finally:
                p.writer = None
        if p.lost and p.exc is not None:
            raise anyio.BrokenResourceError from p.exc

    # The inline path (see ``connection.run_connection``): a handler that the protocol calls
    # with a read while ``receive()`` waits, which answers it with ``write_now`` and calls
    # ``hand_over`` when the task must take over (close, backpressure, more to answer).

    def set_inline(self, handler: Callable[[bytes], bool] | None) -> None:
        """``handler(data)`` returns True when it consumed ``data``, False to queue it."""
        self._p.inline = handler

    def write_now(self, item: bytes) -> None:
        self._tp.write(item)

    @property
    def writing_paused(self) -> bool:
        return self._p.writing_paused

    def hand_over(self) -> None:
        """Wakes the task waiting in ``receive()``, which returns b"" (before any queued data)."""
        self._p.attention = True
        _wake(self._p.reader)

    async def send_eof(self) -> None:
        self._tp.write_eof()

    async def aclose(self) -> None:
        """Closes the connection the way anyio's stream does: FIN, close, one loop turn, abort
        (a reply was flushed before ``send`` returned, so nothing is cut short)."""
        self._closed = True
        if self._tp.is_closing():
            return
        with contextlib.suppress(OSError, RuntimeError):
            self._tp.write_eof()
        self._tp.close()
        await asyncio.sleep(0)
        self._tp.abort()


def adopt(stream: Any) -> FastStream | None:
    """The accepted connection as a :class:`FastStream`, or None when it is not a plain TCP
    stream of anyio's asyncio backend (then the caller keeps ``stream``)."""
    if type(stream).__module__ != "anyio._backends._asyncio":
        return None
    transport: Any = getattr(stream, "_transport", None)
    old = getattr(stream, "_protocol", None)
    # uvloop's transports don't subclass asyncio.Transport: check what is used instead.
    needed = ("set_protocol", "pause_reading", "resume_reading", "write", "is_closing")
    if old is None or not all(hasattr(transport, n) for n in needed):
        return None
    if transport.is_closing():
        return None
    protocol = _Protocol(transport)
    # Whatever anyio's protocol already holds moves over, in order.
    for chunk in getattr(old, "read_queue", ()):
        protocol.data_received(chunk)
    if getattr(old, "is_at_eof", False):
        protocol.eof = True
    if getattr(old, "exception", None) is not None:
        protocol.lost = True
        protocol.exc = old.exception
    transport.set_protocol(protocol)
    # anyio paused reading after the accept; from here flow control decides.
    if not protocol.reading_paused:
        transport.resume_reading()
    return FastStream(transport, protocol)
