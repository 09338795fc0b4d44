"""docs/configuration.md's tables come from the schema; Python keeps no copy of the core's facts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ratmemcache import _core
from ratmemcache.config import (
    EVICTION_CHOICES,
    Config,
    config_from_mapping,
    describe,
    parse_size,
)
from ratmemcache.config.reference import generated_blocks, update_markdown
from ratmemcache.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "configuration.md"


def test_the_docs_tables_are_generated_from_the_schema() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert update_markdown(text) == text, (
        "docs/configuration.md is stale: run "
        "python -m ratmemcache.config.reference docs/configuration.md"
    )
    keys = generated_blocks()["keys"]
    for table, key, spec, _ in describe():
        assert f"| `{key}` |" in keys, f"[{table}] {key}"
        assert spec.doc in keys


def test_a_changed_spec_makes_the_docs_stale() -> None:
    text = DOCS.read_text(encoding="utf-8")
    stale = text.replace("Turn the persistent tier on.", "Turn the L2 on.", 1)
    assert stale != text
    assert update_markdown(stale) == text


def test_update_markdown_needs_every_block() -> None:
    with pytest.raises(ValueError, match="no generated block"):
        update_markdown("no markers here\n")


def test_no_stale_promises() -> None:
    """The server has authentication (auth_file, sasl) and an [admin] table: no text says
    otherwise."""
    sources = [DOCS, *(ROOT / "python" / "ratmemcache" / "config").glob("*.py")]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert "no auth yet" not in text, path
        assert "``[admin]`` later" not in text, path


def test_the_core_defines_sizes_policies_and_the_large_value_threshold() -> None:
    assert parse_size is _core.parse_size
    assert parse_size("1.5G") == 3 << 29
    assert EVICTION_CHOICES == _core.POLICY_ALIASES
    assert set(EVICTION_CHOICES.values()) == set(_core.POLICIES)
    for spelling in ("LruLfu", "TtlBased", "S3-FIFO", "slru"):
        cfg = config_from_mapping({"l1": {"eviction_strategy": spelling}})
        assert cfg.l1.eviction_strategy == _core.Cache(eviction=spelling).eviction
    assert Config().performance.large_value_threshold == _core.DEFAULT_LARGE_VALUE_THRESHOLD


@pytest.mark.parametrize("bad", ["lots", "12XB", "-1", "1e6", "99999999999999999999"])
def test_a_bad_size_names_the_table_and_key(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^\[l2\] max_disk_size: expected a size .*, got "):
        config_from_mapping({"l2": {"max_disk_size": bad}})


def test_loading_a_config_builds_nothing_and_needs_no_ssl(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = 0\n[l1]\nmax_memory = "8MB"\n', encoding="utf-8")
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["ssl"] = None  # importing ssl now fails
        from ratmemcache.config import load_config
        c = load_config({str(path)!r}, {{"server.max_connections": 7}})
        assert c.l1.max_memory == 8 << 20 and c.server.max_connections == 7
        c.check_available()
        print(sorted(m for m in sys.modules if m.startswith("ratmemcache.")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    for module in ("builders", "server", "native", "admin", "lifecycle"):
        assert f"'ratmemcache.{module}'" not in out
