"""A Django cache backend on an in-process :class:`ratmemcache.Cache`: no server, no sockets.

::

    CACHES = {
        "default": {
            "BACKEND": "ratmemcache.contrib.django.RatMemCache",
            "LOCATION": "default",               # caches with the same LOCATION share one store
            "TIMEOUT": 300,
            "OPTIONS": {"max_memory": "256MB", "eviction": "s3fifo"},
        }
    }

It behaves like Django's ``LocMemCache`` (values are pickled, so anything picklable can be
cached; the timeouts follow Django's rules: ``None`` is forever, ``0`` or less is "expire at
once", so nothing is stored) with ratmemcache's eviction, memory bound and optional disk tier
(``OPTIONS={"l2_dir": ...}``). See docs/django.md.

Django's ``caches`` makes one backend object per thread; all those with the same ``LOCATION``
share one :class:`~ratmemcache.Cache`, opened by the first and closed by :func:`close_caches` (at
interpreter exit, which also commits an L2 to disk). ``close()``, which Django calls at the end of
every request, keeps it open.
"""

from __future__ import annotations

import atexit
import math
import pickle
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.exceptions import ImproperlyConfigured

from ratmemcache._core import Cache

__all__ = ["CACHE_OPTIONS", "RatMemCache", "cache_kwargs", "close_caches"]

#: The ``Cache()`` keyword arguments that ``OPTIONS`` may set. ``default_ttl`` is Django's
#: ``TIMEOUT`` and values are always pickled, so ``default_ttl`` and ``serializer`` are not here.
CACHE_OPTIONS = frozenset(
    {
        "max_memory",
        "max_entries",
        "eviction",
        "max_ttl",
        "cleanup_interval",
        "shards",
        "max_key_length",
        "clock",
        "l2_dir",
        "l2_max_disk_size",
        "l2_sync",
        "l2_write_strategy",
        "l2_file_threshold",
        "large_value_threshold",
        "compression",
        "compression_threshold",
        "clear_on_startup",
        "on_corruption",
        "warm_up",
    }
)

# One Cache per LOCATION, shared by the backend objects of every thread (like LocMemCache's
# module-level dicts); an L2 directory can only be opened once per process anyway.
_shared: dict[str, tuple[dict[str, Any], Cache]] = {}
_shared_lock = threading.Lock()


def cache_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Cache()`` keyword arguments for a backend's ``OPTIONS``.

    Django's own ``MAX_ENTRIES`` is accepted as ``max_entries``; ``CULL_FREQUENCY`` is accepted
    and ignored (the eviction policy chooses what goes). Anything else unknown is refused.
    """
    kwargs: dict[str, Any] = {}
    for name, value in options.items():
        if name == "MAX_ENTRIES":
            kwargs["max_entries"] = value
        elif name == "CULL_FREQUENCY":
            continue
        elif name in CACHE_OPTIONS:
            kwargs[name] = value
        else:
            known = ", ".join(sorted(CACHE_OPTIONS | {"MAX_ENTRIES", "CULL_FREQUENCY"}))
            raise ImproperlyConfigured(
                f"RatMemCache: unknown OPTIONS key {name!r} (known: {known}); "
                "use TIMEOUT for the default timeout"
            )
    return kwargs


def _shared_cache(name: str, kwargs: dict[str, Any]) -> Cache:
    with _shared_lock:
        entry = _shared.get(name)
        if entry is not None and not entry[1].closed:
            known, cache = entry
            if known != kwargs:
                raise ImproperlyConfigured(
                    f"RatMemCache: LOCATION {name!r} is already open with OPTIONS {known!r}; "
                    f"another cache asks for {kwargs!r} (give it another LOCATION)"
                )
            return cache
        cache = Cache(**kwargs)
        _shared[name] = (kwargs, cache)
        return cache


def _too_large(e: ValueError) -> bool:
    """Whether ``Cache`` refused the item for its size (other ValueErrors, such as a key over
    ``max_key_length``, are the caller's to see)."""
    return "does not fit" in str(e)


def close_caches() -> None:
    """Close every cache this backend opened (committing their L2s) and forget them.

    Runs at interpreter exit. A backend used afterwards opens a new cache for its LOCATION
    (empty, unless its L2 directory brings the items back).
    """
    with _shared_lock:
        entries = list(_shared.values())
        _shared.clear()
    for _, cache in entries:
        cache.close()


atexit.register(close_caches)


class RatMemCache(BaseCache):
    """Django's cache API on a shared in-process :class:`ratmemcache.Cache`."""

    pickle_protocol = pickle.HIGHEST_PROTOCOL

    def __init__(self, name: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.name = name
        self._cache = _shared_cache(name, cache_kwargs(params.get("OPTIONS") or {}))

    @property
    def cache(self) -> Cache:
        """The :class:`ratmemcache.Cache` behind this backend (for ``stats()``, ``flush()``...)."""
        return self._cache

    def _ttl(self, timeout: Any) -> float | None:
        """The library TTL for a Django timeout: 0 for "never expire", None for "do not store"
        (a timeout of 0 or less expires the item at once)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return 0
        seconds = float(timeout)
        if seconds == math.inf:
            return 0
        return seconds if seconds > 0 else None

    def _dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, self.pickle_protocol)

    def add(
        self,
        key: Any,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> bool:
        key = self.make_and_validate_key(key, version=version)
        pickled = self._dumps(value)
        ttl = self._ttl(timeout)
        if ttl is None:
            # Stored and expired at once: "added" if nothing live was there.
            return not self._cache.contains_key(key)
        try:
            return self._cache.add(key, pickled, ttl)
        except ValueError as e:
            if _too_large(e):
                return False
            raise

    def get(self, key: Any, default: Any | None = None, version: int | None = None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        raw = self._cache.get(key)
        if raw is None:
            return default
        return pickle.loads(raw)

    def set(
        self,
        key: Any,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> None:
        key = self.make_and_validate_key(key, version=version)
        self._store(key, self._dumps(value), self._ttl(timeout))

    def _store(self, key: str, pickled: bytes, ttl: float | None) -> bool:
        if ttl is None:
            self._cache.delete(key)
            return True
        try:
            self._cache.set(key, pickled, ttl)
        except ValueError as e:
            if not _too_large(e):
                raise
            # Like Django's memcached backends, never leave the old value behind.
            self._cache.delete(key)
            return False
        return True

    def touch(
        self, key: Any, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        key = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        if ttl is None:
            return self._cache.delete(key)
        return self._cache.touch(key, ttl)

    def delete(self, key: Any, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return self._cache.delete(key)

    def has_key(self, key: Any, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return self._cache.contains_key(key)

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        """Adds ``delta`` to the stored value (any type that supports ``+``), keeping its expiry.

        Atomic: a compare-and-swap loop, so concurrent increments are never lost. ValueError if
        the key is missing, as in every Django backend.
        """
        key = self.make_and_validate_key(key, version=version)
        while True:
            found = self._cache.gets(key)
            remaining = self._cache.ttl(key) if found is not None else None
            if found is None or remaining is None:
                raise ValueError(f"Key '{key}' not found")
            raw, unique = found
            new_value = pickle.loads(raw) + delta
            ttl = 0 if math.isinf(remaining) else max(remaining, 0.001)
            if self._cache.cas(key, self._dumps(new_value), unique, ttl):
                return new_value

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        made = {self.make_and_validate_key(k, version=version): k for k in keys}
        found = self._cache.get_many(made)
        return {orig: pickle.loads(found[k]) for k, orig in made.items() if k in found}

    def set_many(
        self,
        data: dict[Any, Any],
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[Any]:
        ttl = self._ttl(timeout)
        failed: list[Any] = []
        for key, value in data.items():
            made = self.make_and_validate_key(key, version=version)
            if not self._store(made, self._dumps(value), ttl):
                failed.append(key)
        return failed

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        for key in keys:
            self._cache.delete(self.make_and_validate_key(key, version=version))

    def clear(self) -> None:
        self._cache.clear()

    def close(self, **kwargs: Any) -> None:
        """Django calls this after every request: the shared cache stays open (see
        :func:`close_caches`)."""
