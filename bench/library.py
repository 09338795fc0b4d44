#!/usr/bin/env python3
"""In-process speed of ratmemcache against the Python caches people already use.

Four tables, each contender measured in the same process and the same run:

1. **Objects**: ``ratmemcache.ObjectCache`` (values by reference) against ``cachebox.LRUCache``,
   ``cachetools.LRUCache`` and a plain ``dict``: ``get`` on hits, ``get`` on misses, and ``set``
   (an overwrite of a present key), with small-dict values.
2. **@cached**: a hit and a miss of a one-``int``-argument function under
   ``ratmemcache.cached``, ``functools.lru_cache``, ``cachebox.cached`` and ``cachetools.cached``
   (each with an LRU of the same size). A miss calls the function with a key never seen before.
3. **Hit ratio**: how often the function runs under ``@cached`` (S3-FIFO, the default) against
   ``functools.lru_cache`` with the same ``maxsize``, on Zipf traces and on Zipf traces polluted
   by scans of one-time keys.
4. **Bytes**: ``ratmemcache.Cache`` (the store the server shares; default eviction, and "lru"
   for a like-for-like comparison) against cachebox, cachetools, dict and ``diskcache.Cache``
   (on disk, in a temporary directory), with 100-byte ``bytes`` values.

Keys are ``str`` such as ``"key:123"`` (``int`` for ``@cached``), drawn once from a seeded Zipf
distribution (alpha 0.99) over ``--keys`` keys; every contender replays the same sequence. Caches
are sized to hold every key and warmed with all of them; misses use keys never inserted. Every
key has a value object of its own, as in real use: with one value shared by every key, a hit in a
cache that returns values by reference would touch one hot object, and a copying cache would
look slower than it is.

Timing: one tight loop per measurement, the method bound to a local first, the same loop for
every contender; ``time.perf_counter_ns`` around it, nothing subtracted; the garbage collector off
during the loop (as in ``timeit``). Each measurement is repeated ``--repeat`` times, interleaved
across contenders, and the median is reported in ns per operation.

Run after a release build of the extension::

    .venv/bin/maturin develop -q --release --features extension-module
    .venv/bin/python bench/library.py [--ops N] [--repeat N] [--keys N] [--json PATH]

This is a benchmark, not a test: it prints whether the targets are met and always exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import functools
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
CACHED_OPS = ("hit", "miss")

# (table, op, ratmemcache contender, other, factor, kind): "within" means ratmemcache time <=
# factor x the other's; "faster" means at least `factor` times faster (ratio <= 1 / factor).
TARGETS = (
    ("objects", "get hit", "ratmemcache.ObjectCache", "cachebox.LRUCache", 1.0, "within"),
    ("objects", "set", "ratmemcache.ObjectCache", "cachebox.LRUCache", 1.0, "within"),
    ("objects", "get hit", "ratmemcache.ObjectCache", "cachetools.LRUCache", 3.0, "faster"),
    ("objects", "set", "ratmemcache.ObjectCache", "cachetools.LRUCache", 3.0, "faster"),
    ("cached", "hit", "ratmemcache.cached", "functools.lru_cache", 1.5, "within"),
    ("cached", "hit", "ratmemcache.cached", "cachebox.cached", 1.0, "faster"),
    ("cached", "hit", "ratmemcache.cached", "cachetools.cached", 1.0, "faster"),
    ("bytes", "get hit", "ratmemcache (s3fifo)", "cachebox.LRUCache", 1.3, "within"),
    ("bytes", "set", "ratmemcache (s3fifo)", "cachebox.LRUCache", 1.3, "within"),
)


@dataclass
class Contender:
    name: str
    ops_fn: dict[str, Callable[..., Any]]
    size: Callable[[], int] = lambda: 0
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


def timed(loop: Callable[[], None], n: int) -> float:
    """ns per operation of one run of `loop` (n operations), with the collector off."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        loop()
        return (time.perf_counter_ns() - t0) / n
    finally:
        gc.enable()


def get_loop(get: Callable[[Any], Any], keys: Sequence[Any]) -> Callable[[], None]:
    def run() -> None:
        for k in keys:
            get(k)

    return run


def set_loop(
    set_: Callable[[Any, Any], Any], pairs: Sequence[tuple[Any, Any]]
) -> Callable[[], None]:
    def run() -> None:
        for k, v in pairs:
            set_(k, v)

    return run


def fmt_ns(ns: float) -> str:
    return f"{ns:,.0f}" if ns >= 100 else f"{ns:.1f}"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


# --------------------------------------------------------------------------------------------
# contenders


def mapping_contenders(
    n_keys: int, ops: int, disk_ops: int, tmpdir: str, *, objects: bool
) -> list[Contender]:
    """The object table's contenders (objects=True) or the bytes table's."""
    out: list[Contender] = []
    rmc = try_import("ratmemcache")
    size = 2 * n_keys
    if rmc is not None and objects:
        c = rmc.ObjectCache(max_entries=size)
        out.append(
            Contender(
                "ratmemcache.ObjectCache",
                {"get": c.get, "set": c.set},
                c.__len__,
                ops=ops,
                note=f"ObjectCache(max_entries={size:_}) (s3fifo); .get/.set",
            )
        )
    elif rmc is not None:
        default = rmc.Cache(max_memory="256MB")
        policies = [default.eviction] + (["lru"] if default.eviction != "lru" else [])
        for i, policy in enumerate(policies):
            c = default if i == 0 else rmc.Cache(max_memory="256MB", eviction=policy)
            label = "default" if i == 0 else "fair LRU-vs-LRU"
            out.append(
                Contender(
                    f"ratmemcache ({policy})",
                    {"get": c.get, "set": c.set},
                    c.__len__,
                    c.close,
                    ops,
                    f"Cache(max_memory='256MB', eviction={policy!r}), {label}; .get/.set",
                )
            )
    cb = try_import("cachebox")
    if cb is not None:
        c = cb.LRUCache(maxsize=size)
        out.append(
            Contender(
                "cachebox.LRUCache",
                {"get": c.get, "set": c.insert},
                c.__len__,
                ops=ops,
                note=f"LRUCache(maxsize={size:_}); .get/.insert",
            )
        )
    ct = try_import("cachetools")
    if ct is not None:
        c = ct.LRUCache(maxsize=size)
        out.append(
            Contender(
                "cachetools.LRUCache",
                {"get": c.get, "set": c.__setitem__},
                c.__len__,
                ops=ops,
                note=f"LRUCache(maxsize={size:_}); .get/.__setitem__",
            )
        )
    d: dict[Any, Any] = {}
    out.append(
        Contender("dict", {"get": d.get, "set": d.__setitem__}, d.__len__, ops=ops, note="{}")
    )
    dc = try_import("diskcache")
    if dc is not None and not objects:
        c = dc.Cache(tmpdir)
        out.append(
            Contender(
                "diskcache.Cache",
                {"get": c.get, "set": c.set},
                c.__len__,
                c.close,
                min(ops, disk_ops),
                f"Cache(tempdir), on disk; .get/.set; first {min(ops, disk_ops)} ops only",
            )
        )
    return out


def ident(x: int) -> int:
    return x


def cached_contenders(maxsize: int, ops: int) -> list[Contender]:
    """The same function under each memoiser, each with an LRU (or S3-FIFO) of `maxsize`."""
    out: list[Contender] = []
    rmc = try_import("ratmemcache")
    if rmc is not None:
        f = rmc.cached(maxsize=maxsize)(ident)
        out.append(
            Contender(
                "ratmemcache.cached",
                {"call": f, "clear": f.cache_clear},
                ops=ops,
                note=f"cached(maxsize={maxsize:_}) (s3fifo)",
            )
        )
    g = functools.lru_cache(maxsize=maxsize)(ident)
    out.append(
        Contender(
            "functools.lru_cache",
            {"call": g, "clear": g.cache_clear},
            ops=ops,
            note=f"lru_cache(maxsize={maxsize:_}) (C implementation)",
        )
    )
    cb = try_import("cachebox")
    if cb is not None:
        h = cb.cached(cb.LRUCache(maxsize))(ident)
        out.append(
            Contender(
                "cachebox.cached",
                {"call": h, "clear": h.cache_clear},
                ops=ops,
                note=f"cached(LRUCache({maxsize:_}))",
            )
        )
    ct = try_import("cachetools")
    if ct is not None:
        cache = ct.LRUCache(maxsize)
        j = ct.cached(cache)(ident)
        out.append(
            Contender(
                "cachetools.cached",
                {"call": j, "clear": cache.clear},
                ops=ops,
                note=f"cached(LRUCache({maxsize:_}))",
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# tables


def run_mapping(
    contenders: list[Contender],
    hit_keys: list[Any],
    miss_keys: list[Any],
    hit_seq: list[Any],
    miss_seq: list[Any],
    make_value: Callable[[int], Any],
    repeat: int,
) -> None:
    """`make_value(i)` gives key i's value (one object per key); a `set` overwrites a key with
    a value of its own too."""
    values = [make_value(i) for i in range(len(hit_keys))]
    by_key = dict(zip(hit_keys, values, strict=True))
    set_seq = [(k, by_key[k]) for k in hit_seq]
    for c in contenders:
        for k, v in zip(hit_keys, values, strict=True):
            c.ops_fn["set"](k, v)
        hits = sum(c.ops_fn["get"](k) is not None for k in hit_keys)
        n = min(len(miss_keys), 1000)
        misses = sum(c.ops_fn["get"](k) is None for k in miss_keys[:n])
        c.note += f"; warm: {c.size():,} entries, {hits:,}/{len(hit_keys):,} keys hit"
        if hits != len(hit_keys) or misses != n:
            c.note += " (WARNING: not all keys cached, or a miss key hit)"
        c.samples = {op: [] for op in OPS}
    for _ in range(repeat):
        for c in contenders:
            hs, ms = hit_seq[: c.ops], miss_seq[: c.ops]
            get, set_ = c.ops_fn["get"], c.ops_fn["set"]
            c.samples["get hit"].append(timed(get_loop(get, hs), len(hs)))
            c.samples["get miss"].append(timed(get_loop(get, ms), len(ms)))
            ss = set_seq[: c.ops]
            c.samples["set"].append(timed(set_loop(set_, ss), len(ss)))


def run_cached(contenders: list[Contender], n_keys: int, seq: list[int], repeat: int) -> None:
    """Hits: the Zipf sequence over keys all cached. Misses: keys never seen before (each call
    evicts one entry once the cache is full)."""
    fresh = itertools.count(10 * n_keys)
    for c in contenders:
        c.samples = {op: [] for op in CACHED_OPS}
    for _ in range(repeat):
        for c in contenders:
            call = c.ops_fn["call"]
            c.ops_fn["clear"]()
            for k in range(n_keys):
                call(k)
            c.samples["hit"].append(timed(get_loop(call, seq), len(seq)))
            misses = [next(fresh) for _ in range(len(seq))]
            c.samples["miss"].append(timed(get_loop(call, misses), len(misses)))


def print_table(title: str, contenders: list[Contender], ops: Sequence[str]) -> None:
    print(f"\n## {title}: ns/op (median; lower is better)\n")
    print("| op | " + " | ".join(c.name for c in contenders) + " |")
    print("|---|" + "---|" * len(contenders))
    for op in ops:
        print(f"| {op} | " + " | ".join(fmt_ns(c.median(op)) for c in contenders) + " |")


def ratios_of(
    title: str, contenders: list[Contender], ops: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    rats = [c for c in contenders if c.name.startswith("ratmemcache")]
    others = [c for c in contenders if not c.name.startswith("ratmemcache")]
    out: dict[str, dict[str, dict[str, float]]] = {}
    if not (rats and others):
        return out
    print(f"\n## {title}: ratmemcache time ÷ other time (<1: ratmemcache is faster)\n")
    print("| op | ratmemcache | " + " | ".join(f"vs {o.name}" for o in others) + " |")
    print("|---|---|" + "---|" * len(others))
    for op in ops:
        for r in rats:
            row = {o.name: r.median(op) / o.median(op) for o in others}
            out.setdefault(r.name, {})[op] = row
            cells = " | ".join(fmt_ratio(v) for v in row.values())
            print(f"| {op} | {r.name} | {cells} |")
    return out


def hit_ratio_traces(n_keys: int, length: int, rng: random.Random) -> dict[str, list[int]]:
    """Zipf traces over `n_keys` keys, and the same traces polluted by scans: every 1000
    accesses, a burst of 200 keys that are never seen again."""
    traces: dict[str, list[int]] = {}
    one_time = itertools.count(10 * n_keys)
    for alpha in (0.7, 0.9, 0.99, 1.2):
        base = zipf_ranks(n_keys, length, alpha, rng)
        traces[f"zipf {alpha}"] = base
        polluted: list[int] = []
        for i, k in enumerate(base):
            polluted.append(k)
            if i % 1000 == 999:
                polluted.extend(next(one_time) for _ in range(200))
        traces[f"zipf {alpha} + scans"] = polluted
    return traces


def calls_under(
    decorate: Callable[[Callable[[int], int]], Callable[[int], int]], trace: list[int]
) -> int:
    calls = 0

    def f(x: int) -> int:
        nonlocal calls
        calls += 1
        return x

    g = decorate(f)
    for k in trace:
        g(k)
    return calls


def run_hit_ratio(n_keys: int, length: int) -> list[dict[str, Any]]:
    rmc = try_import("ratmemcache")
    if rmc is None:
        return []
    rng = random.Random(SEED + 1)
    traces = hit_ratio_traces(n_keys, length, rng)
    rows: list[dict[str, Any]] = []
    print("\n## Hit ratio: calls of the function (lower is better)\n")
    print(f"{n_keys:,} distinct keys per Zipf trace, {length:,} accesses; scans add 200 one-time")
    print("keys after every 1,000 accesses.\n")
    print("| trace | maxsize | ratmemcache.cached (s3fifo) | functools.lru_cache | calls saved |")
    print("|---|---|---|---|---|")
    for name, trace in traces.items():
        for maxsize in (n_keys // 100, n_keys // 10):
            ours = calls_under(rmc.cached(maxsize=maxsize), trace)
            theirs = calls_under(functools.lru_cache(maxsize=maxsize), trace)
            saved = 1 - ours / theirs
            rows.append(
                {"trace": name, "maxsize": maxsize, "ratmemcache": ours, "lru_cache": theirs}
            )
            print(f"| {name} | {maxsize:,} | {ours:,} | {theirs:,} | {saved:+.1%} |")
    return rows


def check_targets(
    ratios: dict[str, dict[str, dict[str, dict[str, float]]]],
) -> list[dict[str, Any]]:
    print("\n## Targets (informational; the script always exits 0)\n")
    out = []
    for table, op, rat, other, factor, kind in TARGETS:
        ratio = ratios.get(table, {}).get(rat, {}).get(op, {}).get(other)
        want = f"within {factor}x of" if kind == "within" else f"{factor:g}x faster than"
        if kind == "faster" and factor == 1.0:
            want = "faster than"
        if ratio is None:
            status, got = "SKIP", "not measured"
        else:
            met = ratio <= factor if kind == "within" else ratio <= 1.0 / factor
            status = "PASS" if met else "MISS"
            got = f"time ratio {ratio:.2f}"
            if kind == "faster":
                got += f" = {1 / ratio:.2f}x faster"
        print(f"- {status}: {rat} {op} {want} {other} ({got})")
        out.append(
            {
                "table": table,
                "contender": rat,
                "op": op,
                "other": other,
                "target": want,
                "ratio": ratio,
                "status": status,
            }
        )
    return out


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
    ap.add_argument(
        "--trace-length", type=int, default=500_000, help="accesses per hit-ratio trace"
    )
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = ap.parse_args(argv)
    ops, repeat, n_keys = max(1, args.ops), max(1, args.repeat), max(100, args.keys)

    rng = random.Random(SEED)
    ids = list(range(n_keys))
    rng.shuffle(ids)  # rank -> key id, so hot keys are spread over the key space
    hit_keys = [f"key:{i}" for i in range(n_keys)]
    miss_keys = [f"key:{n_keys + i}" for i in range(n_keys)]  # never inserted
    hit_seq = [hit_keys[ids[r]] for r in zipf_ranks(n_keys, ops, ALPHA, rng)]
    miss_seq = [miss_keys[ids[r]] for r in zipf_ranks(n_keys, ops, ALPHA, rng)]
    blob = rng.randbytes(VALUE_SIZE + n_keys)

    def small_dict(i: int) -> dict[str, Any]:
        return {"id": i, "name": "Ada", "tags": ["a", "b"]}

    def value_bytes(i: int) -> bytes:
        return blob[i : i + VALUE_SIZE]

    cached_keys = n_keys // 10
    int_seq = [ids[r] % cached_keys for r in zipf_ranks(cached_keys, ops, ALPHA, rng)]

    print("# ratmemcache library benchmark\n")
    print(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"- platform: {platform.platform()}")
    print(f"- cpu: {cpu_model()} ({os.cpu_count()} logical CPUs)")
    print(f"- python: {sys.version.split()[0]} ({platform.python_implementation()})")
    pkgs = ("ratmemcache", "cachebox", "cachetools", "diskcache")
    print("- packages: " + ", ".join(f"{p} {version_of(p)}" for p in pkgs))
    core = try_import("ratmemcache._core")
    if core is not None and getattr(core, "__file__", None):
        size = os.path.getsize(core.__file__)
        print(f"- extension: {core.__file__} ({size:,} bytes; use a --release build)")
    print(
        f"- workload: {n_keys:,} keys, Zipf alpha {ALPHA}, seed {SEED}, {ops:,} ops per loop, "
        f"median of {repeat}; gc off while timing"
    )

    report: dict[str, Any] = {"contenders": {}}
    ratios: dict[str, dict[str, dict[str, dict[str, float]]]] = {}

    objects = mapping_contenders(n_keys, ops, args.diskcache_ops, "", objects=True)
    run_mapping(objects, hit_keys, miss_keys, hit_seq, miss_seq, small_dict, repeat)
    print("\n## Contenders\n")
    for c in objects:
        print(f"- objects, **{c.name}**: {c.note}")

    memo = cached_contenders(cached_keys, ops)
    run_cached(memo, cached_keys, int_seq, repeat)
    for c in memo:
        print(f"- @cached, **{c.name}**: {c.note}")

    with tempfile.TemporaryDirectory(prefix="ratmemcache-bench-") as tmpdir:
        byte_caches = mapping_contenders(n_keys, ops, args.diskcache_ops, tmpdir, objects=False)
        try:
            run_mapping(byte_caches, hit_keys, miss_keys, hit_seq, miss_seq, value_bytes, repeat)
        finally:
            for c in byte_caches:
                c.close()
    for c in byte_caches:
        print(f"- bytes, **{c.name}**: {c.note}")

    title = "Objects (a small dict as the value)"
    print_table(title, objects, OPS)
    ratios["objects"] = ratios_of(title, objects, OPS)
    title = f"@cached, one int argument ({cached_keys:,} keys, all cached for hits)"
    print_table(title, memo, CACHED_OPS)
    ratios["cached"] = ratios_of("@cached", memo, CACHED_OPS)
    title = f"Bytes ({VALUE_SIZE}-byte values)"
    print_table(title, byte_caches, OPS)
    ratios["bytes"] = ratios_of("Bytes", byte_caches, OPS)

    hit_rows = run_hit_ratio(n_keys, max(10_000, args.trace_length))
    targets = check_targets(ratios)
    zipf_rows = [r for r in hit_rows if "scans" not in r["trace"]]
    if zipf_rows:
        worse = [r for r in zipf_rows if r["ratmemcache"] >= r["lru_cache"]]
        status = "PASS" if not worse else "MISS"
        print(
            f"- {status}: S3-FIFO @cached misses less than lru_cache on every Zipf trace "
            f"({len(zipf_rows) - len(worse)}/{len(zipf_rows)})"
        )

    if args.json:
        for table, group in (("objects", objects), ("cached", memo), ("bytes", byte_caches)):
            for c in group:
                report["contenders"][f"{table}: {c.name}"] = {
                    "note": c.note,
                    "ns_per_op": {op: c.median(op) for op in c.samples},
                    "samples_ns_per_op": c.samples,
                }
        report.update(
            {
                "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "platform": platform.platform(),
                "cpu": cpu_model(),
                "python": sys.version,
                "packages": {p: version_of(p) for p in pkgs},
                "params": {
                    "ops": ops,
                    "repeat": repeat,
                    "keys": n_keys,
                    "alpha": ALPHA,
                    "seed": SEED,
                    "value_size": VALUE_SIZE,
                },
                "ratios_ratmemcache_over_other": ratios,
                "hit_ratio": hit_rows,
                "targets": targets,
            }
        )
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
