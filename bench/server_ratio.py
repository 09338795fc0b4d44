#!/usr/bin/env python3
"""Server throughput and server CPU per request: ratmemcached against memcached, in the same run.

Both servers run on this machine, on 127.0.0.1, one after the other, under the same load
generator: memcaslap (libmemcached's memaslap; Debian's libmemcached-tools), one thread
(``-T 1``), ``--concurrency`` connections. Every round runs every workload against a fresh start
of each server, memcached first in odd rounds and ours first in even ones. On a small shared box
the rounds differ more than the servers do, so only same-round ratios mean much:

* **throughput ratio**: ours ops/s / memcached ops/s from the same round (higher is faster);
* **CPU ratio**: ours CPU µs/op / memcached CPU µs/op from the same round (lower is cheaper).

The table gives each median over the rounds, with the min-max of the per-round ratios. The CPU
per operation is the server's CPU time during the load run divided by the operations memcaslap
completed: utime + stime of every process in the server's process group, read from
/proc/PID/stat (which covers all of a process's threads, exited ones included) just before
memcaslap starts and just after it exits; 1 clock tick (10 ms) of resolution. Elsewhere than
Linux it comes from psutil if installed, else it is "n/a". On a 2-core machine memcaslap's one
thread often saturates first (a note says so), which compresses the throughput ratio toward 1;
the CPU per operation is then the more telling figure.

Workloads (``--workload``, repeatable; default all), 32-byte keys:

  get90         90% get / 10% set, 100-byte values
  set90         10% get / 90% set, 100-byte values
  get90-4k      90% get / 10% set, 4096-byte values (memcaslap -w 2k)
  mget          get90, gets batched 10 keys a request (-d 10); ops count keys, not requests
  binary-get90  get90 over the binary protocol (-B)

One run is ``memcaslap -s 127.0.0.1:PORT -F WORKLOAD.cfg -t Ss -T 1 -c C [-w 2k|-d 10|-B]``;
ops/s is its final "Run time: ... Ops: N TPS: N" line. A run fails (and its round is left out of
that workload's ratios) when the server dies, memcaslap runs past S + 15 s (it is killed), prints
no throughput, reads the workload file wrongly, gets no replies, or completes fewer than 10 ops
per connection. More than 1% get misses and a non-zero memcaslap exit are warnings.

Usage (after a release build: ``make bench-server``; a dev build is not representative)::

    python bench/server_ratio.py [--server-cmd 'COMMAND ... {port} ...'] [--workload NAME]...
        [--rounds 3] [--seconds 5] [--concurrency 32] [--baseline-cmd 'COMMAND ... {port} ...']
        [--json PATH]

    # a short check
    python bench/server_ratio.py --workload get90 --rounds 1 --seconds 2
    # self-check: memcached against itself; every ratio should be near 1.00
    python bench/server_ratio.py \\
        --server-cmd 'memcached -u nobody -l 127.0.0.1 -p {port} -m 1024 -t 2'

{port} is replaced by a free port; the server must listen on 127.0.0.1:{port}. A command with
shell syntax (``;``, ``|``, ``$``...) runs under /bin/sh -c. Each server is started and stopped
once before the rounds, so a bad command fails in seconds (at most --start-timeout).

Output: the date, the machine and the Markdown table on stdout (ready to paste), notes below it;
progress and warnings on stderr. Bounded: rounds x workloads x 2 runs of S s (+ about 1 s each);
memcaslap is killed after S + 15 s. Every process started runs in its own process group and is
stopped (SIGTERM, then SIGKILL) when its run ends, on an error, and on Ctrl-C or SIGTERM.

Exit status: 0 when every run succeeded; 2 when a server failed to start, memcaslap is missing,
or a run failed (the table is still printed); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
HOST = "127.0.0.1"
KEY_SIZE = 32
LOADGEN_THREADS = 1  # memcaslap's default is 8; the box this is made for has 2 cores
LOADGEN_GRACE = 15.0  # memcaslap exits about 1 s after its -t; it is killed after -t + this
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when stopping a server
MIN_OPS_PER_CONN = 10
MISS_WARN = 0.01
SATURATED_CORES = 0.9  # memcaslap at or above this share of its one core sets the pace
BASELINE, OURS = "memcached", "ours"
WHO = {BASELINE: "memcached (--baseline-cmd)", OURS: "the server under test (--server-cmd)"}
DEFAULT_BASELINE = "memcached -u nobody -l 127.0.0.1 -p {port} -m 1024 -t 2"


def default_server_cmd() -> str:
    """This venv's ratmemcached (next to the interpreter, else the repo's .venv, else PATH)."""
    for candidate in (
        Path(sys.executable).parent / "ratmemcached",
        ROOT / ".venv/bin/ratmemcached",
    ):
        if candidate.exists():
            exe = str(candidate)
            break
    else:
        exe = shutil.which("ratmemcached") or "ratmemcached"
    # -m 1024 as memcached's: with the default 64 MB, get90-4k evicts and its gets miss.
    return f"{shlex.quote(exe)} --engine native -t 2 -m 1024 -l 127.0.0.1 -p {{port}}"


@dataclass(frozen=True)
class Workload:
    name: str
    value_size: int
    set_share: float
    extra: tuple[str, ...] = ()
    needs: str | None = None  # a memcaslap option that must appear in its --help

    def config(self) -> str:
        """memcaslap's -F file: the cmd section last, set (0) before get (1)."""
        get_share = 1.0 - self.set_share
        return (
            f"key\n{KEY_SIZE} {KEY_SIZE} 1\n"
            f"value\n{self.value_size} {self.value_size} 1\n"
            f"cmd\n0 {self.set_share:.2f}\n1 {get_share:.2f}\n"
        )


WORKLOADS = {
    w.name: w
    for w in (
        Workload("get90", 100, 0.1),
        Workload("set90", 100, 0.9),
        Workload("get90-4k", 4096, 0.1, ("-w", "2k")),
        Workload("mget", 100, 0.1, ("-d", "10"), "--division"),
        Workload("binary-get90", 100, 0.1, ("-B",), "--binary"),
    )
}

RUN_RE = re.compile(r"^Run time:\s*([\d.]+)s\s+Ops:\s*(\d+)\s+TPS:\s*(\d+)", re.M)
COUNTER_RE = re.compile(r"^(cmd_get|cmd_set|get_misses|read_bytes):\s*(\d+)\s*$", re.M)
SHARE_RE = re.compile(r"^(set|get) proportion: \w+=([\d.]+)", re.M)
SHELL_CHARS = set(";&|<>$`()*?~#\n")


class StartError(Exception):
    """A server did not start, or did not accept connections on its port in time."""


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived."""


# ----------------------------------------------------------------------------------------------
# Processes: each started in its own session (so its own process group), recorded before a
# signal can interrupt, and stopped by process group.
# ----------------------------------------------------------------------------------------------

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_started: list[subprocess.Popen[bytes]] = []


@dataclass
class _SignalState:
    deferring: bool = False
    pending: int | None = None


_signals = _SignalState()


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    if _signals.deferring:
        _signals.pending = signum
        return
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold a stop signal back while a process is started and recorded, then raise it."""
    _signals.deferring = True
    try:
        yield
    finally:
        _signals.deferring = False
        pending, _signals.pending = _signals.pending, None
        if pending is not None:
            raise Interrupted(signal.Signals(pending).name)


def spawn(argv: list[str], output: Path) -> subprocess.Popen[bytes]:
    """Start argv in a new session, stdout and stderr to ``output``; record it for stop_all."""
    with open(output, "wb") as out, _signals_deferred():
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _started.append(proc)
    return proc


def has_exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether proc has exited, without reaping it on Linux: while it is an unreaped zombie its
    pid, which is also its process group's id, cannot be reused, so killpg stays safe."""
    if proc.returncode is not None:
        return True
    if sys.platform == "linux":
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, proc.pid, flags) is not None
        except ChildProcessError:
            return True
    return proc.poll() is not None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def stop(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """SIGTERM to proc's process group, SIGKILL to whatever is left after ``grace`` seconds
    (a wrapper shell's children too), then reap proc."""
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while not has_exited(proc) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    if proc in _started:
        _started.remove(proc)


def stop_all() -> None:
    """Stop every process this script started and has not stopped yet."""
    for proc in _started.copy():  # stop() removes each from _started
        try:
            stop(proc, grace=2.0)
        except Exception as e:  # go on with the others
            log(f"warning: could not stop pid {proc.pid}: {e}")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def describe_exit(rc: int) -> str:
    if rc < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-rc).name}"
    return f"exit status {rc}"


def tail_text(text: str, lines: int = 12) -> str:
    """The last lines of a process's output, indented for an error message."""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def tail(path: Path) -> str:
    try:
        return tail_text(path.read_text(errors="replace"))
    except OSError:
        return ""


# ----------------------------------------------------------------------------------------------
# CPU accounting
# ----------------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
HAVE_PROC = Path("/proc/self/stat").exists()


def _stat_fields(pid: str) -> list[str] | None:
    """Fields 3... of /proc/PID/stat (after the parenthesised command name), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def _psutil() -> Any:
    try:
        return importlib.import_module("psutil")
    except ImportError:
        return None


def group_cpu_seconds(pgid: int) -> float | None:
    """utime + stime, in seconds, of every live process in process group ``pgid``; None if
    neither /proc nor psutil is available."""
    if HAVE_PROC:
        ticks = 0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                f = _stat_fields(entry)
                # proc(5) fields 5 (pgrp), 14 (utime) and 15 (stime)
                if f is not None and int(f[2]) == pgid:
                    ticks += int(f[11]) + int(f[12])
        return ticks / CLK_TCK
    psutil = _psutil()
    if psutil is None:
        return None
    total = 0.0
    with contextlib.suppress(psutil.Error):
        leader = psutil.Process(pgid)
        for p in [leader, *leader.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
    return total


def box_busy_seconds() -> float | None:
    """CPU seconds spent busy by the whole machine since boot (all cores), from /proc/stat."""
    if not HAVE_PROC:
        return None
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / CLK_TCK


def children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def machine() -> str:
    model = platform.processor() or platform.machine() or "unknown CPU"
    processors = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("processor"):
                processors += 1
    count = processors or os.cpu_count() or 0
    return f"{model}, {count} logical CPUs"


# ----------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def command_argv(template: str, port: int) -> list[str]:
    cmd = template.replace("{port}", str(port))
    return ["/bin/sh", "-c", cmd] if SHELL_CHARS & set(cmd) else shlex.split(cmd)


@dataclass
class Server:
    label: str  # BASELINE or OURS
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    version: str


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float) -> str:
    """Wait until 127.0.0.1:port accepts a connection; return the reply to ``version``."""
    deadline = time.monotonic() + timeout
    while True:
        if has_exited(proc):
            stop(proc)  # its process group too: a wrapper's children may still be running
            raise StartError(f"it exited ({describe_exit(proc.returncode)}) before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as s:
                s.settimeout(2.0)
                with contextlib.suppress(OSError):
                    s.sendall(b"version\r\n")
                    return s.recv(256).decode("ascii", "replace").strip()
                return ""
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise StartError(f"nothing accepted connections on {HOST}:{port} after {timeout:g} s")
        time.sleep(0.05)


def start_server(label: str, template: str, timeout: float, tmp: Path, tag: str) -> Server:
    port = free_port()
    output = tmp / f"{tag}-{label}.log"
    command = template.replace("{port}", str(port))
    try:
        proc = spawn(command_argv(template, port), output)
    except OSError as e:
        raise StartError(f"{WHO[label]} did not start: {e}\n  command: {command}") from None
    try:
        version = wait_ready(proc, port, timeout)
    except StartError as e:
        stop(proc)
        out = tail(output)
        raise StartError(
            f"{WHO[label]} did not start: {e}\n  command: {command}"
            + (f"\n  its output:\n{out}" if out else "")
        ) from None
    return Server(label, proc, port, output, version)


@dataclass
class Run:
    round: int
    workload: str
    server: str  # BASELINE or OURS
    position: int  # 1 when this server ran first in its round's pair
    ok: bool = False
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    command: str = ""
    ops: int = 0
    ops_per_s: float = 0.0
    run_time_s: float = 0.0
    wall_s: float = 0.0
    server_cpu_s: float | None = None
    loadgen_cpu_s: float | None = None
    box_busy_s: float | None = None
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def cpu_us_per_op(self) -> float | None:
        if self.server_cpu_s is None or self.ops <= 0:
            return None
        return self.server_cpu_s / self.ops * 1e6

    def cores(self, seconds: float | None) -> float | None:
        """CPU seconds of the server or memcaslap as cores busy while memcaslap ran its load
        (outside its run time, from start-up to exit, both are about idle)."""
        span = self.run_time_s or self.wall_s
        return None if seconds is None or span <= 0 else seconds / span

    @property
    def other_cores(self) -> float | None:
        """Cores used by everything else on the machine, on average from start to exit."""
        box, server, loadgen = self.box_busy_s, self.server_cpu_s, self.loadgen_cpu_s
        if box is None or server is None or loadgen is None or self.wall_s <= 0:
            return None
        return max(0.0, box - server - loadgen) / self.wall_s


def one_run(
    run: Run, template: str, wl: Workload, cfg: Path, args: argparse.Namespace, tmp: Path
) -> Run:
    """Start the server fresh, run memcaslap against it once, stop both."""
    tag = f"r{run.round}-{wl.name}"
    srv = start_server(run.server, template, args.start_timeout, tmp, tag)
    try:
        argv = [args.memcaslap, "-s", f"{HOST}:{srv.port}", "-F", str(cfg)]
        argv += ["-t", f"{args.seconds}s", "-T", str(LOADGEN_THREADS), "-c", str(args.concurrency)]
        argv += wl.extra
        run.command = shlex.join(argv)
        output = tmp / f"{tag}-{run.server}-memcaslap.out"
        cpu0 = group_cpu_seconds(srv.proc.pid)
        box0 = box_busy_seconds()
        kids0 = children_cpu_seconds()
        t0 = time.monotonic()
        gen = spawn(argv, output)
        try:
            deadline = t0 + args.seconds + LOADGEN_GRACE
            while not has_exited(gen) and not has_exited(srv.proc) and time.monotonic() < deadline:
                time.sleep(0.02)
            run.wall_s = time.monotonic() - t0
            cpu1, box1 = group_cpu_seconds(srv.proc.pid), box_busy_seconds()
            server_died, timed_out = has_exited(srv.proc), not has_exited(gen)
        finally:
            stop(gen, grace=1.0)
        # Only memcaslap was reaped since kids0 (a dead server is left unreaped until stop).
        run.loadgen_cpu_s = children_cpu_seconds() - kids0
        if cpu0 is not None and cpu1 is not None:
            run.server_cpu_s = cpu1 - cpu0
        if box0 is not None and box1 is not None:
            run.box_busy_s = box1 - box0
        check_output(run, wl, output.read_text(errors="replace"), gen.returncode, args)
        if server_died:
            stop(srv.proc)
            out = tail(srv.log)
            run.ok = False
            run.error = f"{WHO[run.server]} died ({describe_exit(srv.proc.returncode)})"
            run.error += f"; its output:\n{out}" if out else ""
        elif timed_out:
            run.ok = False
            run.error = f"memcaslap still running after {args.seconds + LOADGEN_GRACE:g} s: killed"
    finally:
        stop(srv.proc)
    return run


def check_output(
    run: Run, wl: Workload, text: str, returncode: int, args: argparse.Namespace
) -> None:
    """Fill run's ops and counters from memcaslap's output; ok unless something is wrong."""
    run.counters = {k: int(v) for k, v in COUNTER_RE.findall(text)}
    shares = {k: float(v) for k, v in SHARE_RE.findall(text)}
    results = RUN_RE.findall(text)
    if abs(shares.get("set", -1) - wl.set_share) > 0.005:
        run.error = f"memcaslap read the workload file wrongly: {shares} (set {wl.set_share})"
    elif not results:
        run.error = f"memcaslap printed no throughput ({describe_exit(returncode)}):\n"
        run.error += f"  command: {run.command}\n  its output:\n{tail_text(text)}"
    else:
        run_time, ops, tps = results[-1]
        run.run_time_s, run.ops, run.ops_per_s = float(run_time), int(ops), float(tps)
        if run.counters.get("read_bytes", 1) == 0 or run.ops_per_s == 0:
            run.error = "the server sent no replies (memcaslap read 0 bytes)"
        elif run.ops < MIN_OPS_PER_CONN * args.concurrency:
            run.error = f"only {run.ops} ops over {args.concurrency} connections (stalled?)"
        else:
            run.ok = True
    gets, misses = run.counters.get("cmd_get", 0), run.counters.get("get_misses", 0)
    if gets and misses > MISS_WARN * gets:
        run.warnings.append(f"{misses} of {gets} gets missed")
    if run.ok and returncode != 0:
        run.warnings.append(f"memcaslap {describe_exit(returncode)}")


def preflight(args: argparse.Namespace, tmp: Path) -> dict[str, str]:
    """Start and stop each server once, so that a bad command fails before the rounds."""
    versions = {}
    for label, template in ((BASELINE, args.baseline_cmd), (OURS, args.server_cmd)):
        srv = start_server(label, template, args.start_timeout, tmp, "preflight")
        stop(srv.proc)
        versions[label] = srv.version
        if not srv.version.startswith("VERSION"):
            log(f"warning: {WHO[label]} answered {srv.version!r} to 'version'")
    return versions


# ----------------------------------------------------------------------------------------------
# Summary and report
# ----------------------------------------------------------------------------------------------


@dataclass
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, xs: list[float]) -> Spread | None:
        return cls(statistics.median(xs), min(xs), max(xs)) if xs else None


def summarize(runs: list[Run], workload: str) -> dict[str, Any]:
    ok = [r for r in runs if r.workload == workload and r.ok]
    by_round = {label: {r.round: r for r in ok if r.server == label} for label in (BASELINE, OURS)}
    paired = sorted(set(by_round[BASELINE]) & set(by_round[OURS]))
    ratios, cpu_ratios = [], []
    for rnd in paired:
        base, ours = by_round[BASELINE][rnd], by_round[OURS][rnd]
        if base.ops_per_s > 0:
            ratios.append(ours.ops_per_s / base.ops_per_s)
        b_cpu, o_cpu = base.cpu_us_per_op, ours.cpu_us_per_op
        if b_cpu and o_cpu is not None:
            cpu_ratios.append(o_cpu / b_cpu)
    out: dict[str, Any] = {"pairs": len(paired)}
    for label in (BASELINE, OURS):
        rs = list(by_round[label].values())
        out[label] = {
            "ops_per_s": Spread.of([r.ops_per_s for r in rs]),
            "cpu_us_per_op": Spread.of([x for r in rs if (x := r.cpu_us_per_op) is not None]),
            "server_cores": Spread.of(
                [x for r in rs if (x := r.cores(r.server_cpu_s)) is not None]
            ),
            "loadgen_cores": Spread.of(
                [x for r in rs if (x := r.cores(r.loadgen_cpu_s)) is not None]
            ),
            "other_cores": Spread.of([x for r in rs if (x := r.other_cores) is not None]),
        }
    out["ratio"] = Spread.of(ratios)
    out["cpu_ratio"] = Spread.of(cpu_ratios)
    return out


def fmt_ratio(s: Spread | None) -> str:
    return "n/a" if s is None else f"{s.median:.2f} [{s.low:.2f}-{s.high:.2f}]"


def fmt_median(s: Spread | None, spec: str) -> str:
    return "n/a" if s is None else format(s.median, spec)


def report(
    args: argparse.Namespace, started: datetime.datetime, load: str, summary: dict[str, Any]
) -> str:
    lines = [
        f"- date: {started:%Y-%m-%d %H:%M} UTC; machine: {machine()}; load average {load}",
        f"- load generator: `{Path(args.memcaslap).name} -T {LOADGEN_THREADS}"
        f" -c {args.concurrency}`, {KEY_SIZE}-byte keys, {args.rounds} round(s) of"
        f" {args.seconds} s per workload and server, alternating which server runs first",
        f"- memcached: `{args.baseline_cmd}`",
        f"- ours: `{args.server_cmd}`",
        "",
        "| workload | memcached ops/s | ours ops/s | ratio median [min-max] "
        "| memcached CPU µs/op | ours CPU µs/op | CPU ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in summary.items():
        base, ours = s[BASELINE], s[OURS]
        lines.append(
            f"| {name} | {fmt_median(base['ops_per_s'], ',.0f')} "
            f"| {fmt_median(ours['ops_per_s'], ',.0f')} | {fmt_ratio(s['ratio'])} "
            f"| {fmt_median(base['cpu_us_per_op'], '.2f')} "
            f"| {fmt_median(ours['cpu_us_per_op'], '.2f')} | {fmt_ratio(s['cpu_ratio'])} |"
        )
    lines += [
        "",
        "ops/s and CPU µs/op are medians over the rounds; ratio = ours / memcached ops/s and CPU"
        " ratio = ours / memcached server CPU per operation, per round (median [min-max] over"
        f" {args.rounds} round(s)); higher ratio = faster, lower CPU ratio = cheaper."
        + (" mget counts keys as operations." if "mget" in summary else ""),
    ]
    for note in notes(summary):
        lines.append(f"\nNote: {note}")
    return "\n".join(lines)


def notes(summary: dict[str, Any]) -> list[str]:
    def highest(key: str) -> float | None:
        spreads = [s[label][key] for s in summary.values() for label in (BASELINE, OURS)]
        highs = [sp.high for sp in spreads if sp is not None]
        return max(highs) if highs else None

    out = []
    if all(
        s[label]["cpu_us_per_op"] is None for s in summary.values() for label in (BASELINE, OURS)
    ):
        out.append("server CPU n/a: no /proc here and psutil is not installed.")
    gen = highest("loadgen_cores")
    if gen is not None and gen >= SATURATED_CORES:
        out.append(
            f"memcaslap used up to {gen:.2f} of its one core: the load generator, not the server,"
            " sets the pace, so the throughput ratio is compressed toward 1; CPU per operation"
            " says more."
        )
    other = highest("other_cores")
    if other is not None and other > 0.25:
        out.append(
            f"other work on the machine used up to {other:.2f} cores during a run: the figures"
            " are noisier than usual; rerun when the machine is quiet."
        )
    return out


def progress(run: Run, n: int, total: int) -> None:
    where = f"[{n}/{total}] round {run.round} {run.workload:<12} {run.server:<9}"
    if run.ok:
        cpu = run.cpu_us_per_op
        detail = f"{run.ops_per_s:>10,.0f} ops/s"
        if cpu is not None:
            detail += f", {cpu:.2f} µs CPU/op ({run.cores(run.server_cpu_s) or 0:.2f} cores)"
        detail += f", memcaslap {run.cores(run.loadgen_cpu_s) or 0:.2f} cores"
        log(f"{where} {detail}")
    else:
        log(f"{where} FAILED: {run.error}")
    for w in run.warnings:
        log(f"{where} warning: {w}")


def to_json(x: Any) -> Any:
    if isinstance(x, Spread):
        return asdict(x)
    if isinstance(x, dict):
        return {k: to_json(v) for k, v in x.items()}
    return x


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def find_memcaslap(explicit: str | None) -> str | None:
    for name in [explicit] if explicit else ["memcaslap", "memaslap"]:
        path = shutil.which(name)
        if path:
            return path
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--server-cmd",
        default=default_server_cmd(),
        metavar="CMD",
        help="command starting the server under test, {port} substituted (default: %(default)s)",
    )
    ap.add_argument(
        "--baseline-cmd",
        default=DEFAULT_BASELINE,
        metavar="CMD",
        help="command starting memcached, {port} substituted (default: %(default)s)",
    )
    ap.add_argument(
        "--workload",
        action="append",
        choices=list(WORKLOADS),
        metavar="NAME",
        help=f"repeatable, one of {', '.join(WORKLOADS)} (default: all)",
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds (default: %(default)s)")
    ap.add_argument(
        "--seconds", type=int, default=5, help="seconds per memcaslap run (default: %(default)s)"
    )
    ap.add_argument(
        "--concurrency", type=int, default=32, help="memcaslap -c (default: %(default)s)"
    )
    ap.add_argument("--json", metavar="PATH", help="also write every run and the summary as JSON")
    ap.add_argument(
        "--memcaslap", metavar="PATH", help="the load generator (default: memcaslap, else memaslap)"
    )
    ap.add_argument(
        "--start-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds for a server to accept connections (default: %(default)s)",
    )
    args = ap.parse_args(argv)
    for opt in ("server_cmd", "baseline_cmd"):
        if "{port}" not in getattr(args, opt):
            ap.error(f"--{opt.replace('_', '-')} must contain {{port}}")
    if min(args.rounds, args.seconds, args.concurrency) < 1 or args.start_timeout <= 0:
        ap.error("--rounds, --seconds, --concurrency and --start-timeout must be positive")
    args.workload = list(dict.fromkeys(args.workload or WORKLOADS))
    return args


def run_rounds(args: argparse.Namespace, tmp: Path, runs: list[Run]) -> dict[str, str]:
    """The preflight, then every round, appending to ``runs``; returns the version replies."""
    cfgs = {}
    for name in args.workload:
        cfgs[name] = tmp / f"{name}.cfg"
        cfgs[name].write_text(WORKLOADS[name].config())
    versions = preflight(args, tmp)
    total = args.rounds * len(args.workload) * 2
    log(
        f"server_ratio: {total} runs of {args.seconds} s "
        f"(about {total * (args.seconds + 1.5):.0f} s in all)"
    )
    for rnd in range(1, args.rounds + 1):
        order = [BASELINE, OURS] if rnd % 2 else [OURS, BASELINE]
        for name in args.workload:
            for pos, label in enumerate(order, 1):
                template = args.baseline_cmd if label == BASELINE else args.server_cmd
                run = Run(rnd, name, label, pos)
                runs.append(one_run(run, template, WORKLOADS[name], cfgs[name], args, tmp))
                progress(run, len(runs), total)
    return versions


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not hasattr(os, "killpg"):
        log("error: this benchmark needs POSIX process groups (Linux or macOS)")
        return 2
    exe = find_memcaslap(args.memcaslap)
    if exe is None:
        log("error: memcaslap not found (Debian: apt-get install libmemcached-tools)")
        return 2
    args.memcaslap = exe
    usage = subprocess.run(
        [exe, "--help"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    for name in list(args.workload):
        needs = WORKLOADS[name].needs
        if needs and needs not in usage:
            log(f"note: skipping {name}: {exe} has no {needs}")
            args.workload.remove(name)
    if not args.workload:
        log("error: no workload left to run")
        return 2

    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_stop_signal)
    started = datetime.datetime.now(datetime.UTC)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    runs: list[Run] = []
    try:
        with tempfile.TemporaryDirectory(prefix="server_ratio.") as tmpdir:
            try:
                versions = run_rounds(args, Path(tmpdir), runs)
            finally:
                for sig in STOP_SIGNALS:  # no second Ctrl-C in the middle of stopping
                    signal.signal(sig, signal.SIG_IGN)
                stop_all()
    except StartError as e:
        log(f"error: {e}")
        return 2
    except (Interrupted, KeyboardInterrupt) as e:
        log(f"interrupted ({e or 'SIGINT'}): stopped every process this script started")
        return 130
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)

    summary = {name: summarize(runs, name) for name in args.workload}
    print(report(args, started, load, summary), flush=True)
    failed = [r for r in runs if not r.ok]
    if args.json:
        doc = {
            "date": started.isoformat(timespec="seconds"),
            "machine": machine(),
            "load_average": load,
            "memcaslap": exe,
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "versions": versions,
            "summary": to_json(summary),
            "runs": [asdict(r) | {"cpu_us_per_op": r.cpu_us_per_op} for r in runs],
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    if failed:
        log(f"error: {len(failed)} run(s) failed and were left out of the ratios:")
        for r in failed:
            log(f"  round {r.round} {r.workload} {r.server}: {r.error.splitlines()[0]}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
