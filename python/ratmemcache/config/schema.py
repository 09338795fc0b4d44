"""The schema of the configuration: how one setting is read, checked, printed and documented.

A setting is a dataclass field whose metadata holds its :class:`Spec` (see :func:`setting`); one
generic coercion (:func:`coerce`) reads every kind of value, so a bad flag gets the same kind of
message as a bad file entry. Sizes follow the Rust core's rules (``_core.parse_size``): a size
means the same thing whichever side reads it, and Python keeps no copy of the rules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ratmemcache._core import parse_size
from ratmemcache.errors import ConfigError

__all__ = [
    "GIB",
    "KIB",
    "MAX_ITEM_SIZE",
    "MEMCACHED_MAX_KEY_LENGTH",
    "MIB",
    "MIN_ITEM_SIZE",
    "Spec",
    "coerce",
    "format_size",
    "parse_duration",
    "parse_size",
    "setting",
    "show",
    "to_toml_value",
]

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

#: memcached's key limit, which the server enforces (the library allows longer keys).
MEMCACHED_MAX_KEY_LENGTH = 250
#: memcached's -I floor and ceiling (it refuses < 1 KB and > 1 GB).
MIN_ITEM_SIZE = KIB
MAX_ITEM_SIZE = GIB

# ----------------------------------------------------------------------------------------------
# Scalars: sizes and durations (parse_size is the core's: "64MB", "1.5 GiB", "512k", "1024")
# ----------------------------------------------------------------------------------------------


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
# Specs and coercion
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


def show(value: Any) -> str:
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


def coerce(spec: Spec, value: Any, where: str) -> Any:
    """Check and convert one value; ``where`` ("[l1] max_memory") prefixes any error."""

    def bad(extra: str = "") -> ConfigError:
        return ConfigError(f"{where}: expected {spec.expected()}, got {show(value)}{extra}")

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


def to_toml_value(spec: Spec, value: Any) -> Any:
    if spec.kind == "mode":
        return f"{int(value):04o}"
    if spec.kind == "size":
        return format_size(int(value))
    if spec.kind == "seconds":
        return int(value) if float(value).is_integer() else float(value)
    return value
