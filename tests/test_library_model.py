"""Stateful test: ``Cache`` (no limits, ManualClock) against a dict model with expiry times.

Times in the model are integer milliseconds, as in the cache; every TTL and clock step used here
is a whole number of milliseconds, so the two agree exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from ratmemcache import Cache, ManualClock

START_MS = 1_700_000_000_000
DEFAULT_TTL_MS = 10_000
U64 = 2**64

# Disjoint key sets: a str key and its UTF-8 bytes would be the same entry, so the model keeps
# str keys and bytes keys apart to know which type keys() gives back.
STR_KEY_NAMES = ["a", "b", "é"]
STR_KEYS = st.sampled_from(STR_KEY_NAMES)
BYTES_KEYS = st.sampled_from([b"x", b"\x00\xff"])
KEYS = STR_KEYS | BYTES_KEYS

NUMERIC_VALUES = st.one_of(
    st.sampled_from([b"0", b"9", b"42", b"100", b" 7 ", b"10000", b"18446744073709551615"]),
    st.integers(min_value=0, max_value=U64 - 1).map(lambda n: str(n).encode()),
)
VALUES = st.one_of(
    NUMERIC_VALUES,
    st.sampled_from([b"", b"abc", b"-1", b"1.5", b"18446744073709551616", b"\t5\r\n", b"\x0b5"]),
    st.binary(max_size=12),
)
# seconds; None = the cache default, 0 = never
TTLS = st.one_of(
    st.none(),
    st.just(0),
    st.integers(min_value=1, max_value=20),
    st.sampled_from([0.001, 0.5, 1.5, 2.25]),
)
DELTAS = st.one_of(
    st.integers(min_value=0, max_value=1000), st.sampled_from([U64 - 1, 2**63, 2**32])
)
ADVANCES_MS = st.one_of(st.integers(min_value=0, max_value=3000), st.sampled_from([1, 999, 1000]))


@dataclass
class Entry:
    value: bytes
    expires_at: int  # ms; 0 = never
    version: int  # bumped by every write that changes the CAS unique


def deadline(now: int, ttl: float | None) -> int:
    if ttl is None:
        return now + DEFAULT_TTL_MS
    if ttl == 0:
        return 0
    return now + max(1, math.ceil(ttl * 1000))


C_SPACE = b" \t\n\x0b\x0c\r"  # C's isspace


def parse_decimal(v: bytes) -> int | None:
    """memcached's safe_strtoull: strtoull (leading space, a sign, digits) that must stop at a
    space or the end; what follows the space is ignored; a negative result is refused."""
    s = v.lstrip(C_SPACE)
    negative = s[:1] == b"-"
    if s[:1] in (b"+", b"-"):
        s = s[1:]
    digits = len(s) - len(s.lstrip(b"0123456789"))
    if digits == 0 or (digits < len(s) and s[digits] not in C_SPACE):
        return None
    n = int(s[:digits])
    if n >= U64:
        return None
    if negative:
        n = (U64 - n) % U64
        return n if n < U64 // 2 else None
    return n


class CacheModel(RuleBasedStateMachine):
    tokens = Bundle("tokens")

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(START_MS / 1000)
        self.cache = Cache(
            max_memory=0, default_ttl=DEFAULT_TTL_MS / 1000, clock=self.clock, cleanup_interval=0
        )
        self.now = START_MS
        self.model: dict[str | bytes, Entry] = {}
        self.versions = 0
        self.counts = dict.fromkeys(
            [
                "hits",
                "misses",
                "cmd_set",
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
            ],
            0,
        )

    def teardown(self) -> None:
        self.cache.close()

    # -- model helpers --------------------------------------------------------------------

    def live(self, key: str | bytes) -> Entry | None:
        e = self.model.get(key)
        if e is None:
            return None
        if e.expires_at != 0 and self.now >= e.expires_at:
            del self.model[key]
            return None
        return e

    def live_keys_sorted(self) -> list[str | bytes]:
        return sorted(self.live_keys(), key=repr)

    def live_keys(self) -> set[str | bytes]:
        return {k for k in list(self.model) if self.live(k) is not None}

    def write(self, key: str | bytes, value: bytes, expires_at: int) -> None:
        self.versions += 1
        self.model[key] = Entry(value, expires_at, self.versions)

    # -- rules ----------------------------------------------------------------------------

    @initialize()
    def start_empty(self) -> None:
        assert len(self.cache) == 0

    @rule(key=KEYS, value=VALUES, ttl=TTLS)
    def set(self, key: str | bytes, value: bytes, ttl: float | None) -> None:
        self.cache.set(key, value, ttl=ttl)
        self.counts["cmd_set"] += 1
        self.write(key, value, deadline(self.now, ttl))

    @rule(key=KEYS, value=VALUES, ttl=TTLS)
    def add(self, key: str | bytes, value: bytes, ttl: float | None) -> None:
        expected = self.live(key) is None
        assert self.cache.add(key, value, ttl=ttl) is expected
        self.counts["cmd_set"] += 1
        if expected:
            self.write(key, value, deadline(self.now, ttl))

    @rule(key=KEYS, value=VALUES, ttl=TTLS)
    def replace(self, key: str | bytes, value: bytes, ttl: float | None) -> None:
        expected = self.live(key) is not None
        assert self.cache.replace(key, value, ttl=ttl) is expected
        self.counts["cmd_set"] += 1
        if expected:
            self.write(key, value, deadline(self.now, ttl))

    @rule(key=KEYS, value=st.binary(max_size=4), at_end=st.booleans())
    def append_or_prepend(self, key: str | bytes, value: bytes, at_end: bool) -> None:
        e = self.live(key)
        op = self.cache.append if at_end else self.cache.prepend
        assert op(key, value) is (e is not None)
        self.counts["cmd_set"] += 1
        if e is not None:
            new = e.value + value if at_end else value + e.value
            self.write(key, new, e.expires_at)

    @rule(key=KEYS)
    def get(self, key: str | bytes) -> None:
        e = self.live(key)
        assert self.cache.get(key) == (None if e is None else e.value)
        self.counts["hits" if e else "misses"] += 1

    @rule(keys=st.lists(KEYS, max_size=5))
    def get_many(self, keys: list[str | bytes]) -> None:
        expected = {}
        for k in keys:
            e = self.live(k)
            self.counts["hits" if e else "misses"] += 1
            if e is not None:
                expected[k] = e.value
        assert self.cache.get_many(keys) == expected

    @rule(target=tokens, key=KEYS)
    def gets(self, key: str | bytes) -> tuple[str | bytes, int, int | None]:
        e = self.live(key)
        got = self.cache.gets(key)
        self.counts["hits" if e else "misses"] += 1
        if e is None:
            assert got is None
            return (key, 0, None)
        assert got is not None
        assert got[0] == e.value
        return (key, got[1], e.version)

    @rule(token=tokens, key=KEYS, value=VALUES, ttl=TTLS, same_key=st.booleans())
    def cas(
        self,
        token: tuple[str | bytes, int, int | None],
        key: str | bytes,
        value: bytes,
        ttl: float | None,
        same_key: bool,
    ) -> None:
        token_key, unique, version = token
        if same_key:
            key = token_key
        e = self.live(key)
        # a unique only matches the very version of the very key that gets() returned
        expected = (
            e is not None and version is not None and key == token_key and e.version == version
        )
        assert self.cache.cas(key, value, unique, ttl=ttl) is expected
        self.counts["cmd_set"] += 1
        if e is None:
            self.counts["cas_misses"] += 1
        elif expected:
            self.counts["cas_hits"] += 1
            self.write(key, value, deadline(self.now, ttl))
        else:
            self.counts["cas_badval"] += 1

    @rule(key=KEYS, delta=DELTAS, up=st.booleans())
    def incr_decr(self, key: str | bytes, delta: int, up: bool) -> None:
        e = self.live(key)
        op = self.cache.incr if up else self.cache.decr
        name = "incr" if up else "decr"
        if e is None:
            assert op(key, delta) is None
            self.counts[f"{name}_misses"] += 1
            return
        cur = parse_decimal(e.value)
        if cur is None:
            try:
                op(key, delta)
            except ValueError:
                pass
            else:
                raise AssertionError(f"{name} of {e.value!r} should raise ValueError")
            assert self.cache.get(key) == e.value
            self.counts["hits"] += 1
            return
        new = (cur + delta) % U64 if up else max(0, cur - delta)
        assert op(key, delta) == new
        self.counts[f"{name}_hits"] += 1
        digits = str(new).encode()
        if len(digits) < len(e.value):
            digits = digits.ljust(len(e.value), b" ")
        self.write(key, digits, e.expires_at)

    @rule(key=KEYS, ttl=TTLS)
    def touch(self, key: str | bytes, ttl: float | None) -> None:
        e = self.live(key)
        assert self.cache.touch(key, ttl) is (e is not None)
        if e is None:
            self.counts["touch_misses"] += 1
        else:
            self.counts["touch_hits"] += 1
            e.expires_at = deadline(self.now, ttl)  # the CAS unique does not change

    @rule(key=KEYS)
    def delete(self, key: str | bytes) -> None:
        e = self.live(key)
        assert self.cache.delete(key) is (e is not None)
        self.counts["delete_hits" if e else "delete_misses"] += 1
        self.model.pop(key, None)

    @rule(key=KEYS)
    def ttl(self, key: str | bytes) -> None:
        e = self.live(key)
        got = self.cache.ttl(key)
        if e is None:
            assert got is None
        elif e.expires_at == 0:
            assert got == float("inf")
        else:
            assert got == (e.expires_at - self.now) / 1000

    @rule(key=KEYS)
    def contains(self, key: str | bytes) -> None:
        assert (key in self.cache) is (self.live(key) is not None)

    @rule(ms=ADVANCES_MS)
    def advance(self, ms: int) -> None:
        self.clock.advance(ms / 1000)
        self.now += ms
        assert round(self.clock.now() * 1000) == self.now

    @precondition(lambda self: any(e.expires_at for e in self.model.values()))
    @rule(offset_ms=st.sampled_from([-1, 0, 1]))
    def advance_to_a_deadline(self, offset_ms: int) -> None:
        """Moves the clock to just before, exactly at, or just after the next deadline."""
        target = min(e.expires_at for e in self.model.values() if e.expires_at) + offset_ms
        if target > self.now:
            self.advance(target - self.now)

    @rule()
    def clear(self) -> None:
        self.cache.clear()
        self.model.clear()
        assert len(self.cache) == 0

    @rule()
    def sweep(self) -> None:
        before = len(self.cache)
        reclaimed = self.cache.sweep_expired()
        after = len(self.cache)
        assert reclaimed == before - after
        assert after == len(self.live_keys())

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def getitem_present_or_keyerror(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.model, key=repr)))
        e = self.live(key)
        self.counts["hits" if e else "misses"] += 1
        if e is None:
            try:
                self.cache[key]
            except KeyError:
                return
            raise AssertionError("expected KeyError")
        assert self.cache[key] == e.value

    @precondition(lambda self: bool(self.live_keys()))
    @rule(data=st.data(), ttl=TTLS)
    def touch_live(self, data: st.DataObject, ttl: float | None) -> None:
        key = data.draw(st.sampled_from(self.live_keys_sorted()), label="key")
        before = self.cache.gets(key)
        self.touch(key, ttl)
        after = self.cache.gets(key)
        self.counts["hits"] += 2
        assert before is not None and after is not None
        assert after == before  # touch changes neither the value nor the CAS unique
        self.ttl(key)

    @precondition(lambda self: bool(self.live_keys()))
    @rule(data=st.data(), value=VALUES, ttl=TTLS)
    def gets_then_cas(self, data: st.DataObject, value: bytes, ttl: float | None) -> None:
        key = data.draw(st.sampled_from(self.live_keys_sorted()), label="key")
        e = self.live(key)
        assert e is not None
        got = self.cache.gets(key)
        assert got is not None and got[0] == e.value
        self.counts["hits"] += 1
        assert self.cache.cas(key, value, got[1], ttl=ttl) is True
        self.counts["cmd_set"] += 1
        self.counts["cas_hits"] += 1
        self.write(key, value, deadline(self.now, ttl))
        # the unique that was just used is stale now
        assert self.cache.cas(key, value, got[1]) is False
        self.counts["cmd_set"] += 1
        self.counts["cas_badval"] += 1

    @precondition(lambda self: bool(self.live_keys()))
    @rule(data=st.data(), value=NUMERIC_VALUES, delta=DELTAS, up=st.booleans())
    def set_then_incr_decr(self, data: st.DataObject, value: bytes, delta: int, up: bool) -> None:
        key = data.draw(st.sampled_from(self.live_keys_sorted()), label="key")
        e = self.live(key)
        assert e is not None
        assert self.cache.replace(key, value, ttl=0)
        self.counts["cmd_set"] += 1
        self.write(key, value, 0)
        self.incr_decr(key, delta, up)

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def internal_invariants_hold(self) -> None:
        self.cache.check_invariants()

    @invariant()
    def keys_match(self) -> None:
        keys = self.cache.keys()
        assert len(keys) == len(set(keys))
        assert set(keys) == self.live_keys()
        for k in keys:
            assert type(k) is (str if k in STR_KEY_NAMES else bytes)

    @invariant()
    def sizes_match(self) -> None:
        s = self.cache.stats()
        live = self.live_keys()
        # len and curr_items also count expired entries not yet reclaimed
        assert s["curr_items"] == len(self.cache) >= len(live)
        if len(self.cache) == len(live):
            payload = sum(
                len(k.encode() if isinstance(k, str) else k) + len(self.model[k].value)
                for k in live
            )
            assert s["payload_bytes"] == payload

    @invariant()
    def counters_match(self) -> None:
        s = self.cache.stats()
        for name, n in self.counts.items():
            assert s[name] == n, (name, s[name], n)
        assert s["gets"] == self.counts["hits"] + self.counts["misses"]
        assert s["evictions"] == 0


CacheModel.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# A failure shrinks for a while; leave it room beyond the suite's default timeout.
TestCacheModel = pytest.mark.timeout(600)(CacheModel.TestCase)
