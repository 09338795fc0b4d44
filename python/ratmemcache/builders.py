"""Handing a validated :class:`~ratmemcache.config.Config` to the core: the cache, the protocol
engine (with its ``stats settings`` and its users) and the TLS context.

Rust never parses TOML: these hand the values over once. They live apart from
:mod:`ratmemcache.config` so that loading a configuration builds nothing and imports no ``ssl``.
"""

from __future__ import annotations

import math
import ssl

from ratmemcache._core import Cache, Engine
from ratmemcache.authfiles import SASL_PWDB_ENV, load_auth_file, load_sasl_pwdb
from ratmemcache.config import BINDING_STATS_NAMES, MEMCACHED_MAX_KEY_LENGTH, Config
from ratmemcache.errors import ConfigError

__all__ = [
    "SASL_PWDB_ENV",
    "build_cache",
    "build_engine",
    "build_tls_context",
    "engine_settings",
    "load_auth_file",
    "load_sasl_pwdb",
]


def build_cache(config: Config) -> Cache:
    """The cache that ``config`` describes (with its L2 when enabled), with memcached's 250-byte
    key limit. Raises PersistenceError, naming the path, when the L2 can't be opened."""
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
        l2_file_threshold=l2.file_threshold,
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
