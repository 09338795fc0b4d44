#!/usr/bin/env python3
"""Tail latency at a fixed request rate: ratmemcached against memcached, side by side.

The load comes from bench/latency (a small Rust open-loop generator built on hdrhistogram, one
thread driving every connection with mio and a timerfd): each of ``--conns`` connections sends its
share of ``--rate`` requests per second on a fixed schedule, 90% ``get`` / 10% ``set`` of 100-byte
values over 10,000 keys, and latency is measured from each request's scheduled time, so stalls
are not hidden (no coordinated omission).

Each round starts each server fresh (memcached first in odd rounds, ratmemcached first in even
ones) and runs the generator against it; the table shows the median of each percentile over the
rounds, and a last line per server gives its p99 divided by memcached's in the same round (median
and range), since on a small shared box the rounds differ far more than the servers do.

Usage (after a release build of the extension; bounded: rounds x servers x (warmup + seconds))::

    python bench/tail_latency.py [--rate 20000] [--conns 50] [--seconds 10] [--rounds 3]
        [--engine native] [--engine anyio] [--json PATH]

A benchmark, not a test: it always exits 0 unless a server or the generator fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(argv: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {proc.returncode}")
            try:
                socket.create_connection((HOST, port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def build_generator() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", HERE / "latency" / "target"))
    subprocess.run(
        ["cargo", "build", "--release", "-q", "--manifest-path", str(HERE / "latency/Cargo.toml")],
        check=True,
        env={**os.environ, "CARGO_TARGET_DIR": str(target)},
    )
    return target / "release" / "ratmemcache-latency"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=20_000)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--engine", action="append", choices=["native", "anyio"])
    ap.add_argument("--ratmemcached", default=shutil.which("ratmemcached") or "ratmemcached")
    ap.add_argument("--json")
    args = ap.parse_args()
    gen = build_generator()
    servers: dict[str, list[str]] = {}
    memcached = shutil.which("memcached")
    if memcached:
        mc = [memcached, "-U", "0", "-l", HOST, "-p", "{port}", "-m", "1024", "-t", "2"]
        servers["memcached -t 2"] = mc + (["-u", "root"] if os.geteuid() == 0 else [])
    for engine in args.engine or ["native"]:
        servers[f"ratmemcached {engine}"] = [
            *(args.ratmemcached, "--engine", engine, "-t", "2", "-m", "1024"),
            *("-l", HOST, "-p", "{port}"),
        ]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    for rnd in range(args.rounds):
        order = list(servers) if rnd % 2 == 0 else list(reversed(servers))
        for name in order:
            port = free_port()
            argv = [a.replace("{port}", str(port)) for a in servers[name]]
            with server(argv, port):
                out = subprocess.run(
                    [
                        str(gen),
                        *("--server", f"{HOST}:{port}", "--rate", str(args.rate)),
                        *("--conns", str(args.conns), "--seconds", str(args.seconds)),
                        *("--warmup", str(args.warmup)),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            runs[name].append(r)
            print(
                f"round {rnd + 1} {name:22} rate {r['rate']:.0f}/s p50 {r['p50_us']} µs "
                f"p99 {r['p99_us']} µs p99.9 {r['p999_us']} µs errors {r['errors']}",
                file=sys.stderr,
            )
    keys = [("rate", "req/s"), ("p50_us", "p50 µs"), ("p99_us", "p99 µs")]
    keys += [("p999_us", "p99.9 µs"), ("max_us", "max µs"), ("errors", "errors")]
    print(
        f"fixed rate {args.rate:.0f} req/s over {args.conns} connections, {args.seconds:g}s "
        f"(+{args.warmup:g}s warmup) per run, median of {args.rounds} rounds, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'server':24}" + "".join(f"{h:>12}" for _, h in keys))
    summary = {}
    for name, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k, _ in keys}
        summary[name] = med
        print(f"{name:24}" + "".join(f"{med[k]:>12.0f}" for k, _ in keys))
    # The box's noise (CPU steal, the generator sharing the cores) moves p99 by 10x between
    # rounds for every server alike, so compare within each round too: each server ran right
    # after memcached, under about the same conditions.
    base = "memcached -t 2"
    pairs: dict[str, dict[str, float]] = {}
    if base in runs:
        for name, rs in runs.items():
            if name == base:
                continue
            ratios = [r["p99_us"] / b["p99_us"] for r, b in zip(rs, runs[base], strict=True)]
            pairs[name] = {
                "median_p99_ratio": statistics.median(ratios),
                "rounds_no_worse": sum(x <= 1.0 for x in ratios),
                "rounds": len(ratios),
            }
            no_worse = pairs[name]["rounds_no_worse"]
            print(
                f"{name}: p99 / memcached's p99 in the same round: median "
                f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}); "
                f"no worse than memcached in {no_worse:.0f} of {len(ratios)} rounds"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"runs": runs, "median": summary, "paired": pairs}, indent=2)
        )


if __name__ == "__main__":
    main()
