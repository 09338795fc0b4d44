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
  and one generic loader reads, coerces, prints (``to_toml``) and documents them
  (``docs/configuration.md``'s tables are generated from the specs). A new table is one more
  dataclass and one more field on :class:`Config`.
* Rust never parses TOML, and loading builds nothing: :mod:`ratmemcache.builders` hands the
  validated values to the core once. What the core also defines (size parsing, the eviction
  policies' names, the default ``large_value_threshold``) is read from ``_core``, not copied.

The package: :mod:`~ratmemcache.config.schema` (specs, coercion, sizes and durations),
:mod:`~ratmemcache.config.sections` (the tables, their choices, :class:`Config`),
:mod:`~ratmemcache.config.loading` (TOML, the original's aliases, overrides) and
:mod:`~ratmemcache.config.reference` (the docs' tables).
"""

from __future__ import annotations

from ratmemcache.config.loading import (
    ALIASES,
    ORIGINAL_ONLY,
    TOP_LEVEL_ALIASES,
    apply_overrides,
    config_from_mapping,
    load_config,
    read_toml,
    split_host_port,
)
from ratmemcache.config.schema import (
    GIB,
    KIB,
    MAX_ITEM_SIZE,
    MEMCACHED_MAX_KEY_LENGTH,
    MIB,
    MIN_ITEM_SIZE,
    Spec,
    format_size,
    parse_duration,
    parse_size,
    setting,
)
from ratmemcache.config.sections import (
    BINDING_CHOICES,
    BINDING_STATS_NAMES,
    CORRUPTION_CHOICES,
    ENGINE_CHOICES,
    EVICTION_CHOICES,
    LEVEL_CHOICES,
    SYNC_CHOICES,
    WRITE_STRATEGY_CHOICES,
    AdminConfig,
    CompressionConfig,
    Config,
    L1Config,
    L2Config,
    LoggingConfig,
    PerformanceConfig,
    Section,
    ServerConfig,
    TtlConfig,
    describe,
)

__all__ = [
    "ALIASES",
    "BINDING_CHOICES",
    "BINDING_STATS_NAMES",
    "CORRUPTION_CHOICES",
    "ENGINE_CHOICES",
    "EVICTION_CHOICES",
    "GIB",
    "KIB",
    "LEVEL_CHOICES",
    "MAX_ITEM_SIZE",
    "MEMCACHED_MAX_KEY_LENGTH",
    "MIB",
    "MIN_ITEM_SIZE",
    "ORIGINAL_ONLY",
    "SYNC_CHOICES",
    "TOP_LEVEL_ALIASES",
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
    "Spec",
    "TtlConfig",
    "apply_overrides",
    "config_from_mapping",
    "describe",
    "format_size",
    "load_config",
    "parse_duration",
    "parse_size",
    "read_toml",
    "setting",
    "split_host_port",
]
