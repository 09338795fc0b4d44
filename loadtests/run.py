"""Run the locust load tests headless against a ratmemcached that this script starts.

For each scenario (``scenarios.py``): start ``ratmemcached`` on a free 127.0.0.1 port (with the
scenario's flags, and a fresh L2 data dir when it needs one), preload every key, run locust
headless for ``--seconds`` (and at most ``--max-requests`` requests), stop the server, and
collect the reports. Everything stays on loopback and every step is bounded in time.

    python loadtests/run.py --scenario all --seconds 20      # or: make loadtest
    python loadtests/run.py --scenario get_heavy --seconds 5 --out /tmp/lt

Writes into ``--out`` (default loadtests/results/, not committed), per scenario: locust's CSV
(``<scenario>_stats.csv``, ``_stats_history.csv``, ``_failures.csv``, ``_exceptions.csv``), its
HTML report (``<scenario>.html``), exact latency percentiles (``<scenario>_latency.json``) and
locust's output (``<scenario>.log``); and ``summary.md``, the table printed at the end. Exits
non-zero if any request failed or a run did not finish cleanly.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from pymemcache.client.base import Client  # noqa: E402

from scenarios import SCENARIOS, Scenario, value_for  # noqa: E402
from servers import ServerProcess, start_ratmemcached  # noqa: E402

LOCUSTFILE = HERE / "locustfile.py"
STAT_KEYS = ("cmd_get", "get_hits", "get_misses", "l2_hits", "l2_reads", "curr_items", "l2_items")


def server_stats(srv: ServerProcess) -> dict[str, int]:
    c = Client(srv.address, connect_timeout=5, timeout=10)
    try:
        raw = c.stats()
    finally:
        c.close()
    out = {}
    for k, v in raw.items():
        key = k.decode() if isinstance(k, bytes) else str(k)
        if key in STAT_KEYS:
            out[key] = int(v)
    return out


def preload(srv: ServerProcess, s: Scenario) -> float:
    """Store every key of the scenario; returns the seconds it took."""
    t = time.monotonic()
    c = Client(srv.address, connect_timeout=5, timeout=30, default_noreply=False)
    try:
        batch: dict[str, bytes] = {}
        batch_bytes = 0
        for i in range(s.keys):
            v = value_for(s, i)
            batch[s.key(i)] = v
            batch_bytes += len(v)
            if len(batch) >= 200 or batch_bytes >= 4 << 20 or i == s.keys - 1:
                failed = c.set_many(batch)
                if failed:
                    raise RuntimeError(f"preload: {len(failed)} sets failed, e.g. {failed[0]}")
                batch, batch_bytes = {}, 0
    finally:
        c.close()
    return time.monotonic() - t


def read_aggregated(csv_path: Path) -> dict[str, str]:
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("Name") == "Aggregated":
                return row
    raise RuntimeError(f"{csv_path}: no Aggregated row")


def run_scenario(s: Scenario, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    users = args.users or s.users
    with tempfile.TemporaryDirectory(prefix=f"loadtest-{s.name}-") as tmp:
        config: dict[str, Any] = {k: dict(v) for k, v in s.config.items()}
        if s.l2:
            config.setdefault("l2", {})["data_dir"] = str(Path(tmp) / "l2")
        srv = start_ratmemcached(
            *s.server_args, "-t", str(args.threads), engine=args.engine, config=config or None
        )
        try:
            loaded = preload(srv, s)
            before = server_stats(srv)
            prefix = out / s.name
            argv = [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "--only-summary",
                "--loglevel",
                "WARNING",
                "-u",
                str(users),
                "-r",
                str(users),
                "-t",
                f"{args.seconds}s",
                "--stop-timeout",
                "5",
                "--host",
                f"{srv.host}:{srv.port}",
                "--csv",
                str(prefix),
                "--html",
                f"{prefix}.html",
                "--max-requests",
                str(args.max_requests),
                "--latency-out",
                f"{prefix}_latency.json",
                s.user_class,
            ]
            print(
                f"{s.name}: {s.description}; preloaded in {loaded:.1f}s; "
                f"{users} users for {args.seconds}s against {srv.host}:{srv.port} "
                f"({args.engine} engine)",
                flush=True,
            )
            with open(f"{prefix}.log", "wb") as log:
                try:
                    proc = subprocess.run(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        timeout=args.seconds + 90,
                        cwd=out,
                    )
                    locust_status = proc.returncode
                except subprocess.TimeoutExpired:
                    locust_status = -1
            after = server_stats(srv)
        finally:
            server_status = srv.stop()
            srv.cleanup()
    row: dict[str, Any] = {"scenario": s.name, "users": users, "locust_status": locust_status}
    row["server_status"] = server_status
    try:
        agg = read_aggregated(Path(f"{prefix}_stats.csv"))
        lat = json.loads(Path(f"{prefix}_latency.json").read_text(encoding="utf-8"))
    except (OSError, RuntimeError, ValueError) as e:
        row["error"] = f"no report ({e}); see {prefix}.log"
        return row
    counts = lat.get("counts", {})
    hits, misses = counts.get("hits", 0), counts.get("misses", 0)
    d = {k: after.get(k, 0) - before.get(k, 0) for k in STAT_KEYS}
    # The counts and rates are the locustfile's own (every request, over the time between the
    # first and the last): locust's CSV is written once a second and can miss the last second.
    row.update(
        requests=lat["requests"],
        failures=max(lat["failures"], int(agg["Failure Count"])),
        rps=lat["requests"] / lat["seconds"],
        p50=lat["all"]["p50_ms"],
        p95=lat["all"]["p95_ms"],
        p99=lat["all"]["p99_ms"],
        hit_ratio=hits / (hits + misses) if hits + misses else None,
        from_l2=d["l2_hits"] / d["get_hits"] if s.l2 and d["get_hits"] else None,
    )
    return row


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def summary_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | users | requests | req/s | failures | p50 ms | p95 ms | p99 ms "
        "| get hit ratio | gets served from L2 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['scenario']} | {r['users']} | {r['error']} |")
            continue
        lines.append(
            f"| {r['scenario']} | {r['users']} | {r['requests']:,} | {r['rps']:,.0f} "
            f"| {r['failures']} | {r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} "
            f"| {fmt(r['hit_ratio'], '.1%')} | {fmt(r['from_l2'], '.1%')} |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{os.cpu_count()} CPUs ({cpu}), load average {load}, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--scenario",
        action="append",
        choices=[*SCENARIOS, "all"],
        help="a scenario to run (repeatable), or all (the default)",
    )
    ap.add_argument("--seconds", type=int, default=20, help="locust run time per scenario")
    ap.add_argument("--users", type=int, default=0, help="users (connections); 0: per scenario")
    ap.add_argument(
        "--max-requests",
        type=int,
        default=2_000_000,
        help="stop a scenario after this many requests (a bound besides --seconds)",
    )
    ap.add_argument("--engine", default="native", choices=["native", "anyio"])
    ap.add_argument("--threads", type=int, default=2, help="server worker threads (-t)")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="where the reports go")
    args = ap.parse_args()
    names = args.scenario or ["all"]
    chosen = list(SCENARIOS.values()) if "all" in names else [SCENARIOS[n] for n in names]
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out.resolve()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    at_start = machine()
    print(f"{started}; {at_start}", flush=True)
    rows = [run_scenario(s, args, out) for s in chosen]
    table = summary_table(rows)
    load_now = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    header = (
        f"{started}; {at_start}; at the end: load average {load_now}\n"
        f"ratmemcached --engine {args.engine} -t {args.threads}; {args.seconds}s per scenario; "
        "latencies as the locust client saw them (exact percentiles)\n"
    )
    (out / "summary.md").write_text(header + "\n" + table + "\n", encoding="utf-8")
    print()
    print(table)
    print(f"\nreports in {out}")
    bad = [
        r["scenario"]
        for r in rows
        if "error" in r or r["failures"] or r["locust_status"] != 0 or r["server_status"] != 0
    ]
    if bad:
        print(f"FAILED: {', '.join(bad)} (failures, a locust error, or an unclean server exit)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
