#!/usr/bin/env python3
"""Throughput of large values (1 MiB and 16 MiB) over loopback: memcached against ratmemcached.

Servers, all started by this script on free 127.0.0.1 ports and stopped at the end:

* Debian's ``memcached`` with ``-I 32m -m 1024 -t 2 -U 0`` (plus ``-u root`` when run as root);
* ``ratmemcached -I 32m -m 1024 -t 2`` with ``--engine native`` (tokio) and ``--engine anyio``,
  from the interpreter running this script (``python -m ratmemcache``), so the build measured is
  the one installed in that venv (printed with the table).

Operations, one request at a time on one connection (no pipelining), from a raw socket client
that stays cheap: requests are built before the timed loop and sent with one ``sendall``; replies
are read with ``recv_into`` into a preallocated ``bytearray``:

* ``set``: ``set <key> 0 0 <n>\\r\\n<n bytes>\\r\\n``, then ``STORED``;
* ``get``: ``get <key>``, the ``VALUE`` line parsed for the length, then the data and ``END``;
* ``streaming_get`` (ratmemcached only, see docs/streaming.md): ``streaming_get <key> <chunk>``;
  the ``STREAM_BEGIN`` line gives the size, from which the whole reply's length follows; the
  client reads that many bytes.

Each value is random bytes; two keys per size alternate, and every key is stored once, untimed,
before the measurements (so ``--ops get`` alone reads hits). Every reply is checked *after* its
timed round trip (outside the timing): ``STORED`` for a set, and for the reads the whole reply,
byte for byte, against the expected one (the value and, for ``streaming_get``, every chunk
header). A wrong reply exits with status 1.

A measurement repeats one operation until ``--seconds`` have passed (at least ``--min-ops``
operations) and reports the bytes moved divided by the time spent in round trips. Each
measurement is repeated ``--repeat`` times, interleaved across servers, and the median is
reported in MB/s and GB/s (decimal: 1 MB = 10^6 bytes, 1 GB = 10^9 bytes). The issue's target is
at least 1 GB/s for the native engine, for every operation and size.

Run (about 90 s by default, about 20 s with ``--quick``; a release build of the extension is
what counts)::

    python bench/large_values.py [--quick] [--sizes 1,16] [--chunk 65536] [--json PATH]

A benchmark, not a test: it exits 0 unless a reply is wrong or a server fails.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
MIB = 1 << 20
TARGET_BPS = 1e9  # the target for the native engine: 1 GB/s
RECV_TIMEOUT = 60.0


class WrongReply(RuntimeError):
    """A server answered something other than the expected bytes."""


# ----------------------------------------------------------------------------------------------
# Servers
# ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server subprocess on 127.0.0.1; ``name`` is the table's label."""

    name: str
    argv: list[str]
    port: int
    streaming: bool
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self, tmpdir: Path, timeout: float = 20.0) -> None:
        self.log = tmpdir / f"{self.name.replace(' ', '_')}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during startup:\n{self.output()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not accept within {timeout}s") from None
                time.sleep(0.05)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:] if self.log else ""
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def memcached_server(path: str) -> Server:
    port = free_port()
    argv = [path, "-I", "32m", "-m", "1024", "-t", "2", "-U", "0", "-l", HOST, "-p", str(port)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv += ["-u", "root"]  # memcached refuses to run as root without -u
    return Server("memcached", argv, port, streaming=False)


def ratmemcached_server(engine: str) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "ratmemcache", "--engine", engine]
    argv += ["-I", "32m", "-m", "1024", "-t", "2", "-l", HOST, "-p", str(port)]
    return Server(f"ratmemcached {engine}", argv, port, streaming=True)


def ratmemcache_build() -> str:
    """Where the ratmemcache extension comes from (an editable dev install or a wheel)."""
    try:
        dist = importlib.metadata.distribution("ratmemcache")
        raw = dist.read_text("direct_url.json")
        info = json.loads(raw) if raw else {}
    except (importlib.metadata.PackageNotFoundError, json.JSONDecodeError):
        info = {}
    try:
        from ratmemcache import _core

        so = Path(_core.__file__ or "")
        where = f"{so} ({so.stat().st_size / MIB:.1f} MiB)"
    except (ImportError, OSError):
        where = "extension not found"
    if info.get("dir_info", {}).get("editable"):
        kind = "editable `maturin develop` install (dev profile unless built with --release)"
    elif "url" in info:
        kind = f"wheel {os.path.basename(info['url'])}"
    else:
        kind = "unknown install"
    return f"{kind}; {where}"


# ----------------------------------------------------------------------------------------------
# The client
# ----------------------------------------------------------------------------------------------


class Client:
    """One blocking connection; every reply lands in one preallocated buffer."""

    def __init__(self, port: int, max_reply: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=RECV_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray(max_reply)
        self.view = memoryview(self.buf)

    def close(self) -> None:
        self.sock.close()

    def _recv_more(self, got: int) -> int:
        n = self.sock.recv_into(self.view[got:])
        if n == 0:
            raise WrongReply(f"connection closed after {got} bytes")
        return got + n

    def _recv_line(self, got: int) -> tuple[int, int]:
        """Read until the buffer holds a full first line; returns (bytes read, line end)."""
        while True:
            end = self.buf.find(b"\r\n", 0, got)
            if end >= 0:
                return got, end
            if got > 4096:
                raise WrongReply(f"no line end in {bytes(self.buf[:80])!r}")
            got = self._recv_more(got)

    def _recv_until(self, got: int, total: int) -> int:
        if total > len(self.buf):
            raise WrongReply(f"reply of {total} bytes is larger than the buffer")
        view, recv_into = self.view, self.sock.recv_into
        while got < total:
            n = recv_into(view[got:total])
            if n == 0:
                raise WrongReply(f"connection closed after {got} of {total} bytes")
            got += n
        return got

    def set(self, request: bytes) -> int:
        """Send a prebuilt set request; returns the reply length (``STORED\\r\\n`` expected)."""
        self.sock.sendall(request)
        _, end = self._recv_line(0)
        return end + 2

    def get(self, request: bytes) -> int:
        """``get``: parse the VALUE line for the length, then read data and ``END``."""
        self.sock.sendall(request)
        got, end = self._recv_line(0)
        if not self.buf.startswith(b"VALUE "):
            return end + 2  # a miss or an error: checked by the caller
        n = int(self.buf[:end].rsplit(b" ", 1)[1])
        return self._recv_until(got, end + 2 + n + 2 + 5)

    def streaming_get(self, request: bytes, key: bytes, chunk: int) -> int:
        """``streaming_get``: the STREAM_BEGIN line gives the size, hence the reply's length."""
        self.sock.sendall(request)
        got, end = self._recv_line(0)
        parts = self.buf[:end].split()
        if len(parts) != 4 or parts[0] != b"STREAM_BEGIN":
            return end + 2
        total = end + 2 + streaming_body_len(key, int(parts[2]), chunk)
        return self._recv_until(got, total)


def streaming_reply(key: bytes, value: bytes, chunk: int) -> bytes:
    """The exact bytes of a ``streaming_get`` reply (docs/streaming.md)."""
    count = -(-len(value) // chunk)
    out = [b"STREAM_BEGIN %s %d %d\r\n" % (key, len(value), count)]
    for i in range(count):
        part = value[i * chunk : (i + 1) * chunk]
        out += [b"STREAM_DATA %s %d %d\r\n" % (key, i, len(part)), part, b"\r\n"]
    out.append(b"STREAM_END %s\r\n" % key)
    return b"".join(out)


def streaming_body_len(key: bytes, size: int, chunk: int) -> int:
    """Length of a streaming reply after its STREAM_BEGIN line."""
    count = -(-size // chunk)
    n = len(b"STREAM_END %s\r\n" % key)
    for i in range(count):
        part = min(chunk, size - i * chunk)
        n += len(b"STREAM_DATA %s %d %d\r\n" % (key, i, part)) + part + 2
    return n


# ----------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One size: its keys, values and the exact requests and replies for each."""

    size: int
    keys: list[bytes]
    values: list[bytes]
    set_requests: list[bytes] = field(default_factory=list)
    get_requests: list[bytes] = field(default_factory=list)
    get_replies: list[bytes] = field(default_factory=list)
    sget_requests: list[bytes] = field(default_factory=list)
    sget_replies: list[bytes] = field(default_factory=list)


def make_case(size: int, chunk: int) -> Case:
    keys = [b"lv:%d:%d" % (size, i) for i in range(2)]
    values = [os.urandom(size) for _ in keys]
    case = Case(size, keys, values)
    for k, v in zip(keys, values, strict=True):
        case.set_requests.append(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v))
        case.get_requests.append(b"get %s\r\n" % k)
        case.get_replies.append(b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (k, len(v), v))
        case.sget_requests.append(b"streaming_get %s %d\r\n" % (k, chunk))
        case.sget_replies.append(streaming_reply(k, v, chunk))
    return case


def check(client: Client, n: int, expected: bytes, what: str) -> None:
    if n != len(expected) or client.view[:n] != expected:
        head = bytes(client.buf[: min(n, 120)])
        raise WrongReply(f"{what}: wrong reply ({n} bytes, expected {len(expected)}): {head!r}")


def measure(client: Client, case: Case, op: str, chunk: int, seconds: float, min_ops: int) -> float:
    """Bytes per second of value data for ``op``, over round-trip time only."""
    timer = time.perf_counter
    spent = 0.0
    ops = 0
    start = timer()
    while ops < min_ops or timer() - start < seconds:
        i = ops % len(case.keys)
        if op == "set":
            t0 = timer()
            n = client.set(case.set_requests[i])
            spent += timer() - t0
            check(client, n, b"STORED\r\n", f"set {case.keys[i].decode()}")
        elif op == "get":
            t0 = timer()
            n = client.get(case.get_requests[i])
            spent += timer() - t0
            check(client, n, case.get_replies[i], f"get {case.keys[i].decode()}")
        else:
            t0 = timer()
            n = client.streaming_get(case.sget_requests[i], case.keys[i], chunk)
            spent += timer() - t0
            check(client, n, case.sget_replies[i], f"streaming_get {case.keys[i].decode()}")
        ops += 1
    return ops * case.size / spent


OPS = ("set", "get", "streaming_get")


def ops_for(server: Server, chosen: list[str]) -> list[str]:
    return [op for op in chosen if server.streaming or op != "streaming_get"]


def fmt_rate(bps: float | None) -> tuple[str, str]:
    if bps is None:
        return "-", "-"
    return f"{bps / 1e6:,.0f}", f"{bps / 1e9:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter: about 20 s instead of 90 s")
    ap.add_argument(
        "--sizes", default="1,16", help="value sizes in MiB, comma-separated (default: 1,16)"
    )
    ap.add_argument(
        "--chunk", type=int, default=64 * 1024, help="streaming_get chunk size (default: 65536)"
    )
    ap.add_argument(
        "--seconds", type=float, default=None, help="per measurement (default 1.0; --quick 0.25)"
    )
    ap.add_argument("--repeat", type=int, default=None, help="default 5; --quick 3 (median)")
    ap.add_argument("--min-ops", type=int, default=2, help="operations per measurement, at least")
    ap.add_argument(
        "--engine",
        action="append",
        choices=["native", "anyio"],
        help="ratmemcached engines (repeatable; default: native and anyio)",
    )
    ap.add_argument(
        "--ops",
        default=",".join(OPS),
        help=f"operations, comma-separated (default: {','.join(OPS)})",
    )
    ap.add_argument("--no-memcached", action="store_true", help="skip memcached")
    ap.add_argument("--memcached", default=shutil.which("memcached") or "/usr/bin/memcached")
    ap.add_argument("--build-label", default=None, help="describe the ratmemcache build")
    ap.add_argument("--json", default=None, help="also write the results as JSON to PATH")
    args = ap.parse_args()
    seconds = args.seconds if args.seconds is not None else (0.25 if args.quick else 1.0)
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 5)
    sizes = [int(float(s) * MIB) for s in args.sizes.split(",") if s.strip()]
    engines = args.engine or ["native", "anyio"]
    ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    if unknown := set(ops) - set(OPS):
        ap.error(f"unknown --ops: {', '.join(sorted(unknown))}")

    servers: list[Server] = []
    if not args.no_memcached:
        if Path(args.memcached).exists():
            servers.append(memcached_server(args.memcached))
        else:
            print(f"note: memcached not found at {args.memcached}; skipped", file=sys.stderr)
    servers += [ratmemcached_server(e) for e in engines]
    build = args.build_label or ratmemcache_build()
    cases = [make_case(s, args.chunk) for s in sizes]
    max_reply = max(len(r) for c in cases for r in c.sget_replies + c.get_replies) + 4096

    results: dict[tuple[str, str, int], list[float]] = {}
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-large-values-") as tmp:
        clients: dict[str, Client] = {}
        try:
            for srv in servers:
                srv.start(Path(tmp))
                clients[srv.name] = Client(srv.port, max_reply)
                for case in cases:  # load every key once, untimed, so reads never miss
                    for key, request in zip(case.keys, case.set_requests, strict=True):
                        n = clients[srv.name].set(request)
                        check(clients[srv.name], n, b"STORED\r\n", f"{srv.name}: set {key!r}")
            for rep in range(repeat):
                for case in cases:
                    for srv in servers if rep % 2 == 0 else reversed(servers):
                        for op in ops_for(srv, ops):
                            try:
                                bps = measure(
                                    clients[srv.name], case, op, args.chunk, seconds, args.min_ops
                                )
                            except (OSError, WrongReply) as e:
                                alive = "" if srv.alive() else " (the server died)"
                                raise WrongReply(
                                    f"{srv.name} {op} {case.size // MIB} MiB{alive}: {e}\n"
                                    f"{srv.output()}"
                                ) from e
                            results.setdefault((srv.name, op, case.size), []).append(bps)
        except WrongReply as e:
            print(f"FAILED: {e}", file=sys.stderr)
            return 1
        finally:
            for c in clients.values():
                c.close()
            for srv in servers:
                srv.stop()
    elapsed = time.monotonic() - t_start

    print(f"- build: {build}")
    print(f"- python: {sys.version.split()[0]}, interpreter {sys.executable}")
    print(
        f"- {repeat} repetitions of {seconds:g} s per measurement (at least {args.min_ops} ops), "
        f"median; one connection, one request at a time; streaming_get chunk {args.chunk} B; "
        f"{elapsed:.0f} s in all"
    )
    print()
    print("| server | op | value | MB/s | GB/s | min-max MB/s |")
    print("|---|---|---:|---:|---:|---:|")
    for srv in servers:
        for case in cases:
            for op in ops_for(srv, ops):
                runs = results[(srv.name, op, case.size)]
                mb, gb = fmt_rate(statistics.median(runs))
                spread = f"{min(runs) / 1e6:,.0f}-{max(runs) / 1e6:,.0f}"
                print(f"| {srv.name} | {op} | {case.size // MIB} MiB | {mb} | {gb} | {spread} |")
    print()

    native = {k: statistics.median(v) for k, v in results.items() if k[0] == "ratmemcached native"}
    if native:
        worst_key = min(native, key=lambda k: native[k])
        worst = native[worst_key]
        met = worst >= TARGET_BPS
        what = f"{worst_key[1]} of {worst_key[2] // MIB} MiB"
        verdict = "MET" if met else f"NOT MET (by {100 * (1 - worst / TARGET_BPS):.0f}%)"
        print(
            f"Target (native engine >= 1 GB/s for every op and size): {verdict}; "
            f"slowest: {what} at {worst / 1e9:.2f} GB/s."
        )
        below = [f"{k[1]} {k[2] // MIB} MiB" for k, v in native.items() if v < TARGET_BPS]
        if below:
            print(f"Below the target: {', '.join(below)}.")
    ratio_rows = []
    for op in ("set", "get"):
        for case in cases:
            mc = results.get(("memcached", op, case.size))
            nat = results.get(("ratmemcached native", op, case.size))
            if mc and nat:
                ratio = statistics.median(nat) / statistics.median(mc)
                ratio_rows.append(f"{op} {case.size // MIB} MiB {ratio:.2f}x")
    if ratio_rows:
        print(f"Native engine / memcached: {', '.join(ratio_rows)}.")

    if args.json:
        out = {
            "build": build,
            "chunk": args.chunk,
            "seconds": seconds,
            "repeat": repeat,
            "results": [
                {"server": s, "op": op, "size": size, "bytes_per_s": runs}
                for (s, op, size), runs in results.items()
            ],
        }
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
