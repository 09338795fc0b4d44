"""The native I/O engine of ``ratmemcached`` (``[server] engine = "native"``, ``--engine native``).

A multi-threaded Rust event loop (tokio, ``[performance] worker_threads`` threads) serves the same
protocol ``Engine``/``Session`` as the anyio engine, with the GIL released. Python still does what
Python is good at here: it loads the config, resolves the addresses, starts the server, handles
SIGTERM/SIGINT (and Ctrl+Break on Windows), and logs the events the Rust side queues (audit
lines, errors), so the request path never touches a logger.

Shutdown is the anyio engine's: stop accepting; close idle connections at once and busy ones once
their request is answered; after ``[server] shutdown_grace`` seconds close the rest. A second
signal closes everything at once and the exit status is 1.

Embedding: ``ratmemcache.serve_native(cache, port=0)`` runs it in the background of any Python
app (no event loop needed) and returns a :class:`NativeHandle`; the app keeps using ``cache``
directly while clients reach it over the network.

The optional logs cost nothing when off: the Rust side queues audit and cache-log events only
when their switch is on.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ratmemcache.addresses import bind_error, check_unix_path
from ratmemcache.config import Config
from ratmemcache.errors import ConfigError, ServerStartError
from ratmemcache.lifecycle import STOP_SIGNALS, Lifecycle, serve_config
from ratmemcache.logsetup import LogSwitches

if TYPE_CHECKING:
    from ratmemcache._core import Cache, Engine, NativeServer
    from ratmemcache.admin import AdminServer

__all__ = ["NativeHandle", "run_native", "serve_native"]

log = logging.getLogger("ratmemcache.server")

#: How often the embedding thread and the CLI collect the Rust side's log events.
POLL_SECONDS = 0.1


class NativeHandle:
    """A running native server (from :func:`serve_native`, or the CLI).

    ``port``/``addresses`` are the bound TCP addresses; ``stop()`` stops it gracefully. It is also
    a context manager that stops on exit. The cache is closed on stop only if the server built it.
    """

    def __init__(self, life: Lifecycle, server: NativeServer) -> None:
        assert life.cache is not None and life.engine is not None, "started by start_native()"
        self._life = life
        self.config = life.config
        self.server = server
        self.engine: Engine = life.engine
        self.cache: Cache = life.cache
        self.switches: LogSwitches = life.switches
        self.unix_socket = life.config.server.unix_socket
        self._lock = threading.Lock()
        self._stopped = False
        self._thread: threading.Thread | None = None

    @property
    def admin(self) -> AdminServer | None:
        """The HTTP admin listener (``[admin] http_port``), or None."""
        return self._life.admin

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The TCP listeners' addresses (none with a unix socket)."""
        return self.server.addresses

    @property
    def udp_addresses(self) -> list[tuple[str, int]]:
        """The UDP sockets' addresses (``[server] udp_port``)."""
        return self.server.udp_addresses

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with port 0); 0 with only a unix socket."""
        return self.server.port

    @property
    def connection_count(self) -> int:
        return self.server.connection_count

    @property
    def running(self) -> bool:
        return self.server.is_running

    def stop(self, grace: float | None = None) -> bool:
        """Stop accepting, let requests in flight finish (up to ``grace`` seconds, by default
        ``[server] shutdown_grace``), then close. Returns True if nothing was cut off. Idempotent.
        """
        grace = self.config.server.shutdown_grace if grace is None else grace
        self.server.begin_stop("stop")
        drained = self.server.wait_drained(grace)
        self._finish(drained)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        return drained

    def __enter__(self) -> NativeHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------------

    def _finish(self, drained: bool) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if not drained:
            self._life.log_cut_off(self.server.connection_count)
        self.server.close()
        self.flush_events()
        self._life.log_stopped()
        self._life.shutdown()

    def flush_events(self) -> None:
        """Log what the Rust side queued (call it now and then; the CLI and the thread do)."""
        events, dropped = self.server.take_events()
        for level, logger, message in events:
            logging.getLogger(logger).log(level, "%s", message)
        if dropped:
            log.warning("%d log event(s) dropped: the log could not keep up", dropped)
        if self._life.perf_due():
            self._life.report_perf()

    def _audit_stopping(self, reason: str) -> None:
        self._life.log_stopping(reason, self.server.connection_count)

    def _run_in_background(self) -> None:
        """Collect events until a stop begins; finish a stop that the ``shutdown`` command
        began (a ``stop()`` call finishes its own)."""

        def pump() -> None:
            reason: str | None = None
            while reason is None:
                reason = self.server.wait(POLL_SECONDS)
                self.flush_events()
            if reason != "stop":  # the shutdown command: finish the stop it began
                self._audit_stopping(reason)
                self._finish(self.server.wait_drained(self.config.server.shutdown_grace))

        self._thread = threading.Thread(target=pump, name="ratmemcache-native", daemon=True)
        self._thread.start()


def _resolve(host: str, port: int) -> list[str]:
    """The IP addresses to listen on for ``host``, as asyncio's create_server picks them."""
    infos = socket.getaddrinfo(
        host or None,
        port,
        family=socket.AF_UNSPEC,
        type=socket.SOCK_STREAM,
        flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG,
    )
    out: list[str] = []
    for _family, _type, _proto, _name, addr in infos:
        ip = str(addr[0]).split("%", 1)[0]
        if ip not in out:
            out.append(ip)
    return out


def start_native(
    config: Config, cache: Cache | None = None, *, switches: LogSwitches | None = None
) -> NativeHandle:
    """Open the listeners and start serving; the caller owns the returned handle.

    Raises :class:`ConfigError` for settings this build can't honour and
    :class:`ServerStartError` when it can't listen; both before anything is served.
    """
    from ratmemcache._core import NativeServer

    life = Lifecycle(config, cache, io_engine="native", who="serve_native()", switches=switches)
    life.check()
    s = config.server
    sw = life.switches
    hosts: list[str] = []
    if s.unix_socket:
        # memcached's -s: the unix socket alone, no TCP and no UDP.
        check_unix_path(s.unix_socket)
    else:
        try:
            hosts = _resolve(s.bind, s.port)
        except OSError as e:
            raise ServerStartError(bind_error(e, s.bind, s.port)) from None
    try:
        server = NativeServer(
            hosts,
            s.port,
            unix_socket=s.unix_socket,
            unix_socket_mask=s.unix_socket_mask,
            udp_port=s.udp_port or None,
            backlog=s.backlog,
            worker_threads=config.performance.worker_threads,
            max_connections=s.max_connections,
            idle_timeout=s.idle_timeout,
            read_size=config.performance.read_size,
            audit=sw.audit,
            exchanges=sw.cache,
            ssl_chain_cert=s.ssl_chain_cert if s.tls else None,
            ssl_key=s.ssl_key if s.tls else None,
        )
    except ValueError as e:  # the certificate or key (the other arguments are validated)
        raise ConfigError(f"[server] ssl_chain_cert / ssl_key: cannot load {e}") from None
    except OSError as e:
        if e.errno is None and str(e).startswith("cannot serve UDP"):
            raise ServerStartError(str(e).replace(" (os error", " (errno", 1)) from None
        if e.filename is not None:
            raise ServerStartError(
                f"cannot listen on unix socket {e.filename}: {e.strerror or e}"
            ) from None
        raise ServerStartError(bind_error(e, s.bind, s.port)) from None
    try:
        engine = life.build_engine(
            port=server.port or None,
            udp_port=server.udp_addresses[0][1] if server.udp_addresses else None,
        )
        life.start_admin()
        server.start(engine)
    except BaseException:
        server.close()
        life.shutdown()
        raise
    handle = NativeHandle(life, server)
    life.started(handle.addresses, handle.udp_addresses, handle.unix_socket)
    return handle


def serve_native(
    cache: Cache | None = None,
    host: str = "127.0.0.1",
    port: int = 11211,
    *,
    config: Config | None = None,
    **options: Any,
) -> NativeHandle:
    """Serve ``cache`` over the memcached protocol with the native engine, in the background.

    No event loop is needed: the server runs on its own Rust threads, and a Python thread logs
    its events. The app keeps using ``cache`` directly::

        cache = ratmemcache.Cache(max_memory="256MB")
        server = ratmemcache.serve_native(cache, "127.0.0.1", 0)
        print("memcached protocol on port", server.port)
        cache.set("config", b"...")   # visible to network clients at once
        ...
        server.stop()                 # graceful; the cache stays open

    ``options`` are ``[server]``, ``[performance]`` and ``[admin]`` keys (``max_connections=``,
    ``idle_timeout=``, ``unix_socket=``, ``worker_threads=``, ``max_item_size=``, ``http_port=``
    ...). ``port=0`` picks a free port.
    """
    cfg = serve_config(
        "serve_native()", config, host, port, options, fixed={"server.engine": "native"}
    )
    handle = start_native(cfg, cache)
    handle._run_in_background()
    return handle


def run_native(
    config: Config,
    *,
    on_started: Callable[[NativeHandle], None] | None = None,
) -> int:
    """Run the native server in this process until it is shut down; returns the exit status
    (0 after a graceful stop, 1 when a second signal forced it). Used by the CLI."""
    pending: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        pending.append(signum)

    saved: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                saved[sig] = signal.signal(sig, on_signal)
    try:
        handle = start_native(config)
        try:
            if on_started is not None:
                on_started(handle)
            return _serve_until_stopped(handle, pending)
        finally:
            handle._finish(drained=True)
    finally:
        for signum, old in saved.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, old)


def _serve_until_stopped(handle: NativeHandle, pending: list[int]) -> int:
    server = handle.server
    reason: str | None = None
    while reason is None:
        if pending:
            signum = pending.pop(0)
            handle._life.log_signal(signum, again=False)
            reason = signal.Signals(signum).name
            break
        reason = server.wait(POLL_SECONDS)
        handle.flush_events()
    server.begin_stop(reason)
    handle._audit_stopping(reason)
    grace = handle.config.server.shutdown_grace
    deadline = time.monotonic() + grace
    while not server.wait_drained(POLL_SECONDS):
        handle.flush_events()
        if pending:
            handle._life.log_signal(pending.pop(0), again=True)
            server.force_stop()
            handle._finish(drained=True)
            return 1
        if time.monotonic() >= deadline:
            handle._finish(drained=False)
            return 0
    handle._finish(drained=True)
    return 0
