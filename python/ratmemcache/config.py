"""The one configuration model of ``ratmemcached``: TOML file + CLI flags -> a validated ``Config``.

Why it looks like this:

* The original RatMemCache's section and key names are kept (``[l1] max_memory``,
  ``[ttl] expire_seconds``, ...), so an existing ``rat_memcache`` config file loads. Keys that the
  original reads but that mean nothing here (its MelangeDB tuning knobs and the like) are accepted
  with a WARNING that names them: a user who relies on one learns that it does nothing, instead of
  the server silently ignoring it or refusing to start.
* Every other unknown key, or a value of the wrong type, is a :class:`ConfigError` whose message
  names the table, the key and what was expected. A typo must never turn into a default.
* The schema is data: each setting is a dataclass field with a :class:`Spec` in its metadata,
  and one generic loader reads, coerces, prints (``to_toml``) and documents them. A new table
  (``[tls]``, ``[auth]``, ``[admin]`` later) is one more dataclass and one more field on
  :class:`Config`.
* Rust never parses TOML: :func:`build_cache` and :func:`build_engine` hand the validated values to
  the core once.

Precedence is CLI > file > defaults: :func:`load_config` reads the file, then applies overrides
(``{"server.port": 11311}``) through the same coercion, so a bad flag gets the same kind of message
as a bad file entry.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import tomlkit
import tomlkit.exceptions

from ratmemcache.errors import ConfigError

if TYPE_CHECKING:
    from ratmemcache._core import Cache, Engine

__all__ = [
    "AdminConfig",
    "CompressionConfig",
    "Config",
    "L1Config",
    "L2Config",
    "LoggingConfig",
    "PerformanceConfig",
    "ServerConfig",
    "TtlConfig",
    "build_cache",
    "build_engine",
    "engine_settings",
    "format_size",
    "load_config",
    "parse_duration",
    "parse_size",
]

log = logging.getLogger("ratmemcache.config")

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

#: memcached's key limit, which the server enforces (the library allows longer keys).
MEMCACHED_MAX_KEY_LENGTH = 250
#: memcached's -I floor and ceiling (it refuses < 1 KB and > 1 GB).
MIN_ITEM_SIZE = KIB
MAX_ITEM_SIZE = GIB

# ----------------------------------------------------------------------------------------------
# Scalars: sizes and durations
# ----------------------------------------------------------------------------------------------

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": KIB,
    "kb": KIB,
    "kib": KIB,
    "m": MIB,
    "mb": MIB,
    "mib": MIB,
    "g": GIB,
    "gb": GIB,
    "gib": GIB,
    "t": 1 << 40,
    "tb": 1 << 40,
    "tib": 1 << 40,
}
_SIZE_RE = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """Parse ``"64MB"``, ``"1.5 GiB"``, ``"512k"`` or ``"1024"`` into bytes.

    Units are binary, as memcached's ``-m`` and ``-I`` are: K/KB/KiB = 1024, M = 1024**2, G, T.
    These are the same rules as the Rust core's ``parse_size``, so a size means the same thing
    whichever side reads it. Raises ``ValueError`` with a message that shows the input.
    """
    m = _SIZE_RE.match(text)
    if m is None:
        raise ValueError(
            f"{text!r} is not a size: expected a number with an optional unit, e.g. 64MB"
        )
    num, unit = m.group(1).replace("_", ""), m.group(2).lower()
    if unit not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size: unknown unit {unit!r} (use B, KB, MB, GB or TB)")
    mult = _SIZE_UNITS[unit]
    if "." in num:
        value = float(num) * mult
        if not math.isfinite(value) or value >= 2**64:
            raise ValueError(f"{text!r} is out of range")
        return int(value)
    n = int(num) * mult
    if n >= 2**64:
        raise ValueError(f"{text!r} is out of range")
    return n


def format_size(n: int) -> str | int:
    """The shortest exact spelling of ``n`` bytes that :func:`parse_size` reads back ("64MB")."""
    for unit, mult in (("TB", 1 << 40), ("GB", GIB), ("MB", MIB), ("KB", KIB)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return n


_DURATION_UNITS = {
    "": 1.0,
    "s": 1.0,
    "ms": 0.001,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")


def parse_duration(text: str) -> float:
    """Parse ``"30"``, ``"30s"``, ``"250ms"``, ``"5m"``, ``"1h"`` or ``"2d"`` into seconds."""
    m = _DURATION_RE.match(text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _DURATION_UNITS:
        raise ValueError(
            f"{text!r} is not a duration: use seconds, or a number with ms, s, m, h or d"
        )
    return float(m.group(1)) * _DURATION_UNITS[unit]


# ----------------------------------------------------------------------------------------------
# The schema
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """How one setting is read, checked, printed and documented.

    ``kind`` is one of: ``size``, ``int``, ``seconds``, ``bool``, ``str``, ``path`` (an optional
    string), ``mode`` (file permissions: an integer, ``0o700`` in TOML, or a string of octal
    digits, ``"0700"``), ``choice`` (a string matched case-insensitively, ignoring ``-``, ``_``
    and spaces, against ``choices``, which maps accepted spellings to the canonical value).
    """

    kind: str
    doc: str
    choices: Mapping[str, str] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def expected(self) -> str:
        """The type description used in error messages."""
        base = {
            "size": 'a size (int or string like "64MB")',
            "int": "an integer",
            "seconds": 'a number of seconds (int, float, or string like "30s")',
            "bool": "true or false",
            "str": "a string",
            "path": "a path (string)",
            "mode": 'octal permissions (0o700, or a string like "0700")',
            "choice": "one of " + ", ".join(sorted(set((self.choices or {}).values()))),
        }[self.kind]
        bounds = _bounds_text(self)
        return f"{base}{bounds}"


def _bounds_text(spec: Spec) -> str:
    def show(v: float) -> str:
        if spec.kind == "mode":
            return f"{int(v):04o}"
        if spec.kind == "size":
            s = format_size(int(v))
            return s if isinstance(s, str) else f"{s} bytes"
        return f"{v:g}"

    if spec.minimum is not None and spec.maximum is not None:
        return f" between {show(spec.minimum)} and {show(spec.maximum)}"
    if spec.minimum is not None and spec.minimum > 0:
        return f" of at least {show(spec.minimum)}"
    if spec.maximum is not None:
        return f" of at most {show(spec.maximum)}"
    return ""


def setting(default: Any, kind: str, doc: str, **kw: Any) -> Any:
    """A dataclass field that carries its :class:`Spec`."""
    return field(default=default, metadata={"spec": Spec(kind, doc, **kw)})


def _norm(name: str) -> str:
    return re.sub(r"[-_\s]", "", name).lower()


EVICTION_CHOICES: dict[str, str] = {
    "lru": "lru",
    "lfu": "lfu",
    "fifo": "fifo",
    "hybrid": "hybrid",
    "lrulfu": "hybrid",  # the original's name for its LRU/LFU hybrid
    "slru": "hybrid",
    "ttl": "ttl",
    "ttlbased": "ttl",  # the original's TtlBased
    "sieve": "sieve",
    "s3fifo": "s3fifo",
}
WRITE_STRATEGY_CHOICES: dict[str, str] = {
    "writethrough": "write_through",
    "always": "write_through",  # the original's "always write to L2" is write-through
    "writeback": "write_back",
}
SYNC_CHOICES: dict[str, str] = {"always": "always", "periodic": "periodic", "never": "never"}
CORRUPTION_CHOICES: dict[str, str] = {"fail": "fail", "reset": "reset"}
ENGINE_CHOICES: dict[str, str] = {"anyio": "anyio", "native": "native"}
BINDING_CHOICES: dict[str, str] = {"auto": "auto", "ascii": "ascii", "binary": "binary"}
#: memcached's ``stats settings`` name of each ``-B`` choice.
BINDING_STATS_NAMES: dict[str, str] = {
    "auto": "auto-negotiate",
    "ascii": "ascii",
    "binary": "binary",
}
LEVEL_CHOICES: dict[str, str] = {
    "trace": "trace",
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "critical": "critical",
    "off": "off",
}


@dataclass
class Section:
    """Base of the table dataclasses; ``TABLE`` is the TOML table name."""

    TABLE: ClassVar[str] = ""


@dataclass
class ServerConfig(Section):
    """``[server]``: where and how ratmemcached listens (memcached's -l, -p, -s, -c, -I, -o)."""

    TABLE: ClassVar[str] = "server"

    bind: str = setting(
        "127.0.0.1",
        "str",
        "Address to listen on (memcached -l). The default is loopback only: binding to all "
        'interfaces ("0.0.0.0" or "::") is a deliberate choice, as the server has no auth yet.',
    )
    port: int = setting(
        11211,
        "int",
        "TCP port (memcached -p). 0 lets the OS pick a free port; the server logs the one it got.",
        minimum=0,
        maximum=65535,
    )
    unix_socket: str | None = setting(
        None,
        "path",
        "Listen on this unix socket path only (memcached -s): TCP (bind, port) and UDP "
        "(udp_port) are then off, as memcached's -s turns network support off. POSIX only.",
    )
    unix_socket_mask: int = setting(
        0o700,
        "mode",
        "Permissions of the unix socket (memcached -a), in octal: 0o700 lets only the owner "
        "connect.",
        minimum=0,
        maximum=0o777,
    )
    udp_port: int = setting(
        0,
        "int",
        "Serve memcached's UDP protocol on this port, on the bind address (memcached -U). "
        "0 = off, memcached's default since 1.5.6.",
        minimum=0,
        maximum=65535,
    )
    binding_protocol: str = setting(
        "auto",
        "choice",
        "The protocols clients may speak (memcached -B): auto (a first byte of 0x80 is binary, "
        "anything else text), ascii (text only: a binary request is read as a text line) or "
        "binary (a text request closes the connection).",
        choices=BINDING_CHOICES,
    )
    reqs_per_event: int = setting(
        20,
        "int",
        "memcached -R: a connection's read answers at most this many pipelined requests (one "
        "more on a fresh read) before its replies are sent and other connections get a turn "
        "(counted in stats conn_yields).",
        minimum=1,
    )
    max_connections: int = setting(
        1024,
        "int",
        "Simultaneous client connections (memcached -c). One more is accepted, told "
        '"ERROR Too many open connections" and closed, as memcached does.',
        minimum=1,
    )
    max_item_size: int = setting(
        MIB,
        "size",
        "Largest value a client may store (memcached -I). Larger sets are rejected and their "
        "bytes swallowed. 1KB to 1GB.",
        minimum=MIN_ITEM_SIZE,
        maximum=MAX_ITEM_SIZE,
    )
    idle_timeout: float = setting(
        0,
        "seconds",
        "Close a client that sends nothing for this long (memcached -o idle_timeout). 0 = never. "
        "It also bounds how long a stalled partial request (slowloris) holds a connection.",
        minimum=0,
    )
    backlog: int = setting(
        1024,
        "int",
        "Listen backlog (memcached -b): pending connections the kernel queues.",
        minimum=1,
    )
    engine: str = setting(
        "native",
        "choice",
        'The I/O engine. "native": a multi-threaded Rust event loop (worker_threads threads), the '
        'faster one. "anyio": Python (uvloop when installed), embeddable in an async app.',
        choices=ENGINE_CHOICES,
    )
    allow_flush: bool = setting(True, "bool", "Accept flush_all (memcached -F turns it off).")
    allow_shutdown: bool = setting(
        False, "bool", 'Accept the "shutdown" command (memcached -A turns it on).'
    )
    allow_verbosity: bool = setting(True, "bool", 'Accept the "verbosity" command.')
    detail_delimiter: str = setting(
        ":",
        "str",
        "The character that ends a key's prefix for `stats detail` (memcached -D).",
    )
    shutdown_grace: float = setting(
        5.0,
        "seconds",
        "On SIGTERM/SIGINT: how long requests in flight may take to finish before their "
        "connections are closed anyway.",
        minimum=0,
    )
    pid_file: str | None = setting(
        None, "path", "Write the server's pid here (atomically) and remove it on exit."
    )
    tls: bool = setting(
        False, "bool", "memcached -Z: serve TLS on the TCP listeners (needs ssl_chain_cert)."
    )
    ssl_chain_cert: str | None = setting(
        None, "path", "memcached -o ssl_chain_cert: the certificate chain, PEM."
    )
    ssl_key: str | None = setting(
        None,
        "path",
        "memcached -o ssl_key: the private key, PEM (if not in ssl_chain_cert).",
    )
    auth_file: str | None = setting(
        None,
        "path",
        'memcached -Y: a file of "user:password" lines. Clients must then authenticate first '
        '(memcached\'s ASCII auth: a set whose data is "user password").',
    )
    sasl: bool = setting(
        False,
        "bool",
        "memcached -S: binary-protocol clients must authenticate with SASL PLAIN against the "
        "users of sasl_pwdb. Text clients are then refused, unless auth_file is set too.",
    )
    sasl_pwdb: str | None = setting(
        None,
        "path",
        'The SASL users: a file of "user:password" lines (memcached\'s MEMCACHED_SASL_PWDB, '
        "which is read when this is not set).",
    )


@dataclass
class L1Config(Section):
    """``[l1]``: the in-memory tier."""

    TABLE: ClassVar[str] = "l1"

    max_memory: int = setting(
        64 * MIB,
        "size",
        "Memory for items, keys and per-item overhead (memcached -m). 0 = unlimited.",
    )
    max_entries: int = setting(0, "int", "Most items held at once. 0 = unlimited.", minimum=0)
    eviction_strategy: str = setting(
        "s3fifo",
        "choice",
        "Which item goes when memory is full: lru, lfu, fifo, hybrid (segmented LRU), ttl "
        "(soonest to expire first), sieve or s3fifo. The original's Lru, Lfu, Fifo, LruLfu and "
        "TtlBased are accepted, in any case.",
        choices=EVICTION_CHOICES,
    )
    shards: int = setting(
        0,
        "int",
        "Lock shards (a power of two). 0 picks one from the CPU count and the limits.",
        minimum=0,
        maximum=65536,
    )
    evictions: bool = setting(
        True,
        "bool",
        "Make room by evicting. false (memcached -M): a write that does not fit once expired "
        'items are reclaimed gets "SERVER_ERROR out of memory storing object" instead. '
        "Needs the L2 off (with it, the L1 makes room by moving items to disk).",
    )
    cas: bool = setting(
        True,
        "bool",
        "Give every write a CAS unique. false (memcached -C): uniques are 0, a cas never "
        "matches, and each item is 8 bytes smaller against max_item_size.",
    )


@dataclass
class L2Config(Section):
    """``[l2]``: the persistent tier on disk (redb, LZ4-compressed records)."""

    TABLE: ClassVar[str] = "l2"

    enable_l2_cache: bool = setting(False, "bool", "Turn the persistent tier on.")
    data_dir: str | None = setting(None, "path", "Directory for the L2 database.")
    max_disk_size: int = setting(
        GIB, "size", "Disk budget; past it, the oldest records are evicted."
    )
    enable_compression: bool = setting(
        True, "bool", "Compress L2 records (with [compression] enable_lz4)."
    )
    clear_on_startup: bool = setting(
        False, "bool", "Start with an empty L2 instead of serving what it held."
    )
    l2_write_strategy: str = setting(
        "write_through",
        "choice",
        "write_through: every set also reaches L2, so a restart loses nothing acknowledged. "
        "write_back: L1 evictions are demoted to L2. The original's spellings (WriteThrough, "
        '"always") are accepted.',
        choices=WRITE_STRATEGY_CHOICES,
    )
    sync: str = setting(
        "periodic",
        "choice",
        "fsync policy for L2 commits: always (no acknowledged write is lost, even on SIGKILL), "
        "periodic, or never.",
        choices=SYNC_CHOICES,
    )
    on_corruption: str = setting(
        "fail",
        "choice",
        'A corrupt L2 file at startup: "fail" refuses to start; "reset" moves it aside and '
        "starts empty.",
        choices=CORRUPTION_CHOICES,
    )


@dataclass
class CompressionConfig(Section):
    """``[compression]``: L2 record compression (L1 keeps values raw so hits never decompress)."""

    TABLE: ClassVar[str] = "compression"

    enable_lz4: bool = setting(True, "bool", "Compress L2 records with LZ4.")
    compression_threshold: int = setting(
        KIB, "size", "Compress values of at least this size; smaller ones are stored raw."
    )
    compression_level: int = setting(
        6,
        "int",
        "1 to 12, kept from the original and validated; it has no effect, because lz4_flex "
        "implements LZ4's fast mode only.",
        minimum=1,
        maximum=12,
    )


@dataclass
class TtlConfig(Section):
    """``[ttl]``: item lifetimes."""

    TABLE: ClassVar[str] = "ttl"

    default_ttl: float = setting(
        0,
        "seconds",
        "Lifetime of items stored without one (exptime 0 from the library). 0 = never expire. "
        "The original's expire_seconds is an alias.",
        minimum=0,
    )
    max_ttl: float = setting(
        0, "seconds", "Upper bound on any item's lifetime, 'never' included. 0 = none.", minimum=0
    )
    cleanup_interval: float = setting(
        60,
        "seconds",
        "How often a background sweep frees expired items. 0 turns the sweep off (expired items "
        "are still never returned, and are reclaimed as they are met).",
        minimum=0,
    )


@dataclass
class PerformanceConfig(Section):
    """``[performance]``: threads and thresholds."""

    TABLE: ClassVar[str] = "performance"

    worker_threads: int = setting(
        4,
        "int",
        "Worker threads (memcached -t): in the native engine, the event-loop threads; in the "
        "anyio engine, the threads that large requests are offloaded to, so they never stall "
        "the event loop.",
        minimum=1,
        maximum=1024,
    )
    large_value_threshold: int = setting(
        10 * KIB,
        "size",
        "Values over this size go straight to L2 (when it is on) and take no L1 memory.",
    )
    read_size: int = setting(
        64 * KIB,
        "size",
        "Bytes read from a connection at a time; each read is one call into the protocol engine.",
        minimum=KIB,
        maximum=16 * MIB,
    )
    offload_threshold: int = setting(
        256 * KIB,
        "size",
        "When a connection has sent this much of one request without a reply (a large value), "
        "the next protocol call runs in a worker thread instead of on the event loop.",
        minimum=KIB,
    )


@dataclass
class LoggingConfig(Section):
    """``[logging]``: the original's logging switches."""

    TABLE: ClassVar[str] = "logging"

    level: str = setting(
        "info",
        "choice",
        "trace, debug, info, warn, error, or off. Key and value contents are logged only at debug.",
        choices=LEVEL_CHOICES,
    )
    enable_colors: bool = setting(
        True, "bool", "Color the level names, when stderr is a terminal (NO_COLOR is honoured)."
    )
    show_timestamp: bool = setting(True, "bool", "Prefix each line with its time.")
    enable_performance_logs: bool = setting(
        False, "bool", "Log slow requests and periodic throughput (logger ratmemcache.perf)."
    )
    enable_audit_logs: bool = setting(
        True,
        "bool",
        "Log connections, refusals, signals and shutdown (logger ratmemcache.audit).",
    )
    enable_cache_logs: bool = setting(
        False,
        "bool",
        "Log every protocol exchange's size at debug level (logger ratmemcache.cache). "
        "Costly; for debugging.",
    )
    enable_logging: bool = setting(
        True, "bool", "false turns all logging off; the request path then makes no logging call."
    )
    enable_async: bool = setting(
        False,
        "bool",
        "Format and write log lines in a background thread (a QueueHandler/QueueListener), so "
        "a slow stderr never stalls the event loop.",
    )
    batch_size: int = setting(
        2048,
        "size",
        "Async mode: write to the stream once this many bytes of lines are waiting.",
        minimum=1,
    )
    batch_interval_ms: int = setting(
        25, "int", "Async mode: the longest a line waits before it is written.", minimum=0
    )
    buffer_size: int = setting(
        16 * KIB,
        "size",
        "Async mode: the most bytes of log lines queued; past it new lines are dropped (and "
        "counted) rather than blocking the server.",
        minimum=KIB,
    )
    file: str | None = setting(
        None, "path", "Append the log to this file instead of stderr (useful with --daemon)."
    )


@dataclass
class AdminConfig(Section):
    """``[admin]``: the optional HTTP listener for monitoring (``/metrics``, a status page)."""

    TABLE: ClassVar[str] = "admin"

    http_port: int = setting(
        0,
        "int",
        "Serve /metrics (Prometheus), /api/stats (JSON) and a status page at / over HTTP on "
        "this port. 0 = off. It has no authentication: keep it on loopback or a private network.",
        minimum=0,
        maximum=65535,
    )
    http_bind: str = setting(
        "127.0.0.1",
        "str",
        "Address the HTTP admin listener binds to (when http_port is set).",
    )


# Alias spellings: (table, key) -> (table, key). Cross-table aliases exist because the original
# moved some keys between tables over its history (its [l2] once held the compression knobs).
ALIASES: dict[tuple[str, str], tuple[str, str]] = {
    ("server", "item_size_limit"): ("server", "max_item_size"),
    ("server", "listen"): ("server", "bind"),
    ("server", "maxconns"): ("server", "max_connections"),
    ("ttl", "expire_seconds"): ("ttl", "default_ttl"),
    ("l2", "enable_lz4"): ("compression", "enable_lz4"),
    ("l2", "compression_threshold"): ("compression", "compression_threshold"),
    ("l2", "compression_level"): ("compression", "compression_level"),
    ("l2", "large_value_threshold"): ("performance", "large_value_threshold"),
    ("performance", "l2_write_strategy"): ("l2", "l2_write_strategy"),
}

# Keys that the original rat_memcache reads but that mean nothing here: each gets a WARNING that
# names it. The reason is shown to the user.
_MELANGE = "a MelangeDB/RocksDB tuning knob of the original; the redb-based L2 has no equivalent"
ORIGINAL_ONLY: dict[tuple[str, str], str] = {
    **{
        ("l2", k): _MELANGE
        for k in (
            "write_buffer_size",
            "max_write_buffer_number",
            "block_cache_size",
            "background_threads",
            "cache_size_mb",
            "max_file_size_mb",
            "smart_flush_enabled",
            "smart_flush_base_interval_ms",
            "smart_flush_min_interval_ms",
            "smart_flush_max_interval_ms",
            "smart_flush_write_rate_threshold",
            "smart_flush_accumulated_bytes_threshold",
            "compression_algorithm",
            "zstd_compression_level",
        )
    },
    ("l2", "cache_warmup_strategy"): "L1 is always warmed from L2, most recently used first",
    ("l2", "compression_max_threshold"): "values of any size are compressed when it helps",
    ("compression", "compression_max_threshold"): "values of any size are compressed when it helps",
    ("compression", "auto_compression"): "a value that doesn't shrink is always stored raw",
    ("compression", "min_compression_ratio"): "a value that doesn't shrink is always stored raw",
    ("l2", "l2_write_threshold"): "use [performance] large_value_threshold",
    ("l2", "l2_write_ttl_threshold"): "every item is written per l2_write_strategy",
    ("performance", "l2_write_threshold"): "use [performance] large_value_threshold",
    ("performance", "l2_write_ttl_threshold"): "every item is written per l2_write_strategy",
    ("ttl", "max_cleanup_entries"): "the sweep is amortized per shard",
    ("ttl", "lazy_expiration"): "expired items are never returned (always on)",
    ("ttl", "active_expiration"): "use cleanup_interval (0 turns the sweep off)",
    ("performance", "enable_concurrency"): "the cache is always concurrent (sharded)",
    ("performance", "read_write_separation"): "the cache is always concurrent (sharded)",
    ("performance", "batch_size"): "requests are batched per read automatically",
    ("performance", "enable_warmup"): "L1 is always warmed from L2",
    ("performance", "stats_interval"): "stats are always live",
    ("performance", "enable_background_stats"): "stats are always live",
    ("", "cache_config_path"): "pass the file with --config",
    ("", "preset"): "presets are not supported; set the keys you need",
}

#: Top-level keys (outside any table) of the original's rat_memcached.toml that map to ours.
TOP_LEVEL_ALIASES: dict[str, tuple[str, str]] = {"bind_addr": ("server", "bind")}


@dataclass
class Config:
    """The whole validated configuration. Build it with :func:`load_config` (or ``Config()``)."""

    server: ServerConfig = field(default_factory=ServerConfig)
    l1: L1Config = field(default_factory=L1Config)
    l2: L2Config = field(default_factory=L2Config)
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    ttl: TtlConfig = field(default_factory=TtlConfig)
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)

    def sections(self) -> Iterator[Section]:
        for f in fields(self):
            yield getattr(self, f.name)

    def section(self, table: str) -> Section:
        for s in self.sections():
            if table == s.TABLE:
                return s
        raise KeyError(table)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The effective settings as plain values, by table (None for unset optional paths)."""
        return {s.TABLE: {f.name: getattr(s, f.name) for f in fields(s)} for s in self.sections()}

    def to_toml(self) -> str:
        """The effective configuration as TOML that :func:`load_config` reads back unchanged.

        Sizes are written in their shortest exact unit ("64MB"); unset optional paths are written
        as comments so the reader sees that the setting exists.
        """
        doc = tomlkit.document()
        doc.add(tomlkit.comment("ratmemcached: the effective configuration (--print-config)."))
        doc.add(tomlkit.comment("Every key is documented in docs/configuration.md."))
        for s in self.sections():
            table = tomlkit.table()
            for f in fields(s):
                spec: Spec = f.metadata["spec"]
                value = getattr(s, f.name)
                if value is None:
                    table.add(tomlkit.comment(f"{f.name} = (not set)"))
                    continue
                table.add(f.name, _to_toml_value(spec, value))
            doc.add(tomlkit.nl())
            doc.add(s.TABLE, table)
        return tomlkit.dumps(doc)

    def validate(self) -> None:
        """Checks that involve more than one setting. Raises :class:`ConfigError`."""
        s = self.server
        if self.l1.max_memory and s.max_item_size > self.l1.max_memory:
            raise ConfigError(
                f"[server] max_item_size ({format_size(s.max_item_size)}) is larger than "
                f"[l1] max_memory ({format_size(self.l1.max_memory)}): such items could never be "
                "stored; raise max_memory (-m) or lower max_item_size (-I)"
            )
        if self.ttl.max_ttl and self.ttl.default_ttl > self.ttl.max_ttl:
            raise ConfigError(
                f"[ttl] default_ttl ({self.ttl.default_ttl:g}) is longer than max_ttl "
                f"({self.ttl.max_ttl:g})"
            )
        if not self.l1.evictions and self.l2.enable_l2_cache:
            raise ConfigError(
                "[l1] evictions: false (-M) needs [l2] enable_l2_cache = false: with the L2 on, "
                "the L1 makes room by moving items to disk"
            )
        if len(s.detail_delimiter) != 1 or not s.detail_delimiter.isprintable():
            raise ConfigError(
                f"[server] detail_delimiter: expected one printable character, "
                f"got {s.detail_delimiter!r}"
            )
        if s.binding_protocol == "ascii" and s.sasl:
            raise ConfigError(
                '[server] binding_protocol = "ascii": SASL (sasl = true, -S) needs the binary '
                "protocol (memcached: You cannot allow the ASCII protocol while using SASL)"
            )
        if s.binding_protocol == "binary" and s.auth_file:
            raise ConfigError(
                '[server] binding_protocol = "binary": ASCII authentication (auth_file, -Y) needs '
                "the text protocol (memcached: You cannot allow the BINARY protocol while using "
                "ascii authentication tokens)"
            )
        if s.udp_port and s.auth_file:
            raise ConfigError(
                "[server] udp_port: UDP cannot be used with ASCII authentication (auth_file, -Y); "
                "set udp_port = 0 (-U 0), as memcached requires"
            )
        if s.udp_port and s.sasl:
            raise ConfigError(
                "[server] udp_port: UDP cannot be used with SASL authentication (sasl, -S); set "
                "udp_port = 0 (-U 0), as memcached requires"
            )
        if self.l1.shards and self.l1.shards & (self.l1.shards - 1):
            raise ConfigError(f"[l1] shards: expected a power of two or 0, got {self.l1.shards}")
        a = self.admin
        if not a.http_bind.strip():
            raise ConfigError('[admin] http_bind: expected an address such as "127.0.0.1", got ""')
        if (
            a.http_port
            and a.http_port == s.port
            and s.port != 0
            and _same_host(a.http_bind, s.bind)
        ):
            raise ConfigError(
                f"[admin] http_port: {a.http_port} is also [server] port; the HTTP admin "
                "listener needs a port of its own"
            )

    def check_available(self) -> None:
        """Refuse settings that this build parses but cannot honour yet, with one clear line.

        The server calls this before it starts: turning on L2 and silently getting a memory-only
        cache would lose data on restart that the user expected to keep.
        """
        if self.server.auth_file:
            load_auth_file(self.server.auth_file)
        if self.server.sasl:
            load_sasl_pwdb(self)
        if self.server.tls and not self.server.ssl_chain_cert:
            raise ConfigError(
                "[server] ssl_chain_cert: required when tls = true (memcached -Z needs "
                "-o ssl_chain_cert=FILE)"
            )
        if self.l2.enable_l2_cache and not self.l2.data_dir:
            raise ConfigError(
                "[l2] data_dir: required when enable_l2_cache = true (the directory that holds "
                "the L2 database)"
            )
        if self.server.engine == "native":
            from ratmemcache import _core

            if not hasattr(_core, "NativeServer"):
                raise ConfigError(
                    '[server] engine = "native": this build has no native engine (it was built '
                    'without the "native" feature); use engine = "anyio"'
                )


def _same_host(a: str, b: str) -> bool:
    """Two bind addresses that would collide on one port (a wildcard collides with anything)."""
    wild = ("0.0.0.0", "::", "")
    return a.strip() == b.strip() or a.strip() in wild or b.strip() in wild


def _to_toml_value(spec: Spec, value: Any) -> Any:
    if spec.kind == "mode":
        return f"{int(value):04o}"
    if spec.kind == "size":
        return format_size(int(value))
    if spec.kind == "seconds":
        return int(value) if float(value).is_integer() else float(value)
    return value


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A value as the user wrote it in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return str(value)


def _coerce(spec: Spec, value: Any, where: str) -> Any:
    """Check and convert one value; ``where`` ("[l1] max_memory") prefixes any error."""

    def bad(extra: str = "") -> ConfigError:
        return ConfigError(f"{where}: expected {spec.expected()}, got {_show(value)}{extra}")

    out: Any
    if spec.kind == "size":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise bad()
        if isinstance(value, str):
            try:
                out = parse_size(value)
            except ValueError as e:
                raise bad(f" ({e})") from None
        else:
            out = value
        if out < 0:
            raise bad()
    elif spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        out = value
    elif spec.kind == "mode":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise bad()
        if isinstance(value, str):
            digits = value.strip().lower().removeprefix("0o")
            if not digits or any(c not in "01234567" for c in digits):
                raise bad()
            out = int(digits, 8)
        else:
            out = value
    elif spec.kind == "seconds":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise bad()
        if isinstance(value, str):
            try:
                out = parse_duration(value)
            except ValueError as e:
                raise bad(f" ({e})") from None
        else:
            out = value
        if not math.isfinite(out) or out < 0:
            raise bad()
    elif spec.kind == "bool":
        if not isinstance(value, bool):
            raise bad()
        out = value
    elif spec.kind in ("str", "path"):
        if not isinstance(value, str):
            raise bad()
        out = value
        if spec.kind == "path" and not out.strip():
            raise bad(" (empty)")
    elif spec.kind == "choice":
        if not isinstance(value, str):
            raise bad()
        choices = spec.choices or {}
        canonical = choices.get(_norm(value)) or choices.get(value.strip().lower())
        if canonical is None:
            raise bad()
        out = canonical
    else:  # pragma: no cover - a schema bug
        raise AssertionError(f"unknown setting kind {spec.kind!r}")
    if spec.minimum is not None and out < spec.minimum:
        raise bad()
    if spec.maximum is not None and out > spec.maximum:
        raise bad()
    return out


def _specs(section: Section) -> dict[str, Spec]:
    return {f.name: f.metadata["spec"] for f in fields(section)}


class _Builder:
    """Applies (table, key, value) triples to a Config, resolving aliases and catching conflicts."""

    def __init__(self, config: Config, origin: str) -> None:
        self.config = config
        self.origin = origin
        # canonical (table, key) -> (spelling used, coerced value), to catch an alias and its
        # canonical key both given with different values.
        self.seen: dict[tuple[str, str], tuple[str, Any]] = {}

    def apply(self, table: str, key: str, value: Any, *, label: str | None = None) -> None:
        where = label or (f"[{table}] {key}" if table else key)
        target = ALIASES.get((table, key), (table, key))
        try:
            section = self.config.section(target[0])
        except KeyError:
            raise ConfigError(f"{where}: unknown table [{target[0]}]") from None
        specs = _specs(section)
        if target[1] not in specs:
            raise ConfigError(f"{where}: {_unknown_key_hint(target[0], target[1], specs)}")
        coerced = _coerce(specs[target[1]], value, where)
        prior = self.seen.get(target)
        if prior is not None and prior[1] != coerced and prior[0] != where:
            raise ConfigError(
                f"{where} and {prior[0]} are the same setting and disagree "
                f"({_show(value)} vs {_show(prior[1])}); keep one"
            )
        self.seen[target] = (where, coerced)
        setattr(section, target[1], coerced)


def _unknown_key_hint(table: str, key: str, specs: Mapping[str, Spec]) -> str:
    known = sorted(
        set(specs)
        | {k for (t, k) in ALIASES if t == table}
        | {k for (t, k) in ORIGINAL_ONLY if t == table}
    )
    close = difflib.get_close_matches(key, known, n=1)
    hint = f'; did you mean "{close[0]}"?' if close else f"; known keys: {', '.join(sorted(specs))}"
    return f"unknown key{hint}"


def _warn_original_only(table: str, key: str, reason: str, origin: str) -> None:
    where = f"[{table}] {key}" if table else key
    log.warning("%s: %s is ignored (%s)", origin, where, reason)


def config_from_mapping(data: Mapping[str, Any], origin: str = "<config>") -> Config:
    """Build a :class:`Config` from parsed TOML (a dict of tables). Raises :class:`ConfigError`."""
    config = Config()
    builder = _Builder(config, origin)
    tables = {s.TABLE for s in config.sections()}
    for name, value in data.items():
        if isinstance(value, Mapping):
            if name not in tables:
                close = difflib.get_close_matches(name, sorted(tables), n=1)
                hint = f'; did you mean "[{close[0]}]"?' if close else ""
                raise ConfigError(
                    f"[{name}]: unknown table{hint} (tables: {', '.join(sorted(tables))})"
                )
            for key, v in value.items():
                if (name, key) in ORIGINAL_ONLY:
                    _warn_original_only(name, key, ORIGINAL_ONLY[(name, key)], origin)
                    continue
                if isinstance(v, Mapping) and key not in _specs(config.section(name)):
                    raise ConfigError(f"[{name}.{key}]: unknown table")
                builder.apply(name, key, v)
        elif ("", name) in ORIGINAL_ONLY:
            _warn_original_only("", name, ORIGINAL_ONLY[("", name)], origin)
        elif name in TOP_LEVEL_ALIASES:
            _apply_bind(builder, value, where=name)
        else:
            raise ConfigError(
                f"{name}: unknown top-level key; settings belong in a table such as [server] or "
                "[l1]"
            )
    config.validate()
    return config


def _apply_bind(builder: _Builder, value: Any, *, where: str) -> None:
    """``bind_addr = "host:port"`` (the original's top-level key) sets both bind and port."""
    if not isinstance(value, str):
        raise ConfigError(f'{where}: expected a string like "127.0.0.1:11211", got {_show(value)}')
    host, port = split_host_port(value, where=where)
    builder.apply("server", "bind", host, label=where)
    if port is not None:
        builder.apply("server", "port", port, label=f"{where} (port)")


def split_host_port(text: str, *, where: str = "--bind") -> tuple[str, int | None]:
    """``"host"``, ``"host:port"``, ``"[v6]:port"``, ``":port"`` or a bare IPv6 address."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"{where}: {text!r} has no closing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{where}: expected [address]:port, got {text!r}")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None
    host = host or "127.0.0.1"
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{where}: expected a port between 0 and 65535, got {port_text!r}")
    return host, int(port_text)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into plain dicts; syntax errors name the file, line and column."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read the config file: {e}") from None
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.TOMLKitError as e:
        line, col = getattr(e, "line", None), getattr(e, "col", None)
        msg = str(e)
        msg = re.sub(r"\s*at line \d+ col \d+\s*$", "", msg)
        pos = f":{line}:{col}" if line is not None else ""
        raise ConfigError(f"{p}{pos}: TOML syntax error: {msg}") from None
    data: dict[str, Any] = doc.unwrap()
    return data


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    data: Mapping[str, Any] | None = None,
) -> Config:
    """The effective configuration: defaults, then the TOML file (or ``data``), then overrides.

    ``overrides`` maps ``"table.key"`` (aliases allowed) to a value, e.g. from CLI flags; a key may
    be written ``"table.key|--flag"`` to name the flag in error messages. Raises
    :class:`ConfigError` (a ``ValueError``) for anything invalid.
    """
    origin = str(path) if path is not None else "<defaults>"
    if path is not None:
        data = read_toml(path)
    config = config_from_mapping(data or {}, origin)
    if overrides:
        apply_overrides(config, overrides)
    return config


def apply_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """Set ``"table.key"`` values (validated, aliases allowed); later entries win."""
    builder = _Builder(config, "<overrides>")
    for dotted, value in overrides.items():
        name, _, label = dotted.partition("|")
        table, _, key = name.partition(".")
        if not key:
            raise ConfigError(f'{dotted}: expected "table.key"')
        builder.seen.clear()  # overrides replace, they do not conflict
        builder.apply(table, key, value, label=label or None)
    config.validate()
    return config


# ----------------------------------------------------------------------------------------------
# Handing it to the core
# ----------------------------------------------------------------------------------------------


def build_cache(config: Config) -> Cache:
    """The cache that ``config`` describes (with its L2 when enabled), with memcached's 250-byte
    key limit. Raises PersistenceError, naming the path, when the L2 can't be opened."""
    from ratmemcache._core import Cache

    l2 = config.l2
    return Cache(
        max_memory=config.l1.max_memory,
        max_entries=config.l1.max_entries,
        eviction=config.l1.eviction_strategy,
        default_ttl=config.ttl.default_ttl,
        max_ttl=config.ttl.max_ttl,
        cleanup_interval=config.ttl.cleanup_interval,
        shards=config.l1.shards or None,
        max_key_length=MEMCACHED_MAX_KEY_LENGTH,
        evictions=config.l1.evictions,
        cas=config.l1.cas,
        l2_dir=l2.data_dir if l2.enable_l2_cache else None,
        l2_max_disk_size=l2.max_disk_size,
        l2_sync=l2.sync,
        l2_write_strategy=l2.l2_write_strategy,
        large_value_threshold=config.performance.large_value_threshold,
        compression=l2.enable_compression and config.compression.enable_lz4,
        compression_threshold=config.compression.compression_threshold,
        clear_on_startup=l2.clear_on_startup,
        on_corruption=l2.on_corruption,
    )


def engine_settings(
    config: Config, *, port: int | None = None, udp_port: int | None = None
) -> dict[str, str]:
    """What ``stats settings`` reports beyond the engine's own fields, by memcached's names.

    ``port`` and ``udp_port`` are the ports actually bound (they differ from the config when it
    says 0); as in memcached, the configured ones are shown when -s turned the network off.
    """
    s = config.server

    def yes(b: bool) -> str:
        return "yes" if b else "no"

    return {
        "maxbytes": str(config.l1.max_memory),
        "maxconns": str(s.max_connections),
        "tcpport": str(s.port if port is None else port),
        "udpport": str(s.udp_port if udp_port is None else udp_port),
        "inter": s.bind,
        "domain_socket": s.unix_socket or "NULL",
        "umask": f"{s.unix_socket_mask:o}",
        "shutdown_command": yes(s.allow_shutdown),
        "num_threads": str(config.performance.worker_threads),
        "reqs_per_event": str(s.reqs_per_event),
        "tcp_backlog": str(s.backlog),
        "binding_protocol": BINDING_STATS_NAMES[s.binding_protocol],
        "auth_enabled_sasl": yes(s.sasl),
        "auth_enabled_ascii": yes(s.auth_file is not None),
        "item_size_max": str(s.max_item_size),
        "maxconns_fast": "yes",
        "idle_timeout": str(math.ceil(s.idle_timeout)),
        "flush_enabled": yes(s.allow_flush),
        "ssl_enabled": yes(s.tls),
        # ratmemcache's own, under names memcached does not use:
        "eviction_policy": config.l1.eviction_strategy,
        "max_entries": str(config.l1.max_entries),
        "l2_enabled": yes(config.l2.enable_l2_cache),
        "io_engine": s.engine,
    }


SASL_PWDB_ENV = "MEMCACHED_SASL_PWDB"


def load_sasl_pwdb(config: Config) -> list[tuple[bytes, bytes]]:
    """The SASL users: ``[server] sasl_pwdb``, else the file named by $MEMCACHED_SASL_PWDB."""
    path = config.server.sasl_pwdb
    key = "sasl_pwdb"
    if path is None:
        path = os.environ.get(SASL_PWDB_ENV) or None
        key = f"sasl_pwdb (from ${SASL_PWDB_ENV})"
    if path is None:
        raise ConfigError(
            f'[server] sasl_pwdb: required when sasl = true (a file of "user:password" lines; '
            f"or set ${SASL_PWDB_ENV})"
        )
    return load_auth_file(path, key=key)


def load_auth_file(
    path: str | os.PathLike[str], *, key: str = "auth_file"
) -> list[tuple[bytes, bytes]]:
    """The users of a memcached authfile: one ``user:password`` per line.

    Raises ConfigError naming the file (and the line) when it can't be used.
    """
    where = f"[server] {key} {os.fspath(path)}"
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read it ({e.strerror or e})") from None
    users: list[tuple[bytes, bytes]] = []
    for n, raw in enumerate(data.splitlines(), 1):
        line = raw.strip(b"\r")
        if not line:
            continue
        user, sep, password = line.partition(b":")
        if not sep or not user or not password:
            raise ConfigError(f'{where}:{n}: expected "user:password"')
        users.append((user, password))
    if not users:
        raise ConfigError(f'{where}: no "user:password" lines; nobody could connect')
    return users


def build_tls_context(config: Config) -> ssl.SSLContext | None:
    """The server's TLS context when ``[server] tls`` is on; ConfigError names a bad file."""
    s = config.server
    if not s.tls:
        return None
    assert s.ssl_chain_cert is not None  # check_available() ensures it
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(s.ssl_chain_cert, s.ssl_key)
    except (OSError, ssl.SSLError) as e:
        files = s.ssl_chain_cert + (f" / {s.ssl_key}" if s.ssl_key else "")
        reason = getattr(e, "strerror", None) or getattr(e, "reason", None) or e
        raise ConfigError(
            f"[server] ssl_chain_cert / ssl_key: cannot load {files} ({reason})"
        ) from None
    return ctx


def build_engine(
    config: Config, cache: Cache, *, port: int | None = None, udp_port: int | None = None
) -> Engine:
    """The protocol engine shared by every connection of one server."""
    from ratmemcache._core import Engine

    auth = load_auth_file(config.server.auth_file) if config.server.auth_file else None
    sasl = load_sasl_pwdb(config) if config.server.sasl else None
    return Engine(
        cache,
        max_item_size=config.server.max_item_size,
        allow_flush=config.server.allow_flush,
        allow_shutdown=config.server.allow_shutdown,
        allow_verbosity=config.server.allow_verbosity,
        prefix_delimiter=config.server.detail_delimiter,
        settings=engine_settings(config, port=port, udp_port=udp_port),
        auth=auth,
        sasl=sasl,
        binding_protocol=config.server.binding_protocol,
        reqs_per_event=config.server.reqs_per_event,
    )


def describe() -> Iterator[tuple[str, str, Spec, Any]]:
    """(table, key, spec, default) for every setting: the source of docs and tests."""
    config = Config()
    for s in config.sections():
        for f in fields(s):
            yield s.TABLE, f.name, f.metadata["spec"], getattr(s, f.name)
