"""Several Python threads on one cache: no exceptions, no lost updates, consistent final state."""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import ratmemcache
from ratmemcache import Cache

THREADS = 8


@pytest.fixture(autouse=True)
def frequent_thread_switches() -> Iterator[None]:
    """Makes the interpreter switch threads far more often, so the operations interleave."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


def run_threads(target: Callable[[int], Any], n: int = THREADS) -> list[Any]:
    """Runs ``target(i)`` in ``n`` threads started together; re-raises the first error."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as e:  # reported below, in the main thread
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    if errors:
        raise errors[0]
    return results


def test_incr_race_loses_no_increments() -> None:
    c = Cache(cleanup_interval=0)
    c.set("counter", b"0")
    per_thread = 2000

    def work(i: int) -> list[int]:
        return [c.incr("counter") for _ in range(per_thread)]  # type: ignore[misc]

    results = run_threads(work)
    total = THREADS * per_thread
    assert c.get("counter") == str(total).encode()
    assert c.stats()["incr_hits"] == total
    # every increment returned a distinct value: no two threads saw the same result
    seen = [v for r in results for v in r]
    assert sorted(seen) == list(range(1, total + 1))
    c.check_invariants()


def test_incr_decr_race_balances() -> None:
    c = Cache(cleanup_interval=0)
    c.set("n", b"1000000")

    def work(i: int) -> None:
        for _ in range(1000):
            if i % 2:
                c.incr("n", 3)
            else:
                c.decr("n", 3)

    run_threads(work)
    assert int(c.get("n")) == 1000000  # type: ignore[arg-type]


def test_cas_retry_loop_loses_no_updates() -> None:
    c = Cache(serializer=None, cleanup_interval=0)
    c.set("n", b"0")
    per_thread = 300

    def work(i: int) -> int:
        retries = 0
        for _ in range(per_thread):
            while True:
                value, cas = c.gets("n")  # type: ignore[misc]
                if c.cas("n", str(int(value) + 1).encode(), cas):
                    break
                retries += 1
        return retries

    retries = run_threads(work)
    assert c.get("n") == str(THREADS * per_thread).encode()
    s = c.stats()
    assert s["cas_hits"] == THREADS * per_thread
    assert s["cas_badval"] == sum(retries)


def test_add_race_has_exactly_one_winner() -> None:
    c = Cache(cleanup_interval=0)
    rounds = 200

    def work(i: int) -> list[bool]:
        return [c.add(f"lock{r}", str(i).encode()) for r in range(rounds)]

    results = run_threads(work)
    for r in range(rounds):
        winners = [i for i in range(THREADS) if results[i][r]]
        assert len(winners) == 1, r
        assert c.get(f"lock{r}") == str(winners[0]).encode()


def test_private_keys_end_in_the_last_written_state() -> None:
    c = Cache(cleanup_interval=0)

    def work(i: int) -> dict[str, bytes]:
        rng = random.Random(i)
        mine: dict[str, bytes] = {}
        for step in range(3000):
            k = f"t{i}-k{rng.randrange(50)}"
            op = rng.random()
            if op < 0.5:
                v = f"{i}:{step}".encode()
                c.set(k, v)
                mine[k] = v
            elif op < 0.8:
                assert c.get(k) == mine.get(k)
            elif op < 0.9:
                assert c.delete(k) == (k in mine)
                mine.pop(k, None)
            else:
                assert (k in c) == (k in mine)
        return mine

    results = run_threads(work)
    expected: dict[str, bytes] = {}
    for r in results:
        expected.update(r)
    assert set(c.keys()) == set(expected)
    assert c.get_many(list(expected)) == expected
    assert len(c) == len(expected)
    c.check_invariants()


def test_shared_keys_hold_only_values_that_were_written() -> None:
    c = Cache(cleanup_interval=0)
    keys = [f"shared{i}" for i in range(20)]
    gets = [0] * THREADS

    def work(i: int) -> None:
        rng = random.Random(100 + i)
        for _ in range(4000):
            k = rng.choice(keys)
            op = rng.random()
            if op < 0.4:
                c.set(k, f"from-{i}".encode() * rng.randrange(1, 4))
            elif op < 0.8:
                gets[i] += 1
                v = c.get(k)
                assert v is None or (v.startswith(b"from-") and len(v) % 6 == 0)
            elif op < 0.9:
                c.delete(k)
            else:
                c.append(k, b"")

    run_threads(work)
    s = c.stats()
    assert s["gets"] == sum(gets)
    assert s["hits"] + s["misses"] == sum(gets)
    for k in list(c):
        v = c.get(k)
        assert v is not None and v[:5] == b"from-"
    c.check_invariants()


@pytest.mark.parametrize("policy", ratmemcache.POLICIES)
def test_eviction_under_contention_keeps_limits(policy: str) -> None:
    limit = 256 * 1024
    c = Cache(max_memory=limit, max_entries=2048, shards=4, eviction=policy, cleanup_interval=0)

    def work(i: int) -> None:
        rng = random.Random(i)
        for step in range(2500):
            k = f"k{rng.randrange(5000)}"
            if rng.random() < 0.6:
                c.set(k, rng.randbytes(rng.randrange(1, 600)))
            else:
                c.get(k)
            if step % 500 == 0:
                assert c.stats()["bytes"] <= limit

    run_threads(work)
    s = c.stats()
    assert s["bytes"] <= limit
    assert s["curr_items"] <= 2048
    assert s["evictions"] > 0
    c.check_invariants()


def test_ttl_and_sweep_under_contention() -> None:
    clock = ratmemcache.ManualClock(1_000.0)
    c = Cache(clock=clock, cleanup_interval=0)

    def work(i: int) -> None:
        rng = random.Random(i)
        for _ in range(2000):
            r = rng.random()
            k = f"k{rng.randrange(500)}"
            if r < 0.5:
                c.set(k, b"v", ttl=rng.choice([0.5, 1, 2]))
            elif r < 0.8:
                c.get(k)
            elif r < 0.95:
                c.touch(k, 1)
            elif i == 0:
                clock.advance(0.25)
            else:
                c.sweep_expired()

    run_threads(work)
    c.check_invariants()
    clock.advance(10)
    assert c.keys() == []
    c.sweep_expired()
    assert len(c) == 0
    assert c.stats()["bytes"] == 0


def test_clear_and_stats_while_writing() -> None:
    c = Cache(cleanup_interval=0)
    stop = threading.Event()

    def writer(i: int) -> None:
        n = 0
        while not stop.is_set() and n < 20_000:
            c.set(f"w{i}-{n % 100}", b"x" * 10)
            n += 1

    def other(i: int) -> None:
        for _ in range(200):
            c.clear()
            s = c.stats()
            assert s["curr_items"] >= 0 and s["bytes"] >= 0
            c.check_invariants()
        stop.set()

    run_threads(lambda i: other(i) if i == 0 else writer(i), n=4)
    c.check_invariants()
    s = c.stats()
    assert s["curr_items"] == len(c) == len(c.keys())


def test_close_while_other_threads_use_the_cache() -> None:
    c = Cache(cleanup_interval=0.01)
    closed_seen = [False] * THREADS

    def work(i: int) -> None:
        for n in range(5000):
            if i == 0 and n == 100:
                c.close()
            try:
                c.set(f"k{i}-{n}", b"v")
                c.get(f"k{i}-{n}")
            except ratmemcache.CacheClosedError:
                closed_seen[i] = True
                return

    run_threads(work)
    assert c.closed
    assert closed_seen[0]
    with pytest.raises(ratmemcache.CacheClosedError):
        c.set("k", b"v")


def test_serializer_under_contention() -> None:
    import pickle

    c = Cache(serializer=pickle, cleanup_interval=0)

    def work(i: int) -> None:
        for n in range(1000):
            c.set(f"k{i}", {"thread": i, "n": n})
            got = c.get(f"k{i}")
            assert got == {"thread": i, "n": n}

    run_threads(work)
    assert {c.get(f"k{i}")["thread"] for i in range(THREADS)} == set(range(THREADS))  # type: ignore[index]
