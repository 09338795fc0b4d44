#!/usr/bin/env python3
"""Run every benchmark in bench/, each bounded in time, and print one combined markdown report.

Sections, each run as a subprocess of the interpreter running this script (so the ratmemcache
build measured is the one installed in its venv), with a timeout:

* ``library``: ``bench/library.py`` (ObjectCache, @cached and Cache against cachebox, cachetools,
  functools.lru_cache and diskcache, and the hit ratio of @cached against lru_cache),
  with fewer operations than its default;
* ``l2``: ``bench/l2.py --quick`` (the disk tier against diskcache);
* ``large_values``: ``bench/large_values.py --quick`` (1 and 16 MiB values, memcached against
  both engines, with the 1 GB/s target);
* ``server_resources``: ``bench/server_resources.py`` (RSS per item and per connection, latency
  with 10,000 connections; both engines);
* ``tail_latency``: ``bench/tail_latency.py`` (p50/p99/p99.9 at 20k req/s over 50 connections,
  native engine against memcached, open-loop generator bench/latency; 7 rounds of 3 s, 1 with
  ``--quick``, and each round's p99 ratio);
* ``server_ratio`` and ``server_ratio_anyio``: ``bench/server_ratio.py`` (or ``--server-ratio``)
  (memcaslap, ratmemcached's native and anyio engines against memcached ``-t 2``, throughput and
  server CPU per request, 3 rounds of 3 s per workload, 1 round of get90 and set90 with
  ``--quick``), skipped when not found.

The report starts with the date, the CPU model, the commit and the build, then a summary of the
sections (status and duration), then each section's output. A section that fails or runs out of
time is reported as failed with the tail of its stderr, and the others still run. The default
run takes about 10 minutes on a 2-core box (at most about 25 with every timeout hit); ``--quick``
shrinks the sections further.

Usage (after a release build of the extension, as ``make bench`` does)::

    python bench/run_all.py [--quick] [--only NAME]... [--skip NAME]... [--out REPORT.md]

Exits 1 if any section failed (after running all of them and printing the report), else 0.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
STDERR_TAIL = 25


@dataclass
class Section:
    name: str
    title: str
    argv: list[str]
    timeout: float
    skip_reason: str | None = None


@dataclass
class Outcome:
    status: str  # "ok", "FAILED", "skipped"
    seconds: float
    stdout: str
    stderr: str
    detail: str = ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def commit() -> str:
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{head} (with uncommitted changes)" if dirty else head


def ratmemcache_build() -> str:
    try:
        dist = importlib.metadata.distribution("ratmemcache")
        raw = dist.read_text("direct_url.json")
        info = json.loads(raw) if raw else {}
    except (importlib.metadata.PackageNotFoundError, json.JSONDecodeError):
        return "ratmemcache not installed"
    if info.get("dir_info", {}).get("editable"):
        return "editable `maturin develop` install (release only if built with --release)"
    if "url" in info:
        return f"wheel {os.path.basename(info['url'])}"
    return f"ratmemcache {dist.version}"


def run_section(sec: Section) -> Outcome:
    """Run one section in its own process group; on timeout, SIGINT, then SIGTERM, SIGKILL."""
    if sec.skip_reason:
        return Outcome("skipped", 0.0, "", "", sec.skip_reason)
    print(
        f"run_all: {sec.name}: {' '.join(sec.argv)} (timeout {sec.timeout:.0f} s)", file=sys.stderr
    )
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                sec.argv,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        except OSError as e:
            return Outcome("FAILED", 0.0, "", str(e), f"could not start: {e}")
        detail = ""
        try:
            proc.wait(timeout=sec.timeout)
        except subprocess.TimeoutExpired:
            detail = f"timed out after {sec.timeout:.0f} s"
            # SIGINT first, so that a Python bench runs its finally blocks and stops its servers.
            for sig, grace in ((signal.SIGINT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        seconds = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if detail:
        return Outcome("FAILED", seconds, stdout, stderr, detail)
    if proc.returncode != 0:
        return Outcome("FAILED", seconds, stdout, stderr, f"exit status {proc.returncode}")
    return Outcome("ok", seconds, stdout, stderr)


def as_markdown(text: str) -> str:
    """A section's stdout: markdown as is (headings two levels down), anything else fenced."""
    text = text.strip("\n")
    if not text:
        return "_(no output)_"
    lines = text.splitlines()
    if any(line.startswith("|") for line in lines):
        return "\n".join("##" + line if line.startswith("#") else line for line in lines)
    return "```text\n" + text + "\n```"


def sections(args: argparse.Namespace) -> list[Section]:
    py = args.python
    quick = args.quick
    venv_bin = Path(py).parent
    rmc = venv_bin / "ratmemcached"
    ratmemcached = str(rmc) if rmc.exists() else (shutil.which("ratmemcached") or "ratmemcached")
    lib_ops = (
        ["--ops", "30000", "--repeat", "3", "--trace-length", "100000"]
        if quick
        else ["--ops", "100000", "--repeat", "3"]
    )
    res_args = ["--ratmemcached", ratmemcached, "--engine", "native", "--engine", "anyio"]
    if quick:
        res_args += ["--items", "200000", "--idle", "500", "--conns", "2000"]
    rounds = "1" if quick else "3"

    def ratio_args(engine: str) -> list[str]:
        cmd = f"{ratmemcached} --engine {engine} -t 2 -m 1024 -l 127.0.0.1 -p {{port}}"
        extra = ["--workload", "get90", "--workload", "set90"] if quick else []
        return ["--server-cmd", cmd, "--rounds", rounds, "--seconds", "3", *extra]

    ratio = Path(args.server_ratio).resolve()
    all_sections = [
        Section(
            "library",
            "Library: ObjectCache, @cached and Cache against Python caches (bench/library.py)",
            [py, str(BENCH / "library.py"), *lib_ops],
            90 if quick else 150,
        ),
        Section(
            "l2",
            "L2 disk tier against diskcache (bench/l2.py --quick)",
            [py, str(BENCH / "l2.py"), "--quick"],
            120 if quick else 180,
        ),
        Section(
            "large_values",
            "Large values over loopback (bench/large_values.py --quick)",
            [py, str(BENCH / "large_values.py"), "--quick"],
            60 if quick else 90,
        ),
        Section(
            "server_resources",
            "Server memory and connections (bench/server_resources.py)",
            [py, str(BENCH / "server_resources.py"), *res_args],
            60 if quick else 120,
        ),
        Section(
            "tail_latency",
            "Tail latency at a fixed rate (bench/tail_latency.py, native engine and memcached)",
            [
                py,
                str(BENCH / "tail_latency.py"),
                "--seconds",
                "3",
                "--rounds",
                "1" if quick else "7",
                "--ratmemcached",
                ratmemcached,
            ],
            120 if quick else 240,
        ),
        Section(
            "server_ratio",
            "Server throughput against memcached -t 2 (server_ratio.py, memcaslap, native engine)",
            [py, str(ratio), *ratio_args("native")],
            90 if quick else 360,
            None if ratio.exists() else f"not found: {ratio}",
        ),
        Section(
            "server_ratio_anyio",
            "Server throughput against memcached -t 2 (server_ratio.py, memcaslap, anyio engine)",
            [py, str(ratio), *ratio_args("anyio")],
            90 if quick else 360,
            None if ratio.exists() else f"not found: {ratio}",
        ),
    ]
    for sec in all_sections:
        sec.timeout *= args.timeout_scale
    chosen = [s for s in all_sections if not args.only or s.name in args.only]
    return [s for s in chosen if s.name not in (args.skip or [])]


def main() -> int:
    names = ["library", "l2", "large_values", "server_resources", "tail_latency", "server_ratio"]
    names.append("server_ratio_anyio")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sections: about 2 minutes")
    ap.add_argument("--only", action="append", choices=names, help="run only this section")
    ap.add_argument("--skip", action="append", choices=names, help="skip this section")
    ap.add_argument(
        "--server-ratio",
        default=os.environ.get("SERVER_RATIO", str(BENCH / "server_ratio.py")),
        help="path of server_ratio.py (default: $SERVER_RATIO, else bench/server_ratio.py)",
    )
    ap.add_argument(
        "--python", default=sys.executable, help="interpreter for the sections (default: this one)"
    )
    ap.add_argument(
        "--timeout-scale", type=float, default=1.0, help="multiply every section's timeout"
    )
    ap.add_argument("--out", default=None, help="also write the report to this file")
    args = ap.parse_args()

    started = datetime.datetime.now(datetime.UTC)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results = [(sec, run_section(sec)) for sec in sections(args)]
    total = (datetime.datetime.now(datetime.UTC) - started).total_seconds()

    lines = [
        "# ratmemcache benchmarks",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC ({total:.0f} s in all"
        + (", --quick" if args.quick else "")
        + ")",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; load average at start: {load}",
        f"- commit: {commit()}",
        f"- build: {ratmemcache_build()}; python {platform.python_version()} ({args.python})",
        "",
        "| section | status | seconds |",
        "|---|---|---:|",
    ]
    for sec, res in results:
        status = res.status + (f" ({res.detail})" if res.detail else "")
        lines.append(f"| {sec.name} | {status} | {res.seconds:.0f} |")
    for sec, res in results:
        lines += ["", f"## {sec.title}", ""]
        if res.status == "skipped":
            lines.append(f"Skipped: {res.detail}.")
            continue
        lines.append(f"`{' '.join(sec.argv)}` ({res.seconds:.0f} s)")
        lines.append("")
        if res.status != "ok":
            tail = "\n".join(res.stderr.strip("\n").splitlines()[-STDERR_TAIL:])
            lines += [f"**FAILED: {res.detail}.** Last lines of its stderr:", ""]
            lines += ["```text", tail or "(empty)", "```", ""]
            if not res.stdout.strip():
                continue
            lines += ["Its stdout:", ""]
        lines.append(as_markdown(res.stdout))
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.out:
        Path(args.out).write_text(report, encoding="utf-8")
    return 1 if any(res.status == "FAILED" for _, res in results) else 0


if __name__ == "__main__":
    sys.exit(main())
