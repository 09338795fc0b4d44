"""A smoke run of the locust load tests (loadtests/run.py): one scenario for a few seconds.

locust is run as a subprocess, as ``make loadtest`` runs it: importing it here would patch this
process with gevent (and its warnings would fail pytest's warnings-as-errors).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent.parent / "loadtests" / "run.py"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None,
    reason="locust is not installed (pip install locust; `make venv` does it)",
)


def test_one_scenario_runs_without_failures(tmp_path: Path) -> None:
    out = tmp_path / "results"
    r = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--scenario",
            "get_heavy",
            "--seconds",
            "5",
            "--users",
            "4",
            "--max-requests",
            "200000",
            "--out",
            str(out),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=100,
    )
    log = (out / "get_heavy.log").read_text(errors="replace") if out.exists() else ""
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n--- locust log ---\n{log}"
    for name in (
        "get_heavy_stats.csv",
        "get_heavy_stats_history.csv",
        "get_heavy_failures.csv",
        "get_heavy.html",
        "get_heavy_latency.json",
        "summary.md",
    ):
        assert (out / name).is_file(), (
            f"{name} missing; got {sorted(p.name for p in out.iterdir())}"
        )
    with open(out / "get_heavy_stats.csv", newline="", encoding="utf-8") as f:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
    total = rows[("", "Aggregated")]
    assert int(total["Request Count"]) > 100, total
    assert int(total["Failure Count"]) == 0, total
    for op in ("get", "get_many", "set"):
        assert int(rows[(op, "get_heavy")]["Request Count"]) > 0, op
    latency = json.loads((out / "get_heavy_latency.json").read_text())
    assert latency["counts"]["hits"] > 0
    assert latency["counts"].get("misses", 0) == 0  # preloaded, and -m leaves room for all
    assert 0 < latency["all"]["p50_ms"] <= latency["all"]["p99_ms"]
    assert "<html" in (out / "get_heavy.html").read_text(errors="replace").lower()
    assert "| get_heavy | 4 |" in r.stdout
