"""ratmemcache: a memcached-compatible cache with a Rust core.

In process::

    import ratmemcache
    cache = ratmemcache.Cache(max_memory="64MB", eviction="s3fifo", default_ttl=300)
    cache.set("user:1", b"...")
    cache.get("user:1")

The same core backs the ``ratmemcached`` server.
"""

from __future__ import annotations

from ratmemcache._core import (
    ENTRY_OVERHEAD,
    FLAG_SERIALIZED,
    POLICIES,
    Cache,
    ManualClock,
    __version__,
)
from ratmemcache.decorators import cached
from ratmemcache.errors import CacheClosedError, ConfigError, PersistenceError, RatMemCacheError

__all__ = [
    "ENTRY_OVERHEAD",
    "FLAG_SERIALIZED",
    "POLICIES",
    "Cache",
    "CacheClosedError",
    "ConfigError",
    "ManualClock",
    "PersistenceError",
    "RatMemCacheError",
    "__version__",
    "cached",
]
