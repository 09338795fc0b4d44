"""TTL rules, driven by a ManualClock: no test here sleeps."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import ratmemcache
from ratmemcache import Cache, ManualClock

INF = float("inf")


def make(clock: ManualClock, **kw: Any) -> Cache:
    kw.setdefault("cleanup_interval", 0)
    return Cache(clock=clock, **kw)


# --------------------------------------------------------------------------------------------
# the expiry boundary


def test_expiry_boundary_is_exact(cache: Cache, clock: ManualClock) -> None:
    cache.set("k", b"v", ttl=1)
    clock.advance(0.999)
    assert cache.get("k") == b"v"
    clock.advance(0.001)
    assert cache.get("k") is None


@pytest.mark.parametrize(
    "read",
    [
        lambda c: c.get("k"),
        lambda c: c.get_many(["k"]).get("k"),
        lambda c: c.gets("k") and c.gets("k")[0],
        lambda c: c.ttl("k") and b"v",
        lambda c: b"v" if "k" in c else None,
        lambda c: b"v" if c.contains_key("k") else None,
        lambda c: b"v" if c.keys() == ["k"] else None,
        lambda c: b"v" if "k" in list(c) else None,
    ],
    ids=["get", "get_many", "gets", "ttl", "in", "contains_key", "keys", "iter"],
)
def test_boundary_for_every_read_path(clock: ManualClock, read: Any) -> None:
    c = make(clock)
    c.set("k", b"v", ttl=1)
    clock.advance(0.999)
    assert read(c) == b"v"
    clock.advance(0.001)
    assert not read(c)


@pytest.mark.parametrize(
    ("ttl", "live_until"),
    [(0.5, 0.499), (1.5, 1.499), (60, 59.999), (timedelta(seconds=2), 1.999), (0.001, 0.0)],
)
def test_fractional_and_timedelta_ttls(clock: ManualClock, ttl: Any, live_until: float) -> None:
    c = make(clock)
    c.set("k", b"v", ttl=ttl)
    clock.advance(live_until)
    assert c.get("k") == b"v"
    clock.advance(0.001)
    assert c.get("k") is None


def test_sub_millisecond_ttl_rounds_up_to_one_millisecond(clock: ManualClock) -> None:
    c = make(clock)
    c.set("k", b"v", ttl=0.0001)  # positive, so it must not mean "never"
    assert c.get("k") == b"v"
    assert c.ttl("k") == 0.001
    clock.advance(0.001)
    assert c.get("k") is None


def test_ttl_zero_never_expires(cache: Cache, clock: ManualClock) -> None:
    cache.set("k", b"v", ttl=0)
    cache.set("f", b"v", ttl=0.0)
    cache.set("td", b"v", ttl=timedelta(0))
    clock.advance(10 * 365 * 24 * 3600)
    assert cache.get_many(["k", "f", "td"]) == {"k": b"v", "f": b"v", "td": b"v"}
    assert cache.ttl("k") == INF


def test_int_and_bool_ttls(cache: Cache, clock: ManualClock) -> None:
    cache.set("k", b"v", ttl=True)  # a bool is an int: one second
    assert cache.ttl("k") == 1.0
    clock.advance(1)
    assert "k" not in cache


@pytest.mark.parametrize("bad", [-1, -0.001, float("-inf"), float("inf"), float("nan")])
def test_bad_ttl_values_raise_valueerror(cache: Cache, bad: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        cache.set("k", b"v", ttl=bad)
    with pytest.raises(ValueError, match="ttl"):
        cache.add("k", b"v", ttl=bad)
    with pytest.raises(ValueError, match="ttl"):
        cache.set_with_ttl("k", b"v", bad)
    cache.set("k", b"v")
    with pytest.raises(ValueError, match="ttl"):
        cache.replace("k", b"w", ttl=bad)
    with pytest.raises(ValueError, match="ttl"):
        cache.touch("k", bad)
    with pytest.raises(ValueError, match="ttl"):
        cache.set_many({"k": b"w"}, ttl=bad)
    assert cache.get("k") == b"v"
    assert cache.ttl("k") == INF


def test_negative_timedelta_ttl(cache: Cache) -> None:
    with pytest.raises(ValueError):
        cache.set("k", b"v", ttl=timedelta(seconds=-1))
    assert "k" not in cache


@pytest.mark.parametrize("bad", ["5", b"5", [5], object()])
def test_bad_ttl_types_raise_typeerror(cache: Cache, bad: Any) -> None:
    with pytest.raises(TypeError, match="ttl"):
        cache.set("k", b"v", ttl=bad)
    assert "k" not in cache


# --------------------------------------------------------------------------------------------
# default_ttl and max_ttl


def test_default_ttl_applies_when_ttl_is_none(clock: ManualClock) -> None:
    c = make(clock, default_ttl=10)
    c.set("default", b"v")
    c.set("explicit_none", b"v", ttl=None)
    c.set("short", b"v", ttl=2)
    c.set("long", b"v", ttl=100)
    c.set("never", b"v", ttl=0)
    c.add("added", b"v")
    c.set_many({"many": b"v"})
    assert c.ttl("default") == 10.0
    clock.advance(2)
    assert "short" not in c
    clock.advance(7.999)
    assert set(c.keys()) == {"default", "explicit_none", "long", "never", "added", "many"}
    clock.advance(0.001)
    assert set(c.keys()) == {"long", "never"}
    clock.advance(1000)
    assert c.keys() == ["never"]


def test_default_ttl_as_timedelta_and_float(clock: ManualClock) -> None:
    c = make(clock, default_ttl=timedelta(minutes=1))
    c.set("k", b"v")
    assert c.ttl("k") == 60.0
    d = make(clock, default_ttl=0.25)
    d.set("k", b"v")
    assert d.ttl("k") == 0.25


def test_default_ttl_zero_means_never(clock: ManualClock) -> None:
    c = make(clock, default_ttl=0)
    c.set("k", b"v")
    clock.advance(1e6)
    assert c.get("k") == b"v"


def test_max_ttl_clamps_long_ttls_and_never(clock: ManualClock) -> None:
    c = make(clock, max_ttl=10)
    c.set("long", b"v", ttl=100)
    c.set("never", b"v", ttl=0)
    c.set("none", b"v")
    c.set("short", b"v", ttl=5)
    assert c.ttl("long") == c.ttl("never") == c.ttl("none") == 10.0
    assert c.ttl("short") == 5.0
    clock.advance(5)
    assert set(c.keys()) == {"long", "never", "none"}
    clock.advance(4.999)
    assert set(c.keys()) == {"long", "never", "none"}
    clock.advance(0.001)
    assert c.keys() == []


def test_max_ttl_clamps_default_ttl(clock: ManualClock) -> None:
    c = make(clock, default_ttl=100, max_ttl=timedelta(seconds=30))
    c.set("k", b"v")
    assert c.ttl("k") == 30.0


def test_max_ttl_clamps_touch(clock: ManualClock) -> None:
    c = make(clock, max_ttl=10)
    c.set("k", b"v", ttl=1)
    assert c.touch("k", 0)
    assert c.ttl("k") == 10.0
    assert c.touch("k", 1000)
    assert c.ttl("k") == 10.0
    clock.advance(10)
    assert "k" not in c


def test_max_ttl_clamps_add_replace_cas(clock: ManualClock) -> None:
    c = make(clock, max_ttl=3)
    assert c.add("a", b"v", ttl=0)
    assert c.ttl("a") == 3.0
    assert c.replace("a", b"w", ttl=50)
    assert c.ttl("a") == 3.0
    _, cas = c.gets("a")  # type: ignore[misc]
    assert c.cas("a", b"x", cas, ttl=0)
    assert c.ttl("a") == 3.0


# --------------------------------------------------------------------------------------------
# touch


def test_touch_extends(cache: Cache, clock: ManualClock) -> None:
    cache.set("k", b"v", ttl=2)
    clock.advance(1.5)
    assert cache.touch("k", 2) is True
    clock.advance(1.999)
    assert cache.get("k") == b"v"
    clock.advance(0.001)
    assert cache.get("k") is None


def test_touch_can_shorten(cache: Cache, clock: ManualClock) -> None:
    cache.set("k", b"v", ttl=100)
    assert cache.touch("k", 1)
    clock.advance(1)
    assert "k" not in cache


def test_touch_zero_makes_it_permanent(cache: Cache, clock: ManualClock) -> None:
    cache.set("k", b"v", ttl=1)
    assert cache.touch("k", 0)
    clock.advance(1000)
    assert cache.get("k") == b"v"


def test_touch_none_uses_default_ttl(clock: ManualClock) -> None:
    c = make(clock, default_ttl=20)
    c.set("k", b"v", ttl=1)
    assert c.touch("k")
    assert c.ttl("k") == 20.0
    d = make(clock)
    d.set("k", b"v", ttl=1)
    assert d.touch("k", None)
    assert d.ttl("k") == INF


def test_touch_expired_is_false(cache: Cache, clock: ManualClock) -> None:
    cache.set("k", b"v", ttl=1)
    clock.advance(1)
    assert cache.touch("k", 100) is False
    assert cache.get("k") is None
    assert cache.stats()["touch_misses"] == 1


def test_touch_keeps_value_and_is_not_a_read(cache: Cache) -> None:
    cache.set("k", b"v", ttl=5)
    cache.touch("k", 50)
    s = cache.stats()
    assert s["gets"] == 0
    assert cache.get("k") == b"v"


def test_set_resets_ttl(cache: Cache, clock: ManualClock) -> None:
    cache.set("k", b"v", ttl=1)
    cache.set("k", b"w")
    clock.advance(1000)
    assert cache.get("k") == b"w"


# --------------------------------------------------------------------------------------------
# expired entries are gone for every operation


def test_expired_entries_are_invisible_to_every_operation(cache: Cache, clock: ManualClock) -> None:
    cache.set("k", b"5", ttl=1)
    cache.set(b"b", b"5", ttl=1)
    clock.advance(1)
    assert cache.get("k") is None
    assert cache.get("k", b"dflt") == b"dflt"
    with pytest.raises(KeyError):
        cache["k"]
    assert cache.gets("k") is None
    assert cache.get_many(["k", b"b"]) == {}
    assert "k" not in cache
    assert not cache.contains_key(b"b")
    assert cache.keys() == []
    assert list(cache) == []
    assert cache.ttl("k") is None


def test_expired_entries_reject_writes_that_need_presence(cache: Cache, clock: ManualClock) -> None:
    for k in ("del", "rep", "app", "pre", "inc", "dec", "cas", "add"):
        cache.set(k, b"5", ttl=1)
    _, cas = cache.gets("cas")  # type: ignore[misc]
    clock.advance(1)
    assert cache.delete("del") is False
    with pytest.raises(KeyError):
        del cache["del"]
    assert cache.replace("rep", b"x") is False
    assert cache.append("app", b"x") is False
    assert cache.prepend("pre", b"x") is False
    assert cache.incr("inc") is None
    assert cache.decr("dec") is None
    assert cache.cas("cas", b"x", cas) is False
    assert cache.add("add", b"fresh") is True
    assert cache.keys() == ["add"]
    assert cache.get("add") == b"fresh"
    assert cache.ttl("add") == INF
    s = cache.stats()
    assert s["cas_misses"] == 1 and s["cas_badval"] == 0
    assert s["delete_misses"] == 2


def test_len_counts_unreclaimed_until_swept(cache: Cache, clock: ManualClock) -> None:
    for i in range(10):
        cache.set(f"t{i}", b"v", ttl=1)
    clock.advance(1)
    # len() and curr_items count entries not yet reclaimed, as memcached's curr_items does
    assert len(cache) == cache.stats()["curr_items"] == 10
    assert cache.keys() == []
    assert cache.sweep_expired() == 10
    assert len(cache) == 0


# --------------------------------------------------------------------------------------------
# reclaiming, and the counters


def test_sweep_expired_reclaims_items_and_bytes(cache: Cache, clock: ManualClock) -> None:
    for i in range(5):
        cache.set(f"keep{i}", b"x" * 100)
    base = cache.stats()
    for i in range(20):
        cache.set(f"temp{i}", b"y" * 200, ttl=1 + i % 3)
    grown = cache.stats()
    assert grown["curr_items"] == 25
    assert grown["bytes"] > base["bytes"]
    clock.advance(1)
    assert cache.sweep_expired() == 7  # ttl 1: i = 0, 3, 6, 9, 12, 15, 18
    assert cache.stats()["curr_items"] == 18
    clock.advance(2)
    assert cache.sweep_expired() == 13
    after = cache.stats()
    assert after["curr_items"] == len(cache) == 5
    assert after["bytes"] == base["bytes"]
    assert after["payload_bytes"] == base["payload_bytes"]
    assert after["expirations"] == 20
    assert after["evictions"] == 0
    assert cache.sweep_expired() == 0
    assert sorted(cache.keys()) == [f"keep{i}" for i in range(5)]
    cache.check_invariants()


def test_sweep_on_empty_and_live_cache(cache: Cache) -> None:
    assert cache.sweep_expired() == 0
    cache.set("k", b"v", ttl=5)
    assert cache.sweep_expired() == 0
    assert "k" in cache


def test_lazy_expiry_counts(cache: Cache, clock: ManualClock) -> None:
    cache.set("a", b"v", ttl=1)
    cache.set("b", b"v", ttl=1)
    cache.set("c", b"v", ttl=1)
    clock.advance(1)
    assert cache.get("a") is None  # a read of an expired entry
    assert "b" not in cache  # a peek reclaims too, without counting as a read
    s = cache.stats()
    assert s["expirations"] == 2
    assert s["get_expired"] == 1
    assert s["misses"] == 1
    assert s["hits"] == 0
    assert s["curr_items"] == 1
    assert cache.sweep_expired() == 1
    assert cache.stats()["expirations"] == 3


def test_writes_reclaim_expired_entries_gradually(clock: ManualClock) -> None:
    # One shard: with several, which shard each key lands in depends on the cache's random hash
    # seed, and a shard that got an expired entry but few of the later writes could keep it.
    cache = make(clock, shards=1)
    for i in range(10):
        cache.set(f"t{i}", b"v", ttl=1)
    clock.advance(1)
    for i in range(40):
        cache.set(f"new{i}", b"v")
    # every insert examines a couple of slots, so the ten dead entries are gone by now
    assert len(cache) == 40
    assert cache.stats()["expirations"] == 10
    assert cache.sweep_expired() == 0
    cache.check_invariants()


def test_expired_entries_are_not_evicted(clock: ManualClock) -> None:
    c = make(clock, max_entries=5, eviction="lru")
    for i in range(5):
        c.set(f"t{i}", b"v", ttl=1)
    clock.advance(1)
    assert c.sweep_expired() == 5
    for i in range(5):
        c.set(f"n{i}", b"v")
    s = c.stats()
    assert s["evictions"] == 0
    assert s["expirations"] == 5
    assert len(c) == 5


def test_expired_key_is_replaced_by_set(cache: Cache, clock: ManualClock) -> None:
    cache.set("k", b"old", ttl=1)
    clock.advance(1)
    cache.set("k", b"new")
    assert cache.get("k") == b"new"
    assert len(cache) == 1
    assert cache.stats()["expirations"] == 1
    cache.check_invariants()


def test_clock_set_backwards_revives_nothing_after_reclaim(
    cache: Cache, clock: ManualClock
) -> None:
    cache.set("k", b"v", ttl=1)
    clock.advance(1)
    assert cache.sweep_expired() == 1
    clock.set(ratmemcache.ManualClock().now())  # move back in time
    assert "k" not in cache


def test_clock_set_backwards_before_reclaim(cache: Cache, clock: ManualClock) -> None:
    start = clock.now()
    cache.set("k", b"v", ttl=1)
    clock.advance(5)
    clock.set(start)  # a wall-clock step back: the deadline is absolute
    assert cache.get("k") == b"v"
    assert cache.ttl("k") == 1.0


def test_ttl_decreases_with_the_clock(cache: Cache, clock: ManualClock) -> None:
    cache.set("k", b"v", ttl=10)
    for elapsed in range(10):
        assert cache.ttl("k") == 10.0 - elapsed
        clock.advance(1)
    assert cache.ttl("k") is None


def test_caches_sharing_a_clock(clock: ManualClock) -> None:
    a = make(clock)
    b = make(clock, default_ttl=2)
    a.set("k", b"v", ttl=1)
    b.set("k", b"v")
    clock.advance(1)
    assert "k" not in a
    assert "k" in b
    clock.advance(1)
    assert "k" not in b
