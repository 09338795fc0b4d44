"""What the server holds, as memcached's tools read it: ``stats items``, ``stats slabs``,
``stats cachedump``, ``lru_crawler metadump``, ``stats detail`` over the binary protocol, and
Debian's ``memcached-tool`` (display, stats, settings, dump, keys), each against memcached
1.6.18 after the same traffic, on both I/O engines.

memcached files items by slab class; ratmemcached has no slabs and reports each item in the class
a default memcached would give it, so the per-class numbers agree.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import ENGINES, ServerProcess, exchange, memcached, ratmemcached, requires_memcached

pytestmark = requires_memcached

MEMCACHED_TOOL = Path("/usr/share/memcached/scripts/memcached-tool")
requires_tool = pytest.mark.skipif(
    not MEMCACHED_TOOL.exists() or shutil.which("perl") is None,
    reason="memcached-tool (Debian's memcached package) or perl is missing",
)

#: Items of several slab classes, flags and lifetimes, and keys memcached-tool must URI-decode.
ITEMS = [
    (b"foo", 0, 0, b"bar"),
    (b"k2", 5, 1000, b"hi"),
    (b"sp%ace", 0, 0, b"x"),
    (b"big", 0, 0, b"x" * 1000),
    (b"bigger", 7, 0, b"y" * 5000),
]


def _load(sock: socket.socket) -> None:
    for key, flags, exptime, value in ITEMS:
        cmd = b"set %s %d %d %d\r\n%s\r\n" % (key, flags, exptime, len(value), value)
        assert exchange(sock, cmd) == b"STORED\r\n"


def _stats(sock: socket.socket, sub: str) -> dict[str, str]:
    reply = exchange(sock, f"stats {sub}\r\n".encode(), until=b"END\r\n")
    return {
        k: v for k, _, v in (line[5:].partition(" ") for line in reply.decode().splitlines()[:-1])
    }


@pytest.fixture(params=ENGINES)
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """memcached and ratmemcached (one shard, so CAS uniques count as memcached's do), both
    loaded with ITEMS."""
    with contextlib.ExitStack() as stack:
        ref = stack.enter_context(memcached())
        ours = stack.enter_context(ratmemcached(engine=request.param, config={"l1": {"shards": 1}}))
        for srv in (ref, ours):
            with srv.connect() as s:
                _load(s)
        yield ref, ours


def test_stats_items_and_slabs_agree_by_class(servers: tuple[ServerProcess, ServerProcess]) -> None:
    ref, ours = servers
    with ref.connect() as a, ours.connect() as b:
        for sub, fields in (
            # (memcached moves new items from its hot LRU to the cold one a moment later;
            # ratmemcached counts every item as cold, so only the totals compare)
            ("items", ("number", "mem_requested", "evicted", "outofmemory")),
            ("slabs", ("chunk_size", "chunks_per_page", "total_pages", "used_chunks")),
        ):
            theirs, mine = _stats(a, sub), _stats(b, sub)
            assert theirs.keys() >= mine.keys() - {"total_malloced"}, sub
            for name, value in theirs.items():
                if name.rsplit(":", 1)[-1] in fields:
                    assert mine.get(name) == value, (sub, name)
            assert (
                mine["active_slabs" if sub == "slabs" else "items:1:number"]
                == (theirs["active_slabs" if sub == "slabs" else "items:1:number"])
            )


def _cold_dump(sock: socket.socket, cls: int, want: int) -> bytes:
    """memcached lists a class's cold LRU only, which its maintainer fills a moment after a
    store: ask until the items are there."""
    deadline = time.monotonic() + 10
    while True:
        reply = exchange(sock, b"stats cachedump %d 0\r\n" % cls, until=b"END\r\n")
        if reply.count(b"ITEM ") >= want or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


def test_stats_cachedump_lists_each_class(servers: tuple[ServerProcess, ServerProcess]) -> None:
    ref, ours = servers
    with ref.connect() as a, ours.connect() as b:
        for cls in (1, 12, 19):
            want = sum(1 for k, f, _, v in ITEMS if _class_of(k, f, v) == cls)
            theirs = _cold_dump(a, cls, want)
            mine = exchange(b, b"stats cachedump %d 0\r\n" % cls, until=b"END\r\n")
            assert _lines(_no_times(mine)) == _lines(_no_times(theirs)), cls
            assert mine.count(b"ITEM ") == want
        limited = exchange(b, b"stats cachedump 1 2\r\n", until=b"END\r\n")
        assert limited.count(b"ITEM ") == 2


def _class_of(key: bytes, flags: int, value: bytes) -> int:
    size = 48 + 8 + len(key) + 1 + len(value) + 2 + (4 if flags else 0)
    chunks = [96, 120, 152, 192, 240, 304, 384, 480, 600, 752, 944, 1184, 1480, 1856, 2320]
    chunks += [2904, 3632, 4544, 5680, 7104]
    return next(i for i, c in enumerate(chunks, 1) if size <= c)


def _no_times(reply: bytes) -> bytes:
    """An absolute expiry can differ by a second between two servers."""
    return re.sub(rb"; \d{6,} s\]", b"; <t> s]", reply)


def _lines(reply: bytes) -> list[bytes]:
    return sorted(reply.split(b"\r\n"))


def _metadump(sock: socket.socket) -> dict[str, dict[str, str]]:
    reply = exchange(sock, b"lru_crawler metadump all\r\n", until=b"END\r\n")
    out = {}
    for line in reply.decode().split("\n"):
        if line.startswith("key="):
            fields = dict(f.split("=", 1) for f in line.split())
            out[fields.pop("key")] = fields
    return out


def test_lru_crawler_metadump_matches(servers: tuple[ServerProcess, ServerProcess]) -> None:
    ref, ours = servers
    with ref.connect() as a, ours.connect() as b:
        theirs, mine = _metadump(a), _metadump(b)
    assert mine.keys() == theirs.keys() == {"foo", "k2", "sp%25ace", "big", "bigger"}
    for key, t in theirs.items():
        m = mine[key]
        assert (m["fetch"], m["cls"], m["size"]) == (t["fetch"], t["cls"], t["size"]), key
        assert (m["exp"] == "-1") == (t["exp"] == "-1"), key
        if t["exp"] != "-1":
            assert abs(int(m["exp"]) - int(t["exp"])) <= 2, key
        assert abs(int(m["la"]) - int(t["la"])) <= 2, key
        assert int(m["cas"]) > 0


def _tool(server: ServerProcess, *mode: str) -> subprocess.CompletedProcess[str]:
    host, port = server.address
    return subprocess.run(
        ["perl", str(MEMCACHED_TOOL), f"{host}:{port}", *mode],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )


def _dumped(text: str) -> dict[str, tuple[int, int, str]]:
    """memcached-tool's dump: ``add <key> <flags> <exptime> <bytes>`` and the value."""
    lines = text.splitlines()
    out = {}
    for head, value in zip(lines[::2], lines[1::2], strict=True):
        _, key, flags, exptime, _ = head.split(" ")
        out[key] = (int(flags), int(exptime), value)
    return out


@requires_tool
def test_memcached_tool_works_against_ratmemcached(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    ref, ours = servers
    # display: one row per class with its item size, count and fullness
    rows = [_tool(s).stdout.splitlines()[1:] for s in (ref, ours)]
    squeeze = [[re.sub(r"\s+\d+s\s", " <age> ", r).split() for r in rr] for rr in rows]
    assert squeeze[1] == squeeze[0]
    assert len(rows[1]) == 3
    # stats and settings: the same names (ratmemcached adds its own, below memcached's)
    names = [
        {line.split()[0] for line in _tool(s, "stats").stdout.splitlines()[1:]} for s in (ref, ours)
    ]
    assert names[1] - names[0] == {"eviction_policy", "shards"}
    assert names[0] <= names[1]
    settings = _tool(ours, "settings").stdout
    for name in ("maxbytes", "item_size_max", "cas_enabled", "detail_enabled", "lru_crawler"):
        assert re.search(rf"^\s*{name}\s+\S+$", settings, re.M), name
    # dump: every key with its flags, expiry and value, as `add` commands that reload it
    dumps = [_dumped(_tool(s, "dump").stdout) for s in (ref, ours)]
    assert dumps[1].keys() == dumps[0].keys() == {"foo", "k2", "sp%ace", "big", "bigger"}
    for key, (flags, exptime, value) in dumps[0].items():
        m_flags, m_exptime, m_value = dumps[1][key]
        assert (m_flags, m_value) == (flags, value), key
        assert abs(m_exptime - exptime) <= 2, key
    # keys: the metadump lines
    keys = _tool(ours, "keys").stdout
    assert sorted(re.findall(r"^key=(\S+)", keys, re.M)) == [
        "big",
        "bigger",
        "foo",
        "k2",
        "sp%25ace",
    ]


@requires_tool
def test_memcached_tool_dump_reloads_into_a_fresh_server() -> None:
    with ratmemcached(engine="native") as src, ratmemcached(engine="anyio") as dst:
        with src.connect() as s:
            _load(s)
        dump = _tool(src, "dump").stdout.replace("\n", "\r\n").encode()
        with dst.connect() as s:
            assert exchange(s, dump, until=b"STORED\r\n" * len(ITEMS)) == b"STORED\r\n" * len(ITEMS)
            for key, flags, _, value in ITEMS:
                got = exchange(s, b"get %s\r\n" % key, until=b"END\r\n")
                assert got == b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (key, flags, len(value), value)


def _bin_stat(sock: socket.socket, key: bytes) -> bytes:
    """A binary STAT request and every response packet up to the empty-key terminator."""
    sock.sendall(struct.pack(">BBHBBHIIQ", 0x80, 0x10, len(key), 0, 0, 0, len(key), 7, 0) + key)
    out = b""
    while True:
        head = _recv(sock, 24)
        body = _recv(sock, struct.unpack(">I", head[8:12])[0])
        out += head + body
        keylen = struct.unpack(">H", head[2:4])[0]
        status = struct.unpack(">H", head[6:8])[0]
        if keylen == 0 and (status != 0 or not body):
            return out


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "closed"
        buf += chunk
    return buf


@pytest.mark.parametrize("engine", ENGINES)
def test_binary_stat_detail_matches_memcached(engine: str) -> None:
    with memcached() as ref, ratmemcached(engine=engine) as ours:
        replies = []
        for srv in (ref, ours):
            # memcached picks a connection's protocol from its first byte: one of each
            with srv.connect() as binary, srv.connect() as text:
                got = [_bin_stat(binary, b"detail on")]
                exchange(text, b"get foo:1 bar:2\r\nset foo:1 0 0 1\r\nx\r\n", until=b"STORED\r\n")
                exchange(text, b"get foo:1\r\n", until=b"END\r\n")
                got += [_bin_stat(binary, b"detail dump"), _bin_stat(binary, b"detail off")]
                # (not a bare "detail": memcached compares past the key's end, into whatever
                # the read buffer held before)
                got += [_bin_stat(binary, b"detail bogus")]
                replies.append(got)
        assert replies[1] == replies[0]
        assert b"PREFIX foo get 2 hit 1 set 1 del 0\r\n" in replies[1][1]
