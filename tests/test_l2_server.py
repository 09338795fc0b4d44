"""The L2 tier through ``ratmemcached``: restarts, SIGKILL under write load, bad data dirs, a full
disk, and cold disk reads that must not stall other clients. Real servers, real clients, real
files."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheServerError

from killtest import kill_and_check, value_of
from servers import ENGINES, exchange, free_port, ratmemcached, ratmemcached_argv

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX only")


def l2_config(data_dir: Path, **l2: Any) -> dict[str, Any]:
    return {"l2": {"enable_l2_cache": True, "data_dir": data_dir.as_posix(), **l2}}


def client(srv: Any, timeout: float = 10.0) -> Client:
    return Client(srv.address, connect_timeout=timeout, timeout=timeout)


@pytest.mark.parametrize("strategy", ["write_through", "write_back"])
def test_a_graceful_restart_serves_everything(tmp_path: Path, strategy: str) -> None:
    cfg = l2_config(tmp_path / "data", l2_write_strategy=strategy)
    keys = [f"key{i}" for i in range(3000)]
    bigs = {f"big{i}": os.urandom(200_000) for i in range(3)}
    with ratmemcached("-m", "1", config=cfg) as srv:
        c = client(srv)
        for k in keys:
            assert c.set(k, value_of(k, size=500), noreply=False)
        for k, v in bigs.items():
            assert c.set(k, v, noreply=False)
        cas_before = max(int(c.gets(k)[1]) for k in keys[:50])
        stats = c.stats()
        assert int(stats[b"evictions"]) > 0, "1 MB of L1 can't hold 1.5 MB: the L2 must"
        c.close()
    assert srv.returncode == 0, srv.output()
    with ratmemcached("-m", "1", config=cfg) as srv:
        c = client(srv)
        got = c.get_many(keys)
        missing = [k for k in keys if got.get(k) != value_of(k, size=500)]
        assert not missing, f"{len(missing)} lost, e.g. {missing[:5]}"
        for k, v in bigs.items():
            assert c.get(k) == v
        assert c.set("after", b"x", noreply=False)
        assert int(c.gets("after")[1]) > cas_before, "CAS uniques stay unique across the restart"
        c.close()


@posix_only
def test_sigkill_under_write_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    r = kill_and_check(tmp_path / "data", seconds=1.0, threads=4, seed=1, min_acked=300)
    assert r.acked_sets >= 300 and r.acked_deletes > 0 and r.acked_file_values > 0, r
    assert r.ok, r


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ratmemcached_argv(*args, "-l", "127.0.0.1", "-p", str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1"},
    )


def refused(config: Path) -> str:
    """Starts the server, expects it to refuse with one line; returns that line."""
    proc = run_cli("--config", str(config))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def write_config(tmp_path: Path, data: Path, extra: str = "") -> Path:
    p = tmp_path / "l2.toml"
    p.write_text(f'[l2]\nenable_l2_cache = true\ndata_dir = "{data.as_posix()}"\n{extra}')
    return p


def make_database(data: Path) -> Path:
    """A real L2 file with some records, closed cleanly."""
    import ratmemcache

    with ratmemcache.Cache(l2_dir=data) as c:
        for i in range(3000):
            c.set(f"k{i}", os.urandom(300))
    return data / "ratmemcache-l2.redb"


def test_a_garbage_or_truncated_file_refuses_to_start_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "ratmemcache-l2.redb"
    db.write_bytes(b"not a database" * 5000)
    line = refused(write_config(tmp_path, data))
    assert str(db) in line and "corrupt" in line and 'on_corruption = "reset"' in line

    db.unlink()
    make_database(data)
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.truncate(size // 3)
    line = refused(write_config(tmp_path, data))
    assert str(db) in line

    # The user's choice: start fresh, keeping the bad file aside.
    cfg = write_config(tmp_path, data, 'on_corruption = "reset"\n')
    with ratmemcached(config=cfg) as srv:
        c = client(srv)
        assert c.get("k1") is None
        assert c.set("k1", b"new", noreply=False)
        c.close()
    aside = [p for p in data.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].stat().st_size == size // 3


@contextlib.contextmanager
def tmpfs(path: Path, *options: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (root only); skips the test where mounting fails."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("needs root on Linux to mount a tmpfs")
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join(options)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@posix_only  # Windows ignores a directory's read-only bit for new files
def test_a_read_only_data_dir_refuses_to_start_naming_it(tmp_path: Path) -> None:
    if sys.platform == "win32":  # as posix_only says; and it narrows os.geteuid for mypy
        pytest.skip("POSIX only")
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        line = refused(write_config(tmp_path, ro))
    else:
        # root ignores permission bits: a read-only mount is the honest test.
        with tmpfs(tmp_path / "ro", "ro", "size=1m") as ro:
            line = refused(write_config(tmp_path, ro))
    assert str(tmp_path / "ro") in line and "not writable" in line


def test_a_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    cfg = l2_config(tmp_path / "data")
    with ratmemcached(config=cfg):
        line = refused(write_config(tmp_path, tmp_path / "data"))
    assert "locked by another process" in line


def test_a_full_disk_is_a_server_error_and_the_server_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "size=4m") as disk:
        filler = disk / "filler"
        cfg = l2_config(disk / "data", sync="always", max_disk_size="64MB")
        with ratmemcached("-I", "2m", config=cfg) as srv:
            c = client(srv)
            assert c.set("small", b"kept in L1", noreply=False)
            filler.write_bytes(b"\0" * (2 << 20))
            failures = 0
            for i in range(40):
                try:
                    c.set(f"big{i}", os.urandom(300_000), noreply=False)
                except MemcacheServerError as e:
                    assert "out of disk space" in str(e)
                    failures += 1
                    break
            assert failures == 1, "the disk never filled"
            assert c.get("small") == b"kept in L1", "the server keeps serving"
            filler.unlink()
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert c.set("after", os.urandom(300_000), noreply=False)
                    break
                except MemcacheServerError:
                    assert time.monotonic() < deadline, "never recovered"
                    time.sleep(0.2)
            assert c.get("small") == b"kept in L1"
            c.close()
        assert "out of disk space" in srv.output() or "No space" in srv.output()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_cold_large_read_does_not_stall_other_clients(tmp_path: Path, engine: str) -> None:
    cfg = l2_config(tmp_path / "data", sync="never")
    big = os.urandom(8 << 20)
    with ratmemcached("-I", "16m", config=cfg, engine=engine) as srv:
        setup = client(srv, timeout=30)
        assert setup.set("big", big, noreply=False)
        assert setup.set("hot", b"h", noreply=False)
        setup.close()
        stop = threading.Event()
        big_times: list[float] = []

        def read_big() -> None:
            c = client(srv, timeout=30)
            while not stop.is_set():
                t0 = time.perf_counter()
                assert c.get("big") == big
                big_times.append(time.perf_counter() - t0)
            c.close()

        t = threading.Thread(target=read_big)
        t.start()
        small = client(srv)
        lat: list[float] = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline or len(big_times) < 3:
            t0 = time.perf_counter()
            assert small.get("hot") == b"h"
            lat.append(time.perf_counter() - t0)
        stop.set()
        t.join(30)
        small.close()
    median_big = statistics.median(big_times)
    median_small = statistics.median(lat)
    assert median_small < median_big / 5, (median_small, median_big)
    assert median_small < 0.02, f"small gets took {median_small * 1000:.1f} ms (median)"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("sync", ["never", "always"])
def test_pipelines_mixing_l1_hits_and_disk_reads_are_answered_in_order(
    tmp_path: Path, engine: str, sync: str
) -> None:
    """The engines answer L1 hits in their event loops and hand off only the requests that
    must wait on the disk (an L1 miss, a value file, a durable commit); a pipeline that mixes
    them, cut anywhere, is answered whole and in order, with the counters of one pass."""
    cfg = l2_config(tmp_path / "data", sync=sync, large_value_threshold="16KB")
    hot = {f"hot{i}": f"v{i}".encode() for i in range(20)}
    cold = {f"cold{i}": os.urandom(20_000 + i) for i in range(5)}  # over the threshold: L2 only
    filed = {"file0": os.urandom(100_000)}  # a file of its own
    with ratmemcached(config=cfg, engine=engine) as srv:
        c = client(srv)
        for k, v in {**hot, **cold, **filed}.items():
            assert c.set(k, v, noreply=False)
        before = c.stats()
        keys = [*hot, *cold, "absent", *filed, *hot]
        pipeline = b"".join(f"get {k}\r\n".encode() for k in keys)
        pipeline += b"get " + " ".join(keys).encode() + b"\r\n"
        pipeline += b"set late 0 0 4\r\nlate\r\nget late hot0\r\n"
        every = {**hot, **cold, **filed}

        def block(k: str) -> bytes:
            return b"VALUE %s 0 %d\r\n%s\r\n" % (k.encode(), len(every[k]), every[k])

        expected = b"".join(block(k) + b"END\r\n" if k in every else b"END\r\n" for k in keys)
        expected += b"".join(block(k) for k in keys if k in every) + b"END\r\n"
        expected += b"STORED\r\nVALUE late 0 4\r\nlate\r\n" + block("hot0") + b"END\r\n"
        with contextlib.closing(socket.create_connection(srv.address, timeout=30)) as sock:
            for cut in (len(pipeline), 7, 4096):  # whole, and in pieces
                for at in range(0, len(pipeline), cut):
                    sock.sendall(pipeline[at : at + cut])
                got = exchange(sock, b"", until=b"late\r\n" + block("hot0") + b"END\r\n")
                assert got == expected, (cut, got[:200])
        after = c.stats()
        rounds = 3
        gets = len(keys) * 2 + 2
        assert after[b"cmd_get"] - before[b"cmd_get"] == rounds * gets
        assert after[b"get_misses"] - before[b"get_misses"] == rounds * 2  # "absent", twice
        c.close()
