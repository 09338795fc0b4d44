"""One client connection of the anyio server: a byte pump around a Rust ``Session``.

No protocol rule lives here. The loop is: read up to ``read_size`` bytes, make ONE ``feed()`` call,
write the whole reply (every pipelined answer together) in ONE send, close when the session says
so. That keeps the Python cost per read constant, however many requests the read carried.

Two things keep one client from stalling the others:

* A request that is still arriving in bulk (a multi-megabyte value: ``session.buffered`` is large),
  or a client whose last reply was large, is fed from a worker thread (the Rust side releases the
  GIL for large inputs), so copying the value never blocks the event loop.
* ``send`` waits for the socket to drain before the next read: a client that pipelines requests
  without reading its replies is not read from, so the server buffers at most one reply for it.

On a plain TCP connection under asyncio (``fast_stream.FastStream``), a light read that arrives
while the task waits is answered inline, from the protocol's callback: the same one feed and one
write, without waking the task (1.1-1.5x the requests per second in server_ratio runs). Anything
else goes through the loop above.

The request path tests plain bools (``LogSwitches``) before any logging work, so with the optional
logs off it makes no logging call at all.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.to_thread

from ratmemcache.fast_stream import FastStream
from ratmemcache.logsetup import AUDIT_LOGGER, CACHE_LOGGER, PERF_LOGGER, LogSwitches

if TYPE_CHECKING:
    from ratmemcache._core import Session

__all__ = ["ConnectionOptions", "ConnectionState", "run_connection"]

audit_log = logging.getLogger(AUDIT_LOGGER)
perf_log = logging.getLogger(PERF_LOGGER)
cache_log = logging.getLogger(CACHE_LOGGER)

#: A protocol call slower than this is reported by the performance log.
SLOW_FEED_SECONDS = 0.010

# What a peer that went away looks like, depending on when and how it left.
_GONE = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    ConnectionError,
    OSError,
)


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """Per-server settings every connection reads (shared, immutable)."""

    read_size: int = 64 * 1024
    offload_threshold: int = 256 * 1024
    idle_timeout: float = 0.0
    #: How long a reply may take to send once shutdown has begun.
    shutdown_grace: float = 5.0
    switches: LogSwitches = field(default_factory=LogSwitches)
    limiter: anyio.CapacityLimiter | None = None


@dataclass(eq=False, slots=True)
class ConnectionState:
    """What the server needs to see of a live connection, to drain it at shutdown."""

    id: int
    peer: str
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    #: True while waiting for a new request with nothing half-received: safe to close.
    idle: bool = True
    #: Set by the server at shutdown: finish the request in hand, then close.
    draining: bool = False
    closed_because: str = ""
    bytes_in: int = 0
    bytes_out: int = 0


async def run_connection(
    stream: anyio.abc.ByteStream,
    session: Session,
    state: ConnectionState,
    options: ConnectionOptions,
    on_server_close: Callable[[], None] | None = None,
) -> None:
    """Serve one client until it leaves, the session closes it, it idles out, or shutdown.

    ``on_server_close`` is called when the session asked to close (after ``quit``, a framing error
    or a ``shutdown`` command) so the server can check whether a shutdown was requested.
    """
    if not isinstance(stream, FastStream):  # a FastStream manages its own reading
        settle_read_pause(stream)
    feed = session.feed
    receive = stream.receive
    send = stream.send
    read_size = options.read_size
    offload = options.offload_threshold
    idle_timeout = options.idle_timeout
    sw = options.switches
    buffered = 0  # what the session holds of an unfinished request, after the last feed
    big_replies = False  # the last reply was large: this client moves big values
    # A request that must wait on the disk (an L1 miss with the L2 on, a write that goes down at
    # once) stops a feed with `session.must_wait` set (sessions are made with hands_off_waits):
    # the next feed runs in a worker thread, every other one here, so an L1 hit costs the same
    # with the L2 on as with it off.
    # The inline path: on a FastStream, a light read (no request half-received, no large
    # values, no optional logs, no idle timeout) that arrives while this task waits
    # is answered from the protocol's callback, without waking the task. What needs the task
    # (a close, a reply the socket can't take yet, replies left over the budget, an error) is
    # handed back to it: receive() then returns b"".
    fast = stream if isinstance(stream, FastStream) else None
    inline_close = False
    inline_error: Exception | None = None

    def exchange(data: bytes) -> tuple[bytes, bool]:
        """One protocol call and its accounting: count the bytes in, feed the session, note what
        it still holds of an unfinished request and how large its reply is. The caller sends the
        reply (``write_now`` inline, ``await send`` in the task). Synchronous and returning
        ``feed``'s own tuple, so the request path pays no await and no allocation for it; the
        heavy path runs it whole in a worker thread (the task waits meanwhile, so nothing else
        touches this connection's counters)."""
        nonlocal buffered, big_replies
        state.bytes_in += len(data)
        result = feed(data)
        buffered = session.buffered
        reply = result[0]
        if reply:
            big_replies = len(reply) >= offload
            state.bytes_out += len(reply)
        return result

    def serve_inline(data: bytes) -> bool:
        nonlocal inline_close, inline_error
        if state.draining or buffered or big_replies or len(data) >= offload:
            return False
        assert fast is not None
        try:
            reply, close = exchange(data)
        except Exception as e:  # a bug: the task raises it, as if its own feed had
            inline_error = e
            fast.hand_over()
            return True
        if reply:
            fast.write_now(reply)
        if close or fast.writing_paused or session.has_more:
            inline_close = close
            fast.hand_over()
        state.idle = buffered == 0
        return True

    def closed_by_the_engine() -> None:
        state.closed_because = "closed by the protocol engine"
        if on_server_close is not None:
            on_server_close()

    inline_ok = not (idle_timeout > 0 or sw.perf or sw.cache)
    if fast is not None and inline_ok:
        fast.set_inline(serve_inline)
    try:
        with state.scope:
            while True:
                state.idle = buffered == 0
                if state.draining and state.idle:
                    state.closed_because = "shutdown"
                    break
                if session.has_more:
                    # The last reply hit the budget with requests left: answer them before
                    # reading more, so a client that doesn't read its replies is not read either.
                    data = b""
                elif idle_timeout > 0:
                    with anyio.move_on_after(idle_timeout) as timer:
                        data = await receive(read_size)
                    if timer.cancelled_caught:
                        state.closed_because = "idle timeout"
                        break
                else:
                    data = await receive(read_size)
                    if not data:  # the inline path handed the connection back
                        if inline_error is not None:
                            raise inline_error
                        if inline_close:
                            closed_by_the_engine()
                            break
                        if fast is not None:
                            await fast.drain()
                        continue
                state.idle = False

                heavy = session.must_wait or big_replies or buffered + len(data) >= offload
                if state.draining:
                    # Shutdown began while this request was arriving: finish it (and send its
                    # reply) within the grace, even though the connection's scope may already be
                    # cancelled; then close unless the request is still incomplete.
                    close = True
                    with (
                        anyio.CancelScope(shield=True),
                        anyio.move_on_after(options.shutdown_grace) as grace,
                    ):
                        if heavy:
                            reply, close = await anyio.to_thread.run_sync(
                                exchange, data, limiter=options.limiter
                            )
                        else:
                            reply, close = exchange(data)
                        if reply:
                            await send(reply)
                    if grace.cancelled_caught or close:
                        state.closed_because = "shutdown"
                        break
                    continue

                t0 = time.perf_counter() if sw.perf else 0.0
                if heavy:
                    reply, close = await anyio.to_thread.run_sync(
                        exchange, data, limiter=options.limiter
                    )
                else:
                    reply, close = exchange(data)
                if sw.perf:
                    _report_slow(state, time.perf_counter() - t0, len(data), len(reply))
                if sw.cache:
                    cache_log.debug(
                        "conn %d: %d bytes in, %d bytes out", state.id, len(data), len(reply)
                    )
                if reply:
                    await send(reply)
                if close:
                    closed_by_the_engine()
                    break
    except _GONE:
        state.closed_because = state.closed_because or "client went away"
    else:
        if state.scope.cancelled_caught and not state.closed_because:
            state.closed_because = "shutdown"
    finally:
        if fast is not None:
            fast.set_inline(None)
        session.close()
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(*_GONE):
                await stream.aclose()
        if sw.audit:
            audit_log.info(
                "conn %d closed (%s): %d bytes in, %d bytes out",
                state.id,
                state.closed_because or "client went away",
                state.bytes_in,
                state.bytes_out,
            )


def _report_slow(state: ConnectionState, seconds: float, n_in: int, n_out: int) -> None:
    if seconds >= SLOW_FEED_SECONDS:
        perf_log.info(
            "conn %d: slow request batch: %.1f ms for %d bytes in, %d bytes out",
            state.id,
            seconds * 1000,
            n_in,
            n_out,
        )


def settle_read_pause(stream: anyio.abc.ByteStream) -> None:
    """Make the transport's "paused" state true, so a client that never reads gets backpressure.

    anyio pauses reading on an accepted connection and resumes it only while ``receive()``
    waits. Under uvloop, that first pause can race the loop's own start of reading: the
    transport then reads with its flag saying "paused", every later ``pause_reading()`` is a
    no-op, and everything the client sends piles up in memory (seen here: 256 MB buffered for a
    client streaming into a refused value). Resuming and pausing once, from the connection's
    task, puts the flag and the socket back in agreement.
    """
    transport = getattr(stream, "_transport", None)
    if transport is None or not hasattr(transport, "pause_reading"):
        return
    try:
        transport.resume_reading()
        transport.pause_reading()
    except RuntimeError:  # already closing
        pass
