"""``ObjectCache`` against models: a hypothesis state machine (one thread, exact, with TTLs on a
ManualClock) and a multi-threaded hammer whose threads each check their own keys."""

from __future__ import annotations

import math
import random
import sys
import threading
from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ratmemcache import ManualClock, ObjectCache

START = 1_700_000_000.0
# Keys that are equal across types share an entry, as in a dict: 1, 1.0 and True are one key.
KEYS = st.sampled_from([1, 1.0, True, 2, "a", "b", (1, "a"), None, b"a", frozenset({3})])
VALUES = st.one_of(st.integers(), st.text(max_size=3), st.none(), st.lists(st.integers()))
TTLS = st.one_of(st.none(), st.just(0), st.integers(min_value=1, max_value=5))


class ObjectCacheMachine(RuleBasedStateMachine):
    """No evictions (the bound is above the key space): every answer is exact."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(START)
        self.cache: ObjectCache[Any, Any] = ObjectCache(
            max_entries=100, default_ttl=3, clock=self.clock, eviction="s3fifo"
        )
        self.model: dict[Any, tuple[Any, float]] = {}  # key -> (value, deadline or inf)
        self.now = START

    def live(self, key: Any) -> bool:
        return key in self.model and self.now < self.model[key][1]

    def deadline(self, ttl: int | None) -> float:
        ttl = 3 if ttl is None else ttl
        return math.inf if ttl == 0 else self.now + ttl

    @rule(key=KEYS, value=VALUES, ttl=TTLS)
    def set(self, key: Any, value: Any, ttl: int | None) -> None:
        self.cache.set(key, value, ttl=ttl)
        self.model[key] = (value, self.deadline(ttl))

    @rule(key=KEYS)
    def get(self, key: Any) -> None:
        got = self.cache.get(key, "<missing>")
        want = self.model[key][0] if self.live(key) else "<missing>"
        assert got == want and (got is want or want == "<missing>")

    @rule(key=KEYS)
    def delete(self, key: Any) -> None:
        assert self.cache.delete(key) is self.live(key)
        self.model.pop(key, None)

    @rule(key=KEYS, value=VALUES)
    def setdefault(self, key: Any, value: Any) -> None:
        got = self.cache.setdefault(key, value)
        if self.live(key):
            assert got is self.model[key][0]
        else:
            self.model.pop(key, None)
            self.model[key] = (value, self.deadline(None))
            assert got is value

    @rule(key=KEYS, ttl=TTLS)
    def touch(self, key: Any, ttl: int | None) -> None:
        assert self.cache.touch(key, ttl) is self.live(key)
        if self.live(key):
            self.model[key] = (self.model[key][0], self.deadline(ttl))

    @rule(key=KEYS)
    def ttl(self, key: Any) -> None:
        got = self.cache.ttl(key)
        if not self.live(key):
            assert got is None
        else:
            assert got == pytest.approx(self.model[key][1] - self.now)

    @rule(seconds=st.integers(min_value=0, max_value=4))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.now += seconds

    @rule()
    def sweep(self) -> None:
        self.cache.sweep_expired()

    @invariant()
    def agrees(self) -> None:
        self.cache.check_invariants()
        live = {k: v for k, (v, d) in self.model.items() if self.now < d}
        assert len(self.cache.keys()) == len(live)
        for k, v in self.cache.items():
            assert live[k] is v


TestObjectCacheMachine = ObjectCacheMachine.TestCase
TestObjectCacheMachine.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture
def fast_switches() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


@pytest.mark.parametrize("policy", ["s3fifo", "lru", "sieve", "ttl"])
@pytest.mark.usefixtures("fast_switches")
def test_threads_hammer_against_their_own_models(policy: str) -> None:
    """Eight threads, disjoint keys, every operation. Evictions make keys vanish, so each read
    must give the thread's last write for that key or nothing, never anything else; the counts
    must add up and the table must stay consistent."""
    threads, ops = 8, 3000
    c: ObjectCache[Any, Any] = ObjectCache(max_entries=200, eviction=policy)
    models: list[dict[Any, Any]] = [{} for _ in range(threads)]
    gets = [0] * threads
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        rng = random.Random(t)
        model = models[t]
        try:
            barrier.wait()
            for _ in range(ops):
                k = (t, rng.randrange(60))
                op = rng.randrange(7)
                if op <= 1:
                    v = object()
                    c[k] = v
                    model[k] = v
                elif op <= 3:
                    gets[t] += 1
                    got = c.get(k)
                    assert got is None or got is model.get(k), (k, got)
                    if got is None:
                        model.pop(k, None)
                elif op == 4:
                    c.pop(k, None)
                    model.pop(k, None)
                elif op == 5:
                    v = object()
                    got = c.setdefault(k, v)
                    assert got is v or got is model.get(k)
                    model[k] = got
                else:
                    fresh = object()
                    got = c.get_or_set(k, lambda fresh=fresh: fresh)  # type: ignore[misc]
                    assert got is fresh or got is model.get(k)
                    model[k] = got
        except BaseException as e:
            errors.append(e)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=120)
    assert not errors, errors[0]
    c.check_invariants()
    assert len(c) <= 200
    for k, v in c.items():
        assert models[k[0]].get(k) is v
    s = c.stats()
    # get counts, setdefault and get_or_set each read once.
    reads = s["hits"] + s["misses"]
    assert reads >= sum(gets)
