"""The tables of ``docs/configuration.md``, derived from the schema.

The docs keep their prose; the tables of keys, aliases and original-only keys are generated from
the specs between marker comments, so a key, a default or a description can't go stale::

    <!-- BEGIN GENERATED keys (python -m ratmemcache.config.reference docs/configuration.md) -->
    ...
    <!-- END GENERATED keys -->

``python -m ratmemcache.config.reference docs/configuration.md`` rewrites those blocks; the tests
compare them with :func:`generated_blocks`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ratmemcache.config.loading import ALIASES, ORIGINAL_ONLY, TOP_LEVEL_ALIASES
from ratmemcache.config.schema import Spec, show, to_toml_value
from ratmemcache.config.sections import Config, describe

__all__ = ["generated_blocks", "update_markdown"]

#: How each kind of setting is named in the docs' "type" column.
TYPE_NAMES = {
    "size": "size",
    "int": "integer",
    "seconds": "seconds",
    "bool": "bool",
    "str": "string",
    "path": "path",
    "mode": "mode",
    "choice": "string",
}

_BLOCK = re.compile(
    r"(<!-- BEGIN GENERATED (?P<name>[\w-]+)[^\n]*-->\n)"
    r"(?P<body>.*?)"
    r"(<!-- END GENERATED (?P=name) -->)",
    re.S,
)


def _default(spec: Spec, value: object) -> str:
    return "not set" if value is None else f"`{show(to_toml_value(spec, value))}`"


def _keys() -> str:
    out: list[str] = []
    for section in Config().sections():
        table = section.TABLE
        if out:
            out.append("")
        out += [f"### `[{table}]`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for t, key, spec, default in describe():
            if t == table:
                doc = spec.doc.replace("|", "\\|")
                out.append(
                    f"| `{key}` | {TYPE_NAMES[spec.kind]} | {_default(spec, default)} | {doc} |"
                )
    return "\n".join(out) + "\n"


def _where(table: str, key: str) -> str:
    return f"`[{table}]` `{key}`" if table else f"`{key}` (top level)"


def _aliases() -> str:
    out = ["| written as | means |", "|---|---|"]
    out += [f"| {_where(*alias)} | {_where(*target)} |" for alias, target in ALIASES.items()]
    # A top-level alias is the original's "host:port" (see loading._apply_bind).
    out += [
        f'| `{key}` (top level, `"host:port"`) | `[{table}]` `{target}` and `port` |'
        for key, (table, target) in TOP_LEVEL_ALIASES.items()
    ]
    return "\n".join(out) + "\n"


def _original_only() -> str:
    out = ["| key | why it does nothing here |", "|---|---|"]
    out += [f"| {_where(*where)} | {reason} |" for where, reason in ORIGINAL_ONLY.items()]
    return "\n".join(out) + "\n"


def generated_blocks() -> dict[str, str]:
    """The body of each generated block of ``docs/configuration.md``, by name (blank lines around
    it, so the markers never join a table)."""
    blocks = {"keys": _keys(), "aliases": _aliases(), "original-only": _original_only()}
    return {name: f"\n{body}\n" for name, body in blocks.items()}


def update_markdown(text: str) -> str:
    """``text`` with every generated block rewritten from the schema.

    Raises ValueError if a block is missing or has a name no generator knows.
    """
    blocks = generated_blocks()
    seen: set[str] = set()

    def fill(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in blocks:
            raise ValueError(f"unknown generated block {name!r}")
        seen.add(name)
        return m.group(1) + blocks[name] + m.group(4)

    out = _BLOCK.sub(fill, text)
    missing = sorted(set(blocks) - seen)
    if missing:
        raise ValueError(f"no generated block for {', '.join(missing)}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(
            "usage: python -m ratmemcache.config.reference docs/configuration.md", file=sys.stderr
        )
        return 2
    path = Path(argv[0])
    text = path.read_text(encoding="utf-8")
    new = update_markdown(text)
    if new != text:
        path.write_text(new, encoding="utf-8")
        print(f"{path}: updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
