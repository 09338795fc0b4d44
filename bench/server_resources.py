#!/usr/bin/env python3
"""Memory and connection scaling of ratmemcached against memcached, measured in the same run.

For each server (memcached -t 2, and ratmemcached with each ``--engine`` given):

1. **Base RSS**: the resident memory once the server accepts connections.
2. **Memory per item**: load ``--items`` items (16-byte keys, 100-byte values, pipelined ``set
   ... noreply``), then ``(RSS after - RSS before) / items``.
3. **Memory per idle connection**: open ``--idle`` connections (each sends one ``version``), then
   the RSS growth divided by their number.
4. **Latency with many connections**: the p50/p99 of ``get`` round trips on 4 busy connections,
   first alone, then while ``--conns`` idle connections stay open (the fd limit is raised for the
   bench and the servers it starts). Every request must be answered.

RSS is ``VmRSS`` from /proc (Linux only). ratmemcached's RSS includes the Python interpreter that
hosts it. The servers get ``-m 1024`` so that nothing is evicted.

Usage (after a release build; bounded in time, a few tens of seconds)::

    python bench/server_resources.py [--engine native] [--engine anyio] [--items 1000000]
        [--idle 1000] [--conns 10000] [--json PATH]

A benchmark, not a test: it prints one table and always exits 0 unless a server fails to start.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HOST = "127.0.0.1"
VALUE = b"v" * 100
BATCH = 2000


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError("server did not start")


@contextlib.contextmanager
def server(argv: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_port(port, proc)
        time.sleep(0.3)  # let the readiness probe's connection close
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def recv_until(sock: socket.socket, ending: bytes) -> bytes:
    buf = b""
    while not buf.endswith(ending):
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    return buf


def load(port: int, items: int) -> None:
    with socket.create_connection((HOST, port)) as s:
        for start in range(0, items, BATCH):
            req = b"".join(
                b"set key:%012d 0 0 100 noreply\r\n%s\r\n" % (i, VALUE)
                for i in range(start, min(items, start + BATCH))
            )
            s.sendall(req)
        s.sendall(b"get key:%012d\r\n" % (items - 1))
        reply = recv_until(s, b"END\r\n")
        if VALUE not in reply:
            raise RuntimeError("the last item was not stored (evicted?)")


def open_idle(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection((HOST, port))
        s.sendall(b"version\r\n")
        socks.append(s)
    for s in socks:
        recv_until(s, b"\r\n")
    return socks


def probe(port: int, rounds: int = 2000) -> tuple[float, float]:
    """p50 and p99 (µs) of get round trips on 4 connections, interleaved."""
    socks = [socket.create_connection((HOST, port)) for _ in range(4)]
    for s in socks:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"set probe 0 0 100\r\n%s\r\n" % VALUE)
        recv_until(s, b"STORED\r\n")
    lat = []
    for _ in range(rounds):
        for s in socks:
            t0 = time.perf_counter_ns()
            s.sendall(b"get probe\r\n")
            recv_until(s, b"END\r\n")
            lat.append((time.perf_counter_ns() - t0) / 1000)
    for s in socks:
        s.close()
    q = statistics.quantiles(lat, n=100)
    return q[49], q[98]


def measure(name: str, argv: list[str], port: int, args: argparse.Namespace) -> dict[str, float]:
    print(f"{name}: starting", file=sys.stderr)
    out: dict[str, float] = {}
    with server(argv, port) as proc:
        out["base_rss_mb"] = rss(proc.pid) / 2**20
        before = rss(proc.pid)
        t0 = time.monotonic()
        load(port, args.items)
        out["load_s"] = time.monotonic() - t0
        time.sleep(0.5)
        out["bytes_per_item"] = (rss(proc.pid) - before) / args.items
        before = rss(proc.pid)
        idle = open_idle(port, args.idle)
        time.sleep(0.3)
        out["bytes_per_idle_conn"] = (rss(proc.pid) - before) / args.idle
        for s in idle:
            s.close()
        out["p50_us_alone"], out["p99_us_alone"] = probe(port)
        print(f"{name}: opening {args.conns} connections", file=sys.stderr)
        many = open_idle(port, args.conns)
        out["p50_us_with_conns"], out["p99_us_with_conns"] = probe(port)
        out["conns_open"] = len(many)
        for s in many:
            s.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", action="append", choices=["native", "anyio"])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--conns", type=int, default=10_000)
    ap.add_argument("--ratmemcached", default=shutil.which("ratmemcached") or "ratmemcached")
    ap.add_argument("--json")
    args = ap.parse_args()
    engines = args.engine or ["native"]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.conns + 1000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        args.conns = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 1000
        print(f"fd limit too low: using --conns {args.conns}", file=sys.stderr)
    conn_limit = str(args.conns + 100)
    results: dict[str, dict[str, float]] = {}
    memcached = shutil.which("memcached")
    if memcached:
        port = free_port()
        argv = [memcached, "-U", "0", "-l", HOST, "-p", str(port), "-m", "1024", "-t", "2"]
        argv += ["-c", conn_limit]
        if os.geteuid() == 0:
            argv += ["-u", "root"]
        results["memcached -t 2"] = measure("memcached", argv, port, args)
    for engine in engines:
        port = free_port()
        argv = [args.ratmemcached, "--engine", engine, "-t", "2", "-m", "1024"]
        argv += ["-c", conn_limit, "-l", HOST, "-p", str(port)]
        results[f"ratmemcached {engine}"] = measure(f"ratmemcached {engine}", argv, port, args)

    cols = [
        ("base_rss_mb", "base RSS MB", "{:.1f}"),
        ("bytes_per_item", "B/item", "{:.0f}"),
        ("bytes_per_idle_conn", "B/idle conn", "{:.0f}"),
        ("p50_us_alone", "p50 µs", "{:.0f}"),
        ("p99_us_alone", "p99 µs", "{:.0f}"),
        ("p50_us_with_conns", f"p50 µs +{args.conns}", "{:.0f}"),
        ("p99_us_with_conns", f"p99 µs +{args.conns}", "{:.0f}"),
    ]
    print(
        f"items: {args.items} x (16 B key, 100 B value); idle: {args.idle}; "
        f"conns: {args.conns}; {os.cpu_count()} CPUs"
    )
    print(f"{'server':24}" + "".join(f"{h:>16}" for _, h, _ in cols))
    for name, r in results.items():
        print(f"{name:24}" + "".join(f"{f.format(r[k]):>16}" for k, _, f in cols))
    base = results.get("memcached -t 2")
    if base:
        for name, r in results.items():
            if name.startswith("ratmemcached"):
                print(
                    f"{name}: bytes/item {r['bytes_per_item'] / base['bytes_per_item']:.2f}x "
                    f"memcached's; base RSS {r['base_rss_mb']:.1f} MB (target < 50)"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
