"""Every wire transcript, three ways: in process against the Rust Session, over a socket against
a running ``ratmemcached`` (with each I/O engine), and over a socket against Debian's memcached,
which proves that the expected bytes are memcached's own (files named ``ext_*`` are ratmemcache
extensions, skipped there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratmemcache._core import Cache, Engine
from servers import ENGINES, memcached, ratmemcached, requires_memcached
from transcript import options, parse, run_session, run_socket, transcript_files

FILES = transcript_files()
IDS = [f.stem for f in FILES]


def item_size_args(path: Path) -> list[str]:
    size = options(path).get("item_size_max")
    return [] if size is None else ["-I", str(size)]


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_in_process(path: Path) -> None:
    opts = options(path)
    engine = Engine(Cache(shards=1), max_item_size=opts.get("item_size_max", 1 << 20))
    run_session(engine.session(), parse(path))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_ratmemcached_socket(path: Path, engine: str) -> None:
    # One shard, so CAS uniques count from 1 as memcached's do.
    with ratmemcached(*item_size_args(path), engine=engine, config={"l1": {"shards": 1}}) as srv:
        run_socket(*srv.address, parse(path))


@requires_memcached
@pytest.mark.parametrize("path", transcript_files(include_extensions=False), ids=lambda p: p.stem)
def test_memcached_agrees(path: Path) -> None:
    args = item_size_args(path)
    if args:
        # memcached refuses -I below its default slab chunk size.
        args += ["-o", "slab_chunk_max=512"]
    with memcached(*args) as ref:
        run_socket(*ref.address, parse(path))
