"""The anyio I/O engine of ``ratmemcached``: listeners, connection limits, shutdown.

The server moves bytes and manages connections; the Rust ``Engine``/``Session`` do every protocol
rule. Embedding is a first-class use: ``await ratmemcache.serve(cache, port=...)`` inside an anyio
or asyncio app serves the app's own ``Cache`` object, which the app keeps using directly.

Shutdown (SIGTERM, SIGINT, Ctrl+Break on Windows, a ``shutdown`` command, or
:meth:`Server.request_shutdown`):

1. stop accepting and close the listeners;
2. close idle connections at once; let each busy one finish the request in hand (and send its
   reply), then close it;
3. after ``[server] shutdown_grace`` seconds, close whatever is left;
4. close the cache if the server created it (an embedding app's cache is left open).

A second signal skips the grace period, and the process exits with status 1.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.to_thread
from anyio.abc import SocketAttribute

from ratmemcache.addresses import bind_error, check_unix_path, format_addr
from ratmemcache.builders import build_tls_context
from ratmemcache.config import Config
from ratmemcache.connection import (
    ConnectionOptions,
    ConnectionState,
    run_connection,
    settle_read_pause,
)
from ratmemcache.errors import ConfigError, ServerStartError
from ratmemcache.fast_stream import adopt
from ratmemcache.lifecycle import PERF_REPORT_SECONDS, STOP_SIGNALS, Lifecycle, serve_config
from ratmemcache.logsetup import AUDIT_LOGGER, LogSwitches

if TYPE_CHECKING:
    from ratmemcache._core import Cache, Engine
    from ratmemcache.admin import AdminServer

# ServerStartError lives in ratmemcache.errors; it stays importable from here for existing code.
__all__ = ["Server", "ServerStartError", "anyio_backend_options", "run", "serve"]

log = logging.getLogger("ratmemcache.server")
audit_log = logging.getLogger(AUDIT_LOGGER)

#: memcached's reply to a connection over the -c limit (it accepts, writes this, and closes).
TOO_MANY_CONNECTIONS = b"ERROR Too many open connections\r\n"
#: How long an accept loop pauses after a transient accept() failure (out of file descriptors).
ACCEPT_RETRY_PAUSE = 0.05

# Errors from accept() that mean "try again later", not "the listener is broken".
_TRANSIENT_ACCEPT = {
    errno.EMFILE,
    errno.ENFILE,
    errno.ENOBUFS,
    errno.ENOMEM,
    errno.ECONNABORTED,
    errno.EPROTO,
    errno.EPERM,
}


class Server:
    """A memcached-protocol server over one :class:`Cache`.

    ``Server(config)`` builds its own cache from ``[l1]``/``[ttl]``; ``Server(config, cache)``
    serves an existing one (then ``[l1]``/``[ttl]`` are ignored and the cache is not closed at the
    end). ``handle_signals`` installs the :data:`STOP_SIGNALS` handlers: for the CLI, not for an
    embedding app that has its own.
    """

    def __init__(
        self,
        config: Config | None = None,
        cache: Cache | None = None,
        *,
        handle_signals: bool = False,
    ) -> None:
        self.config = config if config is not None else Config()
        # This class is the anyio engine, whatever the config names (stats settings says so).
        self.config.server.engine = "anyio"
        self._life = Lifecycle(self.config, cache, io_engine="anyio", who="Server")
        self.handle_signals = handle_signals
        self.switches: LogSwitches = self._life.switches
        self._conns: set[ConnectionState] = set()
        self._next_id = 0
        self._shutdown: anyio.Event | None = None
        self._tls: ssl.SSLContext | None = None
        self._all_closed: anyio.Event | None = None
        self._conn_scope: anyio.CancelScope | None = None
        self.shutdown_reason = ""
        self.forced = False
        self._pending_signals: list[int] = []
        #: (host, port) of every TCP listener, once started (none with a unix socket).
        self.addresses: list[tuple[str, int]] = []
        #: (host, port) of every UDP socket (``[server] udp_port``), once started.
        self.udp_addresses: list[tuple[str, int]] = []
        self.unix_socket: str | None = None

    # -- read-only views ------------------------------------------------------------------------

    @property
    def cache(self) -> Cache:
        if self._life.cache is None:
            raise RuntimeError("the server has not started yet")
        return self._life.cache

    @property
    def engine(self) -> Engine:
        if self._life.engine is None:
            raise RuntimeError("the server has not started yet")
        return self._life.engine

    @property
    def admin(self) -> AdminServer | None:
        """The HTTP admin listener, while serving with ``[admin] http_port`` set."""
        return self._life.admin

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with port 0); 0 with only a unix socket."""
        if self._life.engine is None:
            raise RuntimeError("the server has not started yet")
        return self.addresses[0][1] if self.addresses else 0

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    # -- control --------------------------------------------------------------------------------

    def request_shutdown(self, reason: str = "requested") -> None:
        """Begin a graceful shutdown. Call from the event loop's thread."""
        if self._shutdown is not None and not self._shutdown.is_set():
            self.shutdown_reason = reason
            self._shutdown.set()

    def force_shutdown(self, reason: str = "forced") -> None:
        """Close everything now, without the grace period."""
        self.forced = True
        self.request_shutdown(reason)
        for c in list(self._conns):
            c.scope.cancel()
        if self._conn_scope is not None:
            self._conn_scope.cancel()

    # -- serving --------------------------------------------------------------------------------

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[Server] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until shutdown. ``task_status.started(self)`` fires once listening, so
        ``server = await task_group.start(server.serve)`` returns with :attr:`port` known.

        Raises :class:`ConfigError` for settings this build can't honour and
        :class:`ServerStartError` when it can't listen; both before anything is served.
        """
        self._life.check()
        self._shutdown = anyio.Event()
        self._all_closed = anyio.Event()
        self._all_closed.set()
        with contextlib.ExitStack() as stack:
            # Signal handlers go in before the port opens: a client (or a test) that sees the
            # port accept may signal us at once.
            signals: AsyncIterator[int] | None = None
            if self.handle_signals:
                try:
                    signals = stack.enter_context(anyio.open_signal_receiver(*STOP_SIGNALS))
                except NotImplementedError:  # Windows' asyncio loop: no signal handlers
                    self._install_fallback_signals()
            await self._serve(signals, task_status)

    async def _serve(
        self,
        signals: AsyncIterator[int] | None,
        task_status: anyio.abc.TaskStatus[Server],
    ) -> None:
        cfg = self.config
        life = self._life
        assert self._shutdown is not None
        listeners: list[anyio.abc.SocketListener] = []
        udp: list[anyio.abc.UDPSocket] = []
        try:
            # Before the listeners: a server whose L2 can't open never accepts a connection.
            life.open_cache()
            # UDP first: once the TCP port accepts, UDP is served too (clients and tests take an
            # accepting port to mean "ready").
            udp = await self._open_udp()
            listeners = await self._open_listeners()
            life.build_engine(
                port=self.addresses[0][1] if self.addresses else None,
                udp_port=self.udp_addresses[0][1] if self.udp_addresses else None,
            )
            self._tls = build_tls_context(cfg)
            life.started(self.addresses, self.udp_addresses, self.unix_socket)
            life.start_admin()
            options = ConnectionOptions(
                read_size=cfg.performance.read_size,
                offload_threshold=cfg.performance.offload_threshold,
                idle_timeout=cfg.server.idle_timeout,
                shutdown_grace=cfg.server.shutdown_grace,
                switches=self.switches,
                limiter=anyio.CapacityLimiter(cfg.performance.worker_threads),
            )
            async with anyio.create_task_group() as conn_tg:
                self._conn_scope = conn_tg.cancel_scope
                # These live in the connections' group: a second signal must still be heard
                # while connections drain, after accepting has stopped.
                if signals is not None:
                    conn_tg.start_soon(self._watch_signals, signals)
                elif self.handle_signals:
                    conn_tg.start_soon(self._poll_signals)
                if self.switches.perf:
                    conn_tg.start_soon(self._report_perf)
                async with anyio.create_task_group() as accept_tg:
                    for listener in listeners:
                        accept_tg.start_soon(self._accept_loop, listener, conn_tg, options)
                    for sock in udp:
                        accept_tg.start_soon(self._udp_loop, sock, options)
                    task_status.started(self)
                    await self._shutdown.wait()
                    accept_tg.cancel_scope.cancel()
                await _close_all(listeners)
                listeners = []
                await _close_all(udp)
                udp = []
                life.log_stopping(self.shutdown_reason, len(self._conns))
                await self._drain()
                conn_tg.cancel_scope.cancel()
            life.log_stopped()
        finally:
            await _close_all(listeners)
            await _close_all(udp)
            self._remove_unix_socket()
            life.shutdown()

    async def _open_listeners(self) -> list[anyio.abc.SocketListener]:
        """The TCP listeners, or with ``[server] unix_socket`` that socket alone (memcached's
        -s turns TCP and UDP off)."""
        s = self.config.server
        self.addresses = []
        if s.unix_socket:
            return [await self._open_unix(s.unix_socket)]
        listeners: list[anyio.abc.SocketListener] = []
        try:
            multi = await anyio.create_tcp_listener(
                local_host=s.bind, local_port=s.port, backlog=s.backlog
            )
        except OSError as e:
            await _close_all(listeners)
            self._remove_unix_socket()
            raise ServerStartError(bind_error(e, s.bind, s.port)) from None
        tcp: list[anyio.abc.SocketListener] = list(multi.listeners)  # type: ignore[arg-type]
        for lst in tcp:
            addr = lst.extra(SocketAttribute.local_address)
            self.addresses.append((str(addr[0]), int(addr[1])))
        return tcp + listeners

    async def _open_udp(self) -> list[anyio.abc.UDPSocket]:
        """A UDP socket on each address of ``[server] bind`` (``udp_port``, memcached -U)."""
        s = self.config.server
        self.udp_addresses = []
        if not s.udp_port or s.unix_socket:
            return []
        try:
            infos = await anyio.getaddrinfo(
                s.bind or None,
                s.udp_port,
                type=socket.SOCK_DGRAM,
                flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG,
            )
        except OSError as e:
            raise ServerStartError(bind_error(e, s.bind, s.udp_port)) from None
        hosts = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
        socks: list[anyio.abc.UDPSocket] = []
        for host in hosts:
            try:
                sock = await anyio.create_udp_socket(local_host=host, local_port=s.udp_port)
            except OSError as e:
                await _close_all(socks)
                raise ServerStartError(
                    bind_error(e, host, s.udp_port).replace("listen on", "serve UDP on", 1)
                ) from None
            addr = sock.extra(SocketAttribute.local_address)
            self.udp_addresses.append((str(addr[0]), int(addr[1])))
            socks.append(sock)
        return socks

    async def _udp_loop(self, sock: anyio.abc.UDPSocket, options: ConnectionOptions) -> None:
        """memcached's UDP protocol: each datagram is one request, answered by the engine."""
        engine = self.engine
        while True:
            try:
                data, peer = await sock.receive()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError:  # an ICMP error for an earlier reply: the socket is fine
                continue
            try:
                if engine.may_block:  # a datagram's requests may wait on the disk
                    replies = await anyio.to_thread.run_sync(
                        engine.serve_datagram, data, limiter=options.limiter
                    )
                else:
                    replies = engine.serve_datagram(data)
            except Exception:  # a bug (a Rust panic): lose this datagram, not the server
                log.exception("a UDP request from %s failed; not answered", peer)
                continue
            for d in replies:
                try:
                    await sock.sendto(d, *peer[:2])
                except OSError:  # a reply the peer can't take is lost, as UDP replies are
                    break

    async def _open_unix(self, path: str) -> anyio.abc.SocketListener:
        check_unix_path(path)
        p = Path(path)
        try:
            listener = await anyio.create_unix_listener(
                p, mode=self.config.server.unix_socket_mask, backlog=self.config.server.backlog
            )
        except OSError as e:
            raise ServerStartError(f"cannot listen on unix socket {p}: {e.strerror or e}") from None
        self.unix_socket = str(p)
        return listener

    def _remove_unix_socket(self) -> None:
        if self.unix_socket:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_socket)
            self.unix_socket = None

    async def _handshake(
        self, stream: anyio.abc.SocketStream, state: ConnectionState
    ) -> anyio.abc.ByteStream | None:
        """TLS on an accepted connection, in its own task so a slow client never holds up
        accepting; bounded by the idle timeout (10 s when there is none)."""
        from anyio.streams.tls import TLSStream

        settle_read_pause(stream)
        limit = self.config.server.idle_timeout or 10.0
        try:
            with anyio.fail_after(limit):
                return await TLSStream.wrap(
                    stream, server_side=True, ssl_context=self._tls, standard_compatible=False
                )
        except (TimeoutError, ssl.SSLError, OSError, anyio.BrokenResourceError) as e:
            state.closed_because = f"TLS handshake failed ({type(e).__name__})"
            if self.switches.audit:
                audit_log.info("conn %d: %s", state.id, state.closed_because)
            await stream.aclose()
            return None

    async def _accept_loop(
        self,
        listener: anyio.abc.SocketListener,
        tg: anyio.abc.TaskGroup,
        options: ConnectionOptions,
    ) -> None:
        max_conns = self.config.server.max_connections
        engine = self.engine
        while True:
            try:
                stream = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as e:
                if e.errno in _TRANSIENT_ACCEPT:
                    log.warning("accept() failed (%s); retrying", e.strerror or e)
                    # Accepting is paused meanwhile: memcached's "listen disabled".
                    paused = time.monotonic()
                    await anyio.sleep(ACCEPT_RETRY_PAUSE)
                    engine.listen_disabled(time.monotonic() - paused)
                    continue
                raise
            if len(self._conns) >= max_conns:
                tg.start_soon(self._reject, stream)
                continue
            self._next_id += 1
            peer = _peer(stream) if self.switches.audit else ""
            state = ConnectionState(self._next_id, peer)
            self._conns.add(state)
            assert self._all_closed is not None
            if self._all_closed.is_set():
                self._all_closed = anyio.Event()
            if self.switches.audit:
                audit_log.info("conn %d opened from %s", state.id, peer)
            tg.start_soon(self._run_one, stream, engine, state, options)

    async def _run_one(
        self,
        stream: anyio.abc.SocketStream,
        engine: Engine,
        state: ConnectionState,
        options: ConnectionOptions,
    ) -> None:
        try:
            conn: anyio.abc.ByteStream | None = stream
            if self._tls is not None and not _is_unix(stream):
                conn = await self._handshake(stream, state)
            else:
                # Plain TCP on asyncio: the lean stream (see fast_stream); otherwise anyio's.
                conn = adopt(stream) or stream
            if conn is None:
                return
            session = engine.session(hands_off_waits=True)
            await run_connection(conn, session, state, options, self._after_close_request)
        except Exception:
            # A bug (a Rust panic surfaces as an exception): lose this connection, not the server.
            log.exception("conn %d failed; closing it", state.id)
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stream.aclose()
        finally:
            self._conns.discard(state)
            if not self._conns and self._all_closed is not None:
                self._all_closed.set()

    def _after_close_request(self) -> None:
        if self.engine.shutdown_requested:
            self.request_shutdown('the "shutdown" command')

    async def _reject(self, stream: anyio.abc.SocketStream) -> None:
        """memcached's behaviour at -c: accept, say why, close. The server stays healthy."""
        self.engine.connection_rejected()
        if self.switches.audit:
            audit_log.warning(
                "refused a connection from %s: max_connections (%d) reached",
                _peer(stream),
                self.config.server.max_connections,
            )
        with anyio.move_on_after(1.0), contextlib.suppress(Exception):
            await stream.send(TOO_MANY_CONNECTIONS)
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await stream.aclose()

    async def _drain(self) -> None:
        for c in list(self._conns):
            c.draining = True
            if c.idle:
                c.scope.cancel()
        if self.forced:
            return
        assert self._all_closed is not None
        with anyio.move_on_after(self.config.server.shutdown_grace) as grace:
            await self._all_closed.wait()
        if grace.cancelled_caught and self._conns:
            self._life.log_cut_off(len(self._conns))

    async def _watch_signals(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        again = self._shutdown is not None and self._shutdown.is_set()
        self._life.log_signal(signum, again=again)
        if again:
            self.force_shutdown(name)
        else:
            self.request_shutdown(name)

    def _install_fallback_signals(self) -> None:
        """Portable fallback: a plain signal handler records the signal for a polling task."""

        def handler(signum: int, _frame: Any) -> None:
            self._pending_signals.append(signum)

        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)

    async def _poll_signals(self) -> None:
        while True:
            await anyio.sleep(0.2)
            while self._pending_signals:
                self._on_signal(self._pending_signals.pop(0))

    async def _report_perf(self) -> None:
        while True:
            await anyio.sleep(PERF_REPORT_SECONDS)
            self._life.report_perf()


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


async def _close_all(
    listeners: list[anyio.abc.SocketListener] | list[anyio.abc.UDPSocket],
) -> None:
    with anyio.CancelScope(shield=True):
        for lst in listeners:
            with contextlib.suppress(Exception):
                await lst.aclose()


def _is_unix(stream: anyio.abc.SocketStream) -> bool:
    """A unix-socket connection: TLS (like memcached's) applies to TCP only."""
    try:
        return bool(stream.extra(SocketAttribute.family) == getattr(socket, "AF_UNIX", None))
    except Exception:
        return False


def _peer(stream: anyio.abc.SocketStream) -> str:
    try:
        addr = stream.extra(SocketAttribute.remote_address)
    except Exception:
        return "?"
    if isinstance(addr, tuple):
        return format_addr(str(addr[0]), int(addr[1]))
    return str(addr) or "unix"


def anyio_backend_options() -> tuple[str, dict[str, Any]]:
    """asyncio, with uvloop when it is installed (the ``fast`` extra)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio", {}
    return "asyncio", {"use_uvloop": True}


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------


async def serve(
    cache: Cache | None = None,
    host: str = "127.0.0.1",
    port: int = 11211,
    *,
    config: Config | None = None,
    task_status: anyio.abc.TaskStatus[Server] = anyio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Serve ``cache`` over the memcached protocol until cancelled (embedding entry point).

    Run it in your app's task group; the app keeps using ``cache`` directly while clients reach
    it over the network::

        cache = ratmemcache.Cache(max_memory="256MB")
        async with anyio.create_task_group() as tg:
            server = await tg.start(ratmemcache.serve, cache, "127.0.0.1", 0)
            print("memcached protocol on port", server.port)
            cache.set("config", b"...")   # visible to network clients at once

    ``options`` are ``[server]``, ``[performance]`` and ``[admin]`` keys (``max_connections=``,
    ``idle_timeout=``, ``unix_socket=``, ``max_item_size=``, ``read_size=``, ``http_port=`` ...).
    ``port=0`` picks a free port. Cancelling the task closes the server (not the cache); so does
    ``server.request_shutdown()``, gracefully.
    """
    cfg = serve_config("serve()", config, host, port, options)
    server = Server(cfg, cache)
    await server.serve(task_status=task_status)


def run(
    config: Config,
    *,
    on_started: Callable[[Server], None] | None = None,
) -> int:
    """Run a server in this process until it is shut down; returns the exit status.

    Used by the CLI: installs signal handlers and uses uvloop when available. Startup failures
    raise :class:`ConfigError` or :class:`ServerStartError` (nothing has been served then).
    """
    server = Server(config, handle_signals=True)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve)
            if on_started is not None:
                on_started(server)

    backend, backend_options = anyio_backend_options()
    try:
        anyio.run(main, backend=backend, backend_options=backend_options)
    except BaseExceptionGroup as eg:
        # A startup error raised inside the task group: surface the single underlying error.
        inner = _single(eg)
        if inner is not None:
            raise inner from None
        raise
    return 1 if server.forced else 0


def _single(eg: BaseExceptionGroup[BaseException]) -> BaseException | None:
    excs = list(eg.exceptions)
    while len(excs) == 1 and isinstance(excs[0], BaseExceptionGroup):
        excs = list(excs[0].exceptions)
    if len(excs) == 1 and isinstance(excs[0], ConfigError | ServerStartError):
        return excs[0]
    return None
