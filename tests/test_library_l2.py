"""The library's L2 tier: ``Cache(l2_dir=...)`` on a real redb file in a temporary directory."""

from __future__ import annotations

import os
import pickle
import threading
import time
from pathlib import Path

import pytest

import ratmemcache
from ratmemcache.errors import ConfigError, PersistenceError

LARGE = 10 * 1024


def open_cache(path: Path, **kw: object) -> ratmemcache.Cache:
    kw.setdefault("l2_sync", "never")
    return ratmemcache.Cache(l2_dir=path, **kw)  # type: ignore[arg-type]


def test_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    with open_cache(tmp_path, serializer=pickle) as c:
        c.set("text-key", b"v1")
        c.set(b"bytes-key", b"v2", ttl=3600)
        c.set("obj", {"a": [1, 2]})
        c.set("big", os.urandom(LARGE * 3))
        big = c.get("big")
        assert c.stats()["bytes"] < LARGE, "the large value took no L1 memory"
    c = open_cache(tmp_path, serializer=pickle)
    try:
        assert c.get("text-key") == b"v1"
        assert c.get(b"bytes-key") == b"v2"
        assert 3500 < (c.ttl(b"bytes-key") or 0) <= 3600
        assert c.get("obj") == {"a": [1, 2]}
        assert c.get("big") == big
        assert sorted(map(repr, c.keys())) == sorted(
            map(repr, ["text-key", b"bytes-key", "obj", "big"])
        ), "str keys come back as str"
        assert len(c) == 4
        stats = c.stats()
        assert stats["l2_items"] == 4 and stats["l2_errors"] == 0
    finally:
        c.close()


def test_commands_behave_the_same_in_either_tier(tmp_path: Path) -> None:
    with open_cache(tmp_path, max_memory="1MB") as c:
        for key, value in [("small", b"12"), ("large", b"7" * (LARGE + 1))]:
            c.set(key, value)
            assert not c.add(key, b"x")
            assert c.append(key, b"0")
            got = c.gets(key)
            assert got is not None
            assert got[0] == value + b"0"
            assert not c.cas(key, b"stale", got[1] + 1)
            assert c.cas(key, b"5", got[1])
            assert c.incr(key, 2) == 7
            assert c.touch(key, 100)
            assert c.delete(key)
            assert c.get(key) is None and key not in c
        c.check_invariants()


def test_write_back_keeps_what_the_l1_evicts(tmp_path: Path) -> None:
    value = b"w" * 1000
    with open_cache(tmp_path, max_memory="64KB", l2_write_strategy="write_back") as c:
        for i in range(500):
            c.set(f"k{i}", value)
        s = c.stats()
        assert s["evictions"] > 400 and s["l2_demotions"] > 400, s
        assert all(c.get(f"k{i}") == value for i in range(500))
    with open_cache(tmp_path, l2_write_strategy="write_back") as c:
        assert all(c.get(f"k{i}") == value for i in range(500)), "close wrote the L1 down"


def test_flush_makes_writes_durable(tmp_path: Path) -> None:
    with open_cache(tmp_path, l2_sync="never") as c:
        c.set("a", b"1")
        c.flush()
        assert c.stats()["l2_commits"] >= 1


def test_expired_items_are_gone_after_a_restart(tmp_path: Path) -> None:
    clock = ratmemcache.ManualClock()
    with open_cache(tmp_path, clock=clock) as c:
        c.set("short", b"1", ttl=10)
        c.set("long", b"2", ttl=1000)
    clock.advance(11)
    with open_cache(tmp_path, clock=clock) as c:
        assert c.get("short") is None
        assert c.get("long") == b"2"
        assert c.sweep_expired() == 0, "the read already deleted it"


def test_bad_arguments_and_bad_dirs_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="l2_sync"):
        open_cache(tmp_path, l2_sync="sometimes")
    with pytest.raises(ConfigError, match="l2_write_strategy"):
        open_cache(tmp_path, l2_write_strategy="eventually")
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(PersistenceError) as err:
        open_cache(file / "sub")
    assert isinstance(err.value, OSError)
    assert str(file) in str(err.value)
    with open_cache(tmp_path / "d"), pytest.raises(PersistenceError, match="locked"):
        open_cache(tmp_path / "d")


def test_a_corrupt_file_is_refused_or_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "ratmemcache-l2.redb").write_bytes(b"\x00garbage" * 10_000)
    with pytest.raises(PersistenceError, match=r"corrupt.*on_corruption"):
        open_cache(tmp_path)
    with open_cache(tmp_path, on_corruption="reset") as c:
        assert len(c) == 0
        c.set("fresh", b"1")
    assert [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]


def test_disk_reads_release_the_gil(tmp_path: Path) -> None:
    big = os.urandom(8 << 20)
    with open_cache(tmp_path, compression=False) as c:
        c.set("big", big)
        c.set("hot", b"x")
        done = threading.Event()
        reads = 0

        def read_big() -> None:
            nonlocal reads
            while not done.is_set():
                assert c.get("big") == big
                reads += 1

        t = threading.Thread(target=read_big)
        t.start()
        hot = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            c.get("hot")
            hot += 1
        done.set()
        t.join()
        assert reads >= 1
        assert hot > 10_000, f"{hot} L1 hits in 1s beside {reads} large disk reads"


def test_the_warm_up_logs_its_progress(tmp_path: Path) -> None:
    """The core's log records (through pyo3-log) say when the warm-up starts and how it ended.

    In a fresh interpreter: pyo3-log caches each logger's level at its first record."""
    import subprocess
    import sys

    script = f"""
import logging, time, ratmemcache
logging.basicConfig(level=logging.INFO, format="%(name)s|%(message)s")
c = ratmemcache.Cache(l2_dir={str(tmp_path)!r})
c.set_many({{f"k{{i}}": b"v" * 10 for i in range(1000)}})
c.close()
c = ratmemcache.Cache(l2_dir={str(tmp_path)!r})
deadline = time.monotonic() + 30
while c.stats()["l2_warmup_running"] and time.monotonic() < deadline:
    time.sleep(0.02)
c.close()
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = [
        ln.split("|", 1)[1] for ln in p.stderr.splitlines() if ln.startswith("ratmemcache.tiered|")
    ]
    assert "L2 warm-up: loading up to 1000 items into L1, most recent first" in lines, p.stderr
    done = [m for m in lines if m.startswith("L2 warm-up done: ")]
    assert len(done) == 1 and done[0].startswith(
        "L2 warm-up done: 1000/1000 items read, 1000 loaded into L1, in "
    ), p.stderr


def test_a_session_hands_off_only_the_requests_that_must_wait_on_the_disk(tmp_path: Path) -> None:
    """``Engine.session(hands_off_waits=True)``, as the anyio server makes them: an L1 hit is
    answered in the feed; an L1 miss stops the feed with ``must_wait`` (and ``has_more``) set,
    its bytes still buffered, and the next feed (run in a worker thread by the server) answers
    it."""
    from ratmemcache._core import Engine

    with open_cache(tmp_path, large_value_threshold=LARGE) as c:
        c.set(b"hot", b"h")
        c.set(b"cold", b"c" * (LARGE + 1))  # over the threshold: on disk only
        session = Engine(c).session(hands_off_waits=True)
        assert session.feed(b"get hot\r\n") == (b"VALUE hot 0 1\r\nh\r\nEND\r\n", False)
        assert not session.must_wait and not session.has_more
        reply, close = session.feed(b"get hot\r\nget cold\r\nget hot\r\n")
        assert (reply, close) == (b"VALUE hot 0 1\r\nh\r\nEND\r\n", False)
        assert session.must_wait and session.has_more
        assert session.buffered == len(b"get cold\r\nget hot\r\n")
        reply, _ = session.feed(b"")
        assert reply == b"VALUE cold 0 %d\r\n%s\r\nEND\r\nVALUE hot 0 1\r\nh\r\nEND\r\n" % (
            LARGE + 1,
            b"c" * (LARGE + 1),
        )
        assert not session.must_wait and not session.has_more
        # Without hands_off_waits (the default), a feed waits where it must.
        plain = Engine(c).session()
        reply, _ = plain.feed(b"get absent\r\nget hot\r\n")
        assert reply == b"END\r\nVALUE hot 0 1\r\nh\r\nEND\r\n"
        assert not plain.must_wait
        session.close()
        plain.close()
