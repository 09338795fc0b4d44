"""Eviction: the memory and entry limits for every policy, and each policy's own ordering.

Ordering tests use ``shards=1`` so that the whole cache is one policy instance.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import pytest

import ratmemcache
from ratmemcache import Cache, ManualClock

POLICIES = ratmemcache.POLICIES


def one_shard(policy: str, clock: ManualClock | None = None, **kw: Any) -> Cache:
    return Cache(eviction=policy, shards=1, cleanup_interval=0, clock=clock, **kw)


def fill(c: Cache, keys: str | list[str], value: bytes = b"v") -> None:
    for k in keys:
        c.set(k, value)


def present(c: Cache, keys: str | list[str]) -> list[str]:
    """The given keys that are still cached, checked without counting as reads."""
    return [k for k in keys if c.contains_key(k)]


# --------------------------------------------------------------------------------------------
# limits, for every policy


@pytest.mark.parametrize("shards", [1, 4])
@pytest.mark.parametrize("policy", POLICIES)
def test_memory_limit_holds_under_churn(policy: str, shards: int) -> None:
    limit = 64 * 1024  # divisible by the shard count
    c = Cache(max_memory=limit, eviction=policy, shards=shards, cleanup_interval=0)
    rng = random.Random(f"{policy}-{shards}")
    n = 3000
    for i in range(n):
        c.set(f"key-{i}", rng.randbytes(rng.randrange(1, 2000)))
        assert c.stats()["bytes"] <= limit
        if i % 250 == 0:
            c.check_invariants()
    s = c.stats()
    assert s["evictions"] > 0
    # every key was new, nothing expired or was deleted: each insert is live or was evicted
    assert s["evictions"] + s["curr_items"] == n
    assert s["expirations"] == 0
    assert s["bytes"] > limit // 2  # the cache really is being used
    c.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
def test_memory_limit_with_reads_overwrites_and_deletes(policy: str) -> None:
    limit = 32 * 1024
    c = one_shard(policy, max_memory=limit)
    rng = random.Random(policy)
    for _ in range(5000):
        k = f"k{rng.randrange(300)}"
        op = rng.random()
        if op < 0.5:
            c.set(k, b"x" * rng.randrange(0, 1500))
        elif op < 0.8:
            c.get(k)
        elif op < 0.9:
            c.delete(k)
        else:
            c.append(k, b"y" * rng.randrange(0, 300))
        assert c.stats()["bytes"] <= limit
    assert c.stats()["evictions"] > 0
    c.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
def test_entry_limit_holds(policy: str) -> None:
    c = one_shard(policy, max_entries=50)
    rng = random.Random(policy)
    for i in range(1000):
        c.set(f"k{i}", b"v")
        if rng.random() < 0.3:
            c.get(f"k{rng.randrange(i + 1)}")
        assert len(c) <= 50
    s = c.stats()
    assert s["curr_items"] == 50
    assert s["evictions"] == 1000 - 50
    assert len(c.keys()) == 50
    c.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
def test_entry_limit_automatic_sharding(policy: str) -> None:
    # 1024 entries gives several shards automatically; the limit still holds overall
    c = Cache(max_entries=1024, eviction=policy, cleanup_interval=0)
    for i in range(6000):
        c.set(f"k{i}", b"v")
        assert len(c) <= 1024
    s = c.stats()
    assert s["evictions"] + s["curr_items"] == 6000
    c.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
def test_both_limits_together(policy: str) -> None:
    c = one_shard(policy, max_entries=20, max_memory=4096)
    rng = random.Random(policy)
    for i in range(500):
        c.set(f"k{i}", b"z" * rng.randrange(0, 400))
        s = c.stats()
        assert s["curr_items"] <= 20
        assert s["bytes"] <= 4096
    c.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
def test_overwrite_that_grows_keeps_the_written_value(policy: str) -> None:
    # A write that fits must not be lost to the eviction it triggers itself.
    c = one_shard(policy, max_memory=2000)
    fill(c, "abc", b"x" * 300)
    c.set("a", b"y" * 1300)
    assert c.get("a") == b"y" * 1300
    assert c.stats()["bytes"] <= 2000
    c.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
def test_append_that_grows_keeps_the_appended_value(policy: str) -> None:
    c = one_shard(policy, max_memory=2000)
    fill(c, "abc", b"x" * 300)
    assert c.append("a", b"z" * 1000)
    assert c.get("a") == b"x" * 300 + b"z" * 1000
    c.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
def test_item_larger_than_the_cache(policy: str) -> None:
    c = one_shard(policy, max_memory=1000)
    c.set("small", b"s")
    with pytest.raises(ValueError, match="does not fit") as info:
        c.set("huge", b"x" * 2000)
    assert "'huge'" in str(info.value)
    assert "huge" not in c
    assert c.get("small") == b"s"  # nothing was evicted for it
    assert c.stats()["evictions"] == 0
    with pytest.raises(ValueError):
        c.add("huge", b"x" * 2000)
    assert "huge" not in c
    c.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
def test_too_large_set_drops_the_old_value(policy: str) -> None:
    # memcached drops the old value when a set of the same key is too large
    c = one_shard(policy, max_memory=1000)
    c.set("k", b"old")
    with pytest.raises(ValueError):
        c.set("k", b"x" * 2000)
    assert "k" not in c
    c.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
def test_too_large_append_keeps_the_old_value(policy: str) -> None:
    c = one_shard(policy, max_memory=1000)
    c.set("k", b"old")
    with pytest.raises(ValueError):
        c.append("k", b"x" * 2000)
    assert c.get("k") == b"old"
    c.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
def test_item_exactly_at_the_limit(policy: str) -> None:
    c = one_shard(policy, max_memory=10_000)
    c.set("probe", b"")
    per_entry = c.stats()["bytes"] - len("probe")
    c.delete("probe")
    fill(c, ["a", "b"], b"v")
    c.set("big", b"x" * (10_000 - per_entry - len("big")))
    assert c.stats()["bytes"] == 10_000
    assert c.keys() == ["big"]
    with pytest.raises(ValueError):
        c.set("bigger", b"x" * (10_001 - per_entry - len("bigger")))
    c.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
def test_clear_then_refill(policy: str) -> None:
    c = one_shard(policy, max_entries=10)
    fill(c, [f"k{i}" for i in range(30)])
    c.clear()
    c.check_invariants()
    fill(c, [f"n{i}" for i in range(10)])
    assert sorted(c.keys()) == sorted(f"n{i}" for i in range(10))
    assert c.stats()["evictions"] == 20
    c.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
def test_eviction_is_counted_not_expired(policy: str) -> None:
    c = one_shard(policy, max_entries=3)
    fill(c, "abcdef")
    s = c.stats()
    assert (s["evictions"], s["expirations"], s["curr_items"]) == (3, 0, 3)


def test_entry_limit_exact_with_uneven_shard_split() -> None:
    # 1001 entries picks two shards automatically; the total must still be at most 1001
    c = Cache(max_entries=1001, eviction="lru", cleanup_interval=0)
    for i in range(20_000):
        c.set(f"k{i}", b"v")
    assert len(c) <= 1001
    assert c.stats()["curr_items"] <= c.stats()["limit_entries"]


def test_entry_limit_exact_with_explicit_shards() -> None:
    c = Cache(max_entries=5, shards=4, eviction="lru", cleanup_interval=0)
    for i in range(1000):
        c.set(f"k{i}", b"v")
    assert len(c) <= 5


def test_memory_limit_exact_with_uneven_shard_split() -> None:
    limit = 100_003  # not divisible by the 4 shards
    c = Cache(max_memory=limit, shards=4, eviction="lru", cleanup_interval=0)
    c.set("probe", b"")
    per_entry = c.stats()["bytes"] - len("probe")
    c.delete("probe")
    for i in range(200):
        k = f"key{i:05d}"
        # One shard's budget, rounded up: it fits the shards that got the remainder's extra
        # byte, and is refused (ValueError) by the others, never stored over the limit.
        with contextlib.suppress(ValueError):
            c.set(k, b"x" * (limit // 4 + 1 - per_entry - len(k)))
        assert c.stats()["bytes"] <= limit
    assert c.stats()["curr_items"] > 0


# --------------------------------------------------------------------------------------------
# orderings


def test_lru_evicts_least_recently_read() -> None:
    c = one_shard("lru", max_entries=3)
    fill(c, "abc")
    assert c.get("a") == b"v"
    c.set("d", b"v")
    assert sorted(c.keys()) == ["a", "c", "d"]
    c.get("c")
    c.set("e", b"v")  # recency now: c, d, a (a was read before d was written)
    assert sorted(c.keys()) == ["c", "d", "e"]


def test_lru_order_over_a_sequence() -> None:
    c = one_shard("lru", max_entries=4)
    fill(c, "abcd")
    for k in "dcba":  # now a is the most recent, d the least
        c.get(k)
    evicted: list[str | bytes] = []
    for k in "wxyz":
        before = set(c.keys())
        c.set(k, b"v")
        evicted.extend(before - set(c.keys()))
    assert evicted == ["d", "c", "b", "a"]


def test_lru_overwrite_refreshes() -> None:
    c = one_shard("lru", max_entries=3)
    fill(c, "abc")
    c.set("a", b"new")
    c.set("d", b"v")
    assert sorted(c.keys()) == ["a", "c", "d"]


def test_lru_contains_and_ttl_do_not_refresh(clock: ManualClock) -> None:
    c = one_shard("lru", clock=clock, max_entries=3)
    fill(c, "abc")
    assert "a" in c
    assert c.contains_key("a")
    assert c.ttl("a") == float("inf")
    c.set("d", b"v")
    assert sorted(c.keys()) == ["b", "c", "d"]


def test_lru_get_many_and_gets_refresh() -> None:
    c = one_shard("lru", max_entries=3)
    fill(c, "abc")
    c.get_many(["a"])
    c.gets("b")
    c.set("d", b"v")
    assert sorted(c.keys()) == ["a", "b", "d"]


def test_fifo_ignores_reads() -> None:
    c = one_shard("fifo", max_entries=3)
    fill(c, "abc")
    for _ in range(10):
        c.get("a")
    c.set("d", b"v")
    assert sorted(c.keys()) == ["b", "c", "d"]
    c.set("e", b"v")
    assert sorted(c.keys()) == ["c", "d", "e"]


def test_fifo_evicts_in_insertion_order() -> None:
    c = one_shard("fifo", max_entries=5)
    fill(c, "abcde")
    for k in "edcba":
        c.get(k)
    evicted: list[str | bytes] = []
    for i in range(5):
        before = set(c.keys())
        c.set(f"n{i}", b"v")
        evicted.extend(before - set(c.keys()))
    assert evicted == list("abcde")


def test_lfu_keeps_frequently_read_keys() -> None:
    c = one_shard("lfu", max_entries=5)
    fill(c, "abcde")
    for _ in range(5):
        c.get("a")
    for _ in range(3):
        c.get("b")
    c.get("c")
    c.set("f", b"v")  # d and e were never read; d is the older of them
    assert sorted(c.keys()) == ["a", "b", "c", "e", "f"]
    c.set("g", b"v")
    assert sorted(c.keys()) == ["a", "b", "c", "f", "g"]
    c.get("g")
    c.get("g")
    c.set("h", b"v")  # f has no reads now
    assert sorted(c.keys()) == ["a", "b", "c", "g", "h"]
    c.set("i", b"v")  # h, the newest, is the only one with no reads
    assert sorted(c.keys()) == ["a", "b", "c", "g", "i"]
    # the lowest count left is c's single read
    c.get("i")
    c.set("j", b"v")
    c.set("k", b"v")
    assert "c" not in c
    assert {"a", "b", "g"} <= set(c.keys())


def test_lfu_ties_break_by_recency() -> None:
    c = one_shard("lfu", max_entries=3)
    fill(c, "abc")
    c.get("b")
    c.get("a")
    c.get("c")  # all have one read; b was read least recently
    c.set("d", b"v")
    assert sorted(c.keys()) == ["a", "c", "d"]
    c.get("d")  # d joins the one-read bucket as its most recent member: a is now the oldest
    c.set("e", b"v")
    assert sorted(c.keys()) == ["c", "d", "e"]


@pytest.mark.parametrize("policy", ["hybrid", "lfu", "sieve", "s3fifo"])
def test_scan_resistant_policies_keep_hot_keys_through_a_scan(policy: str) -> None:
    c = one_shard(policy, max_entries=10)
    hot = ["x", "y", "z"]
    fill(c, hot, b"hot")
    for _ in range(2):
        for k in hot:
            assert c.get(k) == b"hot"
    for i in range(200):  # a scan of one-hit keys: written once, never read
        c.set(f"scan{i}", b"v")
    assert present(c, hot) == hot
    assert len(c) == 10
    c.check_invariants()


@pytest.mark.parametrize("policy", ["lru", "fifo", "ttl"])
def test_recency_policies_lose_hot_keys_to_a_scan(policy: str) -> None:
    # the contrast that makes the previous test meaningful
    c = one_shard(policy, max_entries=10)
    hot = ["x", "y", "z"]
    fill(c, hot, b"hot")
    for _ in range(2):
        for k in hot:
            c.get(k)
    for i in range(200):
        c.set(f"scan{i}", b"v")
    assert present(c, hot) == []


@pytest.mark.parametrize("policy", ["hybrid", "sieve", "s3fifo", "lru", "lfu"])
def test_hot_keys_reread_during_a_scan_survive(policy: str) -> None:
    c = one_shard(policy, max_entries=10)
    hot = ["x", "y", "z"]
    fill(c, hot, b"hot")
    for i in range(300):
        c.set(f"scan{i}", b"v")
        if i % 5 == 0:
            for k in hot:
                assert c.get(k) == b"hot", (k, i)
    assert present(c, hot) == hot


def test_fifo_loses_hot_keys_even_when_reread() -> None:
    c = one_shard("fifo", max_entries=10)
    fill(c, ["x", "y", "z"], b"hot")
    lost_at = None
    for i in range(300):
        c.set(f"scan{i}", b"v")
        if c.get("x") is None:
            lost_at = i
            break
    assert lost_at == 7  # ten slots: x is the oldest when the eighth scan key arrives


def test_hybrid_one_hit_keys_do_not_displace_reused_ones() -> None:
    c = one_shard("hybrid", max_entries=20)
    reused = [f"r{i}" for i in range(10)]
    fill(c, reused)
    for k in reused:
        c.get(k)  # promoted out of probation
    for i in range(1000):
        c.set(f"once{i}", b"v")
    assert present(c, reused) == reused
    assert len(c) == 20


def test_hybrid_protected_segment_is_bounded() -> None:
    # If every entry is protected, an eviction demotes the overflow, so the cache still turns over
    c = one_shard("hybrid", max_entries=10)
    old = [f"o{i}" for i in range(10)]
    fill(c, old)
    for k in old:
        c.get(k)
    fresh = [f"f{i}" for i in range(10)]
    for k in fresh:
        c.set(k, b"v")
        c.get(k)
        c.get(k)
    # fresh, reused keys must be able to enter; the least recently used old ones leave
    assert present(c, fresh[-2:]) == fresh[-2:]
    assert len(c) == 10
    c.check_invariants()


def test_hybrid_without_reads_is_lru() -> None:
    c = one_shard("hybrid", max_entries=3)
    fill(c, "abc")
    c.set("d", b"v")
    assert sorted(c.keys()) == ["b", "c", "d"]


def test_ttl_policy_evicts_soonest_expiring_first(clock: ManualClock) -> None:
    c = one_shard("ttl", clock=clock, max_entries=4)
    c.set("a", b"v", ttl=100)
    c.set("b", b"v", ttl=10)
    c.set("never", b"v", ttl=0)
    c.set("d", b"v", ttl=50)
    order: list[str | bytes] = []
    for k, ttl in [("e", 1000), ("f", 2000), ("g", 3000), ("h", 0), ("i", 5)]:
        before = set(c.keys())
        c.set(k, b"v", ttl=ttl)
        order.extend(before - set(c.keys()))
    assert order == ["b", "d", "a", "e", "f"]
    assert sorted(c.keys()) == ["g", "h", "i", "never"]
    c.check_invariants()


def test_ttl_policy_ignores_reads_for_entries_with_a_deadline(clock: ManualClock) -> None:
    c = one_shard("ttl", clock=clock, max_entries=2)
    c.set("soon", b"v", ttl=5)
    c.set("later", b"v", ttl=50)
    for _ in range(10):
        c.get("soon")
    c.set("new", b"v", ttl=500)
    assert sorted(c.keys()) == ["later", "new"]


def test_ttl_policy_no_deadline_entries_go_last_in_lru_order(clock: ManualClock) -> None:
    c = one_shard("ttl", clock=clock, max_entries=3)
    fill(c, ["p", "q", "r"])  # no deadlines
    c.get("p")
    c.set("t", b"v", ttl=100)  # evicts the least recently used no-deadline entry: q
    assert sorted(c.keys()) == ["p", "r", "t"]
    c.set("u", b"v", ttl=200)  # now an entry with a deadline exists: it goes first
    assert sorted(c.keys()) == ["p", "r", "u"]


def test_ttl_policy_follows_touch(clock: ManualClock) -> None:
    c = one_shard("ttl", clock=clock, max_entries=2)
    c.set("a", b"v", ttl=10)
    c.set("b", b"v", ttl=20)
    assert c.touch("a", 30)
    c.set("c", b"v", ttl=40)
    assert sorted(c.keys()) == ["a", "c"]


def test_sieve_visited_entry_gets_a_second_chance() -> None:
    c = one_shard("sieve", max_entries=3)
    fill(c, "abc")
    c.get("a")
    c.set("d", b"v")  # the hand passes a (clearing its bit) and evicts b
    assert sorted(c.keys()) == ["a", "c", "d"]
    c.set("e", b"v")  # the hand moves on to c
    assert sorted(c.keys()) == ["a", "d", "e"]


def test_sieve_unread_entries_leave_in_fifo_order() -> None:
    c = one_shard("sieve", max_entries=4)
    fill(c, "abcd")
    evicted: list[str | bytes] = []
    for k in "wxyz":
        before = set(c.keys())
        c.set(k, b"v")
        evicted.extend(before - set(c.keys()))
    assert evicted == list("abcd")


def test_s3fifo_one_hit_keys_leave_first() -> None:
    c = one_shard("s3fifo", max_entries=10)
    fill(c, [f"h{i}" for i in range(5)])
    for i in range(5):
        c.get(f"h{i}")
    fill(c, [f"once{i}" for i in range(5)])
    c.set("new", b"v")
    # the first eviction promotes the read keys and evicts the oldest one-hit key
    assert "once0" not in c
    assert present(c, [f"h{i}" for i in range(5)]) == [f"h{i}" for i in range(5)]


def test_s3fifo_ghost_readmits_to_main() -> None:
    c = one_shard("s3fifo", max_entries=10)
    hot = [f"h{i}" for i in range(5)]
    fill(c, hot)
    for k in hot:
        c.get(k)
    c.set("ghosted", b"v")
    for i in range(10):  # pushes "ghosted" out of the small queue, into the ghost
        c.set(f"s{i}", b"v")
    assert "ghosted" not in c
    c.set("ghosted", b"v")  # remembered: goes straight to main
    for i in range(10, 40):
        c.set(f"s{i}", b"v")
    assert "ghosted" in c
    c.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
def test_deletes_free_room_without_evictions(policy: str) -> None:
    c = one_shard(policy, max_entries=5)
    fill(c, "abcde")
    c.delete("c")
    del c["a"]
    fill(c, "xy")
    assert sorted(c.keys()) == ["b", "d", "e", "x", "y"]
    assert c.stats()["evictions"] == 0
    c.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
def test_random_workload_keeps_invariants(policy: str, clock: ManualClock) -> None:
    c = one_shard(policy, clock=clock, max_entries=64, max_memory=16 * 1024)
    rng = random.Random(f"inv-{policy}")
    for step in range(4000):
        k = f"k{rng.randrange(200)}"
        r = rng.random()
        if r < 0.35:
            c.set(k, rng.randbytes(rng.randrange(0, 300)), ttl=rng.choice([None, 0, 1, 5, 30]))
        elif r < 0.6:
            c.get(k)
        elif r < 0.65:
            c.delete(k)
        elif r < 0.7:
            c.touch(k, rng.choice([0, 1, 10]))
        elif r < 0.75:
            c.add(k, b"1")
        elif r < 0.8:
            with contextlib.suppress(ValueError):  # the value may not be a number
                c.incr(k, rng.randrange(10))
        elif r < 0.85:
            c.replace(k, b"r" * rng.randrange(0, 50))
        elif r < 0.9:
            c.append(k, b"a")
        elif r < 0.95:
            clock.advance(rng.choice([0.5, 1, 3]))
        elif r < 0.97:
            c.sweep_expired()
        elif r < 0.98:
            got = c.gets(k)
            if got is not None:
                c.cas(k, b"c", got[1])
        else:
            c.clear()
        if step % 100 == 0:
            c.check_invariants()
        s = c.stats()
        assert s["curr_items"] <= 64
        assert s["bytes"] <= 16 * 1024
    c.check_invariants()
