"""One serving lifecycle for both I/O engines: serve -> startup -> shutdown.

The anyio engine (:mod:`ratmemcache.server`) and the native one (:mod:`ratmemcache.native`) move
bytes differently, but around that they do the same things in the same words, here:

* **serve**: :func:`serve_config` turns ``serve(cache, host, port, **options)`` (or
  ``serve_native``) into a validated :class:`Config`;
* **startup** (:class:`Lifecycle`): :meth:`~Lifecycle.check` the settings, own or borrow the
  cache (:meth:`~Lifecycle.open_cache`; an L2 that can't open is a :class:`ServerStartError`),
  :meth:`~Lifecycle.build_engine`, :meth:`~Lifecycle.start_admin` (the HTTP admin listener) and
  :meth:`~Lifecycle.started` (the startup log);
* **while serving**: the throughput report of the performance log, the signal and drain lines;
* **shutdown**: :meth:`~Lifecycle.shutdown` stops the admin listener and closes the cache if the
  server built it (an embedding app's cache stays open).

Each engine opens and closes its own listeners, in the order it needs, between these steps.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from dataclasses import fields
from typing import Any

from ratmemcache._core import Cache, Engine, ObjectCache
from ratmemcache.addresses import format_addr, is_wildcard
from ratmemcache.admin import AdminServer, start_admin
from ratmemcache.builders import build_cache
from ratmemcache.builders import build_engine as _build_engine
from ratmemcache.config import (
    ALIASES,
    AdminConfig,
    Config,
    PerformanceConfig,
    ServerConfig,
    apply_overrides,
    format_size,
)
from ratmemcache.errors import PersistenceError, ServerStartError
from ratmemcache.logsetup import AUDIT_LOGGER, PERF_LOGGER, LogSwitches

__all__ = [
    "PERF_REPORT_SECONDS",
    "STOP_SIGNALS",
    "Lifecycle",
    "require_bytes_cache",
    "serve_config",
]

log = logging.getLogger("ratmemcache.server")
audit_log = logging.getLogger(AUDIT_LOGGER)
perf_log = logging.getLogger(PERF_LOGGER)

#: How often the performance log reports throughput.
PERF_REPORT_SECONDS = 60.0

#: The signals that stop the server gracefully (a second one forces the stop). Windows has no
#: SIGTERM that one process can send another (``TerminateProcess`` kills outright), so there
#: Ctrl+Break (SIGBREAK, e.g. ``CTRL_BREAK_EVENT`` sent to the server's process group) does it too.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
if sys.platform == "win32":
    STOP_SIGNALS += (signal.SIGBREAK,)

#: The tables whose keys ``serve()`` and ``serve_native()`` take as keyword options.
SERVE_OPTION_TABLES = (ServerConfig, PerformanceConfig, AdminConfig)


def require_bytes_cache(cache: Any, who: str) -> None:
    """A server serves a bytes ``Cache``; anything else is a TypeError that says why.

    An ``ObjectCache`` holds Python objects by reference: memcached clients can only send and
    receive bytes, so there is nothing the protocol could return for them.
    """
    if cache is None or isinstance(cache, Cache):
        return
    if isinstance(cache, ObjectCache):
        raise TypeError(
            f"{who} can't serve an ObjectCache: it keeps Python objects by reference, and "
            "memcached clients send and receive bytes. Serve a ratmemcache.Cache (bytes, "
            "optionally with serializer=pickle) instead."
        )
    raise TypeError(f"{who} serves a ratmemcache.Cache, not {type(cache).__name__}")


def _option_table(name: str) -> str | None:
    for section in SERVE_OPTION_TABLES:
        if name in {f.name for f in fields(section)} or (section.TABLE, name) in ALIASES:
            return section.TABLE
    return None


def serve_config(
    who: str,
    config: Config | None,
    host: str,
    port: int,
    options: dict[str, Any],
    fixed: dict[str, Any] | None = None,
) -> Config:
    """The configuration an embedding entry point serves: ``config`` (or the defaults) with
    ``host``, ``port``, the ``fixed`` overrides, then the keyword ``options`` (``[server]``,
    ``[performance]`` and ``[admin]`` keys) applied. An unknown option is a TypeError naming
    ``who``, as for any function; a bad value is a ConfigError."""
    cfg = config if config is not None else Config()
    overrides: dict[str, Any] = {"server.bind": host, "server.port": port, **(fixed or {})}
    for name, value in options.items():
        table = _option_table(name)
        if table is None:
            raise TypeError(f"{who} got an unexpected option {name!r}")
        overrides[f"{table}.{name}"] = value
    apply_overrides(cfg, overrides)
    return cfg


class Lifecycle:
    """What one server does around its listeners, whichever engine moves the bytes.

    ``cache`` is the app's own cache to serve (it is never closed here), or None to build one
    from ``[l1]``/``[l2]``/``[ttl]`` (closed at :meth:`shutdown`). ``who`` names the entry point
    in a TypeError for a cache that can't be served.
    """

    def __init__(
        self,
        config: Config,
        cache: Cache | None,
        *,
        io_engine: str,
        who: str,
        switches: LogSwitches | None = None,
    ) -> None:
        require_bytes_cache(cache, who)
        self.config = config
        self.io_engine = io_engine
        self.switches = (
            switches if switches is not None else LogSwitches.from_config(config.logging)
        )
        #: The cache served: the app's, or (after :meth:`open_cache`) the one built here.
        self.cache: Cache | None = cache
        self.own_cache = cache is None
        self.engine: Engine | None = None
        #: The HTTP admin listener, while serving with ``[admin] http_port`` set.
        self.admin: AdminServer | None = None
        self._shut_down = False
        self._perf_since = time.monotonic()
        self._perf_stats: dict[str, str] = {}

    # -- startup --------------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse settings this build can't honour (a ConfigError), before anything opens."""
        self.config.check_available()

    def open_cache(self) -> Cache:
        """The cache to serve: the app's, or one built from the config (once). An L2 that can't
        be opened is a :class:`ServerStartError` naming the path."""
        if self.cache is None:
            try:
                self.cache = build_cache(self.config)
            except PersistenceError as e:
                raise ServerStartError(str(e)) from None
        return self.cache

    def build_engine(self, *, port: int | None, udp_port: int | None) -> Engine:
        """The protocol engine over the cache; ``port``/``udp_port`` are the ports actually
        bound, for ``stats settings``."""
        self.engine = _build_engine(self.config, self.open_cache(), port=port, udp_port=udp_port)
        return self.engine

    def start_admin(self) -> None:
        """Start the HTTP admin listener when ``[admin] http_port`` is set (after the engine)."""
        a = self.config.admin
        if a.http_port and self.admin is None:
            assert self.engine is not None, "build_engine() comes first"
            self.admin = start_admin(
                self.engine, a.http_bind, a.http_port, io_engine=self.io_engine
            )

    def started(
        self,
        addresses: list[tuple[str, int]],
        udp_addresses: list[tuple[str, int]],
        unix_socket: str | None,
    ) -> None:
        """Serving has begun: the "listening on" line (and a warning for a server open to every
        interface without authentication); the throughput report counts from here."""
        self._perf_since = time.monotonic()
        cfg = self.config
        where = ", ".join(
            [format_addr(h, p) for h, p in addresses]
            + [f"udp:{format_addr(h, p)}" for h, p in udp_addresses]
            + ([f"unix:{unix_socket}"] if unix_socket else [])
        )
        log.info(
            "ratmemcached listening on %s (io_engine=%s, worker_threads=%d, max_memory=%s, "
            "eviction=%s, max_connections=%d)",
            where,
            self.io_engine,
            cfg.performance.worker_threads,
            format_size(cfg.l1.max_memory) if self.own_cache else "from the cache",
            cfg.l1.eviction_strategy if self.own_cache else "from the cache",
            cfg.server.max_connections,
        )
        if any(is_wildcard(h) for h, _ in addresses) and not (
            cfg.server.auth_file or cfg.server.sasl
        ):
            log.warning(
                "listening on all interfaces without authentication: anyone who can reach this "
                "host can read and change the cache"
            )

    # -- while serving --------------------------------------------------------------------------

    def perf_due(self) -> bool:
        """The performance log is on and a throughput report is due."""
        return self.switches.perf and time.monotonic() - self._perf_since >= PERF_REPORT_SECONDS

    def report_perf(self) -> None:
        """Log the throughput since the last report (the performance log's periodic line)."""
        if self.engine is None:
            return
        now = time.monotonic()
        elapsed, self._perf_since = now - self._perf_since, now
        stats = self.engine.stats()
        last = self._perf_stats
        ops = sum(int(stats.get(k, "0")) - int(last.get(k, "0")) for k in ("cmd_get", "cmd_set"))
        perf_log.info(
            "%.0f ops/s over %gs; %s connection(s); get_hits=%s get_misses=%s evictions=%s",
            ops / elapsed if elapsed > 0 else 0.0,
            round(elapsed),
            stats.get("curr_connections", "?"),
            stats.get("get_hits", "?"),
            stats.get("get_misses", "?"),
            stats.get("evictions", "?"),
        )
        self._perf_stats = stats

    # -- shutdown -------------------------------------------------------------------------------

    def log_signal(self, signum: int, *, again: bool) -> None:
        """A stop signal: the first begins a graceful shutdown, a second forces it."""
        name = signal.Signals(signum).name
        if again:
            log.warning("%s again: closing all connections now", name)
        else:
            log.info("%s received: shutting down gracefully (again to force)", name)

    def log_stopping(self, reason: str, connections: int) -> None:
        """Accepting has stopped; ``connections`` are still open."""
        if self.switches.audit:
            audit_log.info(
                "shutting down (%s): stopped accepting; %d connection(s) open",
                reason,
                connections,
            )

    def log_cut_off(self, connections: int) -> None:
        """The shutdown grace ran out with ``connections`` still busy."""
        log.warning(
            "closing %d connection(s) still busy after the %gs shutdown grace",
            connections,
            self.config.server.shutdown_grace,
        )

    def log_stopped(self) -> None:
        if self.switches.audit:
            audit_log.info("stopped")

    def shutdown(self) -> None:
        """Stop the admin listener; close the cache if it is ours: that commits the L2 durably
        (and, with write_back, writes the L1 down) so a restart serves everything. Idempotent."""
        admin, self.admin = self.admin, None
        if admin is not None:
            admin.stop()
        if self.own_cache and self.cache is not None and not self._shut_down:
            self._shut_down = True
            self.cache.close()
