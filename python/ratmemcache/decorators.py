"""``@cached``: memoise a function's results.

Where the results live decides how they are kept:

- **no cache given** (the default): an :class:`~ratmemcache.ObjectCache` of the wrapper's own,
  ``maxsize`` entries under ``eviction``. Results are kept by reference and the call runs in
  Rust up to your function (``ratmemcache._core.CachedFunction``);
- **an** :class:`~ratmemcache.ObjectCache`: the same, in a cache that several functions can
  share; each function's keys are prefixed with its qualified name;
- **a bytes** :class:`~ratmemcache.Cache` (one with an L2 on disk, say, or shared with a
  server): results are serialized (``pickle`` by default) under string keys.

Keys follow ``functools.lru_cache``: positional and keyword arguments are order-sensitive,
``typed=True`` tells ``1`` from ``1.0``, and unhashable arguments raise ``TypeError``. (The
bytes path builds string keys from ``repr`` instead, so any argument works there.)

**Single flight.** When several threads or asyncio tasks call with the same missing key, the
function runs once; the others wait for its result. If it raises, they all get the exception and
nothing is cached. Under trio (no asyncio loop) coroutine calls are not deduplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import pickle
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, ParamSpec, Protocol, TypeVar, cast, overload

from ratmemcache._core import Cache, CachedFunction, ObjectCache, SingleFlight

F = TypeVar("F", bound=Callable[..., Any])
_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Keys longer than this are replaced by a digest, so any arguments give a valid key.
MAX_PLAIN_KEY = 200


class CacheInfo(NamedTuple):
    """What ``cache_info()`` returns, with ``functools.lru_cache``'s fields."""

    hits: int
    misses: int
    maxsize: int | None
    currsize: int


class Serializer(Protocol):
    def dumps(self, obj: Any, /) -> bytes: ...
    def loads(self, data: bytes, /) -> Any: ...


def default_key(prefix: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``prefix`` plus the ``repr`` of the arguments, or a BLAKE2 digest of it when long."""
    body = repr(args) + (repr(sorted(kwargs.items())) if kwargs else "")
    if len(prefix) + len(body) > MAX_PLAIN_KEY:
        body = "#" + hashlib.blake2b(body.encode(), digest_size=20).hexdigest()
    return prefix + body


@overload
def cached(cache: Callable[_P, _R], /) -> CachedFunction[_P, _R]: ...


@overload
def cached(
    cache: ObjectCache[Any, Any] | Cache | None = None,
    *,
    ttl: float | None = None,
    maxsize: int | None = 128,
    key: Callable[..., Any] | None = None,
    typed: bool = False,
    eviction: str = "s3fifo",
    serializer: Serializer = pickle,
) -> Callable[[Callable[_P, _R]], CachedFunction[_P, _R]]: ...


def cached(
    cache: ObjectCache[Any, Any] | Cache | Callable[..., Any] | None = None,
    *,
    ttl: float | None = None,
    maxsize: int | None = 128,
    key: Callable[..., Any] | None = None,
    typed: bool = False,
    eviction: str = "s3fifo",
    serializer: Serializer = pickle,
) -> Any:
    """Memoise a function (sync or async).

    ``cache``: None (a cache of the wrapper's own, ``maxsize`` entries, ``None`` = unbounded,
    ``0`` = nothing cached), an ``ObjectCache``, or a bytes ``Cache``. ``ttl`` is in seconds
    (None uses the cache's default; 0 = never). ``key(*args, **kwargs)`` replaces the default
    key. ``eviction`` names the policy of the wrapper's own cache. ``serializer`` is for a bytes
    ``Cache`` only. Used bare (``@cached``), it takes all the defaults.

    The wrapper has ``cache_info()``, ``cache_clear()``, ``cache_parameters()``,
    ``cache_key(*args, **kwargs)``, ``cache_invalidate(*args, **kwargs)`` and ``cache``. (For
    type checkers it is a ``CachedFunction``; at run time a coroutine function or a bytes-cache
    wrapper is a plain function with the same attributes.)
    """
    if callable(cache) and not isinstance(cache, (ObjectCache, Cache)):
        return cached()(cache)
    if cache is not None and not isinstance(cache, (ObjectCache, Cache)):
        raise TypeError(
            f"cached() takes an ObjectCache, a Cache or None, not {type(cache).__name__}"
        )

    def decorate(func: F) -> F:
        if isinstance(cache, Cache):
            return _serialized(func, cache, ttl, key, serializer)
        native = CachedFunction(
            func, cache, maxsize=maxsize, typed=typed, ttl=ttl, key=key, eviction=eviction
        )
        if inspect.iscoroutinefunction(func):
            return cast(F, _coroutine(func, native))
        functools.update_wrapper(native, func)
        return cast(F, native)

    return decorate


class _Flights:
    """Single flight for coroutines of one event loop: the first caller of a missing key leads,
    the others await its future."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): no deduplication
            return await compute()
        while True:
            running = self._running.get(key)
            if running is None or running.get_loop() is not loop:
                break
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not running.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The leader was cancelled, not us: lead instead.
        future: asyncio.Future[Any] = loop.create_future()
        self._running[key] = future
        try:
            result = await compute()
        except Exception as e:
            future.set_exception(e)
            future.exception()  # retrieved: no "never retrieved" warning without followers
            raise
        except BaseException:
            future.cancel()
            raise
        else:
            future.set_result(result)
            return result
        finally:
            if self._running.get(key) is future:
                del self._running[key]


def _coroutine(func: Callable[..., Any], native: CachedFunction[..., Any]) -> Callable[..., Any]:
    missing = object()
    flights = _Flights()

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        k = native.cache_key(*args, **kwargs)
        value = native._lookup(k, missing)
        if value is not missing:
            return value

        async def compute() -> Any:
            result = await func(*args, **kwargs)
            native._store(k, result)
            return result

        return await flights.run(k, compute)

    w: Any = wrapper
    for name in ("cache_info", "cache_clear", "cache_parameters", "cache_key", "cache_invalidate"):
        setattr(w, name, getattr(native, name))
    w.cache = native.cache
    return wrapper


def _serialized(
    func: F,
    cache: Cache,
    ttl: float | None,
    key: Callable[..., str | bytes] | None,
    serializer: Serializer,
) -> F:
    """``@cached`` over a bytes ``Cache``: serialized results under ``repr``-built keys."""
    prefix = f"{func.__module__}.{func.__qualname__}:"
    counts = {"hits": 0, "misses": 0}

    def make_key(*args: Any, **kwargs: Any) -> str | bytes:
        if key is not None:
            return key(*args, **kwargs)
        return default_key(prefix, args, kwargs)

    def lookup(k: str | bytes) -> tuple[bool, Any]:
        raw = cache.get(k)
        if raw is None:
            counts["misses"] += 1
            return False, None
        counts["hits"] += 1
        return True, serializer.loads(raw)

    def remember(k: str | bytes, result: Any) -> None:
        # Too large for the cache: like cachetools, return the result uncached.
        with contextlib.suppress(ValueError):
            cache.set(k, serializer.dumps(result), ttl)

    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(func):
        flights = _Flights()

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            k = make_key(*args, **kwargs)
            hit, value = lookup(k)
            if hit:
                return value

            async def compute() -> Any:
                result = await func(*args, **kwargs)
                remember(k, result)
                return result

            return await flights.run(k, compute)

        wrapper = async_wrapper
    else:
        flight = SingleFlight()

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            k = make_key(*args, **kwargs)
            hit, value = lookup(k)
            if hit:
                return value

            def compute() -> Any:
                result = func(*args, **kwargs)
                remember(k, result)
                return result

            return flight.run(k, compute)

        wrapper = sync_wrapper

    def invalidate(*args: Any, **kwargs: Any) -> bool:
        return cache.delete(make_key(*args, **kwargs))

    def mine() -> list[str | bytes]:
        return [k for k in cache if isinstance(k, str) and k.startswith(prefix)]

    def cache_info() -> CacheInfo:
        return CacheInfo(counts["hits"], counts["misses"], None, len(mine()))

    def cache_clear() -> None:
        if key is not None:
            raise TypeError(
                "cache_clear() can't tell this function's entries from others in a shared Cache "
                "when key= is given; use cache_invalidate() or the cache's clear()"
            )
        for k in mine():
            cache.delete(k)
        counts["hits"] = counts["misses"] = 0

    def cache_parameters() -> dict[str, Any]:
        return {"maxsize": None, "typed": False, "ttl": ttl, "eviction": cache.eviction}

    w: Any = wrapper
    w.cache = cache
    w.cache_key = make_key
    w.cache_invalidate = invalidate
    w.cache_info = cache_info
    w.cache_clear = cache_clear
    w.cache_parameters = cache_parameters
    return cast(F, wrapper)
