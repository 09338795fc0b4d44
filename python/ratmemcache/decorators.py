"""``@cached``: memoise a function's results in a :class:`ratmemcache.Cache`.

Works like ``cachetools.cached``, for plain and ``async`` functions. Results are stored with a
serializer (``pickle`` by default), so any picklable result, ``None`` included, is cached.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

if TYPE_CHECKING:
    from ratmemcache._core import Cache

F = TypeVar("F", bound=Callable[..., Any])

#: Keys longer than this are replaced by a digest, so any arguments give a valid key.
MAX_PLAIN_KEY = 200


class Serializer(Protocol):
    def dumps(self, obj: Any, /) -> bytes: ...
    def loads(self, data: bytes, /) -> Any: ...


def default_key(prefix: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``prefix`` plus the ``repr`` of the arguments, or a BLAKE2 digest of it when long."""
    body = repr(args) + (repr(sorted(kwargs.items())) if kwargs else "")
    if len(prefix) + len(body) > MAX_PLAIN_KEY:
        body = "#" + hashlib.blake2b(body.encode(), digest_size=20).hexdigest()
    return prefix + body


def cached(
    cache: Cache,
    ttl: float | None = None,
    key: Callable[..., str | bytes] | None = None,
    serializer: Serializer = pickle,
) -> Callable[[F], F]:
    """Memoise a function (sync or async) in ``cache``.

    ``ttl`` is in seconds (None uses the cache's default). ``key(*args, **kwargs)`` builds the cache
    key; by default it is the function's qualified name plus the ``repr`` of its arguments.
    The wrapper gets ``cache_key(*args, **kwargs)`` and ``cache_invalidate(*args, **kwargs)``.
    """

    def decorate(func: F) -> F:
        prefix = f"{func.__module__}.{func.__qualname__}:"

        def make_key(*args: Any, **kwargs: Any) -> str | bytes:
            if key is not None:
                return key(*args, **kwargs)
            return default_key(prefix, args, kwargs)

        def lookup(k: str | bytes) -> tuple[bool, Any]:
            raw = cache.get(k)
            if raw is None:
                return False, None
            return True, serializer.loads(raw)

        def remember(k: str | bytes, result: Any) -> None:
            # Too large for the cache: like cachetools, return the result uncached.
            with contextlib.suppress(ValueError):
                cache.set(k, serializer.dumps(result), ttl)

        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                k = make_key(*args, **kwargs)
                hit, value = lookup(k)
                if hit:
                    return value
                result = await func(*args, **kwargs)
                remember(k, result)
                return result

            wrapper = async_wrapper
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                k = make_key(*args, **kwargs)
                hit, value = lookup(k)
                if hit:
                    return value
                result = func(*args, **kwargs)
                remember(k, result)
                return result

            wrapper = sync_wrapper

        def invalidate(*args: Any, **kwargs: Any) -> bool:
            return cache.delete(make_key(*args, **kwargs))

        # Introspection helpers, as cachetools offers them.
        wrapper_any: Any = wrapper
        wrapper_any.cache = cache
        wrapper_any.cache_key = make_key
        wrapper_any.cache_invalidate = invalidate
        return cast(F, wrapper)

    return decorate
