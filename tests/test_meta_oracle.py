"""The meta protocol transcripts (tests/transcripts/meta*.txt), against Debian's memcached 1.6.18
and against ratmemcache's Session in process: the same bytes in, the same bytes out.

Running them against memcached proves that the expected bytes are memcached's own; running them in
process proves that ratmemcache reproduces them. (tests/test_transcripts.py runs every transcript,
these included, over sockets too.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ratmemcache._core import Cache, Engine
from servers import memcached
from transcript import TRANSCRIPTS, options, parse, run_session, run_socket

META_FILES = sorted(TRANSCRIPTS.glob("meta*.txt"))


def test_there_are_meta_transcripts() -> None:
    assert len(META_FILES) >= 5, META_FILES


def memcached_args(path: Path) -> list[str]:
    size = options(path).get("item_size_max")
    if size is None:
        return []
    # memcached refuses -I below its default slab chunk size unless that shrinks too.
    return ["-I", str(size), "-o", "slab_chunk_max=512"]


@pytest.mark.parametrize("path", META_FILES, ids=lambda p: p.stem)
def test_memcached_agrees(path: Path) -> None:
    with memcached(*memcached_args(path)) as ref:
        run_socket(*ref.address, parse(path))


@pytest.mark.parametrize("path", META_FILES, ids=lambda p: p.stem)
def test_in_process(path: Path) -> None:
    size = options(path).get("item_size_max", 1 << 20)
    engine = Engine(Cache(shards=1), max_item_size=size)
    run_session(engine.session(), parse(path))


@pytest.mark.parametrize("path", META_FILES, ids=lambda p: p.stem)
def test_in_process_byte_by_byte(path: Path) -> None:
    """Framing never depends on how the stream is split: feed one byte at a time."""
    size = options(path).get("item_size_max", 1 << 20)
    session = Engine(Cache(shards=1), max_item_size=size).session()
    for i, step in enumerate(parse(path)):
        got = b""
        closed = False
        for b in step.send:
            reply, closed = session.feed(bytes([b]))
            got += reply
            if closed:
                break
        assert (got, closed) == (step.expect, step.close), f"step {i}: sent {step.send[:200]!r}"
        if closed:
            return
