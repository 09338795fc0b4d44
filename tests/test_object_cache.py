"""``ratmemcache.ObjectCache``: Python objects by reference, dict semantics, bounds, TTLs."""

from __future__ import annotations

import gc
import math
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import ratmemcache
from ratmemcache import ConfigError, ManualClock, ObjectCache

POLICIES = ratmemcache.POLICIES


@pytest.fixture
def oc(clock: ManualClock) -> Iterator[ObjectCache[Any, Any]]:
    c: ObjectCache[Any, Any] = ObjectCache(max_entries=1000, clock=clock)
    yield c
    c.check_invariants()


# --------------------------------------------------------------------------------------------
# the mapping API


def test_values_are_kept_by_reference(oc: ObjectCache[Any, Any]) -> None:
    v = {"a": [1, 2]}
    oc["k"] = v
    assert oc["k"] is v
    assert oc.get("k") is v
    oc.set("k2", v)
    assert oc["k2"] is v


def test_keys_compare_like_a_dict(oc: ObjectCache[Any, Any]) -> None:
    oc[1] = "one"
    assert oc[1.0] == "one"
    assert oc[True] == "one"
    oc[1.0] = "float one"  # the same key: replaced, the first key object kept (as in a dict)
    assert len(oc) == 1
    assert oc.keys() == [1]
    assert type(oc.keys()[0]) is int
    oc[(1, "a")] = "tuple"
    oc[frozenset({1, 2})] = "set"
    oc[None] = "none"
    oc[b"b"] = "bytes"
    oc["b"] = "str"
    assert oc[(1, "a")] == "tuple"
    assert oc[frozenset({2, 1})] == "set"
    assert oc[None] == "none"
    assert oc[b"b"] == "bytes" and oc["b"] == "str"
    assert len(oc) == 6


def test_keys_with_their_own_hash_and_eq(oc: ObjectCache[Any, Any]) -> None:
    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

        def __hash__(self) -> int:
            return hash((self.x, self.y))

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    oc[Point(1, 2)] = "p"
    assert oc[Point(1, 2)] == "p"
    assert Point(2, 1) not in oc


def test_colliding_hashes_are_told_apart_by_eq(oc: ObjectCache[Any, Any]) -> None:
    class Same:
        def __init__(self, n: int) -> None:
            self.n = n

        def __hash__(self) -> int:
            return 42

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Same) and other.n == self.n

    for i in range(50):
        oc[Same(i)] = i
    assert all(oc[Same(i)] == i for i in range(50))
    assert Same(50) not in oc


def test_unhashable_keys_raise_type_error(oc: ObjectCache[Any, Any]) -> None:
    with pytest.raises(TypeError, match="unhashable"):
        oc[[1, 2]] = 1
    with pytest.raises(TypeError, match="unhashable"):
        oc.get({})


def test_eq_errors_propagate_and_change_nothing(oc: ObjectCache[Any, Any]) -> None:
    class Bad:
        def __hash__(self) -> int:
            return 7

        def __eq__(self, other: object) -> bool:
            raise ValueError("no comparing")

    a, b = Bad(), Bad()
    oc[a] = 1
    assert oc[a] == 1  # identity first: __eq__ not called
    with pytest.raises(ValueError, match="no comparing"):
        oc.get(b)
    with pytest.raises(ValueError, match="no comparing"):
        oc[b] = 2
    assert len(oc) == 1


def test_get_getitem_and_defaults(oc: ObjectCache[Any, Any]) -> None:
    assert oc.get("missing") is None
    assert oc.get("missing", 5) == 5
    with pytest.raises(KeyError) as e:
        oc["missing"]
    assert e.value.args == ("missing",)
    oc["none"] = None
    assert oc.get("none", 5) is None
    assert "none" in oc


def test_delete_pop_popitem(oc: ObjectCache[Any, Any]) -> None:
    oc["a"] = 1
    oc["b"] = 2
    del oc["a"]
    with pytest.raises(KeyError):
        del oc["a"]
    assert oc.delete("b") is True
    assert oc.delete("b") is False
    oc["c"] = 3
    assert oc.pop("c") == 3
    assert oc.pop("c", None) is None
    assert oc.pop("c", "d") == "d"
    with pytest.raises(KeyError):
        oc.pop("c")
    with pytest.raises(TypeError):
        oc.pop("c", 1, 2)  # type: ignore[call-overload]
    with pytest.raises(KeyError):
        oc.popitem()


def test_popitem_follows_the_policy(clock: ManualClock) -> None:
    c: ObjectCache[str, int] = ObjectCache(max_entries=10, eviction="fifo", clock=clock)
    for i, k in enumerate("abc"):
        c[k] = i
    assert c.popitem() == ("a", 0)
    assert c.popitem() == ("b", 1)
    assert len(c) == 1


def test_setdefault_update_and_iteration(oc: ObjectCache[Any, Any]) -> None:
    assert oc.setdefault("a", 1) == 1
    assert oc.setdefault("a", 2) == 1
    assert oc.setdefault("n") is None
    oc.update({"b": 2})
    oc.update([("c", 3)])
    oc.update(d=4)

    class Mapping:
        def keys(self) -> list[str]:
            return ["e"]

        def __getitem__(self, k: str) -> int:
            return 5

    oc.update(Mapping())
    assert sorted(oc.items(), key=repr) == sorted(
        [("a", 1), ("n", None), ("b", 2), ("c", 3), ("d", 4), ("e", 5)], key=repr
    )
    assert sorted(oc.keys()) == sorted(iter(oc)) == ["a", "b", "c", "d", "e", "n"]
    assert sorted(v for v in oc.values() if v is not None) == [1, 2, 3, 4, 5]
    oc.clear()
    assert len(oc) == 0 and oc.keys() == []


def test_get_or_set_calls_the_factory_only_on_a_miss(oc: ObjectCache[Any, Any]) -> None:
    calls = []

    def factory() -> list[int]:
        calls.append(1)
        return [7]

    v = oc.get_or_set("k", factory)
    assert v == [7] and oc["k"] is v
    assert oc.get_or_set("k", factory) is v
    assert len(calls) == 1

    def failing() -> int:
        raise LookupError("nope")

    with pytest.raises(LookupError):
        oc.get_or_set("x", failing)
    assert "x" not in oc


def test_iteration_is_a_snapshot(oc: ObjectCache[Any, Any]) -> None:
    for i in range(10):
        oc[i] = i
    for k in oc:  # mutating while iterating is safe: the keys were copied
        del oc[k]
    assert len(oc) == 0


def test_stats(clock: ManualClock) -> None:
    c: ObjectCache[str, int] = ObjectCache(max_entries=2, clock=clock, eviction="lru")
    c["a"] = 1
    c["b"] = 2
    c.get("a")
    c.get("zz")
    c.set("c", 3, ttl=1)
    clock.advance(2)
    c.get("c")
    s = c.stats()
    assert {k: s[k] for k in ("hits", "misses", "sets", "evictions", "expirations")} == {
        "hits": 1,
        "misses": 2,
        "sets": 3,
        "evictions": 1,
        "expirations": 1,
    }
    assert s["entries"] == 1 and s["weight"] == 0
    assert s["hit_ratio"] == pytest.approx(1 / 3)
    assert (s["max_entries"], s["max_memory"], s["eviction"]) == (2, None, "lru")


def test_repr_properties_and_generic_alias() -> None:
    c: ObjectCache[str, int] = ObjectCache(max_entries=5, max_memory="1KB", eviction="LruLfu")
    assert repr(c) == 'ObjectCache(eviction="hybrid", max_entries=5, max_memory=1024, len=0)'
    assert (c.eviction, c.max_entries, c.max_memory) == ("hybrid", 5, 1024)
    assert c.entry_overhead > 0
    alias = ObjectCache[str, int]
    assert alias.__origin__ is ObjectCache and alias.__args__ == (str, int)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# bounds and weights


def test_a_bound_is_required() -> None:
    with pytest.raises(ConfigError, match="needs a bound"):
        ObjectCache()
    with pytest.raises(ConfigError, match="max_entries must be at least 1"):
        ObjectCache(max_entries=0)
    with pytest.raises(ConfigError, match="max_memory"):
        ObjectCache(max_memory="lots")
    with pytest.raises(ConfigError, match="eviction"):
        ObjectCache(max_entries=1, eviction="random")
    with pytest.raises(TypeError, match="weigher must be a callable"):
        ObjectCache(max_entries=1, weigher=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="default_ttl"):
        ObjectCache(max_entries=1, default_ttl=-1)


@pytest.mark.parametrize("policy", POLICIES)
def test_max_entries_holds_under_every_policy(policy: str) -> None:
    c: ObjectCache[int, int] = ObjectCache(max_entries=100, eviction=policy)
    for i in range(1000):
        c[i] = i
        if i % 7 == 0:
            c.get(i // 2)
    assert len(c) == 100
    assert c.stats()["evictions"] == 900
    c.check_invariants()


def test_the_default_weigher_counts_getsizeof_and_the_overhead() -> None:
    c: ObjectCache[str, bytes] = ObjectCache(max_memory=10_000)
    c["k"] = b"x" * 100
    expected = sys.getsizeof("k") + sys.getsizeof(b"x" * 100) + c.entry_overhead
    assert c.stats()["weight"] == expected
    for i in range(200):
        c[f"k{i}"] = b"x" * 100
    assert c.stats()["weight"] <= 10_000
    assert len(c) < 200
    c.check_invariants()


def test_a_custom_weigher_counts_its_own_units() -> None:
    c: ObjectCache[str, list[int]] = ObjectCache(max_memory=10, weigher=lambda k, v: len(v))
    c["a"] = [1] * 4
    c["b"] = [1] * 4
    assert c.stats()["weight"] == 8
    c["c"] = [1] * 4  # evicts one
    assert len(c) == 2 and c.stats()["weight"] == 8
    with pytest.raises(ValueError, match="weighs more than max_memory"):
        c["huge"] = [1] * 11
    assert "huge" not in c
    c["a2"] = [1] * 10  # fits alone: the others go
    assert c.keys() == ["a2"]
    bad: ObjectCache[str, int] = ObjectCache(max_memory=10, weigher=lambda k, v: -1)
    with pytest.raises(ValueError, match="weigher must return an int >= 0"):
        bad["a"] = 1


def test_a_weigher_without_a_memory_bound_still_sums() -> None:
    c: ObjectCache[str, str] = ObjectCache(max_entries=10, weigher=lambda k, v: len(v))
    c["a"] = "xyz"
    assert c.stats()["weight"] == 3


# --------------------------------------------------------------------------------------------
# TTLs under a ManualClock


def test_ttls(oc: ObjectCache[Any, Any], clock: ManualClock) -> None:
    oc.set("a", 1, ttl=10)
    oc.set("b", 2, ttl=timedelta(seconds=5))
    oc.set("c", 3, ttl=0)
    oc["d"] = 4
    assert oc.ttl("a") == 10 and oc.ttl("b") == 5
    assert oc.ttl("c") == math.inf and oc.ttl("d") == math.inf
    assert oc.ttl("zz") is None
    clock.advance(5)
    assert "b" not in oc and oc.get("b") is None
    assert oc["a"] == 1 and oc.ttl("a") == 5
    assert oc.touch("a", 100) is True
    assert oc.touch("b", 100) is False
    clock.advance(50)
    assert oc["a"] == 1
    assert oc.touch("a", 0) is True
    clock.advance(1e6)
    assert oc["a"] == 1
    with pytest.raises(ValueError, match="ttl"):
        oc.set("x", 1, ttl=-1)


def test_default_and_max_ttl(clock: ManualClock) -> None:
    c: ObjectCache[str, int] = ObjectCache(max_entries=10, default_ttl=10, max_ttl=60, clock=clock)
    c["a"] = 1
    c.set("b", 2, ttl=0)  # never, capped by max_ttl
    c.set("c", 3, ttl=1000)
    assert c.ttl("a") == 10 and c.ttl("b") == 60 and c.ttl("c") == 60
    clock.advance(10)
    assert "a" not in c and "b" in c
    clock.advance(50)
    assert len(c.keys()) == 0
    assert c.sweep_expired() == 2
    assert len(c) == 0
    assert c.stats()["expirations"] == 3


def test_expired_entries_are_reclaimed_by_writes(clock: ManualClock) -> None:
    c: ObjectCache[int, int] = ObjectCache(max_entries=10_000, clock=clock)
    for i in range(100):
        c.set(i, i, ttl=1)
    clock.advance(2)
    for i in range(100, 200):
        c[i] = i
    assert len(c) == 100  # the amortized sweep visited the expired slots
    c.check_invariants()


# --------------------------------------------------------------------------------------------
# callbacks into the cache, threads


def test_a_key_whose_eq_uses_the_cache_gets_a_runtime_error(oc: ObjectCache[Any, Any]) -> None:
    class Sneaky:
        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            oc.get("other")
            return False

    oc[Sneaky()] = 1
    with pytest.raises(RuntimeError, match="used from inside one of its own calls"):
        oc.get(Sneaky())
    oc["fine"] = 2  # the cache is still usable
    assert oc["fine"] == 2


def test_a_value_whose_del_uses_the_cache_is_dropped_outside_it() -> None:
    c: ObjectCache[str, Any] = ObjectCache(max_entries=1)
    seen: list[Any] = []

    class Noisy:
        def __del__(self) -> None:
            seen.append(c.get("b"))
            c["from_del"] = 1

    c["a"] = Noisy()
    c["b"] = 2  # evicts the Noisy value: its __del__ runs after the table is released
    gc.collect()
    assert seen == [2]
    c.check_invariants()


def test_threads_with_keys_that_switch_threads_inside_eq() -> None:
    """Keys whose __eq__ releases the GIL make other threads wait for the table; every thread
    reads only values it could have written, and the table stays consistent."""
    c: ObjectCache[Any, Any] = ObjectCache(max_entries=64)

    class SlowKey:
        def __init__(self, n: int) -> None:
            self.n = n

        def __hash__(self) -> int:
            return self.n % 8

        def __eq__(self, other: object) -> bool:
            threading.Event().wait(0)  # may switch threads
            return isinstance(other, SlowKey) and other.n == self.n

    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(300):
                k = SlowKey(t * 1000 + i % 20)
                c[k] = (t, i % 20)
                got = c.get(SlowKey(t * 1000 + (i * 7) % 20))
                assert got is None or got == (t, (i * 7) % 20)
        except BaseException as e:
            errors.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[0]
    assert len(c) <= 64
    c.check_invariants()


def test_a_thread_waits_while_another_runs_python_code_under_the_table() -> None:
    """Thread A's key comparison blocks (without the GIL) inside the cache; thread B's call must
    wait for A, not fail and not deadlock."""
    c: ObjectCache[Any, Any] = ObjectCache(max_entries=10)
    inside, release = threading.Event(), threading.Event()

    class Blocking:
        def __hash__(self) -> int:
            return 3

        def __eq__(self, other: object) -> bool:
            inside.set()
            assert release.wait(30)
            return False

    c[Blocking()] = 1
    a = threading.Thread(target=c.get, args=(Blocking(),))
    a.start()
    assert inside.wait(30)
    order: list[str] = []

    def set_b() -> None:
        c.set("b", 2)
        order.append("b done")

    b = threading.Thread(target=set_b)
    b.start()
    b.join(0.2)
    assert b.is_alive(), "B got in while A held the table"
    order.append("release")
    release.set()
    a.join(30)
    b.join(30)
    assert order == ["release", "b done"]
    assert c["b"] == 2
    c.check_invariants()


def test_servers_refuse_an_object_cache() -> None:
    import anyio

    from ratmemcache.server import Server

    c: ObjectCache[Any, Any] = ObjectCache(max_entries=10)
    with pytest.raises(TypeError, match="can't serve an ObjectCache: it keeps Python objects"):
        ratmemcache.serve_native(c, "127.0.0.1", 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="can't serve an ObjectCache"):
        anyio.run(ratmemcache.serve, c, "127.0.0.1", 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"serves a ratmemcache\.Cache, not dict"):
        Server(None, {})  # type: ignore[arg-type]
