"""The HTTP admin listener (``[admin] http_port``, ``--admin-port``) on both I/O engines.

A real ``ratmemcached`` is driven with pymemcache; ``/metrics`` is parsed with prometheus_client's
own parser and checked against that traffic, ``/api/stats`` against the same numbers, and the
status page is rendered by a real headless chromium (a screenshot, and its DOM after the page's
JavaScript ran).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymemcache.client.base import Client

from servers import ENGINES, ServerProcess, free_port, ratmemcached, wait_for_port

prometheus_parser = pytest.importorskip("prometheus_client.parser")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _fetch(port: int, path: str, timeout: float = 10.0) -> tuple[int, str, bytes]:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by (name, sorted labels)."""
    out = {}
    for family in prometheus_parser.text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _traffic(srv: ServerProcess) -> None:
    """10 sets, 12 hits, 4 misses (in 3 get requests and 1 multi-get), 2 deletes, 1 incr,
    1 touch."""
    c = Client(srv.address, timeout=10)
    try:
        for i in range(10):
            c.set(f"k{i}", b"v" * 100)
        for i in range(10):
            assert c.get(f"k{i}") == b"v" * 100  # 10 requests, 10 hits
        assert c.get("absent1") is None  # 11th
        assert c.get("absent2") is None  # 12th
        got = c.get_many(["k0", "k1", "absent3", "absent4"])  # 13th request: 2 hits, 2 misses
        assert set(got) == {"k0", "k1"}
        assert c.delete("k9", noreply=False) is True
        assert c.delete("absent5", noreply=False) is False
        c.set("n", b"5")
        assert c.incr("n", 2) == 7
        assert c.touch("k0", 100, noreply=False) is True
    finally:
        c.close()


@pytest.fixture(params=ENGINES)
def admin_server(request: pytest.FixtureRequest) -> Iterator[tuple[ServerProcess, int]]:
    port = free_port()
    with ratmemcached("--admin-port", str(port), engine=request.param) as srv:
        wait_for_port("127.0.0.1", port, srv.proc)
        yield srv, port
    # SIGTERM stops the admin listener with the rest: a clean exit, and nothing listens on its
    # port any more (SO_REUSEADDR, as a restarted server binds: TIME_WAIT is not a listener)
    assert srv.returncode == 0, srv.output()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_metrics_match_the_traffic(admin_server: tuple[ServerProcess, int]) -> None:
    srv, port = admin_server
    _traffic(srv)
    status, ctype, body = _fetch(port, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    s = _samples(body.decode())

    # memcached_exporter's names, so its dashboards work as they are
    assert _value(s, "memcached_commands_total", command="get", status="hit") == 12
    assert _value(s, "memcached_commands_total", command="get", status="miss") == 4
    assert _value(s, "memcached_commands_total", command="delete", status="hit") == 1
    assert _value(s, "memcached_commands_total", command="delete", status="miss") == 1
    assert _value(s, "memcached_commands_total", command="incr", status="hit") == 1
    assert _value(s, "memcached_commands_total", command="touch", status="hit") == 1
    assert _value(s, "memcached_commands_total", command="set", status="hit") == 11
    assert _value(s, "memcached_current_items") == 10  # k0..k8 and n
    assert _value(s, "memcached_items_evicted_total") == 0
    assert _value(s, "memcached_current_connections") >= 0
    assert _value(s, "memcached_connections_total") >= 1
    assert _value(s, "memcached_limit_bytes") == 64 << 20
    assert 0 < _value(s, "memcached_current_bytes") < 64 << 20
    assert _value(s, "memcached_read_bytes_total") > 0
    assert _value(s, "memcached_version", version="1.6.18") == 1

    # the tiers: the L1 only (no L2 configured)
    assert _value(s, "ratmemcache_tier_items", tier="l1") == 10
    assert _value(s, "ratmemcache_tier_bytes", tier="l1") == _value(s, "memcached_current_bytes")
    assert ("ratmemcache_tier_items", (("tier", "l2"),)) not in s

    # the latency histograms: one request each
    hist = "ratmemcache_command_duration_seconds"
    expected = {"get": 13, "set": 11, "delete": 2, "incr_decr": 1, "touch": 1}
    for kind, n in expected.items():
        assert _value(s, f"{hist}_count", command=kind) == n, kind
        assert _value(s, f"{hist}_bucket", command=kind, le="+Inf") == n
        assert 0 < _value(s, f"{hist}_sum", command=kind) < n * 1.0  # well under 1 s each
    # buckets are cumulative, with the log2 bounds (256 ns ... about 17 s)
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in s.items()
        if name == f"{hist}_bucket" and dict(labels)["command"] == "get"
    )
    les, counts = [le for le, _ in buckets], [c for _, c in buckets]
    assert les[0] == pytest.approx(256e-9) and les[-1] == float("inf") and len(les) == 28
    assert les[-2] == pytest.approx(2**34 / 1e9)
    assert counts == sorted(counts) and counts[-1] == 13
    info = [k for k in s if k[0] == "ratmemcache_info"]
    assert len(info) == 1


def test_api_stats_and_the_other_paths(admin_server: tuple[ServerProcess, int]) -> None:
    srv, port = admin_server
    _traffic(srv)
    status, ctype, body = _fetch(port, "/api/stats")
    assert status == 200 and ctype == "application/json"
    d = json.loads(body)
    assert d["get_hits"] == 12 and d["get_misses"] == 4
    assert d["hit_ratio"] == pytest.approx(0.75)
    assert d["l1"]["items"] == 10 and d["l1"]["limit"] == 64 << 20
    assert d["l2"] is None
    assert d["commands"]["get"]["count"] == 13
    assert d["commands"]["set"]["p99_seconds"] > 0
    assert d["io_engine"] in ENGINES
    assert d["stats"]["cmd_get"] == 16

    status, ctype, page = _fetch(port, "/")
    assert status == 200 and ctype.startswith("text/html")
    assert b'id="hit-ratio"' in page and b"/api/stats" in page
    assert b"http://" not in page and b"https://" not in page  # nothing external

    assert _fetch(port, "/nope")[0] == 404


def test_l2_tier_metrics(tmp_path: Path) -> None:
    port = free_port()
    config = {"l2": {"enable_l2_cache": True, "data_dir": str(tmp_path / "l2")}}
    with ratmemcached("--admin-port", str(port), config=config) as srv:
        wait_for_port("127.0.0.1", port, srv.proc)
        c = Client(srv.address, timeout=10)
        for i in range(5):
            c.set(f"k{i}", b"x" * 50)
        c.close()
        deadline = time.monotonic() + 60
        while True:  # the L2 writer commits in the background
            s = _samples(_fetch(port, "/metrics")[2].decode())
            if _value(s, "ratmemcache_tier_items", tier="l2") == 5 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert _value(s, "ratmemcache_tier_items", tier="l2") == 5
        assert _value(s, "ratmemcache_tier_bytes", tier="l2") > 0
        assert _value(s, "ratmemcache_l2_writes_total") >= 5
        d = json.loads(_fetch(port, "/api/stats")[2])
        assert d["l2"]["items"] == 5 and d["l2"]["file_bytes"] > 0


@pytest.mark.parametrize("engine", ENGINES)
def test_admin_port_in_use_is_one_startup_line(engine: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = subprocess.run(
            [
                *(sys.executable, "-m", "ratmemcache", "--engine", engine, "-p", "0"),
                *("--admin-port", str(port)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert p.returncode == 1, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "error" in ln]
    assert lines == [
        f"ratmemcached: error: [admin] cannot listen on 127.0.0.1:{port} for HTTP: address "
        "already in use (choose another with --admin-port)"
    ], p.stderr


def test_bad_admin_port_is_a_config_error() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "ratmemcache", "--admin-port", "70000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2
    assert "[admin] http_port" in p.stderr or "--admin-port" in p.stderr
    assert "between 0 and 65535" in p.stderr


# -- the status page in a real browser ---------------------------------------------------------


def _chromium(
    *args: str, budget_ms: int = 4000, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Headless chromium on a page, bounded by ``timeout`` seconds of real time."""
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",  # tests may run as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1200,900",
            f"--virtual-time-budget={budget_ms}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def _background_gets(srv: ServerProcess) -> Iterator[None]:
    """Gets that hit four times in five, until the block ends (so the page has live rates)."""
    stop = threading.Event()

    def run() -> None:
        c = Client(srv.address, timeout=10)
        try:
            i = 0
            while not stop.is_set():
                c.get(f"k{i % 5}" if i % 5 else "absent")
                i += 1
                time.sleep(0.002)
        finally:
            c.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(10)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_status_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    port = free_port()
    with ratmemcached("--admin-port", str(port), "-m", "1") as srv:
        wait_for_port("127.0.0.1", port, srv.proc)
        _traffic(srv)
        url = f"http://127.0.0.1:{port}/"

        dom = _chromium("--dump-dom", url)
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout
        # the page's JavaScript fetched /api/stats and filled in real numbers
        assert re.search(r'id="hit-ratio"[^>]*>75\.0%<', html), html[:3000]
        assert re.search(r'id="items"[^>]*>10<', html)
        assert re.search(r"<td>get</td><td>13</td>", html)
        assert re.search(r'id="l1-bytes"[^>]*>[0-9.]+ KB of 1\.0 MB', html)
        assert "off ([l2] enable_l2_cache = false)" in html
        assert re.search(r'<svg id="ratio-chart"[^>]*>.*<path ', html, re.S)
        samples = re.search(r'data-samples="(\d+)"', html)
        assert samples, html[:3000]
        assert int(samples.group(1)) >= 2  # it keeps polling

        # the screenshot, with some memory in use and traffic going on (so the per-second
        # line and the rates move)
        c = Client(srv.address, timeout=10)
        for i in range(80):
            c.set(f"big{i}", b"b" * 4000)
        c.close()
        shot = tmp_path / "status-page.png"
        with _background_gets(srv):
            time.sleep(1)
            r = _chromium(f"--screenshot={shot}", url, budget_ms=8000)
        assert r.returncode == 0, r.stderr[-2000:]
        assert shot.stat().st_size > 10_000
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"status page screenshot: {shot}")
        if os.environ.get("RATMEMCACHE_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(shot, ROOT / "docs" / "img" / "status-page.png")
