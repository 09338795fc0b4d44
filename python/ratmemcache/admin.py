"""The optional HTTP admin listener (``[admin] http_port``, ``--admin-port``).

It serves, from a thread of its own (so it works the same beside either I/O engine):

* ``/metrics``: Prometheus metrics, built by prometheus_client from a custom collector that reads
  the engine's ``stats`` and latency histograms on every scrape. The names of the fields memcached
  also has follow prometheus/memcached_exporter (``memcached_commands_total{command,status}``,
  ``memcached_current_bytes``, ...), so its dashboards work unchanged; the rest are
  ``ratmemcache_*`` (the tiers, the L2, the latency histograms).
* ``/api/stats``: the same numbers as JSON, for the status page and for scripts.
* ``/``: a small self-contained status page (no external resources).

prometheus_client is imported only when the listener starts, so ``import ratmemcache`` stays light.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

from ratmemcache.addresses import format_addr, is_wildcard
from ratmemcache.errors import ServerStartError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["AdminServer", "StatsSource", "engine_snapshot", "start_admin"]

log = logging.getLogger("ratmemcache.admin")

#: Command kinds of the latency histograms, in the engine's order.
COMMAND_KINDS = ("get", "set", "delete", "incr_decr", "touch", "meta", "other")


class StatsSource(Protocol):
    """What the listener reads: a ``ratmemcache._core.Engine``."""

    def stats(self) -> dict[str, str]: ...
    def latency(self) -> dict[str, tuple[list[int], int]]: ...


def _num(value: str) -> int | float | str:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def _quantile(counts: list[int], bounds: list[int], q: float) -> float | None:
    """The upper bound (seconds) of the bucket holding quantile ``q``; None without data (or
    when it falls in the unbounded last bucket)."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, c in enumerate(counts):
        seen += c
        if seen >= rank and c:
            return bounds[i] / 1e9 if i < len(bounds) else None
    return None


def engine_snapshot(engine: StatsSource, *, io_engine: str = "") -> dict[str, Any]:
    """The numbers that ``/api/stats`` serves (and the status page draws)."""
    from ratmemcache._core import LATENCY_BUCKET_BOUNDS_NS as bounds

    raw = engine.stats()
    s = {k: _num(v) for k, v in raw.items()}

    def i(key: str) -> int:
        v = s.get(key, 0)
        return v if isinstance(v, int) else 0

    hits, misses = i("get_hits"), i("get_misses")
    commands: dict[str, dict[str, Any]] = {}
    for kind, (counts, sum_ns) in engine.latency().items():
        n = sum(counts)
        commands[kind] = {
            "count": n,
            "mean_seconds": sum_ns / n / 1e9 if n else None,
            "p50_seconds": _quantile(counts, bounds, 0.5),
            "p99_seconds": _quantile(counts, bounds, 0.99),
        }
    l2 = None
    if "l2_items" in s:
        l2 = {
            "items": i("l2_items"),
            "bytes": i("l2_bytes"),
            "file_bytes": i("l2_file_bytes"),
            "hits": i("l2_hits"),
            "reads": i("l2_reads"),
            "warmup_running": bool(i("l2_warmup_running")),
        }
    return {
        "time": time.time(),
        "version": raw.get("version", ""),
        "io_engine": io_engine,
        "uptime": i("uptime"),
        "get_hits": hits,
        "get_misses": misses,
        "hit_ratio": hits / (hits + misses) if hits + misses else None,
        "l1": {"items": i("curr_items"), "bytes": i("bytes"), "limit": i("limit_maxbytes")},
        "l2": l2,
        "connections": {
            "current": i("curr_connections"),
            "total": i("total_connections"),
            "rejected": i("rejected_connections"),
        },
        "evictions": i("evictions"),
        "commands": commands,
        "stats": s,
    }


class EngineCollector:
    """A prometheus_client collector that reads the engine on every scrape."""

    def __init__(self, engine: StatsSource, *, io_engine: str = "") -> None:
        self.engine = engine
        self.io_engine = io_engine

    def describe(self) -> list[Metric]:
        # Nothing to check at registration: the metrics are read on each scrape.
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        from ratmemcache import __version__
        from ratmemcache._core import LATENCY_BUCKET_BOUNDS_NS

        raw = self.engine.stats()

        def v(key: str) -> float | None:
            try:
                return float(raw[key])
            except (KeyError, ValueError):
                return None

        def gauge(name: str, doc: str, key: str) -> Iterator[Metric]:
            x = v(key)
            if x is not None:
                yield GaugeMetricFamily(name, doc, value=x)

        def counter(name: str, doc: str, key: str) -> Iterator[Metric]:
            x = v(key)
            if x is not None:
                yield CounterMetricFamily(name, doc, value=x)

        # -- memcached's fields, by prometheus/memcached_exporter's names ----------------------
        yield from gauge("memcached_uptime_seconds", "Seconds since the server started.", "uptime")
        yield from gauge("memcached_time_seconds", "The server's current UNIX time.", "time")
        version = GaugeMetricFamily(
            "memcached_version", "The memcached version reproduced.", labels=["version"]
        )
        version.add_metric([raw.get("version", "")], 1)
        yield version
        for kind, name, key, doc in _MEMCACHED_FIELDS:
            yield from (counter if kind == "counter" else gauge)(name, doc, key)
        commands = CounterMetricFamily(
            "memcached_commands",
            "Requests by command and status (memcached's hit and miss counters).",
            labels=["command", "status"],
        )
        for op in ("get", "delete", "incr", "decr", "cas", "touch"):
            for suffix, status in (("hits", "hit"), ("misses", "miss")):
                x = v(f"{op}_{suffix}")
                if x is not None:
                    commands.add_metric([op, status], x)
        for key, labels in (("cas_badval", ["cas", "badval"]), ("cmd_flush", ["flush", "hit"])):
            x = v(key)
            if x is not None:
                commands.add_metric(labels, x)
        cmd_set, cas = v("cmd_set"), [v(k) for k in ("cas_hits", "cas_misses", "cas_badval")]
        if cmd_set is not None and None not in cas:
            # As the exporter does: cmd_set counts cas too.
            commands.add_metric(["set", "hit"], cmd_set - sum(c or 0 for c in cas))
        yield commands

        # -- ratmemcache's own -----------------------------------------------------------------
        info = GaugeMetricFamily(
            "ratmemcache_info",
            "The server: package version, I/O engine and eviction policy.",
            labels=["version", "io_engine", "eviction_policy"],
        )
        info.add_metric([__version__, self.io_engine, raw.get("eviction_policy", "")], 1)
        yield info
        items = GaugeMetricFamily("ratmemcache_tier_items", "Items per tier.", labels=["tier"])
        size = GaugeMetricFamily(
            "ratmemcache_tier_bytes",
            "Bytes per tier: the L1's charged memory, the L2's stored records.",
            labels=["tier"],
        )
        for tier, item_key, byte_key in (
            ("l1", "curr_items", "bytes"),
            ("l2", "l2_items", "l2_bytes"),
        ):
            n, b = v(item_key), v(byte_key)
            if n is not None and b is not None:
                items.add_metric([tier], n)
                size.add_metric([tier], b)
        yield items
        yield size
        yield from gauge("ratmemcache_l2_file_bytes", "Size of the L2 file.", "l2_file_bytes")
        for key, doc in (
            ("reads", "L2 lookups."),
            ("hits", "L2 lookups that found a live record."),
            ("writes", "Records written to the L2."),
            ("commits", "L2 commits."),
            ("evictions", "L2 records evicted to stay within max_disk_size."),
            ("expirations", "Expired L2 records removed."),
            ("errors", "L2 read and write errors."),
            ("promotions", "Items copied from the L2 up into the L1."),
            ("demotions", "Items written down to the L2 on L1 eviction (write_back)."),
        ):
            yield from counter(f"ratmemcache_l2_{key}", doc, f"l2_{key}")
        yield from gauge(
            "ratmemcache_l2_warmup_loaded", "Items the warm-up loaded into L1.", "l2_warmup_loaded"
        )
        yield from gauge(
            "ratmemcache_l2_warmup_running", "1 while the L2 warm-up runs.", "l2_warmup_running"
        )
        yield from counter(
            "ratmemcache_get_expired", "Reads that found an expired item.", "get_expired"
        )
        yield from counter(
            "ratmemcache_items_evicted_unfetched",
            "Evicted items that were never read.",
            "evicted_unfetched",
        )
        yield from counter(
            "ratmemcache_items_expired_unfetched",
            "Expired items that were never read.",
            "expired_unfetched",
        )

        hist = HistogramMetricFamily(
            "ratmemcache_command_duration_seconds",
            "Time the protocol engine spent on each request, by kind of command (its _count is "
            "the number of requests of that kind). Waiting for a request's bytes is not counted.",
            labels=["command"],
        )
        les = [repr(b / 1e9) for b in LATENCY_BUCKET_BOUNDS_NS] + ["+Inf"]
        for kind, (counts, sum_ns) in self.engine.latency().items():
            cumulative, buckets = 0, []
            for le, c in zip(les, counts, strict=True):
                cumulative += c
                buckets.append((le, float(cumulative)))
            hist.add_metric([kind], buckets, sum_ns / 1e9)
        yield hist


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        admin = self.server.admin
        if admin.stopped:
            # a kept-alive connection outliving the listener: the engine may be gone
            self.close_connection = True
            self._send(503, "text/plain; charset=utf-8", b"stopping\n")
            return
        try:
            if path == "/metrics":
                from prometheus_client.exposition import choose_encoder

                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, content_type, encoder(admin.registry))
            elif path == "/api/stats":
                body = json.dumps(engine_snapshot(admin.engine, io_engine=admin.io_engine))
                self._send(200, "application/json", body.encode())
            elif path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", admin.page)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")
        except Exception:
            log.exception("admin listener: %s failed", path)
            with contextlib.suppress(Exception):
                self._send(500, "text/plain; charset=utf-8", b"internal error\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("admin %s: " + format, self.address_string(), *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    admin: AdminServer


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class AdminServer:
    """The HTTP admin listener of one server; :meth:`start` binds it, :meth:`stop` closes it."""

    def __init__(self, engine: StatsSource, *, io_engine: str = "") -> None:
        from prometheus_client import CollectorRegistry

        self.engine = engine
        self.io_engine = io_engine
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(EngineCollector(engine, io_engine=io_engine))
        self.page = resources.files("ratmemcache").joinpath("status.html").read_bytes()
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.stopped = False

    @property
    def address(self) -> tuple[str, int]:
        if self._http is None:
            raise RuntimeError("the admin listener is not running")
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    def start(self, host: str, port: int) -> None:
        """Bind and serve in a daemon thread. Raises OSError when it can't listen."""
        cls = _HTTPServer6 if ":" in host else _HTTPServer
        http = cls((host, port), _Handler)
        http.admin = self
        self._http = http
        self._thread = threading.Thread(
            target=http.serve_forever,
            kwargs={"poll_interval": 0.25},
            name="ratmemcache-admin",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        self.stopped = True
        http, self._http = self._http, None
        if http is None:
            return
        http.shutdown()
        http.server_close()
        if self._thread is not None:
            self._thread.join(5)


def start_admin(engine: StatsSource, host: str, port: int, *, io_engine: str = "") -> AdminServer:
    """Start the admin listener; a port it can't have is a ``ServerStartError`` (one line)."""
    admin = AdminServer(engine, io_engine=io_engine)
    try:
        admin.start(host, port)
    except OSError as e:
        why = e.strerror or str(e)
        if e.errno == errno.EADDRINUSE:
            why = "address already in use (choose another with --admin-port)"
        raise ServerStartError(
            f"[admin] cannot listen on {format_addr(host, port)} for HTTP: {why}"
        ) from None
    host, bound = admin.address
    log.info("admin HTTP listener on http://%s/ (/metrics, /api/stats)", format_addr(host, bound))
    if is_wildcard(host):
        log.warning(
            "the admin HTTP listener is on all interfaces and has no authentication: anyone who "
            "can reach this host can read the server's statistics"
        )
    return admin


#: memcached's ``stats`` fields under prometheus/memcached_exporter's metric names:
#: (kind, metric name, stats field, help).
_MEMCACHED_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    (
        "counter",
        "memcached_process_user_cpu_seconds",
        "rusage_user",
        "Process CPU time (rusage_user).",
    ),
    (
        "counter",
        "memcached_process_system_cpu_seconds",
        "rusage_system",
        "Process CPU time (rusage_system).",
    ),
    ("counter", "memcached_read_bytes", "bytes_read", "Bytes read from clients."),
    ("counter", "memcached_written_bytes", "bytes_written", "Bytes sent to clients."),
    ("gauge", "memcached_current_connections", "curr_connections", "Open client connections."),
    ("gauge", "memcached_max_connections", "max_connections", "Most client connections allowed."),
    ("counter", "memcached_connections", "total_connections", "Connections accepted since start."),
    (
        "counter",
        "memcached_connections_rejected",
        "rejected_connections",
        "Connections refused at max_connections.",
    ),
    (
        "counter",
        "memcached_connections_yielded",
        "conn_yields",
        "Times a connection's replies reached the per-read budget.",
    ),
    ("gauge", "memcached_current_bytes", "bytes", "Bytes held by the L1 (memcached -m counts)."),
    ("gauge", "memcached_limit_bytes", "limit_maxbytes", "The L1's memory limit."),
    ("gauge", "memcached_current_items", "curr_items", "Items in the L1."),
    ("counter", "memcached_items", "total_items", "Items stored since start."),
    ("counter", "memcached_items_evicted", "evictions", "Items evicted from the L1 to make room."),
    ("counter", "memcached_items_reclaimed", "reclaimed", "Expired items removed from the L1."),
    ("counter", "memcached_item_too_large", "store_too_large", "Stores refused as larger than -I."),
    (
        "counter",
        "memcached_item_no_memory",
        "store_no_memory",
        "Stores refused for lack of memory.",
    ),
    (
        "gauge",
        "memcached_accepting_connections",
        "accepting_conns",
        "1 while accepting connections.",
    ),
)
