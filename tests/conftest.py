"""Shared fixtures for the in-process library tests. Keep this small: nothing server-related.

Also one hook, for every test: tracebacks whose entries have no line number are given one, so that
pytest can report the failure (see :func:`pytest_runtest_makereport`).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from types import TracebackType

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


# -- tracebacks without line numbers ----------------------------------------------------------
#
# pytest-timeout (pyproject.toml: timeout = 120, the default "signal" method) fails a test that
# overruns by raising from a SIGALRM handler: the exception appears in whatever frame the main
# thread is running. On CPython 3.11 the instruction it lands on can have no line number (a
# loop's jump back, as in ``for ...: if ...: ...``: CPython gh-107901, fixed in 3.12), and then
# that traceback entry's ``tb_lineno`` is None. pytest computes ``tb_lineno - 1`` while it formats
# the failure: a TypeError, an INTERNALERROR (shown inside hypothesis's makereport hookwrapper)
# that ends the run without naming the test. Such entries are replaced, before pytest's own
# makereport runs, by ones that carry the line of the nearest instruction before them.


def _line_of(tb: TracebackType) -> int:
    """The line of the last instruction at or before ``tb``'s that has one (else the def's)."""
    code = tb.tb_frame.f_code
    line = code.co_firstlineno
    for start, _end, lineno in code.co_lines():
        if start > tb.tb_lasti:
            break
        if lineno is not None:
            line = lineno
    return line


def _with_line_numbers(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` with each entry that has no line number replaced (the same object if none lacks
    one; ``tb_next`` is writable, ``tb_lineno`` is not)."""
    entries: list[TracebackType] = []
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    lines: list[int | None] = [entry.tb_lineno for entry in entries]
    if None not in lines:
        return entries[0] if entries else None
    following: TracebackType | None = None
    for entry, lineno in zip(reversed(entries), reversed(lines), strict=True):
        if lineno is None:
            entry = TracebackType(following, entry.tb_frame, entry.tb_lasti, _line_of(entry))
        else:
            entry.tb_next = following
        following = entry
    return following


def _repair_chain(exc: BaseException | None, seen: set[int]) -> None:
    """Repairs the tracebacks of ``exc``, its cause, context and group members."""
    if exc is None or id(exc) in seen:
        return
    seen.add(id(exc))
    exc.__traceback__ = _with_line_numbers(exc.__traceback__)
    _repair_chain(exc.__cause__, seen)
    _repair_chain(exc.__context__, seen)
    if isinstance(exc, BaseExceptionGroup):
        for member in exc.exceptions:
            _repair_chain(member, seen)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    if call.excinfo is not None:
        exc = call.excinfo.value
        head = exc.__traceback__  # the same traceback as call.excinfo.tb
        _repair_chain(exc, set())
        if exc.__traceback__ is not head:  # the first entry itself was replaced
            call.excinfo = pytest.ExceptionInfo.from_exception(exc)
    return (yield)
