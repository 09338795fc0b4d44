"""Kill ``ratmemcached`` with SIGKILL under a mixed write load and check what survived.

Used by the test suite (one short run) and by ``loadtests/kill_l2.py`` (many runs at random
points). Some values are large enough to live in files of their own (``[l2] file_threshold``).
The server runs with the L2 on and ``sync = "always"``, so the contract is strict: every
write the server acknowledged is found after the restart, with its exact value; every
acknowledged delete stays deleted; a key overwritten in a loop holds its last acknowledged
version or a later one (a write in flight may or may not have landed), never a torn value.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymemcache.client.base import Client

from servers import ratmemcached, start_ratmemcached

__all__ = ["KillResult", "kill_and_check", "value_of"]


#: Values from this size on are incompressible, so the L2 keeps them in files of their own.
FILE_VALUE = 64 * 1024


def value_of(key: str, version: int = 0, size: int = 200) -> bytes:
    """A value that names its key and version, so a torn or misplaced value is detectable. Large
    ones go on with bytes drawn from a generator seeded by the name (LZ4 can't shrink them)."""
    seed = f"{key}:{version}:".encode()
    if size >= FILE_VALUE:
        return seed + random.Random(seed).randbytes(size - len(seed))
    return (seed * (size // len(seed) + 1))[:size]


@dataclass
class _Acked:
    sets: dict[str, int] = field(default_factory=dict)  # key -> size
    hot: dict[str, int] = field(default_factory=dict)  # key -> last acknowledged version
    deleted: set[str] = field(default_factory=set)
    # A delete was sent but its reply never came (the kill): the key may or may not be gone.
    deleting: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class KillResult:
    acked_sets: int
    acked_deletes: int
    acked_overwrites: int
    #: Acknowledged sets large enough for a file of their own.
    acked_file_values: int
    lost: list[str]
    resurrected: list[str]
    stale_or_torn: list[str]
    killed_after: float
    restart_seconds: float

    @property
    def ok(self) -> bool:
        return not (self.lost or self.resurrected or self.stale_or_torn)


def _load(srv: Any, tid: int, acked: _Acked, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    try:
        c = Client(srv.address, connect_timeout=5, timeout=5)
        i = 0
        while not stop.is_set():
            key = f"t{tid}-{i}"
            # some go to the L2 only, a few of those to files of their own
            roll = rng.random()
            if roll < 0.03:
                size = rng.randint(FILE_VALUE, 300_000)
            elif roll < 0.1:
                size = 20_000
            else:
                size = rng.randint(10, 2000)
            if c.set(key, value_of(key, size=size), noreply=False):
                with acked.lock:
                    acked.sets[key] = size
            gone = f"t{tid}-{i - 2}"
            if i % 5 == 4 and gone in acked.sets:
                with acked.lock:
                    acked.deleting.add(gone)
                if c.delete(gone, noreply=False):
                    with acked.lock:
                        acked.sets.pop(gone, None)
                        acked.deleted.add(gone)
                with acked.lock:
                    acked.deleting.discard(gone)
            hot = f"hot{tid}"
            if c.set(hot, value_of(hot, i), noreply=False):
                with acked.lock:
                    acked.hot[hot] = i
            i += 1
    except Exception:  # the server was killed under us: expected
        pass


def _check(c: Client, acked: _Acked) -> tuple[list[str], list[str], list[str]]:
    lost: list[str] = []
    stale: list[str] = []
    keys = list(acked.sets)
    for i in range(0, len(keys), 100):
        got = c.get_many(keys[i : i + 100])
        for k in keys[i : i + 100]:
            if got.get(k) != value_of(k, size=acked.sets[k]):
                if k in acked.deleting and k not in got:
                    continue  # its delete was in flight when the server died
                lost.append(k)
    deleted = list(acked.deleted)
    resurrected = [k for i in range(0, len(deleted), 100) for k in c.get_many(deleted[i : i + 100])]
    for k, version in acked.hot.items():
        v = c.get(k)
        stored = int(v.split(b":")[1]) if v else -1
        if v is None or stored < version or v != value_of(k, stored):
            stale.append(k)
    return lost, resurrected, stale


def kill_and_check(
    data_dir: Path, *, seconds: float, threads: int = 4, seed: int = 0, min_acked: int = 100
) -> KillResult:
    """Loads a fresh server on ``data_dir`` for about ``seconds`` (at least until ``min_acked``
    writes were acknowledged), SIGKILLs it, restarts it on the same data and checks."""
    if sys.platform == "win32":
        raise NotImplementedError("SIGKILL: POSIX only")
    cfg = {"l2": {"enable_l2_cache": True, "data_dir": data_dir.as_posix(), "sync": "always"}}
    srv = start_ratmemcached("-m", "4", config=cfg)
    acked = _Acked()
    stop = threading.Event()
    workers = [
        threading.Thread(target=_load, args=(srv, t, acked, stop, seed * 100 + t), daemon=True)
        for t in range(threads)
    ]
    t0 = time.monotonic()
    try:
        for w in workers:
            w.start()
        while time.monotonic() - t0 < seconds or (
            len(acked.sets) < min_acked and time.monotonic() - t0 < seconds + 30
        ):
            time.sleep(0.01)
        srv.send_signal(signal.SIGKILL)
        srv.wait()
        killed_after = time.monotonic() - t0
        stop.set()
        for w in workers:
            w.join(10)
    finally:
        stop.set()
        srv.stop()
        srv.cleanup()
    if srv.returncode != -signal.SIGKILL:
        raise AssertionError(f"the server was not killed: {srv.returncode}\n{srv.output()}")
    t1 = time.monotonic()
    with ratmemcached("-m", "4", config=cfg) as again:
        restart = time.monotonic() - t1
        c = Client(again.address, connect_timeout=10, timeout=30)
        lost, resurrected, stale = _check(c, acked)
        c.close()
    return KillResult(
        acked_sets=len(acked.sets),
        acked_deletes=len(acked.deleted),
        acked_overwrites=sum(acked.hot.values()),
        acked_file_values=sum(1 for size in acked.sets.values() if size >= FILE_VALUE),
        lost=lost,
        resurrected=resurrected,
        stale_or_torn=stale,
        killed_after=killed_after,
        restart_seconds=restart,
    )
