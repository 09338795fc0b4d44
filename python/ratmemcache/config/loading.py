"""Loading the configuration: TOML, the original's aliases and keys, and overrides.

Precedence is CLI > file > defaults: :func:`load_config` reads the file, then applies overrides
(``{"server.port": 11311}``) through the same coercion, so a bad flag gets the same kind of message
as a bad file entry. Nothing is built here: :mod:`ratmemcache.builders` hands the result to the
core.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from ratmemcache.config.schema import Spec, coerce, show
from ratmemcache.config.sections import Config, Section
from ratmemcache.errors import ConfigError

__all__ = [
    "ALIASES",
    "ORIGINAL_ONLY",
    "TOP_LEVEL_ALIASES",
    "apply_overrides",
    "config_from_mapping",
    "load_config",
    "read_toml",
    "split_host_port",
]

#: The loader's warnings (keys of the original that do nothing here) go to this logger.
log = logging.getLogger("ratmemcache.config")

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
        coerced = coerce(specs[target[1]], value, where)
        prior = self.seen.get(target)
        if prior is not None and prior[1] != coerced and prior[0] != where:
            raise ConfigError(
                f"{where} and {prior[0]} are the same setting and disagree "
                f"({show(value)} vs {show(prior[1])}); keep one"
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
        raise ConfigError(f'{where}: expected a string like "127.0.0.1:11211", got {show(value)}')
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
