"""The tables of the configuration (``[server]``, ``[l1]``, ...), their choices, and ``Config``.

Each table is a dataclass whose fields carry their :class:`~ratmemcache.config.schema.Spec`; a new
table is one more dataclass and one more field on :class:`Config`. ``docs/configuration.md``
describes every key from these specs (see :mod:`ratmemcache.config.reference`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import tomlkit

from ratmemcache import _core
from ratmemcache.authfiles import load_auth_file, load_sasl_pwdb
from ratmemcache.config.schema import (
    GIB,
    KIB,
    MAX_ITEM_SIZE,
    MIB,
    MIN_ITEM_SIZE,
    Spec,
    format_size,
    setting,
    to_toml_value,
)
from ratmemcache.errors import ConfigError

__all__ = [
    "BINDING_CHOICES",
    "BINDING_STATS_NAMES",
    "CORRUPTION_CHOICES",
    "ENGINE_CHOICES",
    "EVICTION_CHOICES",
    "LEVEL_CHOICES",
    "SYNC_CHOICES",
    "WRITE_STRATEGY_CHOICES",
    "AdminConfig",
    "CompressionConfig",
    "Config",
    "L1Config",
    "L2Config",
    "LoggingConfig",
    "PerformanceConfig",
    "Section",
    "ServerConfig",
    "TtlConfig",
    "describe",
]

#: Every spelling of an eviction policy -> its canonical name: the core's table (the canonical
#: names, and the original's LruLfu and TtlBased), matched after normalizing as the core does.
EVICTION_CHOICES: dict[str, str] = dict(_core.POLICY_ALIASES)
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
        'interfaces ("0.0.0.0" or "::") is a deliberate choice, since without `auth_file` or '
        "`sasl` anyone who can reach the port can read and change the cache.",
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
        "Listen on this unix socket path only (memcached -s): TCP (`bind`, `port`) and UDP "
        "(`udp_port`) are then off, as memcached's -s turns network support off. POSIX only.",
    )
    unix_socket_mask: int = setting(
        0o700,
        "mode",
        "Permissions of the unix socket (memcached -a), in octal: 0700 lets only the owner "
        "connect. Flag: `-a`.",
        minimum=0,
        maximum=0o777,
    )
    udp_port: int = setting(
        0,
        "int",
        "Serve memcached's UDP protocol on this port, on the `bind` address (memcached -U). "
        "0 = off, memcached's default since 1.5.6. Requests must fit in one datagram; replies "
        "are split into 1400-byte datagrams as memcached splits them. Not with `auth_file` or "
        "`sasl` (memcached refuses those too).",
        minimum=0,
        maximum=65535,
    )
    binding_protocol: str = setting(
        "auto",
        "choice",
        "The protocols clients may speak (memcached -B): auto (a first byte of 0x80 is binary, "
        "anything else text), ascii (text only: a binary request is read as a text line) or "
        "binary (a text request closes the connection, without a reply). `ascii` is refused "
        "with `sasl`, `binary` with `auth_file`, as memcached refuses them.",
        choices=BINDING_CHOICES,
    )
    reqs_per_event: int = setting(
        20,
        "int",
        "memcached -R: a connection's read answers at most this many pipelined requests (one "
        "more on a fresh read, as memcached counts) before its replies are sent and other "
        "connections get a turn; each such turn is counted in `stats` `conn_yields`. At least 1.",
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
        False,
        "bool",
        "memcached -Z: serve TLS on the TCP listeners (needs ssl_chain_cert). The unix socket "
        "stays plain, as memcached's does.",
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
        '(memcached\'s ASCII auth: a `set` whose data is "user password").',
    )
    sasl: bool = setting(
        False,
        "bool",
        "memcached -S: binary-protocol clients must authenticate with SASL PLAIN against the "
        "users of `sasl_pwdb`. Text clients are then refused, unless `auth_file` is set too.",
    )
    sasl_pwdb: str | None = setting(
        None,
        "path",
        'The SASL users: a file of "user:password" lines (memcached\'s `MEMCACHED_SASL_PWDB`, '
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
        GIB,
        "size",
        "Disk budget; past it, the oldest records are evicted. It counts keys, records and their "
        "two index entries; redb's page overhead comes on top, so the file can be up to about "
        "twice this for small items.",
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
    file_threshold: int = setting(
        _core.DEFAULT_L2_FILE_THRESHOLD,
        "size",
        "Values of this size and more are kept in files of their own under data_dir/values "
        "(redb keeps their record: header, file id and CRC-32), unless LZ4 shrinks them below "
        'it; 0 keeps every value in redb. A file is written (and with sync = "always" fsynced) '
        "before the record that names it, and checked on every read.",
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
        _core.DEFAULT_LARGE_VALUE_THRESHOLD,
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
        "this port. 0 = off. It has no authentication: keep it on loopback or a private "
        "network. Flag: `--admin-port`.",
        minimum=0,
        maximum=65535,
    )
    http_bind: str = setting(
        "127.0.0.1",
        "str",
        "Address the HTTP admin listener binds to (when http_port is set). Flag: `--admin-bind`.",
    )


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
                table.add(f.name, to_toml_value(spec, value))
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
        if self.server.engine == "native" and not hasattr(_core, "NativeServer"):
            raise ConfigError(
                '[server] engine = "native": this build has no native engine (it was built '
                'without the "native" feature); use engine = "anyio"'
            )


def _same_host(a: str, b: str) -> bool:
    """Two bind addresses that would collide on one port (a wildcard collides with anything)."""
    wild = ("0.0.0.0", "::", "")
    return a.strip() == b.strip() or a.strip() in wild or b.strip() in wild


def describe() -> Iterator[tuple[str, str, Spec, Any]]:
    """(table, key, spec, default) for every setting: the source of docs and tests."""
    config = Config()
    for s in config.sections():
        for f in fields(s):
            yield s.TABLE, f.name, f.metadata["spec"], getattr(s, f.name)
