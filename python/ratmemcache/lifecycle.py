"""What every server engine does the same way around its cache."""

from __future__ import annotations

from typing import Any


def require_bytes_cache(cache: Any, who: str) -> None:
    """A server serves a bytes ``Cache``; anything else is a TypeError that says why.

    An ``ObjectCache`` holds Python objects by reference: memcached clients can only send and
    receive bytes, so there is nothing the protocol could return for them.
    """
    from ratmemcache._core import Cache, ObjectCache

    if cache is None or isinstance(cache, Cache):
        return
    if isinstance(cache, ObjectCache):
        raise TypeError(
            f"{who} can't serve an ObjectCache: it keeps Python objects by reference, and "
            "memcached clients send and receive bytes. Serve a ratmemcache.Cache (bytes, "
            "optionally with serializer=pickle) instead."
        )
    raise TypeError(f"{who} serves a ratmemcache.Cache, not {type(cache).__name__}")
