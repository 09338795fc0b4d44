"""ratmemcache: a memcached-compatible cache with a Rust core.

In process, Python objects by reference::

    import ratmemcache
    cache = ratmemcache.ObjectCache(max_entries=10_000, default_ttl=300)
    cache["user:1"] = {"name": "Ada"}

    @ratmemcache.cached(maxsize=1024)
    def load(user_id: int) -> dict: ...

or bytes, the store the server shares (with an optional L2 on disk)::

    cache = ratmemcache.Cache(max_memory="64MB", eviction="s3fifo", default_ttl=300)
    cache.set("user:1", b"...")

The same core backs the ``ratmemcached`` server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ratmemcache._core import (
    ENTRY_OVERHEAD,
    FLAG_SERIALIZED,
    POLICIES,
    Cache,
    CachedFunction,
    ManualClock,
    ObjectCache,
    __version__,
)
from ratmemcache.decorators import CacheInfo, cached
from ratmemcache.errors import CacheClosedError, ConfigError, PersistenceError, RatMemCacheError

if TYPE_CHECKING:
    from ratmemcache.config import Config, load_config
    from ratmemcache.native import serve_native
    from ratmemcache.server import Server, serve

__all__ = [
    "ENTRY_OVERHEAD",
    "FLAG_SERIALIZED",
    "POLICIES",
    "Cache",
    "CacheClosedError",
    "CacheInfo",
    "CachedFunction",
    "Config",
    "ConfigError",
    "ManualClock",
    "ObjectCache",
    "PersistenceError",
    "RatMemCacheError",
    "Server",
    "__version__",
    "cached",
    "load_config",
    "serve",
    "serve_native",
]

# The server side (anyio, tomlkit) is imported on first use, so `import ratmemcache` stays cheap
# for library users who never run a server.
_LAZY = {
    "Config": "ratmemcache.config",
    "load_config": "ratmemcache.config",
    "Server": "ratmemcache.server",
    "serve": "ratmemcache.server",
    "serve_native": "ratmemcache.native",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ratmemcache' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
