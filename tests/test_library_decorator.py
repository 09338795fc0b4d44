"""``@ratmemcache.cached`` for plain and async functions."""

from __future__ import annotations

import asyncio
import inspect
import pickle
import re
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import ratmemcache
from ratmemcache import Cache, ManualClock, cached
from ratmemcache.decorators import MAX_PLAIN_KEY, default_key


@pytest.fixture
def dcache(clock: ManualClock) -> Iterator[Cache]:
    c = Cache(clock=clock, cleanup_interval=0)
    yield c
    c.close()


def test_sync_results_are_cached(dcache: Cache) -> None:
    calls: list[tuple[int, int]] = []

    @cached(dcache)
    def add(a: int, b: int) -> int:
        calls.append((a, b))
        return a + b

    assert add(1, 2) == 3
    assert add(1, 2) == 3
    assert add(2, 1) == 3
    assert calls == [(1, 2), (2, 1)]
    assert len(dcache) == 2
    s = dcache.stats()
    assert (s["hits"], s["misses"], s["sets"]) == (1, 2, 2)


def test_wrapper_metadata(dcache: Cache) -> None:
    @cached(dcache)
    def documented(x: int) -> int:
        """Doc."""
        return x

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Doc."
    assert documented.__wrapped__(5) == 5
    # Typed as a CachedFunction (whose cache is an ObjectCache), the wrapper of a bytes Cache is a
    # plain function at run time, and its cache is that Cache.
    wrapper_cache: object = documented.cache
    assert wrapper_cache is dcache
    assert callable(documented.cache_key)
    assert callable(documented.cache_invalidate)


def test_none_results_are_cached(dcache: Cache) -> None:
    calls = 0

    @cached(dcache)
    def nothing(x: int) -> None:
        nonlocal calls
        calls += 1

    assert nothing(1) is None
    assert nothing(1) is None
    assert nothing(1) is None
    assert calls == 1
    assert dcache.stats()["hits"] == 2


@pytest.mark.parametrize(
    "result",
    [0, "", [], {}, False, b"", {"nested": [1, (2, 3)]}, 1.5, frozenset({1})],
)
def test_falsy_and_complex_results_are_cached(dcache: Cache, result: Any) -> None:
    calls = 0

    @cached(dcache)
    def f() -> Any:
        nonlocal calls
        calls += 1
        return result

    assert f() == result
    got = f()
    assert got == result
    assert type(got) is type(result)
    assert calls == 1


def test_bytes_result_is_not_confused_with_raw_value(dcache: Cache) -> None:
    calls = 0

    @cached(dcache)
    def raw() -> bytes:
        nonlocal calls
        calls += 1
        return b"\x80\x04N."  # the pickle of None, as a bytes result

    assert raw() == b"\x80\x04N."
    assert raw() == b"\x80\x04N."
    assert calls == 1


def test_exceptions_are_not_cached(dcache: Cache) -> None:
    calls = 0

    @cached(dcache)
    def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first call fails")
        return x * 10

    with pytest.raises(RuntimeError):
        flaky(1)
    assert len(dcache) == 0
    assert flaky(1) == 10
    assert flaky(1) == 10
    assert calls == 2


def test_ttl_is_honoured(dcache: Cache, clock: ManualClock) -> None:
    calls = 0

    @cached(dcache, ttl=5)
    def now() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert now() == 1
    clock.advance(4.999)
    assert now() == 1
    clock.advance(0.001)
    assert now() == 2
    assert dcache.ttl(now.cache_key()) == 5.0
    clock.advance(5)
    assert now() == 3


def test_ttl_none_uses_cache_default(clock: ManualClock) -> None:
    c = Cache(clock=clock, default_ttl=10, cleanup_interval=0)
    calls = 0

    @cached(c)
    def f() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert f() == 1
    clock.advance(9.999)
    assert f() == 1
    clock.advance(0.001)
    assert f() == 2


def test_ttl_zero_never_expires(clock: ManualClock) -> None:
    c = Cache(clock=clock, default_ttl=10, cleanup_interval=0)
    calls = 0

    @cached(c, ttl=0)
    def f() -> int:
        nonlocal calls
        calls += 1
        return calls

    f()
    clock.advance(1e6)
    assert f() == 1
    assert calls == 1


def test_default_key_format(dcache: Cache) -> None:
    @cached(dcache)
    def f(*args: Any, **kwargs: Any) -> int:
        return 1

    prefix = f"{__name__}.test_default_key_format.<locals>.f:"
    assert f.cache_key(1, "a") == prefix + repr((1, "a"))
    assert f.cache_key() == prefix + "()"
    assert f.cache_key(1, z=2, a=1) == prefix + repr((1,)) + repr([("a", 1), ("z", 2)])
    f(1, "a")
    assert dcache.keys() == [prefix + repr((1, "a"))]


def test_kwargs_order_does_not_matter(dcache: Cache) -> None:
    calls = 0

    @cached(dcache)
    def f(**kwargs: int) -> int:
        nonlocal calls
        calls += 1
        return sum(kwargs.values())

    assert f(a=1, b=2) == 3
    assert f(b=2, a=1) == 3
    assert calls == 1


def test_argument_types_are_distinguished(dcache: Cache) -> None:
    calls: list[Any] = []

    @cached(dcache)
    def ident(x: Any) -> Any:
        calls.append(x)
        return x

    for arg in (1, "1", 1.0, (1,), [1], None, "None"):
        assert ident(arg) == arg
    assert len(calls) == 7
    for arg in (1, "1", 1.0, (1,), [1], None, "None"):
        got = ident(arg)
        assert got == arg and type(got) is type(arg)
    assert len(calls) == 7


def test_unhashable_arguments_work(dcache: Cache) -> None:
    calls = 0

    @cached(dcache)
    def total(xs: list[int], opts: dict[str, int]) -> int:
        nonlocal calls
        calls += 1
        return sum(xs) + opts["extra"]

    assert total([1, 2, 3], {"extra": 4}) == 10
    assert total([1, 2, 3], {"extra": 4}) == 10
    assert calls == 1


def test_different_functions_do_not_collide(dcache: Cache) -> None:
    @cached(dcache)
    def double(x: int) -> int:
        return x * 2

    @cached(dcache)
    def triple(x: int) -> int:
        return x * 3

    assert double(5) == 10
    assert triple(5) == 15
    assert double(5) == 10
    assert triple(5) == 15
    assert double.cache_key(5) != triple.cache_key(5)


def test_long_arguments_are_hashed(dcache: Cache) -> None:
    calls = 0

    @cached(dcache)
    def f(s: str) -> int:
        nonlocal calls
        calls += 1
        return len(s)

    long_a = "a" * 10_000
    long_b = "a" * 9_999 + "b"
    key_a = f.cache_key(long_a)
    key_b = f.cache_key(long_b)
    prefix = f"{__name__}.test_long_arguments_are_hashed.<locals>.f:"
    assert re.fullmatch(re.escape(prefix) + "#[0-9a-f]{40}", key_a)
    assert key_a != key_b
    assert f(long_a) == 10_000
    assert f(long_a) == 10_000
    assert f(long_b) == 10_000
    assert calls == 2
    assert all(len(k) < 200 for k in list(dcache))


def test_default_key_threshold() -> None:
    short = default_key("p:", ("x" * 10,), {})
    assert short == "p:" + repr(("x" * 10,))
    body = repr(("x" * (MAX_PLAIN_KEY - 20),))
    assert len("p:" + body) <= MAX_PLAIN_KEY
    assert default_key("p:", ("x" * (MAX_PLAIN_KEY - 20),), {}) == "p:" + body
    hashed = default_key("p:", ("x" * MAX_PLAIN_KEY,), {})
    assert hashed.startswith("p:#") and len(hashed) == len("p:#") + 40
    assert default_key("p:", (), {"k": "v" * 500}) != default_key("p:", (), {"k": "w" * 500})


def test_custom_key_function(dcache: Cache) -> None:
    calls = 0

    @cached(dcache, key=lambda user_id, verbose=False: f"user:{user_id}")
    def load(user_id: int, verbose: bool = False) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"id": user_id}

    assert load(7) == {"id": 7}
    assert load(7, verbose=True) == {"id": 7}  # same key: verbose is not part of it
    assert calls == 1
    assert dcache.keys() == ["user:7"]
    assert load.cache_key(7) == "user:7"


def test_custom_key_function_returning_bytes(dcache: Cache) -> None:
    @cached(dcache, key=lambda x: b"raw:" + bytes([x]))
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    assert f(1) == 1
    assert dcache.keys() == [b"raw:\x01"]


def test_cache_invalidate(dcache: Cache) -> None:
    calls = 0

    @cached(dcache)
    def f(x: int, *, scale: int = 1) -> int:
        nonlocal calls
        calls += 1
        return x * scale

    assert f(2, scale=3) == 6
    assert f(2, scale=3) == 6
    assert calls == 1
    assert f.cache_invalidate(2, scale=3) is True
    assert f.cache_invalidate(2, scale=3) is False
    assert f.cache_invalidate(99) is False
    assert f(2, scale=3) == 6
    assert calls == 2


def test_invalidate_only_affects_its_own_key(dcache: Cache) -> None:
    @cached(dcache)
    def f(x: int) -> int:
        return x

    f(1)
    f(2)
    assert f.cache_invalidate(1)
    assert dcache.get(f.cache_key(2)) is not None
    assert dcache.get(f.cache_key(1)) is None


def test_custom_serializer(dcache: Cache) -> None:
    log: list[str] = []

    class Tagged:
        @staticmethod
        def dumps(obj: Any) -> bytes:
            log.append("dumps")
            return b"T" + pickle.dumps(obj)

        @staticmethod
        def loads(data: bytes) -> Any:
            log.append("loads")
            assert data[:1] == b"T"
            return pickle.loads(data[1:])

    @cached(dcache, serializer=Tagged)
    def f(x: int) -> list[int]:
        return [x]

    assert f(3) == [3]
    assert f(3) == [3]
    assert log == ["dumps", "loads"]
    assert dcache.get(f.cache_key(3))[:1] == b"T"  # type: ignore[index]


def test_works_with_a_cache_that_has_its_own_serializer(clock: ManualClock) -> None:
    c = Cache(clock=clock, serializer=pickle, cleanup_interval=0)
    calls = 0

    @cached(c)
    def f(x: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"x": x}

    assert f(1) == {"x": 1}
    assert f(1) == {"x": 1}
    assert calls == 1


def test_evicted_results_are_recomputed(clock: ManualClock) -> None:
    c = Cache(clock=clock, max_entries=2, eviction="lru", cleanup_interval=0)
    calls: list[int] = []

    @cached(c)
    def f(x: int) -> int:
        calls.append(x)
        return x

    for x in (1, 2, 3, 1):
        f(x)
    assert calls == [1, 2, 3, 1]
    assert len(c) == 2


def test_result_too_large_for_the_cache_is_still_returned(clock: ManualClock) -> None:
    # Like cachetools.cached: a result that cannot be cached is returned, just not remembered.
    c = Cache(clock=clock, max_memory=1000, cleanup_interval=0)

    @cached(c)
    def big() -> bytes:
        return b"x" * 5000

    assert big() == b"x" * 5000


def test_closed_cache_raises(dcache: Cache) -> None:
    @cached(dcache)
    def f() -> int:
        return 1

    dcache.close()
    with pytest.raises(ratmemcache.CacheClosedError):
        f()


def test_methods_are_cached_per_instance(dcache: Cache) -> None:
    class Thing:
        calls = 0

        def __init__(self, name: str) -> None:
            self.name = name

        def __repr__(self) -> str:
            return f"Thing({self.name!r})"

        @cached(dcache)
        def greet(self, greeting: str) -> str:
            Thing.calls += 1
            return f"{greeting}, {self.name}"

    a, b = Thing("a"), Thing("b")
    assert a.greet("hi") == "hi, a"
    assert b.greet("hi") == "hi, b"
    assert a.greet("hi") == "hi, a"
    assert Thing.calls == 2


# --------------------------------------------------------------------------------------------
# async


def test_async_results_are_cached(dcache: Cache) -> None:
    calls = 0

    @cached(dcache)
    async def fetch(x: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return {"x": x}

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch"

    async def main() -> list[dict[str, int]]:
        return [await fetch(1), await fetch(1), await fetch(2), await fetch(1)]

    assert asyncio.run(main()) == [{"x": 1}, {"x": 1}, {"x": 2}, {"x": 1}]
    assert calls == 2


def test_async_none_is_cached(dcache: Cache) -> None:
    calls = 0

    @cached(dcache)
    async def nothing() -> None:
        nonlocal calls
        calls += 1

    async def main() -> None:
        # The cached result is None itself, not a miss.
        assert await nothing() is None  # type: ignore[func-returns-value]
        assert await nothing() is None  # type: ignore[func-returns-value]

    asyncio.run(main())
    assert calls == 1


def test_async_ttl_and_invalidate(dcache: Cache, clock: ManualClock) -> None:
    calls = 0

    @cached(dcache, ttl=2)
    async def tick() -> int:
        nonlocal calls
        calls += 1
        return calls

    async def main() -> list[int]:
        out = [await tick()]
        clock.advance(1.999)
        out.append(await tick())
        clock.advance(0.001)
        out.append(await tick())
        assert tick.cache_invalidate() is True
        out.append(await tick())
        return out

    assert asyncio.run(main()) == [1, 1, 2, 3]


def test_async_exceptions_are_not_cached(dcache: Cache) -> None:
    calls = 0

    @cached(dcache)
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("boom")
        return "ok"

    async def main() -> str:
        with pytest.raises(ValueError, match="boom"):
            await flaky()
        return await flaky()

    assert asyncio.run(main()) == "ok"
    assert asyncio.run(flaky()) == "ok"
    assert calls == 2


def test_async_concurrent_callers_all_get_the_result(dcache: Cache) -> None:
    @cached(dcache)
    async def slow(x: int) -> int:
        await asyncio.sleep(0)
        return x * x

    async def main() -> list[int]:
        return list(await asyncio.gather(*(slow(i % 3) for i in range(12))))

    assert asyncio.run(main()) == [(i % 3) ** 2 for i in range(12)]
    assert len(dcache) == 3


def test_async_under_anyio_task_group(dcache: Cache) -> None:
    # The wrapper is a plain coroutine function: it runs under anyio as under asyncio.
    calls: list[int] = []

    @cached(dcache)
    async def square(x: int) -> int:
        calls.append(x)
        await anyio.lowlevel.checkpoint()
        return x * x

    results: dict[int, int] = {}

    async def one(i: int) -> None:
        results[i] = await square(i % 4)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for i in range(16):
                tg.start_soon(one, i)
        # Every key is cached now: a second round computes nothing.
        before = len(calls)
        assert [await square(i) for i in range(4)] == [0, 1, 4, 9]
        assert len(calls) == before

    anyio.run(main)
    assert results == {i: (i % 4) ** 2 for i in range(16)}
    assert sorted(set(calls)) == [0, 1, 2, 3]
    assert len(dcache) == 4


def test_async_exceptions_among_concurrent_callers_are_not_cached(dcache: Cache) -> None:
    calls: list[int] = []

    @cached(dcache)
    async def check(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0)
        if x % 2:
            raise ValueError(f"odd {x}")
        return x

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(check(x) for x in range(6)), return_exceptions=True))

    first = asyncio.run(main())
    assert first[0::2] == [0, 2, 4]
    assert all(isinstance(e, ValueError) for e in first[1::2])
    assert sorted(dcache.keys()) == sorted(check.cache_key(x) for x in (0, 2, 4))
    calls.clear()
    second = asyncio.run(main())
    assert second[0::2] == [0, 2, 4]
    assert sorted(calls) == [1, 3, 5]  # only the failures ran again


def test_async_cancelled_call_is_not_cached(dcache: Cache) -> None:
    started = 0

    @cached(dcache)
    async def slow() -> str:
        nonlocal started
        started += 1
        await asyncio.sleep(10)
        return "done"

    async def main() -> None:
        task = asyncio.create_task(slow())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert started == 1
    assert len(dcache) == 0


def test_sync_concurrent_threads(clock: ManualClock) -> None:
    # One Cache shared by threads: every caller gets the right result, and each key ends up
    # cached once. There is no per-key lock: callers that miss at the same moment each compute
    # (as with cachetools.cached without a lock), so a key may be computed more than once.
    c = Cache(clock=clock, cleanup_interval=0)
    calls: list[int] = []
    lock = threading.Lock()

    @cached(c)
    def work(x: int) -> dict[str, int]:
        with lock:
            calls.append(x)
        return {"x": x, "sq": x * x}

    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            barrier.wait(10)
            for i in range(200):
                x = (i + t) % 10
                assert work(x) == {"x": x, "sq": x * x}
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not errors
    assert len(c) == 10
    assert set(calls) == set(range(10))
    assert len(calls) <= 8 * 10  # at most one miss per thread and key
    before = len(calls)
    assert [work(x)["sq"] for x in range(10)] == [x * x for x in range(10)]
    assert len(calls) == before
    c.close()


def test_sync_exceptions_in_threads_are_not_cached(dcache: Cache) -> None:
    calls = 0
    lock = threading.Lock()

    @cached(dcache)
    def fails(x: int) -> int:
        nonlocal calls
        with lock:
            calls += 1
        raise RuntimeError(x)

    def run(x: int) -> None:
        with pytest.raises(RuntimeError):
            fails(x)

    threads = [threading.Thread(target=run, args=(i % 2,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert calls == 6
    assert len(dcache) == 0
