"""Shared fixtures for the in-process library tests. Keep this small: nothing server-related."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import ratmemcache

#: The ManualClock start used by the fixtures (unix seconds).
START = 1_700_000_000.0


@pytest.fixture
def clock() -> ratmemcache.ManualClock:
    """A clock that moves only when the test calls ``advance``/``set``."""
    return ratmemcache.ManualClock(START)


@pytest.fixture
def cache(clock: ratmemcache.ManualClock) -> Iterator[ratmemcache.Cache]:
    """An unbounded-by-entries cache on the manual clock, without the background sweeper."""
    c = ratmemcache.Cache(clock=clock, cleanup_interval=0)
    yield c
    if not c.closed:
        c.check_invariants()
    c.close()
