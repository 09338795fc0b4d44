"""SIGKILL ``ratmemcached`` at random points under a mixed write load, again and again.

Each run starts a server with the L2 on and ``sync = "always"``, drives 4 writer threads (small
and large sets, some large enough for files of their own, deletes, a hot key overwritten in a
loop), kills it with SIGKILL after a random
0.3-3 s, restarts it on the same data dir and checks every acknowledged write (see
``tests/killtest.py`` for the contract). Loopback only; each run is bounded in time.

    python loadtests/kill_l2.py --runs 20
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from killtest import kill_and_check


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--min-seconds", type=float, default=0.3)
    ap.add_argument("--max-seconds", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    print(f"seed {args.seed}; {args.runs} runs; {args.threads} writer threads")
    print(
        "| run | killed after (s) | acked sets | of them in files | acked deletes | lost "
        "| resurrected | stale/torn | restart (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    failures = 0
    totals = [0, 0, 0, 0]
    for run in range(1, args.runs + 1):
        seconds = rng.uniform(args.min_seconds, args.max_seconds)
        with tempfile.TemporaryDirectory(prefix="kill-l2-") as d:
            r = kill_and_check(
                Path(d) / "data", seconds=seconds, threads=args.threads, seed=run, min_acked=1
            )
        failures += not r.ok
        totals[0] += r.acked_sets
        totals[1] += r.acked_deletes
        totals[2] += len(r.lost) + len(r.resurrected) + len(r.stale_or_torn)
        totals[3] += r.acked_file_values
        print(
            f"| {run} | {r.killed_after:.2f} | {r.acked_sets} | {r.acked_file_values} | "
            f"{r.acked_deletes} | "
            f"{len(r.lost)} | {len(r.resurrected)} | {len(r.stale_or_torn)} | "
            f"{r.restart_seconds:.2f} |",
            flush=True,
        )
        if not r.ok:
            print(
                f"  lost {r.lost[:5]} resurrected {r.resurrected[:5]} stale {r.stale_or_torn[:5]}"
            )
    print(
        f"\ntotal: {totals[0]} acknowledged sets ({totals[3]} in files), "
        f"{totals[1]} acknowledged deletes, "
        f"{totals[2]} violations, {failures} failed runs of {args.runs}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
