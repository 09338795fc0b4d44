"""``@ratmemcache.cached`` with an object cache (its own, or a shared ``ObjectCache``): keys as
``functools.lru_cache`` makes them, introspection, methods, coroutines and single flight.
(The bytes ``Cache`` path is in test_library_decorator.py.)"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import pickle
import threading
import time
from typing import Any

import pytest

import ratmemcache
from ratmemcache import CacheInfo, ManualClock, ObjectCache, cached

# --------------------------------------------------------------------------------------------
# basics and introspection


def test_hits_misses_and_cache_info() -> None:
    calls: list[int] = []

    @cached(maxsize=2)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert [square(i) for i in (1, 2, 1, 1, 2)] == [1, 4, 1, 1, 4]
    assert calls == [1, 2]
    info = square.cache_info()
    assert info == CacheInfo(hits=3, misses=2, maxsize=2, currsize=2)
    assert info == functools.lru_cache(maxsize=2)(lambda: 0).cache_info()._replace(
        hits=3, misses=2, currsize=2
    )
    square(3)  # evicts one
    assert square.cache_info().currsize == 2
    square.cache_clear()
    assert square.cache_info() == CacheInfo(0, 0, 2, 0)
    assert square.cache_parameters() == {
        "maxsize": 2,
        "typed": False,
        "ttl": None,
        "eviction": "s3fifo",
    }


def test_bare_decorator_and_metadata() -> None:
    @cached
    def documented(x: int, y: int = 2) -> int:
        """Doc."""
        return x + y

    assert documented(1) == 3
    assert documented.__name__ == "documented"
    assert documented.__qualname__.endswith("test_bare_decorator_and_metadata.<locals>.documented")
    assert documented.__doc__ == "Doc."
    assert documented.__module__ == __name__
    assert documented.__wrapped__(5) == 7
    assert str(inspect.signature(documented)) == "(x: 'int', y: 'int' = 2) -> 'int'"
    assert isinstance(documented.cache, ObjectCache)
    assert documented.cache_parameters()["maxsize"] == 128
    assert repr(documented).startswith("<cached function ")
    assert isinstance(documented, ratmemcache.CachedFunction)


def test_maxsize_none_is_unbounded_and_zero_caches_nothing() -> None:
    n = 0

    @cached(maxsize=None)
    def f(x: int) -> int:
        nonlocal n
        n += 1
        return x

    for i in range(1000):
        f(i)
    assert f.cache_info().currsize == 1000 and f.cache_info().maxsize is None
    f(5)
    assert n == 1000

    @cached(maxsize=0)
    def g(x: int) -> int:
        nonlocal n
        n += 1
        return x

    g(1)
    g(1)
    assert n == 1002
    assert g.cache_info() == CacheInfo(0, 2, 0, 0)


def test_none_and_falsy_results_are_cached() -> None:
    calls = 0

    @cached
    def f(x: Any) -> Any:
        nonlocal calls
        calls += 1
        return x

    for v in (None, 0, "", (), False):
        assert f(v) == v
        assert f(v) == v
    assert calls == 5  # False is keyed as (False,), 0 as 0: two keys, as in lru_cache


def test_results_are_kept_by_reference() -> None:
    @cached
    def make(x: int) -> list[int]:
        return [x]

    assert make(1) is make(1)


def test_exceptions_are_not_cached() -> None:
    calls = 0

    @cached
    def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first call fails")
        return x

    with pytest.raises(ValueError):
        flaky(1)
    assert flaky(1) == 1
    assert flaky(1) == 1
    assert calls == 2


# --------------------------------------------------------------------------------------------
# keys, as functools.lru_cache makes them


def test_keys_follow_lru_cache() -> None:
    @cached
    def f(*args: Any, **kwargs: Any) -> int:
        return 0

    assert f.cache_key(1) == 1 and type(f.cache_key(1)) is int
    assert f.cache_key("a") == "a"
    assert f.cache_key(1.5) == (1.5,)  # only int and str are their own key
    assert f.cache_key(1, 2) == (1, 2)
    assert f.cache_key(a=1, b=2) != f.cache_key(b=2, a=1)  # keyword order matters
    assert f.cache_key(1) != f.cache_key((1,))
    calls = []

    @cached
    def g(*args: Any, **kwargs: Any) -> int:
        calls.append((args, kwargs))
        return len(calls)

    g(a=1, b=2)
    g(b=2, a=1)
    g(1, 2)
    g(1, 2)
    assert len(calls) == 3


@pytest.mark.parametrize("typed", [False, True])
def test_calls_match_lru_cache_on_equal_values_of_different_types(typed: bool) -> None:
    """functools.lru_cache is the oracle: a lone int or str is its own key, anything else a
    tuple, so 1 and 1.0 are one key only when both are tuples; typed keeps them all apart."""
    ours: list[Any] = []
    theirs: list[Any] = []

    @cached(typed=typed)
    def f(*args: Any, **kwargs: Any) -> Any:
        ours.append(args)
        return args

    @functools.lru_cache(typed=typed)
    def g(*args: Any, **kwargs: Any) -> Any:
        theirs.append(args)
        return args

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1,), {}),
        ((1.0,), {}),
        ((True,), {}),
        (("a",), {}),
        ((1, 2), {}),
        ((1.0, 2.0), {}),
        ((), {"k": 1}),
        ((), {"k": 1.0}),
        ((1,), {"k": 1}),
    ]
    for args, kwargs in calls * 2:
        f(*args, **kwargs)
        g(*args, **kwargs)
    assert ours == theirs
    assert f.cache_info()[:2] == g.cache_info()[:2]
    assert f.cache_parameters()["typed"] is typed


def test_unhashable_arguments_raise_type_error() -> None:
    @cached
    def f(x: Any) -> int:
        return 1

    with pytest.raises(TypeError, match="unhashable"):
        f([1, 2])
    with pytest.raises(TypeError, match="unhashable"):
        functools.lru_cache(lambda x: 1)([1, 2])  # type: ignore[arg-type]


def test_a_custom_key_function() -> None:
    calls = 0

    @cached(key=lambda user, verbose=False: user)
    def load(user: int, verbose: bool = False) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"id": user}

    assert load(7) is load(7, verbose=True)
    assert calls == 1
    assert load.cache_key(7) == 7
    assert load.cache_invalidate(7) is True
    assert load.cache_invalidate(7) is False
    load(7)
    assert calls == 2


def test_cache_invalidate() -> None:
    calls = 0

    @cached
    def f(x: int, *, scale: int = 1) -> int:
        nonlocal calls
        calls += 1
        return x * scale

    f(2, scale=3)
    assert f.cache_invalidate(2, scale=3) is True
    assert f.cache_invalidate(2, scale=3) is False
    f(2, scale=3)
    assert calls == 2


# --------------------------------------------------------------------------------------------
# methods, pickling, copying


def test_methods_key_on_the_instance() -> None:
    calls: list[tuple[str, int]] = []

    class Repo:
        def __init__(self, name: str) -> None:
            self.name = name

        @cached
        def load(self, n: int) -> str:
            calls.append((self.name, n))
            return f"{self.name}:{n}"

        @classmethod
        @cached
        def kind(cls, n: int) -> str:
            return f"{cls.__name__}{n}"

        @staticmethod
        @cached
        def plain(n: int) -> int:
            return n * 2

    a, b = Repo("a"), Repo("b")
    assert a.load(1) == "a:1" and a.load(1) == "a:1"
    assert b.load(1) == "b:1"
    assert calls == [("a", 1), ("b", 1)]
    assert Repo.load(a, 1) == "a:1"
    assert len(calls) == 2
    assert Repo.kind(1) == "Repo1" and a.kind(1) == "Repo1"
    assert Repo.plain(3) == 6 and a.plain(3) == 6
    assert Repo.load.cache_info().hits == 2


@cached
def module_level(x: int) -> int:
    return x + 1


def test_pickle_and_copy_keep_the_same_function() -> None:
    assert pickle.loads(pickle.dumps(module_level)) is module_level
    assert copy.copy(module_level) is module_level
    assert copy.deepcopy(module_level) is module_level


def test_recursion() -> None:
    @cached(maxsize=None)
    def fib(n: int) -> int:
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(300) == 222232244629420445529739893461909967206666939096499764990979600
    assert fib.cache_info().misses == 301


# --------------------------------------------------------------------------------------------
# shared ObjectCache, TTLs


def test_functions_sharing_a_cache_do_not_collide(clock: ManualClock) -> None:
    shared: ObjectCache[Any, Any] = ObjectCache(max_entries=100, clock=clock)

    @cached(shared)
    def double(x: int) -> int:
        return x * 2

    @cached(shared)
    def triple(x: int) -> int:
        return x * 3

    assert (double(5), triple(5), double(5), triple(5)) == (10, 15, 10, 15)
    assert double.cache is shared
    assert double.cache_key(5) == (double.__module__ + "." + double.__qualname__, 5)
    assert len(shared) == 2
    assert double.cache_info() == CacheInfo(1, 1, 100, 1)
    double.cache_clear()
    assert len(shared) == 1 and triple(5) == 15
    assert triple.cache_info().hits == 2


def test_ttl_on_a_shared_cache(clock: ManualClock) -> None:
    shared: ObjectCache[Any, Any] = ObjectCache(max_entries=100, clock=clock, default_ttl=100)
    calls = 0

    @cached(shared, ttl=5)
    def f(x: int) -> int:
        nonlocal calls
        calls += 1
        return x

    @cached(shared)
    def g(x: int) -> int:
        nonlocal calls
        calls += 1
        return x

    f(1), g(1)
    clock.advance(5)
    f(1), g(1)
    assert calls == 3  # f expired after 5 s, g uses the cache's default of 100 s
    assert shared.ttl(f.cache_key(1)) == 5
    assert f.cache_parameters()["ttl"] == 5


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="cached\\(\\) takes an ObjectCache"):
        cached(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="key must be a callable"):
        cached(key=5)(lambda: 1)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="eviction"):
        cached(eviction="random")(lambda: 1)


# --------------------------------------------------------------------------------------------
# single flight


def test_single_flight_across_threads() -> None:
    calls = 0
    started = threading.Event()
    release = threading.Event()

    @cached
    def slow(x: int) -> list[int]:
        nonlocal calls
        calls += 1
        started.set()
        assert release.wait(30)
        return [x]

    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(slow(1))) for _ in range(8)]
    threads[0].start()
    assert started.wait(30)
    for t in threads[1:]:
        t.start()
    time.sleep(0.2)  # the followers reach the flight (the test holds without this)
    release.set()
    for t in threads:
        t.join(30)
    assert calls == 1
    assert len(results) == 8 and all(r is results[0] for r in results)


def test_single_flight_shares_an_exception_and_caches_nothing() -> None:
    calls = 0
    started = threading.Event()
    release = threading.Event()

    @cached
    def failing(x: int) -> int:
        nonlocal calls
        calls += 1
        started.set()
        assert release.wait(30)
        raise KeyError(f"boom {calls}")

    errors: list[BaseException] = []

    def call() -> None:
        try:
            failing(1)
        except KeyError as e:
            errors.append(e)

    first = threading.Thread(target=call)
    first.start()
    assert started.wait(30)
    rest = [threading.Thread(target=call) for _ in range(4)]
    for t in rest:
        t.start()
    time.sleep(0.2)
    release.set()
    for t in [first, *rest]:
        t.join(30)
    assert len(errors) == 5
    assert calls <= 5 and errors[0].args == ("boom 1",)
    assert sum(e.args == ("boom 1",) for e in errors) >= 2  # followers got the leader's error
    assert failing.cache_info().currsize == 0
    with pytest.raises(KeyError):
        failing(1)  # not cached: computed again


def test_object_cache_get_or_set_is_single_flight() -> None:
    c: ObjectCache[str, Any] = ObjectCache(max_entries=10)
    calls = 0
    started = threading.Event()
    release = threading.Event()

    def factory() -> object:
        nonlocal calls
        calls += 1
        started.set()
        assert release.wait(30)
        return object()

    out: list[Any] = []
    threads = [threading.Thread(target=lambda: out.append(c.get_or_set("k", factory)))]
    threads[0].start()
    assert started.wait(30)
    threads += [threading.Thread(target=lambda: out.append(c.get_or_set("k", factory)))]
    threads[1].start()
    time.sleep(0.2)
    release.set()
    for t in threads:
        t.join(30)
    assert calls == 1 and out[0] is out[1]


# --------------------------------------------------------------------------------------------
# coroutines


def test_coroutines_are_cached() -> None:
    calls = 0

    @cached(maxsize=10)
    async def fetch(x: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return {"x": x}

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch"

    async def main() -> None:
        a = await fetch(1)
        b = await fetch(1)
        assert a is b
        await fetch(2)

    asyncio.run(main())
    assert calls == 2
    assert fetch.cache_info() == CacheInfo(1, 2, 10, 2)
    assert fetch.cache_invalidate(1) is True
    fetch.cache_clear()
    assert fetch.cache_info() == CacheInfo(0, 0, 10, 0)


def test_single_flight_across_asyncio_tasks() -> None:
    calls = 0

    @cached
    async def slow(x: int) -> list[int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return [x]

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(slow(1) for _ in range(10)))

    results = asyncio.run(main())
    assert calls == 1
    assert all(r is results[0] for r in results)


def test_asyncio_followers_share_the_exception_and_nothing_is_cached() -> None:
    calls = 0

    @cached
    async def failing(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise LookupError("nope")

    async def main() -> list[Any]:
        return await asyncio.gather(*(failing(1) for _ in range(5)), return_exceptions=True)

    results = asyncio.run(main())
    assert calls == 1
    assert all(isinstance(r, LookupError) for r in results)
    assert asyncio.run(main()) and calls == 2


def test_a_cancelled_asyncio_leader_hands_over_to_a_follower() -> None:
    calls = 0

    @cached
    async def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return x

    async def main() -> int:
        leader = asyncio.ensure_future(slow(1))
        await asyncio.sleep(0.01)
        follower = asyncio.ensure_future(slow(1))
        await asyncio.sleep(0.01)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        return await follower

    assert asyncio.run(main()) == 1
    assert calls == 2


def test_coroutines_on_a_bytes_cache_are_single_flight(clock: ManualClock) -> None:
    c = ratmemcache.Cache(clock=clock, cleanup_interval=0)
    calls = 0

    @cached(c)
    async def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return x

    async def main() -> list[int]:
        return await asyncio.gather(*(slow(1) for _ in range(5)))

    assert asyncio.run(main()) == [1] * 5
    assert calls == 1
    assert slow.cache_info().currsize == 1
    c.close()
