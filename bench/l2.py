#!/usr/bin/env python3
"""Speed of ratmemcache's persistent L2 tier (redb + LZ4 on disk) against ``diskcache.Cache``.

What is measured, single-threaded unless said otherwise, in µs per operation (median of
``--repeat`` repetitions, each in a fresh ``tempfile.TemporaryDirectory`` under ``--dir``):

* ``set`` of N new keys, for values of 100 B, 10 KiB and 1 MiB of random (incompressible) bytes,
  plus a compressible (text-like) variant of the 10 KiB and 1 MiB values. Durability pairs:

  - ratmemcache ``l2_sync="never"``  vs diskcache ``sqlite_synchronous=0`` (OFF);
  - ratmemcache ``l2_sync="always"`` vs diskcache ``sqlite_synchronous=2`` (FULL);
  - optionally (``--modes``) ratmemcache ``"periodic"`` vs diskcache's default (1, NORMAL).

  ratmemcache uses ``l2_write_strategy="write_through"``. With ``sync="never"`` (and
  ``"periodic"``) its ``set`` only queues the write for a background writer thread, so the timed
  region ends with ``cache.flush()`` (which waits for the commit *and* fsyncs): the figure covers
  getting every value into the file. The queue-only figure is printed separately.
  With ``sync="always"`` every ``set`` returns after a durable (fsynced) commit.

* ``get`` of every key once, in a shuffled order, after the ``sync="never"`` sets:

  - "warm": the same open cache. ratmemcache runs with a deliberately tiny L1 (``--l1``; by
    default sized to hold about a fifth of the 100 B keys, about 1 MB) so that the working set
    does not fit and most reads go to the L2; the L1 hit ratio observed in ``stats()`` is
    printed with the row;
  - "cold": after ``close()`` and reopening (ratmemcache with ``warm_up=False``, so the L1 starts
    empty and every first read comes from the file). The OS page cache is *not* dropped, so
    "cold" means cold process-level caches, not a cold disk.

  Values over 10 KiB (``large_value_threshold``) live only in ratmemcache's L2, so the 1 MiB gets
  always read the file.

* ``set`` of 100 B values with ``sync="always"`` / FULL from 4 writer threads sharing one cache
  (ratmemcache group-commits concurrent writers; SQLite serializes writers), in ops/s, next to
  the same run with 1 thread (interleaved with it, so both see the same disk).

Every value read back is compared with the value that was set (after the timed loop, outside the
timing), and the ``sync="always"`` and threaded runs read all their keys back too, so a fast but
wrong result fails the run. Timing uses ``time.perf_counter_ns`` around a tight loop with bound
methods and the garbage collector off; repetitions are interleaved between the two libraries.

Notes: diskcache stores ``bytes`` of 32 KiB and more (``disk_min_file_size``) as separate files
that it never fsyncs, even with ``sqlite_synchronous=2``; its 1 MiB "always" figures are
therefore not durable writes. diskcache does not compress.

Run (about 2-3 minutes by default on a 2-core box, about 30 s with ``--quick``)::

    python bench/l2.py
    python bench/l2.py --quick
    python bench/l2.py --repeat 5 --dir /path/on/the/disk/to/test

This is a benchmark, not a test: it exits non-zero only if a value read back is wrong.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import diskcache

import ratmemcache

SEED = 20251126
KIB = 1024
MIB = 1024 * 1024
LARGE_VALUE_THRESHOLD = 10 * KIB
DISK_BUDGET = 8 * 1024 * MIB  # far above any working set here: no L2 eviction, no diskcache cull
THREADS = 4
L1_BYTES_PER_SMALL_ITEM = 240  # what a 100 B value under a 14-byte key costs in ratmemcache's L1
RAT = "ratmemcache"
DC = "diskcache"

# ratmemcache l2_sync -> diskcache sqlite_synchronous
SYNC_PAIRS = {"never": 0, "always": 2, "periodic": 1}


@dataclass(frozen=True)
class Workload:
    """One value size/kind and its operation counts (before ``--scale``)."""

    label: str
    size: int
    compressible: bool
    n_never: int  # sets with sync never/periodic; also the number of gets
    n_always: int  # sets with sync always (each one is an fsync)


WORKLOADS = (
    Workload("100 B", 100, False, 20_000, 400),
    Workload("10 KiB", 10 * KIB, False, 4_000, 200),
    Workload("10 KiB compressible", 10 * KIB, True, 4_000, 0),
    Workload("1 MiB", MIB, False, 200, 100),
    Workload("1 MiB compressible", MIB, True, 200, 0),
)


@dataclass
class Results:
    """Samples per (row, library): µs/op, or ops/s for the threaded rows."""

    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    notes: dict[str, list[float]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def add(self, row: str, lib: str, value: float) -> None:
        if row not in self.order:
            self.order.append(row)
        self.samples.setdefault((row, lib), []).append(value)

    def note(self, key: str, value: float) -> None:
        self.notes.setdefault(key, []).append(value)

    def median(self, row: str, lib: str) -> float | None:
        s = self.samples.get((row, lib))
        return statistics.median(s) if s else None

    def spread(self, row: str, lib: str) -> str:
        """max / min of the samples: how noisy the row was."""
        s = self.samples.get((row, lib))
        return f"{max(s) / min(s):.2f}" if s and min(s) > 0 else "-"

    def note_median(self, key: str) -> float | None:
        s = self.notes.get(key)
        return statistics.median(s) if s else None


class WrongValue(AssertionError):
    pass


# ---------------------------------------------------------------- data


def make_values(w: Workload, n: int, rng: random.Random) -> list[bytes]:
    """``n`` distinct values of ``w.size`` bytes, each starting with its index."""
    if not w.compressible:
        return [rng.randbytes(w.size) for _ in range(n)]
    # Text-like bytes: words from a small vocabulary (LZ4 shrinks this a few times over).
    vocab = [rng.randbytes(rng.randint(2, 9)).hex().encode() for _ in range(200)]
    words: list[bytes] = []
    length = 0
    while length < w.size + 64 * KIB:
        word = rng.choice(vocab)
        words.append(word)
        length += len(word) + 1
    text = b" ".join(words)
    out = []
    for i in range(n):
        start = rng.randrange(0, len(text) - w.size)
        prefix = b"%010d:" % i
        out.append(prefix + text[start : start + w.size - len(prefix)])
    return out


def make_keys(prefix: str, n: int) -> list[str]:
    return [f"{prefix}:{i:08d}" for i in range(n)]


def verify(keys: Sequence[str], got: Sequence[Any], expected: dict[str, bytes], what: str) -> None:
    if len(got) != len(keys):
        raise WrongValue(f"{what}: {len(got)} results for {len(keys)} keys")
    for k, v in zip(keys, got, strict=True):
        if v != expected[k]:
            shown = repr(v)[:60] if v is not None else "None"
            raise WrongValue(f"{what}: wrong value for {k!r}: got {shown}")


# ---------------------------------------------------------------- the two caches


def open_rat(path: str, sync: str, l1: int | str, warm_up: bool = True) -> Any:
    return ratmemcache.Cache(
        max_memory=l1,
        l2_dir=path,
        l2_sync=sync,
        l2_write_strategy="write_through",
        large_value_threshold=LARGE_VALUE_THRESHOLD,
        compression=True,
        compression_threshold=KIB,
        l2_max_disk_size=DISK_BUDGET,
        warm_up=warm_up,
        clear_on_startup=False,
    )


def open_dc(path: str, sync: str) -> Any:
    return diskcache.Cache(
        path, sqlite_synchronous=SYNC_PAIRS[sync], size_limit=DISK_BUDGET, statistics=0
    )


def open_cache(lib: str, path: str, sync: str, l1: int | str, warm_up: bool = True) -> Any:
    return open_rat(path, sync, l1, warm_up) if lib == RAT else open_dc(path, sync)


def finish_writes(lib: str, cache: Any) -> None:
    if lib == RAT:
        cache.flush()


@contextmanager
def gc_off() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def timed_sets(
    lib: str, cache: Any, keys: Sequence[str], values: Sequence[bytes]
) -> tuple[int, int]:
    """Returns (ns for the set loop, ns for the loop plus waiting for the writes to land)."""
    set_ = cache.set
    with gc_off():
        t0 = time.perf_counter_ns()
        for k, v in zip(keys, values, strict=True):
            set_(k, v)
        t1 = time.perf_counter_ns()
        finish_writes(lib, cache)
        t2 = time.perf_counter_ns()
    return t1 - t0, t2 - t0


def timed_gets(cache: Any, keys: Sequence[str]) -> tuple[int, list[Any]]:
    get = cache.get
    out: list[Any] = []
    append = out.append
    with gc_off():
        t0 = time.perf_counter_ns()
        for k in keys:
            append(get(k))
        t1 = time.perf_counter_ns()
    return t1 - t0, out


def rat_l1_hit_ratio(before: dict[str, Any], after: dict[str, Any]) -> float:
    gets = after["cmd_get"] - before["cmd_get"]
    l2_reads = after["l2_reads"] - before["l2_reads"]
    return (gets - l2_reads) / gets if gets else float("nan")


def disk_usage(path: str) -> int:
    """Bytes allocated on disk under ``path`` (like ``du``)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


def check_rat_errors(cache: Any, what: str) -> None:
    errors = cache.stats()["l2_errors"]
    if errors:
        raise WrongValue(f"{what}: ratmemcache reported {errors} L2 errors")


# ---------------------------------------------------------------- scenarios


def run_sets_and_gets(
    lib: str,
    w: Workload,
    sync: str,
    keys: list[str],
    values: list[bytes],
    read_order: list[str],
    res: Results,
    args: argparse.Namespace,
) -> None:
    """One repetition: sets, then (unless sync is ``always``) warm and cold gets.

    ``read_order`` is a permutation of ``keys``.
    """
    base, l1 = args.dir, args.l1
    expected = dict(zip(keys, values, strict=True))
    n = len(keys)
    with tempfile.TemporaryDirectory(prefix=f"l2bench-{lib}-", dir=base) as d:
        cache = open_cache(lib, d, sync, l1)
        loop_ns, total_ns = timed_sets(lib, cache, keys, values)
        res.add(f"set {w.label}, sync={sync}", lib, total_ns / n / 1e3)
        if lib == RAT and sync != "always":
            res.note(f"set-queue {w.label} {sync}", loop_ns / n / 1e3)
        if sync == "always":
            # Untimed read-back: the durable sets stored the right values.
            _, got = timed_gets(cache, keys)
            verify(keys, got, expected, f"{lib} set {w.label} sync={sync}")
            if lib == RAT:
                check_rat_errors(cache, "sets")
            cache.close()
            return
        raw = sum(len(v) for v in values)
        res.note(f"disk {lib} {w.label}", disk_usage(d) / raw)
        before: dict[str, Any] = {}
        if lib == RAT:
            before = cache.stats()
            res.note(f"ratio {w.label}", before["l2_bytes"] / raw)
        ns, got = timed_gets(cache, read_order)
        verify(read_order, got, expected, f"{lib} warm get {w.label}")
        res.add(f"get {w.label}, warm", lib, ns / n / 1e3)
        if lib == RAT:
            res.note(f"l1hit warm {w.label}", rat_l1_hit_ratio(before, cache.stats()))
            check_rat_errors(cache, "warm gets")
        cache.close()

        cache = open_cache(lib, d, sync, l1, warm_up=False)
        before = cache.stats() if lib == RAT else {}
        ns, got = timed_gets(cache, read_order)
        verify(read_order, got, expected, f"{lib} cold get {w.label}")
        res.add(f"get {w.label}, cold (reopened)", lib, ns / n / 1e3)
        if lib == RAT:
            res.note(f"l1hit cold {w.label}", rat_l1_hit_ratio(before, cache.stats()))
            check_rat_errors(cache, "cold gets")
        cache.close()


def run_threaded_sets(
    lib: str,
    keys: list[str],
    values: list[bytes],
    threads: int,
    res: Results,
    args: argparse.Namespace,
) -> None:
    """``threads`` writers, each setting its own slice of the keys, sync always / FULL."""
    expected = dict(zip(keys, values, strict=True))
    with tempfile.TemporaryDirectory(prefix=f"l2bench-{lib}-mt-", dir=args.dir) as d:
        cache = open_cache(lib, d, "always", args.l1)
        barrier = threading.Barrier(threads + 1)
        errors: list[BaseException] = []

        def writer(ks: Sequence[str], vs: Sequence[bytes]) -> None:
            set_ = cache.set
            barrier.wait()
            try:
                for k, v in zip(ks, vs, strict=True):
                    set_(k, v)
            except BaseException as e:
                errors.append(e)

        workers = [
            threading.Thread(target=writer, args=(keys[i::threads], values[i::threads]))
            for i in range(threads)
        ]
        for t in workers:
            t.start()
        with gc_off():
            barrier.wait()
            t0 = time.perf_counter_ns()
            for t in workers:
                t.join()
            elapsed = time.perf_counter_ns() - t0
        if errors:
            raise errors[0]
        _, got = timed_gets(cache, keys)
        verify(keys, got, expected, f"{lib} {threads}-thread sets")
        if lib == RAT:
            st = cache.stats()
            check_rat_errors(cache, "threaded sets")
            res.note(f"mt commits {threads}", st["l2_commits"])
        cache.close()
    res.add(f"mt {threads}", lib, len(keys) / (elapsed / 1e9))


# ---------------------------------------------------------------- report


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def ratmemcache_build() -> str:
    """'dev (editable ...)' for a ``maturin develop`` install, else where the wheel came from."""
    try:
        dist = importlib.metadata.distribution("ratmemcache")
        raw = dist.read_text("direct_url.json")
        info = json.loads(raw) if raw else {}
    except (importlib.metadata.PackageNotFoundError, json.JSONDecodeError):
        info = {}
    if info.get("dir_info", {}).get("editable"):
        return "dev (editable `maturin develop` install; dev profile unless --release was given)"
    if "url" in info:
        return f"wheel {os.path.basename(info['url'])}"
    return "unknown"


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "-"
    if x >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}" if x >= 10 else f"{x:.2f}"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def print_report(res: Results, args: argparse.Namespace, build: str) -> None:
    print()
    print("| workload | ratmemcache µs/op | diskcache µs/op | ratio (dc/rat) | max/min rat, dc |")
    print("|---|---:|---:|---:|---:|")
    for row in res.order:
        if row.startswith("mt "):
            continue
        r, d = res.median(row, RAT), res.median(row, DC)
        label = row
        if row.startswith("get "):
            size = row[4:].split(",")[0]
            kind = "cold" if "cold" in row else "warm"
            label += f" [rat L1 hit {pct(res.note_median(f'l1hit {kind} {size}'))}]"
        ratio = f"{d / r:.2f}" if r and d else "-"
        spread = f"{res.spread(row, RAT)}, {res.spread(row, DC)}"
        print(f"| {label} | {fmt(r)} | {fmt(d)} | {ratio} | {spread} |")

    mt_rows = [row for row in res.order if row.startswith("mt ")]
    if mt_rows:
        print()
        print(f"{args.mt_ops} sets of 100 B, sync=always / FULL, one shared cache:")
        print()
        print(
            "| writer threads | ratmemcache ops/s | diskcache ops/s | ratio (rat/dc) "
            "| rat commits | max/min rat, dc |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for row in mt_rows:
            threads = row.split()[1]
            r, d = res.median(row, RAT), res.median(row, DC)
            ratio = f"{r / d:.2f}" if r and d else "-"
            commits = res.note_median(f"mt commits {threads}")
            shown = "-" if commits is None else f"{commits:.0f}"
            spread = f"{res.spread(row, RAT)}, {res.spread(row, DC)}"
            print(f"| {threads} | {fmt(r, 0)} | {fmt(d, 0)} | {ratio} | {shown} | {spread} |")

    print()
    print("ratmemcache sync=never/periodic sets, queue only (the set loop without the final")
    print("flush()), µs/op:")
    for key, vals in res.notes.items():
        if key.startswith("set-queue "):
            print(f"  {key[len('set-queue ') :]}: {fmt(statistics.median(vals))}")
    print("ratmemcache L2 bytes / raw value bytes (stats l2_bytes; includes keys and headers):")
    for key, vals in res.notes.items():
        if key.startswith("ratio "):
            print(f"  {key[len('ratio ') :]}: {statistics.median(vals):.2f}")
    print("Disk allocated after the sync=never sets / raw value bytes (du of the directory):")
    for key, vals in res.notes.items():
        if key.startswith(f"disk {RAT} "):
            label = key[len(f"disk {RAT} ") :]
            other = res.note_median(f"disk {DC} {label}")
            shown = "-" if other is None else f"{other:.2f}"
            print(f"  {label}: ratmemcache {statistics.median(vals):.2f}, diskcache {shown}")
    print()
    print(
        f"ratio > 1: ratmemcache faster. Medians of {args.repeat} repetitions; "
        f"ratmemcache L1 max_memory={args.l1}; build: {build}."
    )


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark ratmemcache's L2 (disk tier) against diskcache.Cache.",
    )
    p.add_argument("--quick", action="store_true", help="fewer ops: about 30 s, not 5 min")
    p.add_argument(
        "--repeat", type=int, default=None, help="repetitions (default: 5, or 3 with --quick)"
    )
    p.add_argument(
        "--scale",
        type=float,
        default=None,
        help="multiply op counts (default: 1, or 0.15 with --quick)",
    )
    p.add_argument(
        "--modes",
        default="never,always",
        help="comma-separated ratmemcache l2_sync modes to pair: never, always, periodic "
        "(default: never,always)",
    )
    p.add_argument("--no-compressible", action="store_true", help="skip the compressible values")
    p.add_argument("--no-threads", action="store_true", help=f"skip the {THREADS}-thread sets")
    p.add_argument(
        "--threaded-ops", type=int, default=1_200, help="sets per threaded run (default: 1200)"
    )
    p.add_argument(
        "--l1",
        default="auto",
        help="ratmemcache max_memory, small so that reads go to the L2; "
        "auto (default): about a fifth of the 100 B working set",
    )
    p.add_argument(
        "--dir",
        default=None,
        help="parent of the temporary directories (default: the system temp dir)",
    )
    p.add_argument("--build-label", default=None, help="describe the ratmemcache build")
    args = p.parse_args(argv)
    args.repeat = max(1, args.repeat or (3 if args.quick else 5))
    if args.scale is None:
        args.scale = 0.15 if args.quick else 1.0
    if args.l1 == "auto":
        n_small = round(WORKLOADS[0].n_never * args.scale)
        args.l1 = max(64 * KIB, n_small * L1_BYTES_PER_SMALL_ITEM // 5)
    args.mt_ops = max(THREADS * 10, round(args.threaded_ops * args.scale))
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in args.modes:
        if m not in SYNC_PAIRS:
            p.error(f"unknown mode {m!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    build = args.build_label or ratmemcache_build()
    args.dir = base = args.dir or tempfile.gettempdir()
    started = time.monotonic()
    print(
        f"# ratmemcache L2 vs diskcache — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    )
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs)")
    print(f"Python {platform.python_version()} ({sys.executable})")
    print(
        f"ratmemcache {ratmemcache.__version__}, build: {build}; diskcache "
        f"{importlib.metadata.version('diskcache')}, SQLite {sqlite3.sqlite_version}"
    )
    print(f"load average at start: {load_average()}")
    print(f"temp dirs under {base}; repeat={args.repeat}, scale={args.scale}, modes={args.modes}")

    res = Results()
    rng = random.Random(SEED)
    workloads = [w for w in WORKLOADS if not (w.compressible and args.no_compressible)]
    for w in workloads:
        n = max(10, round(w.n_never * args.scale))
        values = make_values(w, n, rng)
        keys = make_keys(f"k{w.size}", n)
        read_order = keys[:]
        rng.shuffle(read_order)
        for mode in args.modes:
            count = n if mode != "always" else max(10, round(w.n_always * args.scale))
            if count == 0 or (mode == "always" and w.n_always == 0):
                continue
            ks, vs = keys[:count], values[:count]
            order = read_order if count == n else ks
            for rep in range(args.repeat):
                for lib in (RAT, DC) if rep % 2 == 0 else (DC, RAT):
                    run_sets_and_gets(lib, w, mode, ks, vs, order, res, args)
            print(
                f"  done: {w.label}, sync={mode} ({time.monotonic() - started:.0f} s)", flush=True
            )
        del values

    if not args.no_threads and "always" in args.modes:
        values = make_values(WORKLOADS[0], args.mt_ops, rng)
        keys = make_keys("mt", args.mt_ops)
        for rep in range(args.repeat):
            for lib in (RAT, DC) if rep % 2 == 0 else (DC, RAT):
                for threads in (1, THREADS):
                    run_threaded_sets(lib, keys, values, threads, res, args)
        print(f"  done: {THREADS}-thread sets ({time.monotonic() - started:.0f} s)", flush=True)

    print_report(res, args, build)
    print(f"\nTotal time {time.monotonic() - started:.0f} s; load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except WrongValue as e:
        print(f"WRONG RESULT: {e}", file=sys.stderr)
        sys.exit(1)
