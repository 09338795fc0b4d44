"""Django's cache framework on ratmemcache, both ways:

- ``ratmemcache.contrib.django.RatMemCache``, the in-process backend (no server), on the
  library's ManualClock so that timeouts are tested without sleeping;
- Django's own ``django.core.cache.backends.memcached.PyMemcacheCache`` against a running
  ratmemcached, with each I/O engine.

Most tests here are ported from Django's own cache backend tests, ``tests/cache/tests.py`` in
the Django repository (``BaseCacheTests``, plus the relevant ones of ``LocMemCacheTests``,
``BaseMemcachedTests`` and ``DefaultNonExpiringCacheKeyTests``; Django is BSD-licensed). They
keep Django's names and check the same things, rewritten as pytest functions: ``time.sleep(n)``
became ``backend.elapse(n)`` (which advances the ManualClock), and ``subTest`` loops became plain
loops. Tests that need Django's test database, request machinery or cull counts of
``LocMemCache`` are left out (see docs/django.md). For the server backends, the tests that wait
for real time are replaced by one test, ``test_memcached_timeouts_real_clock``, that waits once.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import CacheHandler
from django.core.cache.backends.base import CacheKeyWarning, InvalidCacheKey
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from pymemcache.exceptions import MemcacheClientError

from ratmemcache import ManualClock
from ratmemcache.contrib.django import RatMemCache, cache_kwargs, close_caches
from servers import ENGINES, ServerProcess, start_ratmemcached

START = 1_700_000_000.0
KEY_ERRORS_WITH_MEMCACHED_MSG = (
    "Cache key contains characters that will cause errors if used with memcached: %r"
)


# Module-level callables for test_data_types (pickled by reference) and KEY_FUNCTION.
def f() -> int:
    return 42


class C:
    def m(n: int) -> int:  # type: ignore[misc]  # as in Django's test module
        return 24


class Unpicklable:
    def __getstate__(self) -> Any:
        raise pickle.PickleError()


def custom_key_func(key: str, key_prefix: str, version: int) -> str:
    "A customized cache key function"
    return "CUSTOM-" + "-".join([key_prefix, str(version), key])


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module", autouse=True)
def django_settings() -> None:
    """Django needs configured settings; the caches themselves come from override_settings."""
    if not settings.configured:
        settings.configure(USE_TZ=True)


class Servers:
    """One ratmemcached per engine, started when a test first asks for it."""

    def __init__(self) -> None:
        self.running: dict[str, ServerProcess] = {}

    def get(self, engine: str) -> ServerProcess:
        if engine not in self.running:
            self.running[engine] = start_ratmemcached(engine=engine)
        return self.running[engine]

    def stop(self) -> None:
        for srv in self.running.values():
            srv.stop()
            srv.cleanup()


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    s = Servers()
    try:
        yield s
    finally:
        s.stop()


@dataclass
class Backend:
    """One way of running the tests: which BACKEND, and how time passes for it."""

    name: str
    base: dict[str, Any]
    incr_decr_type_error: type[Exception]
    clock: ManualClock | None = None
    #: Django's memcached backends raise InvalidCacheKey where the others warn.
    memcached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def elapse(self, seconds: float) -> None:
        if self.clock is None:
            time.sleep(seconds)
        else:
            self.clock.advance(seconds)

    def caches_setting(self, **params: Any) -> dict[str, dict[str, Any]]:
        """Django's ``caches_setting_for_tests``: the same store under several aliases."""
        setting_base: dict[str, dict[str, Any]] = {
            "default": {},
            "prefix": {"KEY_PREFIX": "cacheprefix"},
            "v2": {"VERSION": 2},
            "custom_key": {"KEY_FUNCTION": custom_key_func},
            "custom_key2": {"KEY_FUNCTION": f"{__name__}.custom_key_func"},
        }
        return {
            alias: {**self.base, **overrides, **params} for alias, overrides in setting_base.items()
        }


BACKENDS = ["ratmemcache", *(f"pymemcache-{e}" for e in ENGINES)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, servers: Servers) -> Backend:
    name = str(request.param)
    if name == "ratmemcache":
        clock = ManualClock(START)
        return Backend(
            name,
            {
                "BACKEND": "ratmemcache.contrib.django.RatMemCache",
                "LOCATION": "tests",
                "OPTIONS": {"clock": clock, "cleanup_interval": 0},
            },
            incr_decr_type_error=TypeError,
            clock=clock,
        )
    srv = servers.get(name.removeprefix("pymemcache-"))
    return Backend(
        name,
        {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": f"{srv.host}:{srv.port}",
            "OPTIONS": {"connect_timeout": 5, "timeout": 5},
        },
        incr_decr_type_error=MemcacheClientError,
        memcached=True,
    )


@pytest.fixture
def caches(backend: Backend) -> Iterator[CacheHandler]:
    """Django's ``caches``, configured for ``backend``; emptied afterwards (Django's tearDown)."""
    from django.core.cache import caches as handler

    with override_settings(CACHES=backend.caches_setting()):
        yield handler
        handler["default"].clear()
    close_caches()


@pytest.fixture
def cache(caches: CacheHandler) -> Any:  # overrides conftest's library ``cache`` in this module
    return caches["default"]


def needs_manual_clock(backend: Backend) -> None:
    if backend.clock is None:
        pytest.skip("waits for real time: covered by test_memcached_timeouts_real_clock")


# --------------------------------------------------------------------------------------------
# Ported from Django's BaseCacheTests


def test_simple(cache: Any) -> None:
    cache.set("key", "value")
    assert cache.get("key") == "value"


def test_default_used_when_none_is_set(cache: Any) -> None:
    cache.set("key_default_none", None)
    assert cache.get("key_default_none", default="default") is None


def test_add(cache: Any) -> None:
    assert cache.add("addkey1", "value") is True
    assert cache.add("addkey1", "newvalue") is False
    assert cache.get("addkey1") == "value"


def test_prefix(cache: Any, caches: CacheHandler) -> None:
    cache.set("somekey", "value")
    assert caches["prefix"].has_key("somekey") is False
    caches["prefix"].set("somekey", "value2")
    assert cache.get("somekey") == "value"
    assert caches["prefix"].get("somekey") == "value2"


def test_non_existent(cache: Any) -> None:
    assert cache.get("does_not_exist") is None
    assert cache.get("does_not_exist", "bang!") == "bang!"


def test_get_many(cache: Any) -> None:
    cache.set_many({"a": "a", "b": "b", "c": "c", "d": "d"})
    assert cache.get_many(["a", "c", "d"]) == {"a": "a", "c": "c", "d": "d"}
    assert cache.get_many(["a", "b", "e"]) == {"a": "a", "b": "b"}
    assert cache.get_many(iter(["a", "b", "e"])) == {"a": "a", "b": "b"}
    cache.set_many({"x": None, "y": 1})
    assert cache.get_many(["x", "y"]) == {"x": None, "y": 1}


def test_delete(cache: Any) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs"})
    assert cache.get("key1") == "spam"
    assert cache.delete("key1") is True
    assert cache.get("key1") is None
    assert cache.get("key2") == "eggs"


def test_delete_nonexistent(cache: Any) -> None:
    assert cache.delete("nonexistent_key") is False


def test_has_key(cache: Any) -> None:
    cache.set("hello1", "goodbye1")
    assert cache.has_key("hello1") is True
    assert cache.has_key("goodbye1") is False
    cache.set("no_expiry", "here", None)
    assert cache.has_key("no_expiry") is True
    cache.set("null", None)
    assert cache.has_key("null") is True


def test_in(cache: Any) -> None:
    cache.set("hello2", "goodbye2")
    assert "hello2" in cache
    assert "goodbye2" not in cache
    cache.set("null", None)
    assert "null" in cache


def test_incr(cache: Any, backend: Backend) -> None:
    cache.set("answer", 41)
    assert cache.incr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.incr("answer", 10) == 52
    assert cache.get("answer") == 52
    assert cache.incr("answer", -10) == 42
    with pytest.raises(ValueError):
        cache.incr("does_not_exist")
    with pytest.raises(ValueError):
        cache.incr("does_not_exist", -1)
    cache.set("null", None)
    with pytest.raises(backend.incr_decr_type_error):
        cache.incr("null")


def test_decr(cache: Any, backend: Backend) -> None:
    cache.set("answer", 43)
    assert cache.decr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.decr("answer", 10) == 32
    assert cache.get("answer") == 32
    assert cache.decr("answer", -10) == 42
    with pytest.raises(ValueError):
        cache.decr("does_not_exist")
    with pytest.raises(ValueError):
        cache.incr("does_not_exist", -1)
    cache.set("null", None)
    with pytest.raises(backend.incr_decr_type_error):
        cache.decr("null")


def test_close(cache: Any) -> None:
    assert hasattr(cache, "close")
    cache.close()
    # Django closes caches at the end of every request: the cache must keep working.
    cache.set("after_close", 1)
    assert cache.get("after_close") == 1


def test_data_types(cache: Any) -> None:
    tests = {
        "string": "this is a string",
        "int": 42,
        "bool": True,
        "list": [1, 2, 3, 4],
        "tuple": (1, 2, 3, 4),
        "dict": {"A": 1, "B": 2},
        "function": f,
        "class": C,
    }
    for key, value in tests.items():
        cache.set(key, value)
        assert cache.get(key) == value, key


def test_expiration(cache: Any, backend: Backend) -> None:
    needs_manual_clock(backend)
    cache.set("expire1", "very quickly", 1)
    cache.set("expire2", "very quickly", 1)
    cache.set("expire3", "very quickly", 1)
    backend.elapse(2)
    assert cache.get("expire1") is None
    assert cache.add("expire2", "newvalue") is True
    assert cache.get("expire2") == "newvalue"
    assert cache.has_key("expire3") is False


def test_touch(cache: Any, backend: Backend) -> None:
    needs_manual_clock(backend)
    cache.set("expire1", "very quickly", timeout=1)
    assert cache.touch("expire1", timeout=4) is True
    backend.elapse(2)
    assert cache.has_key("expire1") is True
    backend.elapse(3)
    assert cache.has_key("expire1") is False
    # touch() works without the timeout argument.
    cache.set("expire1", "very quickly", timeout=1)
    assert cache.touch("expire1") is True
    backend.elapse(2)
    assert cache.has_key("expire1") is True
    assert cache.touch("nonexistent") is False


def test_unicode(cache: Any) -> None:
    stuff = {
        "ascii": "ascii_value",
        "unicode_ascii": "Iñtërnâtiônàlizætiøn1",
        "Iñtërnâtiônàlizætiøn": "Iñtërnâtiônàlizætiøn2",
        "ascii2": {"x": 1},
    }
    for key, value in stuff.items():
        cache.set(key, value)
        assert cache.get(key) == value
    for key, value in stuff.items():
        assert cache.delete(key) is True
        assert cache.add(key, value) is True
        assert cache.get(key) == value
    for key in stuff:
        assert cache.delete(key) is True
    cache.set_many(stuff)
    for key, value in stuff.items():
        assert cache.get(key) == value


def test_binary_string(cache: Any) -> None:
    value = "value_to_be_compressed"
    compressed_value = zlib.compress(value.encode())
    cache.set("binary1", compressed_value)
    compressed_result = cache.get("binary1")
    assert compressed_value == compressed_result
    assert value == zlib.decompress(compressed_result).decode()
    assert cache.add("binary1-add", compressed_value) is True
    compressed_result = cache.get("binary1-add")
    assert compressed_value == compressed_result
    assert value == zlib.decompress(compressed_result).decode()
    cache.set_many({"binary1-set_many": compressed_value})
    compressed_result = cache.get("binary1-set_many")
    assert compressed_value == compressed_result
    assert value == zlib.decompress(compressed_result).decode()


def test_set_many(cache: Any) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs"})
    assert cache.get("key1") == "spam"
    assert cache.get("key2") == "eggs"


def test_set_many_returns_empty_list_on_success(cache: Any) -> None:
    assert cache.set_many({"key1": "spam", "key2": "eggs"}) == []


def test_set_many_expiration(cache: Any, backend: Backend) -> None:
    needs_manual_clock(backend)
    cache.set_many({"key1": "spam", "key2": "eggs"}, 1)
    backend.elapse(2)
    assert cache.get("key1") is None
    assert cache.get("key2") is None


def test_set_many_empty_data(cache: Any) -> None:
    assert cache.set_many({}) == []


def test_delete_many(cache: Any) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs", "key3": "ham"})
    cache.delete_many(["key1", "key2"])
    assert cache.get("key1") is None
    assert cache.get("key2") is None
    assert cache.get("key3") == "ham"


def test_delete_many_no_keys(cache: Any) -> None:
    assert cache.delete_many([]) is None


def test_clear(cache: Any) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs"})
    cache.clear()
    assert cache.get("key1") is None
    assert cache.get("key2") is None


def test_long_timeout(cache: Any) -> None:
    # memcached's convention: over 30 days is an absolute time (Django's memcached backends
    # convert); the other backends take it as seconds from now. Either way it is stored.
    cache.set("key1", "eggs", 60 * 60 * 24 * 30 + 1)
    assert cache.get("key1") == "eggs"
    assert cache.add("key2", "ham", 60 * 60 * 24 * 30 + 1) is True
    assert cache.get("key2") == "ham"
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, 60 * 60 * 24 * 30 + 1)
    assert cache.get("key3") == "sausage"
    assert cache.get("key4") == "lobster bisque"


def test_forever_timeout(cache: Any, backend: Backend) -> None:
    cache.set("key1", "eggs", None)
    assert cache.get("key1") == "eggs"
    assert cache.add("key2", "ham", None) is True
    assert cache.get("key2") == "ham"
    assert cache.add("key1", "new eggs", None) is False
    assert cache.get("key1") == "eggs"
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, None)
    assert cache.get("key3") == "sausage"
    assert cache.get("key4") == "lobster bisque"
    needs_manual_clock(backend)
    cache.set("key5", "belgian fries", timeout=1)
    assert cache.touch("key5", timeout=None) is True
    backend.elapse(2)
    assert cache.get("key5") == "belgian fries"


def test_zero_timeout(cache: Any) -> None:
    cache.set("key1", "eggs", 0)
    assert cache.get("key1") is None
    assert cache.add("key2", "ham", 0) is True
    assert cache.get("key2") is None
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, 0)
    assert cache.get("key3") is None
    assert cache.get("key4") is None
    cache.set("key5", "belgian fries", timeout=5)
    assert cache.touch("key5", timeout=0) is True
    assert cache.get("key5") is None


def test_float_timeout(cache: Any) -> None:
    cache.set("key1", "spam", 100.2)
    assert cache.get("key1") == "spam"


def perform_invalid_key_test(
    cache: Any,
    backend: Backend,
    key: str,
    expected_warning: str,
    key_func: Callable[..., str] | None = None,
) -> None:
    """Django's ``_perform_invalid_key_test``: every operation warns (raises, for the memcached
    backends) on a key memcached would refuse."""
    tests: list[tuple[str, list[Any]]] = [
        ("add", [key, 1]),
        ("get", [key]),
        ("set", [key, 1]),
        ("incr", [key]),
        ("decr", [key]),
        ("touch", [key]),
        ("delete", [key]),
        ("get_many", [[key, "b"]]),
        ("set_many", [{key: 1, "b": 2}]),
        ("delete_many", [[key, "b"]]),
    ]
    if backend.memcached:
        msg = expected_warning.replace(key, cache.make_key(key))
        for operation, args in tests:
            with pytest.raises(InvalidCacheKey) as exc:
                getattr(cache, operation)(*args)
            assert str(exc.value) == msg, operation
        return

    def func(key: str, *args: Any) -> str:
        return key

    old_func = cache.key_func
    cache.key_func = key_func or func
    try:
        for operation, args in tests:
            # incr/decr of the missing key raise ValueError, after the warning.
            with pytest.warns(CacheKeyWarning) as record, contextlib.suppress(ValueError):
                getattr(cache, operation)(*args)
            assert [str(w.message) for w in record] == [expected_warning], operation
    finally:
        cache.key_func = old_func


def test_invalid_key_characters(cache: Any, backend: Backend) -> None:
    key = "key with spaces and 清"
    perform_invalid_key_test(cache, backend, key, KEY_ERRORS_WITH_MEMCACHED_MSG % key)


def test_invalid_key_length(cache: Any, backend: Backend) -> None:
    key = ("a" * 250) + "清"
    expected_warning = (
        f"Cache key will cause errors if used with memcached: {key!r} (longer than 250)"
    )
    perform_invalid_key_test(cache, backend, key, expected_warning)


def test_invalid_with_version_key_length(cache: Any, backend: Backend) -> None:
    if backend.memcached:
        # BaseMemcachedTests' version: make_key() adds ":1:" and exceeds the limit.
        key = "a" * 248
        expected_warning = (
            f"Cache key will cause errors if used with memcached: {key!r} (longer than 250)"
        )
        perform_invalid_key_test(cache, backend, key, expected_warning)
        return

    def key_func(key: str, *args: Any) -> str:
        return key + ":1"

    key = "a" * 249
    expected_warning = (
        f"Cache key will cause errors if used with memcached: {key_func(key)!r} (longer than 250)"
    )
    perform_invalid_key_test(cache, backend, key, expected_warning, key_func=key_func)


def test_cache_versioning_get_set(cache: Any, caches: CacheHandler) -> None:
    v2 = caches["v2"]
    cache.set("answer1", 42)
    assert cache.get("answer1") == 42
    assert cache.get("answer1", version=1) == 42
    assert cache.get("answer1", version=2) is None
    assert v2.get("answer1") is None
    assert v2.get("answer1", version=1) == 42
    assert v2.get("answer1", version=2) is None

    cache.set("answer2", 42, version=2)
    assert cache.get("answer2") is None
    assert cache.get("answer2", version=1) is None
    assert cache.get("answer2", version=2) == 42
    assert v2.get("answer2") == 42
    assert v2.get("answer2", version=1) is None
    assert v2.get("answer2", version=2) == 42

    v2.set("answer3", 42)
    assert cache.get("answer3") is None
    assert cache.get("answer3", version=1) is None
    assert cache.get("answer3", version=2) == 42
    assert v2.get("answer3") == 42
    assert v2.get("answer3", version=1) is None
    assert v2.get("answer3", version=2) == 42

    v2.set("answer4", 42, version=1)
    assert cache.get("answer4") == 42
    assert cache.get("answer4", version=1) == 42
    assert cache.get("answer4", version=2) is None
    assert v2.get("answer4") is None
    assert v2.get("answer4", version=1) == 42
    assert v2.get("answer4", version=2) is None


def test_cache_versioning_add(cache: Any, caches: CacheHandler) -> None:
    v2 = caches["v2"]
    assert cache.add("answer1", 42, version=2) is True
    assert cache.get("answer1", version=1) is None
    assert cache.get("answer1", version=2) == 42
    assert cache.add("answer1", 37, version=2) is False
    assert cache.get("answer1", version=1) is None
    assert cache.get("answer1", version=2) == 42
    assert cache.add("answer1", 37, version=1) is True
    assert cache.get("answer1", version=1) == 37
    assert cache.get("answer1", version=2) == 42

    assert v2.add("answer2", 42) is True
    assert cache.get("answer2", version=1) is None
    assert cache.get("answer2", version=2) == 42
    assert v2.add("answer2", 37) is False
    assert cache.get("answer2", version=1) is None
    assert cache.get("answer2", version=2) == 42
    assert v2.add("answer2", 37, version=1) is True
    assert cache.get("answer2", version=1) == 37
    assert cache.get("answer2", version=2) == 42

    assert v2.add("answer3", 42, version=1) is True
    assert cache.get("answer3", version=1) == 42
    assert cache.get("answer3", version=2) is None
    assert v2.add("answer3", 37, version=1) is False
    assert cache.get("answer3", version=1) == 42
    assert cache.get("answer3", version=2) is None
    assert v2.add("answer3", 37) is True
    assert cache.get("answer3", version=1) == 42
    assert cache.get("answer3", version=2) == 37


def test_cache_versioning_has_key(cache: Any, caches: CacheHandler) -> None:
    cache.set("answer1", 42)
    assert cache.has_key("answer1") is True
    assert cache.has_key("answer1", version=1) is True
    assert cache.has_key("answer1", version=2) is False
    assert caches["v2"].has_key("answer1") is False
    assert caches["v2"].has_key("answer1", version=1) is True
    assert caches["v2"].has_key("answer1", version=2) is False


def test_cache_versioning_delete(cache: Any, caches: CacheHandler) -> None:
    cache.set("answer1", 37, version=1)
    cache.set("answer1", 42, version=2)
    assert cache.delete("answer1") is True
    assert cache.get("answer1", version=1) is None
    assert cache.get("answer1", version=2) == 42

    cache.set("answer2", 37, version=1)
    cache.set("answer2", 42, version=2)
    assert cache.delete("answer2", version=2) is True
    assert cache.get("answer2", version=1) == 37
    assert cache.get("answer2", version=2) is None

    cache.set("answer3", 37, version=1)
    cache.set("answer3", 42, version=2)
    assert caches["v2"].delete("answer3") is True
    assert cache.get("answer3", version=1) == 37
    assert cache.get("answer3", version=2) is None

    cache.set("answer4", 37, version=1)
    cache.set("answer4", 42, version=2)
    assert caches["v2"].delete("answer4", version=1) is True
    assert cache.get("answer4", version=1) is None
    assert cache.get("answer4", version=2) == 42


def test_cache_versioning_incr_decr(cache: Any, caches: CacheHandler) -> None:
    v2 = caches["v2"]
    cache.set("answer1", 37, version=1)
    cache.set("answer1", 42, version=2)
    assert cache.incr("answer1") == 38
    assert cache.get("answer1", version=1) == 38
    assert cache.get("answer1", version=2) == 42
    assert cache.decr("answer1") == 37
    assert cache.get("answer1", version=1) == 37
    assert cache.get("answer1", version=2) == 42

    cache.set("answer2", 37, version=1)
    cache.set("answer2", 42, version=2)
    assert cache.incr("answer2", version=2) == 43
    assert cache.get("answer2", version=1) == 37
    assert cache.get("answer2", version=2) == 43
    assert cache.decr("answer2", version=2) == 42
    assert cache.get("answer2", version=1) == 37
    assert cache.get("answer2", version=2) == 42

    cache.set("answer3", 37, version=1)
    cache.set("answer3", 42, version=2)
    assert v2.incr("answer3") == 43
    assert cache.get("answer3", version=1) == 37
    assert cache.get("answer3", version=2) == 43
    assert v2.decr("answer3") == 42
    assert cache.get("answer3", version=1) == 37
    assert cache.get("answer3", version=2) == 42

    cache.set("answer4", 37, version=1)
    cache.set("answer4", 42, version=2)
    assert v2.incr("answer4", version=1) == 38
    assert cache.get("answer4", version=1) == 38
    assert cache.get("answer4", version=2) == 42
    assert v2.decr("answer4", version=1) == 37
    assert cache.get("answer4", version=1) == 37
    assert cache.get("answer4", version=2) == 42


def test_cache_versioning_get_set_many(cache: Any, caches: CacheHandler) -> None:
    v2 = caches["v2"]
    cache.set_many({"ford1": 37, "arthur1": 42})
    assert cache.get_many(["ford1", "arthur1"]) == {"ford1": 37, "arthur1": 42}
    assert cache.get_many(["ford1", "arthur1"], version=1) == {"ford1": 37, "arthur1": 42}
    assert cache.get_many(["ford1", "arthur1"], version=2) == {}
    assert v2.get_many(["ford1", "arthur1"]) == {}
    assert v2.get_many(["ford1", "arthur1"], version=1) == {"ford1": 37, "arthur1": 42}
    assert v2.get_many(["ford1", "arthur1"], version=2) == {}

    cache.set_many({"ford2": 37, "arthur2": 42}, version=2)
    assert cache.get_many(["ford2", "arthur2"]) == {}
    assert cache.get_many(["ford2", "arthur2"], version=1) == {}
    assert cache.get_many(["ford2", "arthur2"], version=2) == {"ford2": 37, "arthur2": 42}
    assert v2.get_many(["ford2", "arthur2"]) == {"ford2": 37, "arthur2": 42}
    assert v2.get_many(["ford2", "arthur2"], version=1) == {}
    assert v2.get_many(["ford2", "arthur2"], version=2) == {"ford2": 37, "arthur2": 42}

    v2.set_many({"ford3": 37, "arthur3": 42})
    assert cache.get_many(["ford3", "arthur3"]) == {}
    assert cache.get_many(["ford3", "arthur3"], version=1) == {}
    assert cache.get_many(["ford3", "arthur3"], version=2) == {"ford3": 37, "arthur3": 42}
    assert v2.get_many(["ford3", "arthur3"]) == {"ford3": 37, "arthur3": 42}
    assert v2.get_many(["ford3", "arthur3"], version=1) == {}
    assert v2.get_many(["ford3", "arthur3"], version=2) == {"ford3": 37, "arthur3": 42}

    v2.set_many({"ford4": 37, "arthur4": 42}, version=1)
    assert cache.get_many(["ford4", "arthur4"]) == {"ford4": 37, "arthur4": 42}
    assert cache.get_many(["ford4", "arthur4"], version=1) == {"ford4": 37, "arthur4": 42}
    assert cache.get_many(["ford4", "arthur4"], version=2) == {}
    assert v2.get_many(["ford4", "arthur4"]) == {}
    assert v2.get_many(["ford4", "arthur4"], version=1) == {"ford4": 37, "arthur4": 42}
    assert v2.get_many(["ford4", "arthur4"], version=2) == {}


def test_incr_version(cache: Any, caches: CacheHandler) -> None:
    v2 = caches["v2"]
    cache.set("answer", 42, version=2)
    assert cache.get("answer") is None
    assert cache.get("answer", version=1) is None
    assert cache.get("answer", version=2) == 42
    assert cache.get("answer", version=3) is None
    assert cache.incr_version("answer", version=2) == 3
    assert cache.get("answer") is None
    assert cache.get("answer", version=1) is None
    assert cache.get("answer", version=2) is None
    assert cache.get("answer", version=3) == 42

    v2.set("answer2", 42)
    assert v2.get("answer2") == 42
    assert v2.get("answer2", version=1) is None
    assert v2.get("answer2", version=2) == 42
    assert v2.get("answer2", version=3) is None
    assert v2.incr_version("answer2") == 3
    assert v2.get("answer2") is None
    assert v2.get("answer2", version=1) is None
    assert v2.get("answer2", version=2) is None
    assert v2.get("answer2", version=3) == 42

    with pytest.raises(ValueError):
        cache.incr_version("does_not_exist")
    cache.set("null", None)
    assert cache.incr_version("null") == 2


def test_decr_version(cache: Any, caches: CacheHandler) -> None:
    v2 = caches["v2"]
    cache.set("answer", 42, version=2)
    assert cache.get("answer") is None
    assert cache.get("answer", version=1) is None
    assert cache.get("answer", version=2) == 42
    assert cache.decr_version("answer", version=2) == 1
    assert cache.get("answer") == 42
    assert cache.get("answer", version=1) == 42
    assert cache.get("answer", version=2) is None

    v2.set("answer2", 42)
    assert v2.get("answer2") == 42
    assert v2.get("answer2", version=1) is None
    assert v2.get("answer2", version=2) == 42
    assert v2.decr_version("answer2") == 1
    assert v2.get("answer2") is None
    assert v2.get("answer2", version=1) == 42
    assert v2.get("answer2", version=2) is None

    with pytest.raises(ValueError):
        cache.decr_version("does_not_exist", version=2)
    cache.set("null", None, version=2)
    assert cache.decr_version("null", version=2) == 1


def test_custom_key_func(cache: Any, caches: CacheHandler) -> None:
    cache.set("answer1", 42)
    assert cache.get("answer1") == 42
    assert caches["custom_key"].get("answer1") is None
    assert caches["custom_key2"].get("answer1") is None
    caches["custom_key"].set("answer2", 42)
    assert cache.get("answer2") is None
    assert caches["custom_key"].get("answer2") == 42
    assert caches["custom_key2"].get("answer2") == 42


def test_add_fail_on_pickleerror(cache: Any) -> None:
    with pytest.raises(pickle.PickleError):
        cache.add("unpicklable", Unpicklable())


def test_set_fail_on_pickleerror(cache: Any) -> None:
    with pytest.raises(pickle.PickleError):
        cache.set("unpicklable", Unpicklable())


def test_get_or_set(cache: Any) -> None:
    assert cache.get("projector") is None
    assert cache.get_or_set("projector", 42) == 42
    assert cache.get("projector") == 42
    assert cache.get_or_set("null", None) is None
    # The previous get_or_set() stored None.
    assert cache.get("null", "default") is None


def test_get_or_set_callable(cache: Any) -> None:
    def my_callable() -> str:
        return "value"

    assert cache.get_or_set("mykey", my_callable) == "value"
    assert cache.get_or_set("mykey", my_callable()) == "value"
    assert cache.get_or_set("null", lambda: None) is None
    assert cache.get("null", "default") is None


def test_get_or_set_version(cache: Any) -> None:
    msg = "get_or_set() missing 1 required positional argument: 'default'"
    assert cache.get_or_set("brian", 1979, version=2) == 1979
    with pytest.raises(TypeError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        cache.get_or_set("brian")
    with pytest.raises(TypeError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        cache.get_or_set("brian", version=1)
    assert cache.get("brian", version=1) is None
    assert cache.get_or_set("brian", 42, version=1) == 42
    assert cache.get_or_set("brian", 1979, version=2) == 1979
    assert cache.get("brian", version=3) is None


def test_get_or_set_racing(cache: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # add() failing (another client added first): get_or_set() returns the default.
    monkeypatch.setattr(type(cache), "add", lambda *args, **kwargs: False)
    assert cache.get_or_set("key", "default") == "default"


# --------------------------------------------------------------------------------------------
# Ported from LocMemCacheTests, BaseMemcachedTests and DefaultNonExpiringCacheKeyTests


def test_incr_decr_timeout(cache: Any, backend: Backend) -> None:
    """incr/decr does not modify expiry time (matches memcached behavior)."""
    if backend.memcached:
        pytest.skip("reads the expiry through the in-process cache")
    key = "value"
    _key = cache.make_key(key)
    cache.set(key, 1, timeout=cache.default_timeout * 10)
    backend.elapse(100)
    expire = cache.cache.ttl(_key)
    assert expire == pytest.approx(cache.default_timeout * 10 - 100)
    assert cache.incr(key) == 2
    assert cache.cache.ttl(_key) == expire
    assert cache.decr(key) == 1
    assert cache.cache.ttl(_key) == expire


@pytest.mark.parametrize("backend", ["ratmemcache"], indirect=True)
def test_multiple_caches(backend: Backend) -> None:
    """Caches with different LOCATIONs are isolated."""
    with override_settings(
        CACHES={
            "default": {**backend.base, "LOCATION": "one"},
            "other": {**backend.base, "LOCATION": "other"},
        }
    ):
        from django.core.cache import caches

        try:
            caches["default"].set("value", 42)
            assert caches["default"].get("value") == 42
            assert caches["other"].get("value") is None
        finally:
            close_caches()


def test_memcached_deletes_key_on_failed_set(cache: Any, backend: Backend) -> None:
    # For the cache_db session backend to always see the current session, a failed set must
    # not leave the old value behind.
    max_value_length = 2**20
    cache.set("small_value", "a")
    assert cache.get("small_value") == "a"
    large_value = "a" * (max_value_length + 1)
    # pymemcache raises when the server refuses the value; the key must still be gone.
    with contextlib.suppress(Exception):
        cache.set("small_value", large_value)
    value = cache.get("small_value")
    assert value is None or value == large_value
    # Over ratmemcached's 1 MB item limit it is refused, and the old value is gone; in process,
    # the 64 MB default holds it.
    assert value == (None if backend.memcached else large_value)


@pytest.mark.parametrize("timeout", [None, 31536000], ids=["never", "one_year"])
def test_default_timeout_setting(backend: Backend, timeout: int | None) -> None:
    """test_default_never_expiring_timeout and test_default_far_future_timeout (#22845), and
    DefaultNonExpiringCacheKeyTests: TIMEOUT=None stores keys that never expire."""
    from django.core.cache import caches

    with override_settings(CACHES=backend.caches_setting(TIMEOUT=timeout)):
        try:
            cache = caches["default"]
            assert cache.default_timeout == timeout
            cache.set("infinite_foo", "bar")
            assert cache.get("infinite_foo") == "bar"
            if backend.clock is not None:  # the in-process backend
                assert isinstance(cache, RatMemCache)
                backend.elapse(300 * 2)  # past the 300 s default it replaced
                assert cache.get("infinite_foo") == "bar"
                remaining = cache.cache.ttl(cache.make_key("infinite_foo"))
                expected = float("inf") if timeout is None else timeout - 600
                assert remaining == pytest.approx(expected)
            cache.clear()
        finally:
            close_caches()


# --------------------------------------------------------------------------------------------
# The server backends on the real clock: Django's timing tests, with one shared wait


@pytest.mark.parametrize("engine", ENGINES)
def test_memcached_timeouts_real_clock(servers: Servers, engine: str) -> None:
    backend_params = {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": "{}:{}".format(*servers.get(engine).address),
    }
    from django.core.cache import caches

    with override_settings(CACHES={"default": backend_params}):
        cache = caches["default"]
        try:
            t0 = time.monotonic()
            # test_expiration, test_set_many_expiration
            cache.set("expire1", "very quickly", 1)
            cache.set("expire2", "very quickly", 1)
            cache.set("expire3", "very quickly", 1)
            cache.set_many({"key1": "spam", "key2": "eggs"}, 1)
            # test_touch (with 3 s for Django's 4, to wait less)
            cache.set("touched", "very quickly", timeout=1)
            assert cache.touch("touched", timeout=3) is True
            cache.set("touched_default", "very quickly", timeout=1)
            assert cache.touch("touched_default") is True
            assert cache.touch("nonexistent") is False
            # test_forever_timeout
            cache.set("key5", "belgian fries", timeout=1)
            assert cache.touch("key5", timeout=None) is True
            t1 = time.monotonic()

            # Every 1 s item was set before t1: all are gone 1.2 s later. "touched" lives until
            # at least t0 + 3.
            time.sleep(max(0.0, t1 + 1.2 - time.monotonic()))
            assert cache.get("expire1") is None
            assert cache.add("expire2", "newvalue") is True
            assert cache.get("expire2") == "newvalue"
            assert cache.has_key("expire3") is False
            assert cache.get("key1") is None
            assert cache.get("key2") is None
            assert cache.has_key("touched") is True
            assert time.monotonic() < t0 + 3, "too slow to tell: the machine is overloaded"
            assert cache.has_key("touched_default") is True
            assert cache.get("key5") == "belgian fries"

            time.sleep(max(0.0, t1 + 3.2 - time.monotonic()))
            assert cache.has_key("touched") is False
            assert cache.has_key("touched_default") is True
        finally:
            cache.clear()


# --------------------------------------------------------------------------------------------
# RatMemCache itself


def make_backend(location: str = "unit", **options: Any) -> RatMemCache:
    return RatMemCache(location, {"OPTIONS": options})


@pytest.fixture
def fresh() -> Iterator[None]:
    close_caches()
    yield
    close_caches()


def test_real_clock_float_timeout(fresh: None) -> None:
    # Without a ManualClock: timeouts are kept to the millisecond, so a fraction of a second
    # works (memcached's protocol only has whole seconds).
    c = make_backend()
    c.set("k", "v", timeout=0.15)
    c.set("stays", "v", timeout=60)
    assert c.get("k") == "v"
    deadline = time.monotonic() + 30
    while c.get("k") is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert c.get("stays") == "v"


def test_backends_share_one_store_per_location(fresh: None) -> None:
    a = make_backend("shared")
    b = make_backend("shared")
    other = make_backend("elsewhere")
    assert a.cache is b.cache
    assert other.cache is not a.cache
    a.set("k", [1, 2])
    assert b.get("k") == [1, 2]
    assert other.get("k") is None


def test_same_location_with_other_options_is_refused(fresh: None) -> None:
    make_backend("loc", max_memory="8MB")
    make_backend("loc", max_memory="8MB")
    with pytest.raises(ImproperlyConfigured, match="already open"):
        make_backend("loc", max_memory="16MB")


def test_options(fresh: None) -> None:
    assert cache_kwargs({"MAX_ENTRIES": 1000, "CULL_FREQUENCY": 3, "eviction": "lru"}) == {
        "max_entries": 1000,
        "eviction": "lru",
    }
    with pytest.raises(ImproperlyConfigured, match="unknown OPTIONS key 'default_ttl'"):
        cache_kwargs({"default_ttl": 5})
    with pytest.raises(ImproperlyConfigured, match="unknown OPTIONS key 'serializer'"):
        cache_kwargs({"serializer": pickle})
    c = make_backend("opts", max_memory="8MB", eviction="sieve", MAX_ENTRIES=500)
    assert c.cache.eviction == "sieve"
    assert c.cache.max_memory == 8 * 1024 * 1024
    assert c.cache.max_entries == 500


def test_too_large_value_is_dropped_and_reported(fresh: None) -> None:
    c = make_backend("small", max_memory=64 * 1024, shards=1)
    c.set("k", "small")
    c.set("k", b"x" * 100_000)  # larger than the whole cache
    assert c.get("k") is None  # never the old value
    assert c.set_many({"ok": 1, "big": b"x" * 100_000}) == ["big"]
    assert c.get("ok") == 1
    assert c.add("big", b"x" * 100_000) is False


def test_other_value_errors_are_raised(fresh: None) -> None:
    c = make_backend("keys", max_key_length=100)
    with pytest.raises(ValueError, match="over the limit of 100"):
        c.set("k" * 200, 1)
    with pytest.raises(ValueError, match="over the limit of 100"):
        c.add("k" * 200, 1)
    with pytest.raises(ValueError, match="over the limit of 100"):
        c.set_many({"k" * 200: 1})


def test_infinite_timeout_is_forever(fresh: None) -> None:
    c = make_backend()
    c.set("k", 1, timeout=float("inf"))
    assert c.cache.ttl(c.make_key("k")) == float("inf")


def test_incr_is_atomic_across_threads(fresh: None) -> None:
    # Django makes one backend object per thread: each thread here has its own, on one store.
    make_backend("counter").set("n", 0)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            mine = make_backend("counter")
            for _ in range(200):
                mine.incr("n")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert make_backend("counter").get("n") == 800


def test_incr_keeps_any_number_type(fresh: None) -> None:
    c = make_backend()
    c.set("f", 1.5)
    assert c.incr("f", 2) == 3.5
    c.set("big", 2**64)
    assert c.decr("big", 2**65) == -(2**64)  # Python ints, not memcached's unsigned 64 bits


def test_async_api(fresh: None) -> None:
    c = make_backend()

    async def main() -> None:
        await c.aset("a", {"x": 1})
        assert await c.aget("a") == {"x": 1}
        assert await c.aadd("a", 2) is False
        await c.aset_many({"b": 1, "c": 2})
        assert await c.aget_many(["a", "b", "c", "d"]) == {"a": {"x": 1}, "b": 1, "c": 2}
        assert await c.aincr("b", 5) == 6
        assert await c.ahas_key("c") is True
        assert await c.adelete("c") is True
        assert await c.aget_or_set("d", "dflt") == "dflt"

    asyncio.run(main())


def test_l2_keeps_values_across_restarts(fresh: None, tmp_path: Any) -> None:
    options = {"l2_dir": str(tmp_path), "l2_sync": "always", "large_value_threshold": "1KB"}
    c = make_backend("disk", **options)
    c.set("small", {"n": 1}, timeout=None)
    c.set("large", "x" * 50_000, timeout=3600)  # over large_value_threshold: on disk only
    c.set("gone", 1, timeout=0)
    close_caches()  # what interpreter exit does: commits the L2
    again = make_backend("disk", **options)
    assert again.cache is not c.cache
    assert again.get("small") == {"n": 1}
    assert again.get("large") == "x" * 50_000
    assert again.get("gone") is None
    assert again.cache.stats()["l2_items"] >= 2


def test_importing_ratmemcache_does_not_import_django() -> None:
    code = (
        "import sys, ratmemcache, ratmemcache.contrib; "
        "assert 'django' not in sys.modules, sorted(m for m in sys.modules if 'django' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
