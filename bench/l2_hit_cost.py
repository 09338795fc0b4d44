#!/usr/bin/env python3
"""What an L1 hit costs the server with the L2 on, against the same server with it off.

With the L2 on, the I/O engines hand off only the requests that may wait on the disk (an L1
miss, a value file, a durable commit; see rust/src/disk_wait.rs): an L1 hit is answered in the
event loop, as with no L2. This measures it. For each engine, each round starts ratmemcached
twice, with and without ``[l2]`` (sync = "never"), in alternating order, and drives each with
bench/latency at a fixed rate of ``get`` only (``--get-ratio 1``, after the generator has set
its 10,000 keys of 100 bytes, so every get is an L1 hit). The server's CPU time (utime + stime
of its process group, from /proc) is read twice inside the steady phase; CPU per request is the
difference over the requests scheduled in between (open loop: the schedule does not depend on
the server, and the achieved rate is checked against it). The generator's p50 and p99 are
beside it.

The figure that matters is the same-round ratio, L2 on / L2 off, of the CPU per request: 1.00
means a hit costs the same. Before the hand-off change every request with the L2 on went through
``block_in_place`` (native) or a worker thread (anyio).

Usage (after a release build of the extension: ``make bench-server`` builds one)::

    python bench/l2_hit_cost.py [--rate 20000] [--conns 50] [--rounds 5] [--measure 4]
        [--engine native] [--engine anyio] [--json PATH]

Bounded: rounds x engines x 2 runs of (warmup + measure + 1) s; every server is stopped after
its run. A benchmark, not a test: it exits 0 unless a server or the generator fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import server_ratio as sr  # noqa: E402  (the process handling and CPU reading are shared)
import tail_latency as tl  # noqa: E402  (the generator's build)


def one_run(
    gen: Path, ratmemcached: str, engine: str, l2_dir: Path | None, args: argparse.Namespace
) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="l2-hit-cost-"))
    try:
        argv = [ratmemcached, "--engine", engine, "-t", "2", "-m", "1024", "-l", sr.HOST]
        if l2_dir is not None:
            cfg = tmp / "l2.toml"
            cfg.write_text(
                f'[l2]\nenable_l2_cache = true\ndata_dir = "{l2_dir.as_posix()}"\nsync = "never"\n'
            )
            argv += ["--config", str(cfg)]
        port = sr.free_port()
        server = sr.spawn([*argv, "-p", str(port)], tmp / "server.log")
        try:
            sr.wait_ready(server, port, 30)
            total = args.warmup + args.measure + 1.0
            load = subprocess.Popen(
                [
                    str(gen),
                    *("--server", f"{sr.HOST}:{port}", "--rate", str(args.rate)),
                    *("--conns", str(args.conns), "--seconds", str(total - args.warmup)),
                    *("--warmup", str(args.warmup), "--get-ratio", "1"),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            # The generator sets its keys first (well under a second), then starts its schedule.
            time.sleep(args.warmup + 0.5)
            cpu0, t0 = sr.group_cpu_seconds(server.pid), time.monotonic()
            time.sleep(args.measure)
            cpu1, t1 = sr.group_cpu_seconds(server.pid), time.monotonic()
            out, _ = load.communicate(timeout=total + 30)
            if load.returncode != 0:
                raise RuntimeError(f"the generator failed ({load.returncode})")
            r = json.loads(out.strip().splitlines()[-1])
            if r["errors"] or r["rate"] < 0.95 * args.rate:
                raise RuntimeError(f"the server did not keep up: {r}")
            assert cpu0 is not None and cpu1 is not None
            return {
                "cpu_us_per_req": (cpu1 - cpu0) / (args.rate * (t1 - t0)) * 1e6,
                "p50_us": r["p50_us"],
                "p99_us": r["p99_us"],
                "rate": r["rate"],
            }
        finally:
            sr.stop(server)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=20_000)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--warmup", type=float, default=1.5)
    ap.add_argument("--measure", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--engine", action="append", choices=["native", "anyio"])
    ap.add_argument("--ratmemcached", default=shutil.which("ratmemcached") or "ratmemcached")
    ap.add_argument("--json")
    args = ap.parse_args()
    gen = tl.build_generator()
    engines = args.engine or ["native", "anyio"]
    runs: dict[str, dict[str, list[dict[str, float]]]] = {e: {"off": [], "on": []} for e in engines}
    for rnd in range(args.rounds):
        for engine in engines:
            order = ["off", "on"] if rnd % 2 == 0 else ["on", "off"]
            for l2 in order:
                with tempfile.TemporaryDirectory(prefix="l2-hit-cost-data-") as d:
                    r = one_run(
                        gen, args.ratmemcached, engine, Path(d) if l2 == "on" else None, args
                    )
                runs[engine][l2].append(r)
                sr.log(
                    f"round {rnd + 1} {engine:6} L2 {l2:3}: {r['cpu_us_per_req']:.2f} µs CPU/req, "
                    f"p50 {r['p50_us']} µs, p99 {r['p99_us']} µs"
                )
    print(f"{time.strftime('%Y-%m-%d')}, {sr.machine()}")
    print(
        f"get only (all L1 hits), {args.rate:.0f} req/s over {args.conns} connections, "
        f"{args.measure:g} s measured per run, {args.rounds} rounds\n"
    )
    print(
        "| engine | CPU µs/req, L2 off | CPU µs/req, L2 on | on / off (median, range) "
        "| p99 µs off | p99 µs on |"
    )
    print("|---|---|---|---|---|---|")
    summary = {}
    for engine, by in runs.items():
        ratios = [
            on["cpu_us_per_req"] / off["cpu_us_per_req"]
            for on, off in zip(by["on"], by["off"], strict=True)
        ]
        med = {l2: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for l2, rs in by.items()}
        summary[engine] = {"median": med, "ratios": ratios}
        print(
            f"| {engine} | {med['off']['cpu_us_per_req']:.2f} | {med['on']['cpu_us_per_req']:.2f} "
            f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) "
            f"| {med['off']['p99_us']:.0f} | {med['on']['p99_us']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
