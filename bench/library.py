#!/usr/bin/env python3
"""In-process speed of ratmemcache.Cache against other Python caches.

Contenders: ratmemcache.Cache (default eviction, and "lru" for a like-for-like comparison with
the LRU caches), cachebox.LRUCache, cachetools.LRUCache, a plain dict and diskcache.Cache (on
disk, in a temporary directory). Contenders that are not installed are skipped.

Operations: ``get`` on hits, ``get`` on misses, and ``set`` (an overwrite of a present key), with
100-byte ``bytes`` values and ``str`` keys such as ``"key:123"``. Every contender replays the same
key sequence: a Zipf distribution (alpha 0.99) over ``--keys`` keys, drawn once from a seeded
generator. Every cache is sized to hold all keys and warmed with all of them before timing; the
misses use keys that were never inserted.

Timing: one tight loop per measurement, with the method bound to a local first, the same loop for
every contender (``get = cache.get`` then ``for k in keys: get(k)``); ``time.perf_counter_ns``
around the loop, nothing subtracted; the garbage collector is off during the loop (as in
``timeit``). Each measurement is repeated ``--repeat`` times, interleaved across contenders, and
the median is reported as ns per operation.

Run after a release build of the extension::

    .venv/bin/maturin develop -q --release --features extension-module
    .venv/bin/python bench/library.py [--ops N] [--repeat N] [--keys N] [--json PATH]

This is a benchmark, not a test: it prints whether the speed targets are met and always exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import importlib.metadata
import itertools
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

ALPHA = 0.99
SEED = 20240601
VALUE_SIZE = 100
OPS = ("get hit", "get miss", "set")

# (op, contender, factor, kind): "within" means ratmemcache time <= factor x the other's time;
# "faster" means ratmemcache is at least `factor` times faster (time ratio <= 1 / factor).
TARGETS = (
    ("get hit", "cachebox.LRUCache", 1.5, "within"),
    ("get miss", "cachebox.LRUCache", 1.5, "within"),
    ("get hit", "cachetools.LRUCache", 3.0, "faster"),
    ("get miss", "cachetools.LRUCache", 3.0, "faster"),
    ("set", "cachebox.LRUCache", 1.5, "within"),
)


@dataclass
class Contender:
    name: str
    get: Callable[[Any], Any]
    set: Callable[[Any, Any], Any]
    size: Callable[[], int]
    close: Callable[[], None] = lambda: None
    ops: int = 0
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)

    def median(self, op: str) -> float:
        return statistics.median(self.samples[op])


def zipf_ranks(n: int, count: int, alpha: float, rng: random.Random) -> list[int]:
    """`count` ranks in 0..n, rank r drawn with probability proportional to 1 / (r + 1)^alpha."""
    cum = list(itertools.accumulate(1.0 / (r + 1) ** alpha for r in range(n)))
    return rng.choices(range(n), cum_weights=cum, k=count)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def try_import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def build_contenders(n_keys: int, ops: int, disk_ops: int, tmpdir: str) -> list[Contender]:
    out: list[Contender] = []
    rmc = try_import("ratmemcache")
    if rmc is not None:
        default = rmc.Cache(max_memory="256MB")
        policies = [default.eviction] + (["lru"] if default.eviction != "lru" else [])
        for i, policy in enumerate(policies):
            c = default if i == 0 else rmc.Cache(max_memory="256MB", eviction=policy)
            label = "default" if i == 0 else "fair LRU-vs-LRU"
            out.append(
                Contender(
                    f"ratmemcache ({policy})",
                    c.get,
                    c.set,
                    c.__len__,
                    c.close,
                    ops,
                    f"Cache(max_memory='256MB', eviction={policy!r}), {label}; .get/.set",
                )
            )
    cb = try_import("cachebox")
    if cb is not None:
        c = cb.LRUCache(maxsize=200_000)
        out.append(
            Contender(
                "cachebox.LRUCache",
                c.get,
                c.insert,
                c.__len__,
                ops=ops,
                note="LRUCache(maxsize=200_000); .get/.insert",
            )
        )
    ct = try_import("cachetools")
    if ct is not None:
        c = ct.LRUCache(maxsize=200_000)
        out.append(
            Contender(
                "cachetools.LRUCache",
                c.get,
                c.__setitem__,
                c.__len__,
                ops=ops,
                note="LRUCache(maxsize=200_000); .get/.__setitem__",
            )
        )
    d: dict[str, bytes] = {}
    out.append(
        Contender("dict", d.get, d.__setitem__, d.__len__, ops=ops, note="{}; .get/.__setitem__")
    )
    dc = try_import("diskcache")
    if dc is not None:
        c = dc.Cache(tmpdir)
        out.append(
            Contender(
                "diskcache.Cache",
                c.get,
                c.set,
                c.__len__,
                c.close,
                min(ops, disk_ops),
                f"Cache(tempdir), on disk; .get/.set; first {min(ops, disk_ops)} ops only",
            )
        )
    return out


def time_get(get: Callable[[Any], Any], keys: Sequence[str]) -> int:
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for k in keys:
            get(k)
        return time.perf_counter_ns() - t0
    finally:
        gc.enable()


def time_set(set_: Callable[[Any, Any], Any], keys: Sequence[str], value: bytes) -> int:
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for k in keys:
            set_(k, value)
        return time.perf_counter_ns() - t0
    finally:
        gc.enable()


def fmt_ns(ns: float) -> str:
    return f"{ns:,.0f}" if ns >= 100 else f"{ns:.1f}"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def target_met(ratio: float, factor: float, kind: str) -> bool:
    return ratio <= factor if kind == "within" else ratio <= 1.0 / factor


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--ops", type=int, default=200_000, help="operations per timed loop")
    ap.add_argument("--repeat", type=int, default=5, help="timed loops per measurement (median)")
    ap.add_argument("--keys", type=int, default=100_000, help="distinct keys (all inserted)")
    ap.add_argument(
        "--diskcache-ops",
        type=int,
        default=20_000,
        help="operations per timed loop for diskcache, which is ~100x slower",
    )
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = ap.parse_args(argv)
    ops, repeat, n_keys = max(1, args.ops), max(1, args.repeat), max(1, args.keys)

    rng = random.Random(SEED)
    ids = list(range(n_keys))
    rng.shuffle(ids)  # rank -> key id, so hot keys are spread over the key space
    hit_keys = [f"key:{i}" for i in range(n_keys)]
    miss_keys = [f"key:{n_keys + i}" for i in range(n_keys)]  # never inserted
    hit_seq = [hit_keys[ids[r]] for r in zipf_ranks(n_keys, ops, ALPHA, rng)]
    miss_seq = [miss_keys[ids[r]] for r in zipf_ranks(n_keys, ops, ALPHA, rng)]
    value = rng.randbytes(VALUE_SIZE)

    print("# ratmemcache library benchmark\n")
    print(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"- platform: {platform.platform()}")
    print(f"- cpu: {cpu_model()}")
    print(f"- python: {sys.version.split()[0]} ({platform.python_implementation()})")
    pkgs = ("ratmemcache", "cachebox", "cachetools", "diskcache")
    print("- packages: " + ", ".join(f"{p} {version_of(p)}" for p in pkgs))
    core = try_import("ratmemcache._core")
    if core is not None and getattr(core, "__file__", None):
        size = os.path.getsize(core.__file__)
        print(f"- extension: {core.__file__} ({size:,} bytes; use a --release build)")
    print(
        f"- workload: {n_keys:,} keys, Zipf alpha {ALPHA}, seed {SEED}, {VALUE_SIZE}-byte values, "
        f"{ops:,} ops per loop, median of {repeat}; gc off while timing"
    )

    with tempfile.TemporaryDirectory(prefix="ratmemcache-bench-") as tmpdir:
        contenders = build_contenders(n_keys, ops, args.diskcache_ops, tmpdir)
        try:
            for c in contenders:
                for k in hit_keys:
                    c.set(k, value)
                hits = sum(c.get(k) is not None for k in hit_keys)
                misses = sum(c.get(k) is None for k in miss_keys[: min(n_keys, 1000)])
                c.note += f"; warm: {c.size():,} entries, {hits:,}/{n_keys:,} keys hit"
                if hits != n_keys or misses != min(n_keys, 1000):
                    c.note += " (WARNING: not all keys cached, or a miss key hit)"
                c.samples = {op: [] for op in OPS}
            for _ in range(repeat):
                for c in contenders:
                    hs, ms = hit_seq[: c.ops], miss_seq[: c.ops]
                    c.samples["get hit"].append(time_get(c.get, hs) / len(hs))
                    c.samples["get miss"].append(time_get(c.get, ms) / len(ms))
                    c.samples["set"].append(time_set(c.set, hs, value) / len(hs))
        finally:
            for c in contenders:
                c.close()

    print("\n## Contenders\n")
    for c in contenders:
        print(f"- **{c.name}**: {c.note}")

    print("\n## ns/op (median; lower is better)\n")
    print("| op | " + " | ".join(c.name for c in contenders) + " |")
    print("|---|" + "---|" * len(contenders))
    for op in OPS:
        print(f"| {op} | " + " | ".join(fmt_ns(c.median(op)) for c in contenders) + " |")

    rats = [c for c in contenders if c.name.startswith("ratmemcache")]
    others = [c for c in contenders if not c.name.startswith("ratmemcache")]
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    if rats and others:
        print("\n## ratmemcache time ÷ other time (>1: ratmemcache is slower; <1: faster)\n")
        print("| op | ratmemcache | " + " | ".join(f"vs {o.name}" for o in others) + " |")
        print("|---|---|" + "---|" * len(others))
        for op in OPS:
            for r in rats:
                row = {o.name: r.median(op) / o.median(op) for o in others}
                ratios.setdefault(r.name, {})[op] = row
                cells = " | ".join(fmt_ratio(v) for v in row.values())
                print(f"| {op} | {r.name.removeprefix('ratmemcache ')} | {cells} |")

    print("\n## Targets (informational; the script always exits 0)\n")
    targets = []
    for r in rats:
        for op, other, factor, kind in TARGETS:
            ratio = ratios.get(r.name, {}).get(op, {}).get(other)
            want = f"within {factor}x of" if kind == "within" else f"{factor:g}x faster than"
            if ratio is None:
                status, got = "SKIP", f"{other} not installed"
            else:
                status = "PASS" if target_met(ratio, factor, kind) else "MISS"
                got = f"time ratio {ratio:.2f}"
                if kind == "faster":
                    got += f" = {1 / ratio:.2f}x faster"
            print(f"- {status}: {r.name} {op} {want} {other} ({got})")
            targets.append(
                {
                    "contender": r.name,
                    "op": op,
                    "other": other,
                    "target": want,
                    "ratio": ratio,
                    "status": status,
                }
            )

    if args.json:
        report = {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "python": sys.version,
            "packages": {p: version_of(p) for p in pkgs},
            "params": {
                "ops": ops,
                "diskcache_ops": args.diskcache_ops,
                "repeat": repeat,
                "keys": n_keys,
                "alpha": ALPHA,
                "seed": SEED,
                "value_size": VALUE_SIZE,
            },
            "contenders": {
                c.name: {
                    "note": c.note,
                    "ops": c.ops,
                    "ns_per_op": {op: c.median(op) for op in OPS},
                    "samples_ns_per_op": c.samples,
                }
                for c in contenders
            },
            "ratios_ratmemcache_over_other": ratios,
            "targets": targets,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
