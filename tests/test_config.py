"""The config model: defaults, every table, aliases, sizes, errors, warnings, precedence, TOML."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from ratmemcache.builders import build_cache, build_engine, engine_settings
from ratmemcache.config import (
    ALIASES,
    ORIGINAL_ONLY,
    Config,
    apply_overrides,
    config_from_mapping,
    describe,
    format_size,
    load_config,
    parse_duration,
    parse_size,
    split_host_port,
)
from ratmemcache.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ratmemcached.toml"
MB = 1 << 20


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text, encoding="utf-8")
    return p


# -- defaults ---------------------------------------------------------------------------------


def test_defaults_match_memcached_and_the_issue() -> None:
    c = Config()
    assert (c.server.bind, c.server.port) == ("127.0.0.1", 11211)
    assert c.server.unix_socket is None
    assert c.server.max_connections == 1024
    assert c.server.max_item_size == MB
    assert c.server.idle_timeout == 0
    assert c.server.engine == "native"
    assert (c.server.allow_flush, c.server.allow_shutdown, c.server.allow_verbosity) == (
        True,
        False,
        True,
    )
    assert c.l1.max_memory == 64 * MB
    assert c.l1.max_entries == 0
    assert c.l1.eviction_strategy == "s3fifo"
    assert c.l2.enable_l2_cache is False
    assert c.l2.l2_write_strategy == "write_through"
    assert c.compression.compression_threshold == 1024
    assert c.ttl.default_ttl == 0 and c.ttl.max_ttl == 0 and c.ttl.cleanup_interval == 60
    assert c.performance.large_value_threshold == 10 * 1024
    assert c.logging.level == "info" and c.logging.enable_logging is True
    assert (c.logging.batch_size, c.logging.batch_interval_ms, c.logging.buffer_size) == (
        2048,
        25,
        16384,
    )


def test_load_without_a_file_is_the_defaults() -> None:
    assert load_config() == Config()


# -- every table ------------------------------------------------------------------------------

FULL = """
[server]
bind = "0.0.0.0"
port = 11311
unix_socket = "/tmp/r.sock"
max_connections = 10
max_item_size = "2MB"
idle_timeout = 30
backlog = 64
engine = "AnyIO"
allow_flush = false
allow_shutdown = true
allow_verbosity = false
shutdown_grace = "2s"
pid_file = "/tmp/r.pid"

[l1]
max_memory = 134217728
max_entries = 10000
eviction_strategy = "Lru"
shards = 8

[l2]
enable_l2_cache = false
data_dir = "/var/lib/r"
max_disk_size = "2GB"
enable_compression = false
clear_on_startup = true
l2_write_strategy = "WriteBack"
sync = "Always"
on_corruption = "reset"

[compression]
enable_lz4 = false
compression_threshold = "4KB"
compression_level = 9

[ttl]
default_ttl = 3600
max_ttl = "1d"
cleanup_interval = 300

[performance]
worker_threads = 8
large_value_threshold = "64KB"
read_size = "128KB"
offload_threshold = "1MB"

[logging]
level = "WARN"
enable_colors = false
show_timestamp = false
enable_performance_logs = true
enable_audit_logs = false
enable_cache_logs = true
enable_logging = true
enable_async = true
batch_size = 4096
batch_interval_ms = 50
buffer_size = "64KB"
file = "/tmp/r.log"
"""


def test_every_table_is_read(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, FULL))
    assert c.server.bind == "0.0.0.0" and c.server.port == 11311
    assert c.server.unix_socket == "/tmp/r.sock" and c.server.pid_file == "/tmp/r.pid"
    assert c.server.max_connections == 10 and c.server.max_item_size == 2 * MB
    assert c.server.idle_timeout == 30 and c.server.backlog == 64
    assert c.server.engine == "anyio" and c.server.shutdown_grace == 2.0
    assert (c.server.allow_flush, c.server.allow_shutdown, c.server.allow_verbosity) == (
        False,
        True,
        False,
    )
    assert (c.l1.max_memory, c.l1.max_entries, c.l1.eviction_strategy, c.l1.shards) == (
        128 * MB,
        10000,
        "lru",
        8,
    )
    assert c.l2.data_dir == "/var/lib/r" and c.l2.max_disk_size == 2 << 30
    assert c.l2.enable_compression is False and c.l2.clear_on_startup is True
    assert (c.l2.l2_write_strategy, c.l2.sync, c.l2.on_corruption) == (
        "write_back",
        "always",
        "reset",
    )
    assert c.compression.enable_lz4 is False
    assert c.compression.compression_threshold == 4096 and c.compression.compression_level == 9
    assert (c.ttl.default_ttl, c.ttl.max_ttl, c.ttl.cleanup_interval) == (3600, 86400, 300)
    assert c.performance.worker_threads == 8 and c.performance.large_value_threshold == 65536
    assert c.performance.read_size == 128 * 1024 and c.performance.offload_threshold == MB
    lg = c.logging
    assert lg.level == "warning" and not lg.enable_colors and not lg.show_timestamp
    assert lg.enable_performance_logs and not lg.enable_audit_logs and lg.enable_cache_logs
    assert lg.enable_async and (lg.batch_size, lg.batch_interval_ms, lg.buffer_size) == (
        4096,
        50,
        65536,
    )
    assert lg.file == "/tmp/r.log"


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("lru", "lru"),
        ("Lru", "lru"),
        ("LFU", "lfu"),
        ("Fifo", "fifo"),
        ("LruLfu", "hybrid"),
        ("hybrid", "hybrid"),
        ("TtlBased", "ttl"),
        ("ttl", "ttl"),
        ("SIEVE", "sieve"),
        ("S3Fifo", "s3fifo"),
        ("s3-fifo", "s3fifo"),
    ],
)
def test_eviction_names_in_any_case_and_the_originals(name: str, canonical: str) -> None:
    c = config_from_mapping({"l1": {"eviction_strategy": name}})
    assert c.l1.eviction_strategy == canonical
    # and the core agrees with the canonical name
    cache = build_cache(c)
    try:
        assert cache.eviction == canonical
    finally:
        cache.close()


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("write_through", "write_through"),
        ("WriteThrough", "write_through"),
        ("write-through", "write_through"),
        ("always", "write_through"),
        ("WRITE_BACK", "write_back"),
        ("WriteBack", "write_back"),
    ],
)
def test_l2_write_strategy_spellings(spelling: str, canonical: str) -> None:
    assert config_from_mapping({"l2": {"l2_write_strategy": spelling}}).l2.l2_write_strategy == (
        canonical
    )


# -- aliases ----------------------------------------------------------------------------------


def test_aliases_of_the_original() -> None:
    c = config_from_mapping(
        {
            "server": {"item_size_limit": "4MB"},
            "ttl": {"expire_seconds": 120},
            "l2": {
                "enable_lz4": False,
                "compression_threshold": 128,
                "large_value_threshold": "20KB",
            },
            "performance": {"l2_write_strategy": "write_back"},
        }
    )
    assert c.server.max_item_size == 4 * MB
    assert c.ttl.default_ttl == 120
    assert c.compression.enable_lz4 is False and c.compression.compression_threshold == 128
    assert c.performance.large_value_threshold == 20 * 1024
    assert c.l2.l2_write_strategy == "write_back"


def test_top_level_bind_addr_of_the_original_rat_memcached_toml() -> None:
    c = config_from_mapping({"bind_addr": "0.0.0.0:11300"})
    assert (c.server.bind, c.server.port) == ("0.0.0.0", 11300)


def test_an_alias_and_its_key_must_agree() -> None:
    same = config_from_mapping({"ttl": {"expire_seconds": 60, "default_ttl": 60}})
    assert same.ttl.default_ttl == 60
    with pytest.raises(ConfigError, match=r"\[ttl\] expire_seconds.*same setting.*disagree"):
        config_from_mapping({"ttl": {"default_ttl": 60, "expire_seconds": 30}})
    with pytest.raises(ConfigError, match=r"\[l2\] enable_lz4.*\[compression\] enable_lz4"):
        config_from_mapping({"compression": {"enable_lz4": True}, "l2": {"enable_lz4": False}})


def test_every_alias_points_to_a_real_setting() -> None:
    settings = {(t, k) for t, k, _, _ in describe()}
    for target in ALIASES.values():
        assert target in settings


# -- sizes and durations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1024", 1024),
        ("0", 0),
        ("1B", 1),
        ("64MB", 64 * MB),
        ("64 mib", 64 * MB),
        ("512k", 512 * 1024),
        ("512KiB", 512 * 1024),
        ("2m", 2 * MB),
        ("1GB", 1 << 30),
        ("1.5G", 3 << 29),
        ("1T", 1 << 40),
        ("1_000", 1000),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "MB", "12XB", "-1", "1e6", "99999999999999999999", "2 0"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"size|range"):
        parse_size(text)


def test_format_size_round_trips() -> None:
    for n in (0, 1, 1000, 1024, 10 * 1024, MB, 64 * MB, 3 << 29, 1 << 30, 5 << 40):
        out = format_size(n)
        assert (parse_size(out) if isinstance(out, str) else out) == n
    assert format_size(64 * MB) == "64MB" and format_size(1000) == 1000


def test_parse_duration() -> None:
    assert parse_duration("30") == 30
    assert parse_duration("250ms") == 0.25
    assert parse_duration("5m") == 300
    assert parse_duration("1h") == 3600
    assert parse_duration("2d") == 172800
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_item_size_bounds() -> None:
    assert config_from_mapping({"server": {"max_item_size": "1KB"}}).server.max_item_size == 1024
    big = config_from_mapping({"server": {"max_item_size": "128MB"}, "l1": {"max_memory": "1GB"}})
    assert big.server.max_item_size == 128 * MB
    with pytest.raises(ConfigError, match=r"\[server\] max_item_size: .*at least|between"):
        config_from_mapping({"server": {"max_item_size": 1023}})
    with pytest.raises(ConfigError, match=r"max_item_size .*larger than \[l1\] max_memory"):
        config_from_mapping({"server": {"max_item_size": "128MB"}})


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"l1": {"max_memory": True}},
            '[l1] max_memory: expected a size (int or string like "64MB"), got true',
        ),
        (
            {"l1": {"max_memory": "lots"}},
            '[l1] max_memory: expected a size (int or string like "64MB"), got "lots"',
        ),
        (
            {"server": {"port": "11211"}},
            '[server] port: expected an integer between 0 and 65535, got "11211"',
        ),
        (
            {"server": {"port": 70000}},
            "[server] port: expected an integer between 0 and 65535, got 70000",
        ),
        (
            {"server": {"allow_flush": "yes"}},
            '[server] allow_flush: expected true or false, got "yes"',
        ),
        ({"ttl": {"default_ttl": -1}}, "[ttl] default_ttl: expected a number of seconds"),
        ({"ttl": {"max_ttl": [1]}}, "[ttl] max_ttl: expected a number of seconds"),
        ({"l1": {"eviction_strategy": "random"}}, "[l1] eviction_strategy: expected one of"),
        ({"l2": {"sync": "sometimes"}}, "[l2] sync: expected one of always, never, periodic"),
        ({"logging": {"level": 3}}, "[logging] level: expected one of"),
        (
            {"compression": {"compression_level": 13}},
            "[compression] compression_level: expected an integer between 1 and 12, got 13",
        ),
        ({"server": {"unix_socket": 5}}, "[server] unix_socket: expected a path (string), got 5"),
        (
            {"admin": {"http_port": 65536}},
            "[admin] http_port: expected an integer between 0 and 65535, got 65536",
        ),
        (
            {"admin": {"http_port": "9150"}},
            '[admin] http_port: expected an integer between 0 and 65535, got "9150"',
        ),
        ({"admin": {"http_bind": 1}}, "[admin] http_bind: expected a string, got 1"),
        ({"admin": {"http_bind": " "}}, "[admin] http_bind: expected an address such as"),
        (
            {"admin": {"http_port": 11211}},
            "[admin] http_port: 11211 is also [server] port; the HTTP admin listener needs a "
            "port of its own",
        ),
    ],
)
def test_wrong_types_name_table_key_and_expected_type(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_mapping(data)
    assert str(err.value).startswith(message)
    assert isinstance(err.value, ValueError)


def test_unknown_keys_and_tables_are_errors() -> None:
    with pytest.raises(
        ConfigError, match=r'^\[l1\] max_memroy: unknown key; did you mean "max_memory"\?'
    ):
        config_from_mapping({"l1": {"max_memroy": 1}})
    with pytest.raises(ConfigError, match=r"^\[server\] colour: unknown key; known keys: .*bind"):
        config_from_mapping({"server": {"colour": 1}})
    with pytest.raises(ConfigError, match=r"^\[cache\]: unknown table"):
        config_from_mapping({"cache": {"x": 1}})
    with pytest.raises(ConfigError, match=r"^\[l1\.nested\]: unknown table"):
        config_from_mapping({"l1": {"nested": {"x": 1}}})
    with pytest.raises(ConfigError, match=r"^port: unknown top-level key"):
        config_from_mapping({"port": 1})


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    p = write(tmp_path, "[server]\nport = 1\nbind = = 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(err.value).startswith(f"{p}:3:")
    assert "TOML syntax error" in str(err.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_cross_setting_checks() -> None:
    with pytest.raises(ConfigError, match=r"default_ttl .* longer than max_ttl"):
        config_from_mapping({"ttl": {"default_ttl": 100, "max_ttl": 10}})
    with pytest.raises(ConfigError, match="power of two"):
        config_from_mapping({"l1": {"shards": 6}})


def test_l2_needs_a_data_dir_and_native_is_available() -> None:
    config_from_mapping({"l2": {"enable_l2_cache": True, "data_dir": "/tmp/x"}}).check_available()
    c = config_from_mapping({"l2": {"enable_l2_cache": True}})
    with pytest.raises(ConfigError) as err:
        c.check_available()
    assert str(err.value).startswith("[l2] data_dir: required when enable_l2_cache = true")
    assert "\n" not in str(err.value)
    config_from_mapping({"server": {"engine": "native"}}).check_available()
    Config().check_available()  # the defaults are fine


# -- warnings for the original's knobs --------------------------------------------------------


def test_original_only_knobs_warn_by_name(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ratmemcache.config")
    c = config_from_mapping(
        {
            "l2": {"write_buffer_size": 67108864, "smart_flush_enabled": True},
            "ttl": {"lazy_expiration": True, "max_cleanup_entries": 1000},
            "performance": {"batch_size": 100, "enable_warmup": True},
            "compression": {"auto_compression": True},
            "preset": "production",
        },
        origin="x.toml",
    )
    text = caplog.text
    for name in (
        "[l2] write_buffer_size",
        "[l2] smart_flush_enabled",
        "[ttl] lazy_expiration",
        "[ttl] max_cleanup_entries",
        "[performance] batch_size",
        "[performance] enable_warmup",
        "[compression] auto_compression",
        "preset",
    ):
        assert name in text
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert "x.toml" in text
    assert c == Config()  # none of them changed anything


def test_every_original_only_knob_warns_and_is_not_a_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ratmemcache.config")
    settings = {(t, k) for t, k, _, _ in describe()}
    data: dict[str, Any] = {}
    for table, key in ORIGINAL_ONLY:
        assert (table, key) not in settings
        if table:
            data.setdefault(table, {})[key] = 1
        else:
            data[key] = "x"
    config_from_mapping(data)
    assert len(caplog.records) == len(ORIGINAL_ONLY)


def test_an_original_rat_memcache_cache_config_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The shape of the original project's cache_config.toml (with L2 on).
    original = """
[l1]
max_memory = 134217728  # 128MB
max_entries = 10000
eviction_strategy = "Lru"

[l2]
enable_l2_cache = true
data_dir = "/tmp/rat_memcache_test"
clear_on_startup = false
max_disk_size = 1073741824  # 1GB
write_buffer_size = 67108864  # 64MB
max_write_buffer_number = 3
block_cache_size = 33554432  # 32MB
enable_compression = true
compression_level = 6
background_threads = 4

[compression]
enable_lz4 = true
compression_threshold = 1024  # 1KB
compression_level = 6
auto_compression = true
min_compression_ratio = 0.8

[ttl]
default_ttl = 3600  # 1h
max_ttl = 86400     # 24h
cleanup_interval = 300
max_cleanup_entries = 1000
lazy_expiration = true
active_expiration = true

[performance]
worker_threads = 4
enable_concurrency = true
read_write_separation = true
batch_size = 100
enable_warmup = true
stats_interval = 60
enable_background_stats = true
l2_write_strategy = "WriteThrough"
l2_write_threshold = 1024
l2_write_ttl_threshold = 3600

[logging]
level = "INFO"
enable_colors = true
show_timestamp = true
enable_performance_logs = true
enable_audit_logs = true
enable_cache_logs = true
"""
    caplog.set_level(logging.WARNING, logger="ratmemcache.config")
    c = load_config(write(tmp_path, original))
    assert c.l1.max_memory == 128 * MB and c.l1.eviction_strategy == "lru"
    assert c.l2.enable_l2_cache and c.l2.l2_write_strategy == "write_through"
    assert c.ttl.default_ttl == 3600 and c.ttl.max_ttl == 86400
    assert "[l2] background_threads" in caplog.text
    assert "[performance] l2_write_ttl_threshold" in caplog.text
    c.check_available()


# -- precedence -------------------------------------------------------------------------------


def test_precedence_cli_over_file_over_defaults(tmp_path: Path) -> None:
    p = write(tmp_path, '[server]\nport = 2000\nmax_connections = 5\n[l1]\nmax_memory = "8MB"\n')
    c = load_config(p, {"server.port": 3000})
    assert c.server.port == 3000  # CLI wins
    assert c.server.max_connections == 5  # file wins over the default
    assert c.l1.max_memory == 8 * MB
    assert c.server.bind == "127.0.0.1"  # default


def test_overrides_are_validated_and_name_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^-c/--conn-limit: expected an integer of at least 1"):
        load_config(overrides={"server.max_connections|-c/--conn-limit": 0})
    with pytest.raises(ConfigError, match=r'expected "table\.key"'):
        apply_overrides(Config(), {"port": 1})
    c = apply_overrides(Config(), {"ttl.expire_seconds": 5, "ttl.default_ttl": 7})
    assert c.ttl.default_ttl == 7  # overrides replace, the later wins


def test_split_host_port() -> None:
    assert split_host_port("10.0.0.1") == ("10.0.0.1", None)
    assert split_host_port("10.0.0.1:11300") == ("10.0.0.1", 11300)
    assert split_host_port(":11300") == ("127.0.0.1", 11300)
    assert split_host_port("[::1]:11300") == ("::1", 11300)
    assert split_host_port("::1") == ("::1", None)
    with pytest.raises(ConfigError, match="port between 0 and 65535"):
        split_host_port("host:http")


# -- TOML output ------------------------------------------------------------------------------


def test_to_toml_round_trips(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, FULL))
    text = c.to_toml()
    tomlkit.parse(text)  # valid TOML
    again = load_config(write(tmp_path, text))
    assert again == c
    assert load_config(write(tmp_path, Config().to_toml())) == Config()
    assert 'max_memory = "128MB"' in text and 'eviction_strategy = "lru"' in text


def test_to_toml_lists_every_setting() -> None:
    text = Config().to_toml()
    for table, key, _, _ in describe():
        assert f"[{table}]" in text
        assert f"\n{key} = " in text or f"# {key} = " in text


# -- the example file, the docs ---------------------------------------------------------------


def test_the_example_config_loads_and_covers_every_table(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ratmemcache.config")
    c = load_config(EXAMPLE)
    assert c == Config()  # the example shows the defaults
    assert not caplog.records
    doc = tomlkit.parse(EXAMPLE.read_text()).unwrap()
    assert set(doc) == {s.TABLE for s in c.sections()}
    text = EXAMPLE.read_text()
    for table, key, _, _ in describe():
        assert key in text, f"[{table}] {key} is missing from the example"


def test_the_docs_describe_every_setting_and_knob() -> None:
    docs = (ROOT / "docs" / "configuration.md").read_text()
    for table, key, _, _ in describe():
        assert f"`{key}`" in docs, f"[{table}] {key} is not documented"
    for _table, key in ORIGINAL_ONLY:
        assert f"`{key}`" in docs, f"{key} (original-only) is not documented"
    for _table, key in ALIASES:
        assert f"`{key}`" in docs


# -- to the core ------------------------------------------------------------------------------


def test_build_cache_and_engine_from_a_config() -> None:
    c = config_from_mapping(
        {
            "l1": {"max_memory": "16MB", "max_entries": 500, "eviction_strategy": "sieve"},
            "server": {"max_item_size": "2MB", "max_connections": 7, "port": 1234},
            "ttl": {"cleanup_interval": 0},
        }
    )
    cache = build_cache(c)
    try:
        assert cache.max_memory == 16 * MB and cache.max_entries == 500
        assert cache.eviction == "sieve"
        engine = build_engine(c, cache, port=4321)
        stats = engine.stats()
        assert "curr_connections" in stats
        settings = engine_settings(c, port=4321)
        assert settings["tcpport"] == "4321" and settings["maxconns"] == "7"
        assert settings["item_size_max"] == str(2 * MB)
        assert settings["maxbytes"] == str(16 * MB)
        assert settings["udpport"] == "0"
        reply, _ = engine.session().feed(b"stats settings\r\n")
        assert b"STAT evictions on\r\n" in reply and b"STAT cas_enabled yes\r\n" in reply
        assert all(isinstance(v, str) for v in settings.values())
    finally:
        cache.close()


def test_the_admin_table() -> None:
    c = config_from_mapping({"admin": {"http_port": 9150, "http_bind": "0.0.0.0"}})
    assert (c.admin.http_port, c.admin.http_bind) == (9150, "0.0.0.0")
    assert Config().admin.http_port == 0  # off by default
    # the same port on another address is fine
    c = config_from_mapping({"admin": {"http_port": 11211, "http_bind": "127.0.0.2"}})
    assert c.admin.http_port == 11211
    c = load_config(None, {"admin.http_port|--admin-port": 9151})
    assert c.admin.http_port == 9151
    with pytest.raises(ConfigError, match=r"^--admin-port: expected an integer between 0 and"):
        load_config(None, {"admin.http_port|--admin-port": -1})
