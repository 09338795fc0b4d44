"""The public methods of ``ratmemcache.Cache``: results, errors and counters."""

from __future__ import annotations

import json
import pickle
import types
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest

import ratmemcache
from ratmemcache import Cache, CacheClosedError, ConfigError, RatMemCacheError

# --------------------------------------------------------------------------------------------
# module surface


def test_module_exports() -> None:
    assert ratmemcache.POLICIES == ["lru", "lfu", "fifo", "hybrid", "ttl", "sieve", "s3fifo"]
    assert ratmemcache.FLAG_SERIALIZED == 1
    assert isinstance(ratmemcache.ENTRY_OVERHEAD, int) and ratmemcache.ENTRY_OVERHEAD > 0
    assert isinstance(ratmemcache.__version__, str) and ratmemcache.__version__
    library_names = [
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
    for name in library_names:
        assert name in ratmemcache.__all__, name
        assert hasattr(ratmemcache, name), name
    assert ratmemcache.cached is ratmemcache.decorators.cached


def test_error_hierarchy() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, RatMemCacheError)
    assert issubclass(CacheClosedError, RuntimeError)
    assert issubclass(CacheClosedError, RatMemCacheError)
    assert issubclass(ratmemcache.PersistenceError, OSError)


# --------------------------------------------------------------------------------------------
# get / set / []


def test_set_then_get(cache: Cache) -> None:
    # The runtime returns None, as the stub says (not True, as some clients do).
    assert cache.set("k", b"v") is None  # type: ignore[func-returns-value]
    assert cache.get("k") == b"v"
    assert type(cache.get("k")) is bytes


def test_get_missing_returns_none_or_default(cache: Cache) -> None:
    assert cache.get("missing") is None
    sentinel = object()
    assert cache.get("missing", sentinel) is sentinel
    assert cache.get("missing", default=5) == 5
    cache.set("k", b"v")
    assert cache.get("k", 5) == b"v"


def test_set_overwrites(cache: Cache) -> None:
    cache.set("k", b"one")
    cache.set("k", b"two")
    assert cache.get("k") == b"two"
    assert len(cache) == 1


def test_empty_value_is_stored(cache: Cache) -> None:
    cache.set("k", b"")
    assert cache.get("k") == b""
    assert cache.get("k", b"default") == b""
    assert "k" in cache


def test_binary_value_roundtrip(cache: Cache) -> None:
    value = bytes(range(256)) * 40
    cache.set(b"\x00\xff binary key", value)
    assert cache.get(b"\x00\xff binary key") == value


def test_bytearray_value_is_accepted_and_read_back_as_bytes(cache: Cache) -> None:
    cache.set("k", bytearray(b"abc"))
    got = cache.get("k")
    assert got == b"abc"
    assert type(got) is bytes


def test_bytes_subclass_value_reads_back_as_bytes(cache: Cache) -> None:
    class MyBytes(bytes):
        pass

    cache.set("k", MyBytes(b"sub"))
    got = cache.get("k")
    assert got == b"sub"
    assert type(got) is bytes


def test_stored_value_is_a_copy(cache: Cache) -> None:
    buf = bytearray(b"abc")
    cache.set("k", buf)
    buf[0] = ord("z")
    assert cache.get("k") == b"abc"


def test_getitem_setitem(cache: Cache) -> None:
    cache["k"] = b"v"
    assert cache["k"] == b"v"
    assert cache[b"k"] == b"v"


def test_getitem_missing_raises_keyerror_with_the_key(cache: Cache) -> None:
    with pytest.raises(KeyError) as info:
        cache["nope"]
    assert info.value.args == ("nope",)
    with pytest.raises(KeyError) as info:
        cache[b"nope"]
    assert info.value.args == (b"nope",)


def test_setitem_uses_default_ttl(clock: ratmemcache.ManualClock) -> None:
    c = Cache(clock=clock, default_ttl=10, cleanup_interval=0)
    c["k"] = b"v"
    assert c.ttl("k") == 10.0
    clock.advance(10)
    assert "k" not in c


def test_str_and_bytes_keys_are_the_same_key(cache: Cache) -> None:
    cache.set("key", b"1")
    assert cache.get(b"key") == b"1"
    cache.set(b"key", b"2")
    assert cache.get("key") == b"2"
    assert len(cache) == 1


def test_unicode_keys_are_utf8(cache: Cache) -> None:
    cache.set("ключ-🔑", b"v")
    assert cache.get("ключ-🔑") == b"v"
    assert cache.get("ключ-🔑".encode()) == b"v"
    assert cache.keys() == ["ключ-🔑"]


@pytest.mark.parametrize("bad_key", [1, 1.5, None, ["k"], ("k",), bytearray(b"k"), object()])
def test_bad_key_types_raise_typeerror(cache: Cache, bad_key: Any) -> None:
    with pytest.raises(TypeError, match="keys must be str or bytes"):
        cache.set(bad_key, b"v")
    with pytest.raises(TypeError, match="keys must be str or bytes"):
        cache.get(bad_key)
    with pytest.raises(TypeError):
        cache.delete(bad_key)
    with pytest.raises(TypeError):
        _ = bad_key in cache
    assert len(cache) == 0


def test_memoryview_key_is_rejected(cache: Cache) -> None:
    with pytest.raises(TypeError):
        cache.set(memoryview(b"k"), b"v")  # type: ignore[arg-type]


def test_unencodable_str_key_raises_unicode_error(cache: Cache) -> None:
    with pytest.raises(UnicodeEncodeError):
        cache.set("\ud800", b"v")
    assert len(cache) == 0


def test_empty_key_is_rejected_on_write(cache: Cache) -> None:
    with pytest.raises(ValueError, match="empty"):
        cache.set("", b"v")
    with pytest.raises(ValueError, match="empty"):
        cache.set(b"", b"v")
    assert cache.get("") is None
    assert "" not in cache
    assert len(cache) == 0


def test_key_length_limit(clock: ratmemcache.ManualClock) -> None:
    c = Cache(clock=clock, max_key_length=8, cleanup_interval=0)
    c.set("x" * 8, b"ok")
    with pytest.raises(ValueError, match="limit of 8"):
        c.set("x" * 9, b"too long")
    # multi-byte characters count in bytes
    with pytest.raises(ValueError):
        c.set("é" * 5, b"10 bytes")
    assert c.get("x" * 9) is None
    assert c.keys() == ["x" * 8]


def test_default_key_length_limit(cache: Cache) -> None:
    cache.set("k" * 65536, b"v")
    assert cache.get("k" * 65536) == b"v"
    with pytest.raises(ValueError):
        cache.set("k" * 65537, b"v")


@pytest.mark.parametrize("bad_value", ["text", 1, 1.0, None, [b"x"], {"a": 1}, memoryview(b"x")])
def test_non_bytes_values_without_serializer_raise_typeerror(cache: Cache, bad_value: Any) -> None:
    with pytest.raises(TypeError, match="values must be bytes"):
        cache.set("k", bad_value)
    assert "k" not in cache
    assert cache.stats()["curr_items"] == 0


def test_failed_overwrite_keeps_old_value(cache: Cache) -> None:
    cache.set("k", b"old")
    with pytest.raises(TypeError):
        cache.set("k", "new")
    assert cache.get("k") == b"old"


# --------------------------------------------------------------------------------------------
# serializer


@pytest.mark.parametrize(
    "value",
    [{"a": [1, 2.5, None]}, [1, "two"], 42, "text", 3.25, (1, 2), {1, 2}, True, None, b"raw"],
)
def test_pickle_serializer_roundtrip(clock: ratmemcache.ManualClock, value: Any) -> None:
    c = Cache(clock=clock, serializer=pickle, cleanup_interval=0)
    c.set("k", value)
    got = c.get("k", "sentinel")
    assert got == value
    assert type(got) is type(value)


def test_serializer_keeps_bytes_as_bytes(clock: ratmemcache.ManualClock) -> None:
    calls: list[str] = []

    class Spy:
        @staticmethod
        def dumps(obj: Any) -> bytes:
            calls.append("dumps")
            return pickle.dumps(obj)

        @staticmethod
        def loads(data: bytes) -> Any:
            calls.append("loads")
            return pickle.loads(data)

    c = Cache(clock=clock, serializer=Spy(), cleanup_interval=0)
    c.set("raw", b"\x80\x04N.")  # looks like a pickle but is stored raw
    assert c.get("raw") == b"\x80\x04N."
    assert calls == []
    c.set("obj", [1])
    assert c.get("obj") == [1]
    assert calls == ["dumps", "loads"]


def test_serialized_none_is_distinguishable_with_default(clock: ratmemcache.ManualClock) -> None:
    c = Cache(clock=clock, serializer=pickle, cleanup_interval=0)
    c.set("none", None)
    assert "none" in c
    assert c.get("none", "missing") is None
    assert c["none"] is None
    assert c.gets("none") is not None


def test_serializer_with_all_read_paths(clock: ratmemcache.ManualClock) -> None:
    c = Cache(clock=clock, serializer=pickle, cleanup_interval=0)
    c["a"] = {"x": 1}
    c.set_many({"b": [2], "c": b"3"})
    assert c["a"] == {"x": 1}
    assert c.get_many(["a", "b", "c", "zz"]) == {"a": {"x": 1}, "b": [2], "c": b"3"}
    value, cas = c.gets("b")  # type: ignore[misc]
    assert value == [2]
    assert c.cas("b", (3,), cas)
    assert c.get("b") == (3,)
    assert c.replace("a", {"y"})
    assert c.get("a") == {"y"}
    assert c.add("d", 1.5)
    assert c.get("d") == 1.5


def test_json_serializer_roundtrip(clock: ratmemcache.ManualClock) -> None:
    # The library's own messages say "pass serializer=pickle (or json)"; json.dumps returns str.
    c = Cache(clock=clock, serializer=json, cleanup_interval=0)
    c.set("k", {"a": [1, 2]})
    assert c.get("k") == {"a": [1, 2]}


def test_serializer_must_have_dumps_and_loads() -> None:
    with pytest.raises(TypeError, match="dumps"):
        Cache(serializer=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Cache(serializer=types.SimpleNamespace(dumps=pickle.dumps))


def test_serializer_dumps_must_return_bytes(clock: ratmemcache.ManualClock) -> None:
    bad = types.SimpleNamespace(dumps=lambda obj: 123, loads=pickle.loads)
    c = Cache(clock=clock, serializer=bad, cleanup_interval=0)
    with pytest.raises(TypeError, match="must return bytes"):
        c.set("k", [1])
    assert "k" not in c


def test_serializer_errors_propagate(clock: ratmemcache.ManualClock) -> None:
    class Boom(Exception):
        pass

    def dumps(obj: Any) -> bytes:
        if obj == "explode":
            raise Boom("dumps")
        return pickle.dumps(obj)

    def loads(data: bytes) -> Any:
        obj = pickle.loads(data)
        if obj == "bad-on-load":
            raise Boom("loads")
        return obj

    c = Cache(
        clock=clock,
        serializer=types.SimpleNamespace(dumps=dumps, loads=loads),
        cleanup_interval=0,
    )
    with pytest.raises(Boom, match="dumps"):
        c.set("k", "explode")
    assert "k" not in c
    c.set("k", "bad-on-load")
    with pytest.raises(Boom, match="loads"):
        c.get("k")
    assert "k" in c  # the entry itself is fine


# --------------------------------------------------------------------------------------------
# gets / cas


def test_gets_returns_value_and_int_cas(cache: Cache) -> None:
    assert cache.gets("k") is None
    cache.set("k", b"v")
    got = cache.gets("k")
    assert isinstance(got, tuple) and len(got) == 2
    value, cas = got
    assert value == b"v"
    assert isinstance(cas, int) and cas > 0


def test_cas_unique_changes_on_every_write(cache: Cache) -> None:
    cache.set("k", b"1")
    seen = {cache.gets("k")[1]}  # type: ignore[index]
    ops: tuple[Callable[[], object], ...] = (
        lambda: cache.set("k", b"2"),
        lambda: cache.append("k", b"3"),
        lambda: cache.prepend("k", b"4"),
        lambda: cache.replace("k", b"5"),
        lambda: cache.incr("k"),
        lambda: cache.decr("k"),
    )
    for op in ops:
        op()
        cas = cache.gets("k")[1]  # type: ignore[index]
        assert cas not in seen
        seen.add(cas)


def test_cas_unique_is_stable_across_reads_and_touch(cache: Cache) -> None:
    cache.set("k", b"1")
    _, cas = cache.gets("k")  # type: ignore[misc]
    cache.get("k")
    assert "k" in cache
    assert cache.touch("k", 100)
    assert cache.gets("k")[1] == cas  # type: ignore[index]


def test_cas_uniques_differ_between_keys(cache: Cache) -> None:
    for i in range(100):
        cache.set(f"k{i}", b"v")
    uniques = {cache.gets(f"k{i}")[1] for i in range(100)}  # type: ignore[index]
    assert len(uniques) == 100


def test_cas_succeeds_only_when_unchanged(cache: Cache) -> None:
    cache.set("k", b"1")
    _, cas = cache.gets("k")  # type: ignore[misc]
    assert cache.cas("k", b"2", cas) is True
    assert cache.get("k") == b"2"
    # the old unique is now stale
    assert cache.cas("k", b"3", cas) is False
    assert cache.get("k") == b"2"
    _, cas2 = cache.gets("k")  # type: ignore[misc]
    assert cas2 != cas
    cache.set("k", b"other writer")
    assert cache.cas("k", b"4", cas2) is False
    assert cache.get("k") == b"other writer"


def test_cas_on_missing_key_fails_and_does_not_create(cache: Cache) -> None:
    assert cache.cas("missing", b"v", 1) is False
    assert "missing" not in cache


def test_cas_after_delete_fails(cache: Cache) -> None:
    cache.set("k", b"1")
    _, cas = cache.gets("k")  # type: ignore[misc]
    cache.delete("k")
    cache.set("k", b"1")
    assert cache.cas("k", b"2", cas) is False
    assert cache.get("k") == b"1"


def test_cas_counters(cache: Cache) -> None:
    cache.set("k", b"1")
    _, cas = cache.gets("k")  # type: ignore[misc]
    assert cache.cas("missing", b"x", cas) is False
    assert cache.cas("k", b"x", cas + 12345) is False
    assert cache.cas("k", b"x", cas) is True
    s = cache.stats()
    assert (s["cas_misses"], s["cas_badval"], s["cas_hits"]) == (1, 1, 1)


def test_cas_with_ttl(cache: Cache, clock: ratmemcache.ManualClock) -> None:
    cache.set("k", b"1")
    _, cas = cache.gets("k")  # type: ignore[misc]
    assert cache.cas("k", b"2", cas, ttl=5)
    assert cache.ttl("k") == 5.0
    clock.advance(5)
    assert cache.get("k") is None


@pytest.mark.parametrize("bad", [-1, 2**64])
def test_cas_unique_out_of_range(cache: Cache, bad: int) -> None:
    cache.set("k", b"1")
    with pytest.raises(OverflowError):
        cache.cas("k", b"2", bad)
    assert cache.get("k") == b"1"


def test_cas_unique_wrong_type(cache: Cache) -> None:
    cache.set("k", b"1")
    with pytest.raises(TypeError):
        cache.cas("k", b"2", "1")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# get_many / set_many / set_with_ttl


def test_get_many_returns_only_hits(cache: Cache) -> None:
    cache.set("a", b"1")
    cache.set(b"b", b"2")
    assert cache.get_many(["a", b"b", "c"]) == {"a": b"1", b"b": b"2"}
    assert cache.get_many([]) == {}


def test_get_many_keeps_the_callers_key_objects(cache: Cache) -> None:
    cache.set("a", b"1")
    got = cache.get_many(["a", b"a"])
    assert got == {"a": b"1", b"a": b"1"}


def test_get_many_accepts_any_iterable(cache: Cache) -> None:
    cache.set_many({f"k{i}": str(i).encode() for i in range(5)})

    def gen() -> Iterator[str]:
        yield from (f"k{i}" for i in range(10))

    expected = {f"k{i}": str(i).encode() for i in range(5)}
    assert cache.get_many(gen()) == expected
    assert cache.get_many(tuple(expected)) == expected
    assert cache.get_many(set(expected)) == expected
    assert cache.get_many(expected) == expected  # iterating a dict yields its keys


def test_get_many_counts_each_key(cache: Cache) -> None:
    cache.set("a", b"1")
    cache.get_many(["a", "b", "a", "c"])
    s = cache.stats()
    assert (s["hits"], s["misses"], s["gets"]) == (2, 2, 4)


def test_get_many_errors(cache: Cache) -> None:
    with pytest.raises(TypeError):
        cache.get_many(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keys must be str or bytes"):
        cache.get_many(["a", 1])  # type: ignore[list-item]


def test_set_many_with_dict(cache: Cache) -> None:
    items: dict[str | bytes, bytes] = {"a": b"1", b"b": b"2"}
    assert cache.set_many(items) is None  # type: ignore[func-returns-value]
    assert cache.get("a") == b"1"
    assert cache.get("b") == b"2"
    assert cache.stats()["cmd_set"] == 2


def test_set_many_with_a_non_dict_mapping(cache: Cache) -> None:
    class M(Mapping[str, bytes]):
        def __init__(self) -> None:
            self.d = {"x": b"1", "y": b"2"}

        def __getitem__(self, k: str) -> bytes:
            return self.d[k]

        def __iter__(self) -> Iterator[str]:
            return iter(self.d)

        def __len__(self) -> int:
            return len(self.d)

    cache.set_many(M())
    cache.set_many(types.MappingProxyType({"z": b"3"}))
    assert cache.get_many(["x", "y", "z"]) == {"x": b"1", "y": b"2", "z": b"3"}


def test_set_many_with_ttl(cache: Cache, clock: ratmemcache.ManualClock) -> None:
    cache.set_many({"a": b"1", "b": b"2"}, ttl=3)
    cache.set_many({"c": b"3"})
    assert cache.ttl("a") == cache.ttl("b") == 3.0
    clock.advance(3)
    assert cache.get_many(["a", "b", "c"]) == {"c": b"3"}


def test_set_many_stops_at_the_first_bad_item(cache: Cache) -> None:
    with pytest.raises(TypeError):
        cache.set_many({"ok": b"1", 3: b"2", "after": b"3"})  # type: ignore[arg-type]
    assert cache.get("ok") == b"1"
    assert "after" not in cache


def test_set_many_with_serializer(clock: ratmemcache.ManualClock) -> None:
    c = Cache(clock=clock, serializer=pickle, cleanup_interval=0)
    c.set_many({"a": 1, "b": [2], "c": b"3"})
    assert c.get_many(["a", "b", "c"]) == {"a": 1, "b": [2], "c": b"3"}


def test_set_with_ttl(cache: Cache, clock: ratmemcache.ManualClock) -> None:
    cache.set_with_ttl("k", b"v", 2)
    assert cache.get("k") == b"v"
    assert cache.ttl("k") == 2.0
    clock.advance(2)
    assert cache.get("k") is None
    cache.set_with_ttl("forever", b"v", 0)
    assert cache.ttl("forever") == float("inf")
    cache.set_with_ttl("td", b"v", timedelta(minutes=1))
    assert cache.ttl("td") == 60.0


def test_set_with_ttl_requires_ttl(cache: Cache) -> None:
    with pytest.raises(TypeError):
        cache.set_with_ttl("k", b"v")  # type: ignore[call-arg]


# --------------------------------------------------------------------------------------------
# add / replace / append / prepend


def test_add_only_when_absent(cache: Cache) -> None:
    assert cache.add("k", b"1") is True
    assert cache.add("k", b"2") is False
    assert cache.get("k") == b"1"
    cache.delete("k")
    assert cache.add("k", b"3") is True
    assert cache.get("k") == b"3"


def test_add_with_ttl(cache: Cache, clock: ratmemcache.ManualClock) -> None:
    assert cache.add("k", b"1", ttl=1)
    clock.advance(1)
    assert cache.add("k", b"2", ttl=1)  # the old one expired
    assert cache.get("k") == b"2"


def test_failed_add_keeps_ttl(cache: Cache) -> None:
    cache.set("k", b"1", ttl=5)
    assert not cache.add("k", b"2", ttl=100)
    assert cache.ttl("k") == 5.0


def test_replace_only_when_present(cache: Cache) -> None:
    assert cache.replace("k", b"1") is False
    assert "k" not in cache
    cache.set("k", b"1")
    assert cache.replace("k", b"2") is True
    assert cache.get("k") == b"2"


def test_replace_sets_new_ttl(cache: Cache, clock: ratmemcache.ManualClock) -> None:
    cache.set("k", b"1", ttl=100)
    assert cache.replace("k", b"2", ttl=1)
    assert cache.ttl("k") == 1.0
    clock.advance(1)
    assert "k" not in cache


def test_append_prepend(cache: Cache) -> None:
    assert cache.append("k", b"x") is False
    assert cache.prepend("k", b"x") is False
    assert "k" not in cache
    cache.set("k", b"mid")
    assert cache.append("k", b">>") is True
    assert cache.prepend("k", b"<<") is True
    assert cache.get("k") == b"<<mid>>"
    assert cache.append("k", b"") is True
    assert cache.get("k") == b"<<mid>>"


def test_append_keeps_ttl(cache: Cache, clock: ratmemcache.ManualClock) -> None:
    cache.set("k", b"a", ttl=10)
    clock.advance(4)
    assert cache.append("k", b"b")
    assert cache.ttl("k") == 6.0
    clock.advance(6)
    assert cache.get("k") is None


def test_append_prepend_require_bytes(cache: Cache) -> None:
    cache.set("k", b"v")
    for bad in ("s", 1, bytearray(b"x"), None):
        with pytest.raises(TypeError):
            cache.append("k", bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            cache.prepend("k", bad)  # type: ignore[arg-type]
    assert cache.get("k") == b"v"


def test_append_updates_byte_accounting(cache: Cache) -> None:
    cache.set("k", b"12345")
    before = cache.stats()
    cache.append("k", b"678")
    after = cache.stats()
    assert after["payload_bytes"] - before["payload_bytes"] == 3
    assert after["bytes"] - before["bytes"] == 3


# --------------------------------------------------------------------------------------------
# incr / decr


def test_incr_decr_basic(cache: Cache) -> None:
    cache.set("n", b"10")
    assert cache.incr("n") == 11
    assert cache.incr("n", 5) == 16
    assert cache.decr("n") == 15
    assert cache.decr("n", 10) == 5
    assert cache.get("n") == b"5 "


def test_incr_decr_missing_returns_none(cache: Cache) -> None:
    assert cache.incr("missing") is None
    assert cache.decr("missing", 3) is None
    assert "missing" not in cache
    s = cache.stats()
    assert (s["incr_misses"], s["decr_misses"]) == (1, 1)


def test_decr_pads_shorter_result_with_spaces(cache: Cache) -> None:
    cache.set("n", b"100")
    assert cache.decr("n", 1) == 99
    assert cache.get("n") == b"99 "
    assert cache.decr("n", 90) == 9
    assert cache.get("n") == b"9  "
    assert cache.incr("n", 991) == 1000
    assert cache.get("n") == b"1000"


def test_incr_grows_the_value(cache: Cache) -> None:
    cache.set("n", b"9")
    assert cache.incr("n") == 10
    assert cache.get("n") == b"10"


def test_decr_stops_at_zero(cache: Cache) -> None:
    cache.set("n", b"5")
    assert cache.decr("n", 100) == 0
    assert cache.get("n") == b"0"
    assert cache.decr("n") == 0


def test_incr_wraps_at_2_64(cache: Cache) -> None:
    cache.set("n", str(2**64 - 1).encode())
    assert cache.incr("n") == 0
    assert cache.get("n") == b"0" + b" " * 19
    cache.set("m", b"5")
    assert cache.incr("m", 2**64 - 1) == 4
    cache.set("big", b"0")
    assert cache.incr("big", 2**64 - 1) == 2**64 - 1
    assert cache.get("big") == str(2**64 - 1).encode()


def test_incr_accepts_surrounding_whitespace(cache: Cache) -> None:
    cache.set("n", b" 7 ")
    assert cache.incr("n", 0) == 7
    assert cache.get("n") == b"7  "


def test_incr_default_delta_is_one_and_result_is_int(cache: Cache) -> None:
    cache.set("n", b"0")
    got = cache.incr("n")
    assert got == 1 and type(got) is int
    assert cache.incr("n", None) == 2
    assert cache.decr("n", None) == 1


@pytest.mark.parametrize(
    "value",
    [b"abc", b"12abc", b"-1", b"1.5", b"", b"   ", b"18446744073709551616", b"0x10"],
)
def test_incr_non_numeric_raises_valueerror(cache: Cache, value: bytes) -> None:
    cache.set("n", value)
    with pytest.raises(ValueError, match="non-numeric"):
        cache.incr("n")
    with pytest.raises(ValueError, match="non-numeric"):
        cache.decr("n")
    assert cache.get("n") == value


def test_incr_reads_the_number_before_whitespace_as_memcached_does(cache: Cache) -> None:
    # memcached (1.6.18, checked by hand): "1 2" incr 1 -> 2, stored as "2  " (padded).
    cache.set("n", b"1 2")
    assert cache.incr("n", 1) == 2
    assert cache.get("n") == b"2  "


def test_incr_on_serialized_value_is_non_numeric(clock: ratmemcache.ManualClock) -> None:
    c = Cache(clock=clock, serializer=pickle, cleanup_interval=0)
    c.set("n", 5)
    with pytest.raises(ValueError):
        c.incr("n")
    c.set("b", b"5")
    assert c.incr("b") == 6
    assert c.get("b") == b"6"


@pytest.mark.parametrize("delta", [-1, 2**64, -(2**70)])
def test_delta_out_of_range_raises_valueerror(cache: Cache, delta: int) -> None:
    cache.set("n", b"1")
    with pytest.raises(ValueError, match="delta"):
        cache.incr("n", delta)
    with pytest.raises(ValueError, match="delta"):
        cache.decr("n", delta)
    assert cache.get("n") == b"1"


@pytest.mark.parametrize("delta", [1.5, "1", b"1"])
def test_delta_wrong_type_raises_typeerror(cache: Cache, delta: Any) -> None:
    cache.set("n", b"1")
    with pytest.raises(TypeError, match="delta must be an int"):
        cache.incr("n", delta)
    with pytest.raises(TypeError, match="delta must be an int"):
        cache.decr("n", delta)


def test_incr_keeps_ttl(cache: Cache, clock: ratmemcache.ManualClock) -> None:
    cache.set("n", b"1", ttl=10)
    clock.advance(3)
    assert cache.incr("n") == 2
    assert cache.ttl("n") == 7.0
    clock.advance(7)
    assert cache.incr("n") is None


def test_incr_decr_counters(cache: Cache) -> None:
    cache.set("n", b"1")
    cache.incr("n")
    cache.incr("n")
    cache.decr("n")
    cache.incr("x")
    cache.decr("x")
    cache.decr("x")
    s = cache.stats()
    assert (s["incr_hits"], s["incr_misses"], s["decr_hits"], s["decr_misses"]) == (2, 1, 1, 2)
    assert s["cmd_set"] == 1  # as in memcached, incr and decr are not stores


# --------------------------------------------------------------------------------------------
# touch / ttl / delete / contains


def test_touch_missing_is_false(cache: Cache) -> None:
    assert cache.touch("missing", 10) is False
    assert "missing" not in cache


def test_touch_sets_ttl(cache: Cache, clock: ratmemcache.ManualClock) -> None:
    cache.set("k", b"v")
    assert cache.ttl("k") == float("inf")
    assert cache.touch("k", 4) is True
    assert cache.ttl("k") == 4.0
    assert cache.get("k") == b"v"
    clock.advance(4)
    assert cache.get("k") is None


def test_touch_counters(cache: Cache) -> None:
    cache.set("k", b"v")
    cache.touch("k", 1)
    cache.touch("nope", 1)
    s = cache.stats()
    assert (s["touch_hits"], s["touch_misses"]) == (1, 1)


def test_ttl_method(cache: Cache, clock: ratmemcache.ManualClock) -> None:
    assert cache.ttl("missing") is None
    cache.set("forever", b"v")
    cache.set("short", b"v", ttl=2.5)
    assert cache.ttl("forever") == float("inf")
    assert cache.ttl("short") == 2.5
    clock.advance(1)
    assert cache.ttl("short") == 1.5
    clock.advance(1.5)
    assert cache.ttl("short") is None


def test_ttl_is_not_a_read(cache: Cache) -> None:
    cache.set("k", b"v")
    cache.ttl("k")
    cache.ttl("missing")
    assert cache.stats()["gets"] == 0


def test_delete(cache: Cache) -> None:
    cache.set("k", b"v")
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert cache.get("k") is None
    s = cache.stats()
    assert (s["delete_hits"], s["delete_misses"], s["curr_items"]) == (1, 1, 0)
    assert s["bytes"] == 0


def test_delete_with_bytes_key_of_str_entry(cache: Cache) -> None:
    cache.set("k", b"v")
    assert cache.delete(b"k") is True
    assert len(cache) == 0


def test_delitem(cache: Cache) -> None:
    cache.set("k", b"v")
    del cache["k"]
    assert "k" not in cache
    with pytest.raises(KeyError) as info:
        del cache["k"]
    assert info.value.args == ("k",)


def test_contains(cache: Cache) -> None:
    assert "k" not in cache
    assert not cache.contains_key("k")
    cache.set("k", b"v")
    assert "k" in cache
    assert b"k" in cache
    assert cache.contains_key("k") is True
    assert cache.contains_key(b"k") is True


def test_contains_is_not_a_read(cache: Cache) -> None:
    cache.set("k", b"v")
    assert "k" in cache
    assert "x" not in cache
    cache.contains_key("k")
    s = cache.stats()
    assert (s["gets"], s["hits"], s["misses"]) == (0, 0, 0)


# --------------------------------------------------------------------------------------------
# keys / iter / len / clear


def test_keys_preserve_str_and_bytes(cache: Cache) -> None:
    cache.set("text", b"1")
    cache.set(b"raw", b"2")
    cache.set(b"\xff\xfe", b"3")
    keys = cache.keys()
    assert isinstance(keys, list)
    assert sorted(keys, key=repr) == sorted(["text", b"raw", b"\xff\xfe"], key=repr)
    assert {type(k) for k in keys} == {str, bytes}
    assert "text" in keys and b"raw" in keys


def test_iter_and_len(cache: Cache) -> None:
    assert len(cache) == 0
    assert list(cache) == []
    names = {f"k{i}" for i in range(50)}
    for n in names:
        cache.set(n, b"v")
    assert len(cache) == 50
    assert set(cache) == names
    assert set(iter(cache)) == names
    assert sorted(cache.keys()) == sorted(names)


def test_iteration_is_over_a_snapshot(cache: Cache) -> None:
    for i in range(20):
        cache.set(f"k{i}", b"v")
    for k in cache:
        assert isinstance(k, str)  # str keys come back as str
        cache.delete(k)
        cache.set(f"new-{k}", b"v")
    assert len(cache) == 20
    assert all(isinstance(k, str) and k.startswith("new-") for k in list(cache))


def test_clear(cache: Cache) -> None:
    for i in range(10):
        cache.set(f"k{i}", b"v" * i)
    cache.get("k1")
    cache.get("missing")
    before = cache.stats()
    assert cache.clear() is None  # type: ignore[func-returns-value]
    after = cache.stats()
    assert len(cache) == 0
    assert cache.keys() == []
    assert cache.get("k1") is None
    assert (after["curr_items"], after["bytes"], after["payload_bytes"]) == (0, 0, 0)
    # counters survive a clear, as memcached's flush_all keeps them
    assert after["sets"] == before["sets"] == 10
    assert after["hits"] == before["hits"] == 1
    cache.check_invariants()
    cache.set("k1", b"again")
    assert cache.get("k1") == b"again"
    cache.check_invariants()


# --------------------------------------------------------------------------------------------
# stats


STAT_INT_KEYS = [
    "gets",
    "hits",
    "misses",
    "sets",
    "evictions",
    "expirations",
    "curr_items",
    "bytes",
    "payload_bytes",
    "limit_maxbytes",
    "limit_entries",
    "shards",
    "cmd_get",
    "get_hits",
    "get_misses",
    "get_expired",
    "cmd_set",
    "total_items",
    "delete_hits",
    "delete_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
    "cas_hits",
    "cas_misses",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "evicted_unfetched",
    "expired_unfetched",
]


def test_stats_shape_on_a_fresh_cache(cache: Cache) -> None:
    s = cache.stats()
    assert isinstance(s, dict)
    for k in STAT_INT_KEYS:
        assert type(s[k]) is int, k
    assert s["hit_ratio"] == 0.0 and type(s["hit_ratio"]) is float
    assert s["eviction"] == "s3fifo"
    for k in STAT_INT_KEYS:
        if k not in ("limit_maxbytes", "limit_entries", "shards"):
            assert s[k] == 0, k
    assert s["limit_maxbytes"] == 64 * 1024 * 1024
    assert s["limit_entries"] == 0
    assert s["shards"] >= 1


def test_stats_counts_and_aliases(cache: Cache) -> None:
    cache.set("a", b"1")
    cache.set("b", b"22")
    cache["c"] = b"333"
    cache.get("a")
    cache.get("a")
    cache.get("missing")
    _ = cache["b"]
    with pytest.raises(KeyError):
        _ = cache["missing"]
    cache.gets("c")
    s = cache.stats()
    assert s["hits"] == s["get_hits"] == 4
    assert s["misses"] == s["get_misses"] == 2
    assert s["gets"] == s["cmd_get"] == 6
    assert s["sets"] == s["cmd_set"] == 3
    assert s["total_items"] == 3
    assert s["hit_ratio"] == pytest.approx(4 / 6)
    assert s["curr_items"] == len(cache) == 3
    assert s["payload_bytes"] == 3 + (1 + 2 + 3)
    assert s["bytes"] >= s["payload_bytes"] + 3 * ratmemcache.ENTRY_OVERHEAD
    assert s["evictions"] == 0


@pytest.mark.parametrize("policy", ratmemcache.POLICIES)
def test_bytes_accounting_formula(clock: ratmemcache.ManualClock, policy: str) -> None:
    c = Cache(clock=clock, eviction=policy, cleanup_interval=0)
    per_entry: set[int] = set()
    payload = 0
    for i in range(1, 30):
        key, value = f"key-{i}", b"x" * (i * 7)
        c.set(key, value)
        payload += len(key) + len(value)
        s = c.stats()
        assert s["payload_bytes"] == payload
        assert (s["bytes"] - s["payload_bytes"]) % s["curr_items"] == 0
        per_entry.add((s["bytes"] - s["payload_bytes"]) // s["curr_items"])
    assert len(per_entry) == 1
    assert per_entry.pop() >= ratmemcache.ENTRY_OVERHEAD
    for i in range(1, 30):
        c.delete(f"key-{i}")
    assert (c.stats()["bytes"], c.stats()["payload_bytes"]) == (0, 0)
    c.check_invariants()


def test_stats_total_items_counts_overwrites(cache: Cache) -> None:
    cache.set("k", b"1")
    cache.set("k", b"2")
    cache.add("k", b"3")  # not stored
    cache.replace("k", b"4")
    s = cache.stats()
    assert s["cmd_set"] == 4
    assert s["total_items"] == 3
    assert s["curr_items"] == 1


# --------------------------------------------------------------------------------------------
# construction, properties, repr


def test_defaults() -> None:
    with Cache() as c:
        assert c.eviction == "s3fifo"
        assert c.max_memory == 64 * 1024 * 1024
        assert c.max_entries == 0
        assert c.closed is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64MB", 64 << 20),
        ("64 mib", 64 << 20),
        ("1.5KB", 1536),
        ("512k", 512 << 10),
        ("1_000", 1000),
        ("2GB", 2 << 30),
        ("1tb", 1 << 40),
        ("100", 100),
        ("100B", 100),
        ("  3M  ", 3 << 20),
    ],
)
def test_max_memory_size_strings(text: str, expected: int) -> None:
    with Cache(max_memory=text) as c:
        assert c.max_memory == expected
        assert c.stats()["limit_maxbytes"] == expected


def test_max_memory_int_and_zero() -> None:
    with Cache(max_memory=123456) as c:
        assert c.max_memory == 123456
    with Cache(max_memory=0) as c:  # 0 = unlimited
        assert c.max_memory == 0
        c.set("k", b"x" * 100_000)
        assert c.get("k") == b"x" * 100_000
    with Cache(max_memory=None) as c:
        assert c.max_memory == 64 << 20


def test_max_entries_property() -> None:
    with Cache(max_entries=100) as c:
        assert c.max_entries == 100
        assert c.stats()["limit_entries"] == 100
    with Cache(max_entries="2k") as c:
        assert c.max_entries == 2048


@pytest.mark.parametrize("bad", ["12XB", "MB", "", "abc", "99999999999999999999", "-5", "1..5MB"])
def test_bad_max_memory_strings_raise_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="max_memory"):
        Cache(max_memory=bad)


def test_bad_max_memory_values() -> None:
    with pytest.raises(ConfigError, match="max_memory"):
        Cache(max_memory=-1)
    with pytest.raises(ValueError, match="max_memory"):  # ConfigError is a ValueError
        Cache(max_memory=-(2**70))
    with pytest.raises(TypeError, match="max_memory"):
        Cache(max_memory=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_memory"):
        Cache(max_memory=[1])  # type: ignore[arg-type]


def test_bad_max_entries_values() -> None:
    with pytest.raises(ConfigError, match="max_entries"):
        Cache(max_entries=-1)
    with pytest.raises(ConfigError, match="max_entries"):
        Cache(max_entries="lots")


@pytest.mark.parametrize("name", ["default_ttl", "max_ttl", "cleanup_interval"])
def test_bad_durations_raise_config_error(name: str) -> None:
    def cache_with(value: object) -> Cache:
        options: dict[str, Any] = {name: value}  # name is one of three duration parameters
        return Cache(**options)

    with pytest.raises(ConfigError, match=name):
        cache_with(-1)
    with pytest.raises(ConfigError, match=name):
        cache_with(float("nan"))
    with pytest.raises(ConfigError, match=name):
        cache_with(float("inf"))
    with pytest.raises(TypeError, match=name):
        cache_with("soon")
    with pytest.raises(ConfigError, match=name):
        cache_with(timedelta(seconds=-1))


def test_bad_shards_and_key_length() -> None:
    with pytest.raises(ConfigError, match="shards"):
        Cache(shards=100_000)
    with pytest.raises(ConfigError, match="max_key_len"):
        Cache(max_key_length=0)
    with pytest.raises(OverflowError):
        Cache(shards=-1)


@pytest.mark.parametrize(("shards", "expected"), [(1, 1), (2, 2), (3, 4), (5, 8), (16, 16)])
def test_shards_round_up_to_a_power_of_two(shards: int, expected: int) -> None:
    with Cache(shards=shards) as c:
        assert c.stats()["shards"] == expected


def test_small_limits_get_a_single_shard() -> None:
    with Cache(max_entries=100) as c:
        assert c.stats()["shards"] == 1
    with Cache(max_memory="512KB") as c:
        assert c.stats()["shards"] == 1


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("lru", "lru"),
        ("LRU", "lru"),
        ("Lru", "lru"),
        ("lfu", "lfu"),
        ("Lfu", "lfu"),
        ("FIFO", "fifo"),
        ("Fifo", "fifo"),
        ("hybrid", "hybrid"),
        ("LruLfu", "hybrid"),
        ("lrulfu", "hybrid"),
        ("slru", "hybrid"),
        ("ttl", "ttl"),
        ("TtlBased", "ttl"),
        ("TTLBASED", "ttl"),
        ("sieve", "sieve"),
        ("Sieve", "sieve"),
        ("s3fifo", "s3fifo"),
        ("S3FIFO", "s3fifo"),
        ("S3-FIFO", "s3fifo"),
        ("s3_fifo", "s3fifo"),
    ],
)
def test_eviction_names(name: str, canonical: str) -> None:
    with Cache(eviction=name) as c:
        assert c.eviction == canonical
        assert c.stats()["eviction"] == canonical


@pytest.mark.parametrize("policy", ratmemcache.POLICIES)
def test_every_policy_name_is_accepted(policy: str) -> None:
    with Cache(eviction=policy) as c:
        assert c.eviction == policy
    with Cache(eviction=policy.upper()) as c:
        assert c.eviction == policy


@pytest.mark.parametrize("bad", ["random", "", "lru2", "mru"])
def test_unknown_eviction_raises_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="eviction") as info:
        Cache(eviction=bad)
    assert repr(bad) in str(info.value) or f'"{bad}"' in str(info.value)
    assert "s3fifo" in str(info.value)


def test_repr() -> None:
    c = Cache(max_memory=1000, max_entries=10, eviction="lru", cleanup_interval=0)
    c.set("a", b"1")
    c.set("b", b"1")
    r = repr(c)
    assert r.startswith("Cache(")
    assert '"lru"' in r
    assert "max_memory=1000" in r
    assert "max_entries=10" in r
    assert "len=2" in r
    assert "closed" not in r
    c.close()
    assert repr(c).endswith(", closed)")


def test_manual_clock() -> None:
    clk = ratmemcache.ManualClock()
    assert clk.now() == 1_700_000_000.0
    clk.advance(1.5)
    assert clk.now() == 1_700_000_001.5
    clk.set(10)
    assert clk.now() == 10.0
    assert repr(clk) == "ManualClock(10)"
    with pytest.raises(ValueError):
        clk.advance(-1)
    with pytest.raises(ValueError):
        clk.set(float("nan"))
    with pytest.raises(ValueError):
        ratmemcache.ManualClock(-5)


def test_cache_subclass_is_allowed() -> None:
    class MyCache(Cache):
        def get_str(self, key: str) -> str | None:
            v = self.get(key)
            return None if v is None else v.decode()

    c = MyCache(cleanup_interval=0)
    c.set("k", b"v")
    assert c.get_str("k") == "v"
    assert isinstance(c, Cache)
    c.close()


# --------------------------------------------------------------------------------------------
# shutdown / context manager


def test_context_manager_returns_self_and_closes() -> None:
    cache = Cache(cleanup_interval=0)
    with cache as c:
        assert c is cache
        c.set("k", b"v")
        assert c.get("k") == b"v"
    assert cache.closed is True
    with pytest.raises(CacheClosedError):
        cache.get("k")


def test_context_manager_closes_on_error_and_propagates() -> None:
    cache = Cache(cleanup_interval=0)
    with pytest.raises(ZeroDivisionError), cache:
        _ = 1 / 0
    assert cache.closed


def test_exit_returns_false() -> None:
    c = Cache()
    assert c.__exit__(None, None, None) is False
    assert c.closed


def test_shutdown_and_close_are_idempotent() -> None:
    c = Cache()
    c.set("k", b"v")
    c.shutdown()
    c.shutdown()
    c.close()
    assert c.closed
    d = Cache()
    d.close()
    assert d.closed
    with pytest.raises(CacheClosedError):
        d.set("k", b"v")


CLOSED_OPS: list[tuple[str, Any]] = [
    ("get", lambda c: c.get("k")),
    ("get_default", lambda c: c.get("k", b"d")),
    ("getitem", lambda c: c["k"]),
    ("gets", lambda c: c.gets("k")),
    ("get_many", lambda c: c.get_many(["k"])),
    ("set", lambda c: c.set("k", b"v")),
    ("setitem", lambda c: c.__setitem__("k", b"v")),
    ("set_with_ttl", lambda c: c.set_with_ttl("k", b"v", 1)),
    ("set_many", lambda c: c.set_many({"k": b"v"})),
    ("add", lambda c: c.add("new", b"v")),
    ("replace", lambda c: c.replace("k", b"v")),
    ("append", lambda c: c.append("k", b"v")),
    ("prepend", lambda c: c.prepend("k", b"v")),
    ("cas", lambda c: c.cas("k", b"v", 1)),
    ("incr", lambda c: c.incr("n")),
    ("decr", lambda c: c.decr("n")),
    ("touch", lambda c: c.touch("k", 1)),
    ("ttl", lambda c: c.ttl("k")),
    ("delete", lambda c: c.delete("k")),
    ("delitem", lambda c: c.__delitem__("k")),
    ("contains_key", lambda c: c.contains_key("k")),
    ("in", lambda c: "k" in c),
    ("keys", lambda c: c.keys()),
    ("iter", lambda c: iter(c)),
    ("len", lambda c: len(c)),
    ("clear", lambda c: c.clear()),
    ("sweep_expired", lambda c: c.sweep_expired()),
]


@pytest.mark.parametrize("how", ["shutdown", "close", "with"])
@pytest.mark.parametrize(("name", "op"), CLOSED_OPS, ids=[n for n, _ in CLOSED_OPS])
def test_operations_after_close_raise(how: str, name: str, op: Any) -> None:
    c = Cache(cleanup_interval=0)
    c.set("k", b"v")
    c.set("n", b"1")
    if how == "with":
        with c:
            pass
    else:
        getattr(c, how)()
    with pytest.raises(CacheClosedError, match="shut down"):
        op(c)
    # also catchable as the builtin
    with pytest.raises(RuntimeError):
        op(c)


def test_closed_checked_before_argument_errors() -> None:
    c = Cache()
    c.close()
    with pytest.raises(CacheClosedError):
        c.get(123)  # type: ignore[call-overload]
    with pytest.raises(CacheClosedError):
        c.set("k", "not bytes")


def test_many_caches_can_be_created_and_closed() -> None:
    for _ in range(50):
        with Cache(cleanup_interval=0.5) as c:
            c.set("k", b"v")
            assert c.get("k") == b"v"


def test_max_memory_can_be_changed_at_run_time() -> None:
    c = ratmemcache.Cache(max_memory="4MB", shards=4)
    for i in range(3000):
        c.set(f"k{i}", b"v" * 1000)
    assert c.stats()["bytes"] > 2 << 20
    c.max_memory = "1MB"  # a lower limit evicts at once
    s = c.stats()
    assert c.max_memory == 1 << 20 == s["limit_maxbytes"]
    assert s["bytes"] <= 1 << 20 and s["evictions"] > 0
    assert "max_memory=1048576" in repr(c)
    c.max_memory = 8 << 20  # a higher one lets it grow, without evicting
    evicted = s["evictions"]
    for i in range(5000):
        c.set(f"j{i}", b"v" * 1000)
    assert c.stats()["evictions"] == evicted
    c.check_invariants()
    with pytest.raises(ratmemcache.ConfigError, match="max_memory"):
        c.max_memory = "lots"
    with pytest.raises(AttributeError):
        del c.max_memory
    c.close()
    with pytest.raises(ratmemcache.CacheClosedError):
        c.max_memory = 1 << 20
