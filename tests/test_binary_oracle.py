"""Differential tests of the binary protocol against Debian's memcached 1.6.18, the reference.

Each case is a sequence of request packets, built with ``struct``. It is sent once to a fresh
memcached over a socket and once to a fresh in-process ratmemcache ``Session``, and the replies
must be the same bytes, packet for packet, and both sides must agree on whether the connection
was closed. Every sequence ends with a NOOP carrying a sentinel opaque, so the reader knows when
memcached has answered everything (a closed connection never answers it).

Two things legitimately differ and are normalised, nothing else:

- the CAS field of responses: both servers number CAS uniques their own way, so each distinct
  non-zero CAS is replaced by its order of first appearance (1, 2, ...), which still checks that
  a get returns the CAS its set returned and that zero stays zero;
- the statistics in ``stat`` replies: names and values are the servers' own (memcached reports
  its slab and thread internals), so a run of statistic packets is collapsed into one marker;
  the empty packet that ends them, and every error, are still compared byte for byte.

Cases avoid memcached's known misbehaviours (docs/compatibility.md): an unknown opcode with a
body (memcached skips too much), ``touch``/``gat``/``stat`` with a surplus value (memcached reads
it as the next request), ``stat detail`` and values declared at 2 GiB or more.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ratmemcache._core import Cache, Engine
from servers import MEMCACHED

HEADER = struct.Struct(">BBHBBHIIQ")
SENTINEL = 0x5E47_17E1

GET, SET, ADD, REPLACE, DELETE, INCR, DECR, QUIT, FLUSH = range(9)
GETQ, NOOP, VERSION, GETK, GETKQ, APPEND, PREPEND, STAT = range(9, 17)
SETQ, ADDQ, REPLACEQ, DELETEQ, INCRQ, DECRQ, QUITQ, FLUSHQ = range(0x11, 0x19)
APPENDQ, PREPENDQ, VERBOSITY, TOUCH, GAT, GATQ = range(0x19, 0x1F)
SASL_LIST, SASL_AUTH, SASL_STEP, GATK, GATKQ = range(0x20, 0x25)

ITEM_MAX = 1024 * 1024
#: memcached's item header: the largest value for a key of n bytes is ITEM_MAX - 59 - n.
ITEM_HEADER = 59


def req(
    op: int,
    key: bytes = b"",
    extras: bytes = b"",
    value: bytes = b"",
    *,
    cas: int = 0,
    opaque: int = 0,
    keylen: int | None = None,
    bodylen: int | None = None,
    magic: int = 0x80,
) -> bytes:
    """One request packet; lengths come from the parts unless given."""
    kl = len(key) if keylen is None else keylen
    bl = len(extras) + len(key) + len(value) if bodylen is None else bodylen
    return HEADER.pack(magic, op, kl, len(extras), 0, 0, bl, opaque, cas) + extras + key + value


def store(
    key: bytes,
    value: bytes,
    flags: int = 0,
    exptime: int = 0,
    *,
    op: int = SET,
    cas: int = 0,
    opaque: int = 0,
) -> bytes:
    return req(op, key, struct.pack(">II", flags, exptime), value, cas=cas, opaque=opaque)


def arith(
    key: bytes, delta: int, initial: int = 0, exptime: int = 0, *, op: int = INCR, cas: int = 0
) -> bytes:
    return req(op, key, struct.pack(">QQI", delta, initial, exptime), cas=cas)


def touch(op: int, key: bytes, exptime: int) -> bytes:
    return req(op, key, struct.pack(">I", exptime))


def get(key: bytes, op: int = GET, opaque: int = 0) -> bytes:
    return req(op, key, opaque=opaque)


def noop(opaque: int = 0) -> bytes:
    return req(NOOP, opaque=opaque)


E8 = struct.pack(">II", 0, 0)
E20 = struct.pack(">QQI", 1, 0, 0)

CASES: dict[str, list[bytes]] = {
    # Storage and retrieval.
    "set-get-getk": [
        store(b"k", b"v1", 5, opaque=7),
        get(b"k", opaque=8),
        get(b"k", GETK),
        get(b"zz"),
        get(b"zz", GETK),
    ],
    "pipelined-quiet-gets": [
        store(b"a", b"A", 1),
        store(b"b", b"B", 2),
        get(b"a", GETQ, 1),
        get(b"x", GETQ, 2),
        get(b"b", GETKQ, 3),
        get(b"y", GETKQ, 4),
        get(b"a", GETKQ, 5),
        noop(6),
    ],
    "flags-empty-value-binary-key": [
        store(b"fl", b"", 0xDEADBEEF),
        get(b"fl", GETK),
        store(b"\x00 \r\n\xff", b"bin\r\nval", 0xFFFFFFFF),
        get(b"\x00 \r\n\xff", GETK),
        store(b"k" * 250, b"long key"),
        get(b"k" * 250, GETK),
    ],
    "add-replace": [
        store(b"k", b"v"),
        store(b"k", b"x", op=ADD),
        store(b"new", b"x", op=ADD),
        store(b"nope", b"x", op=REPLACE),
        store(b"k", b"r", 9, op=REPLACE),
        get(b"k"),
        get(b"new"),
    ],
    "append-prepend": [
        store(b"s", b"abc", 3),
        req(APPEND, b"s", value=b"X"),
        req(PREPEND, b"s", value=b"Y"),
        get(b"s"),
        req(APPEND, b"zz", value=b"X"),
        req(PREPEND, b"zz", value=b"X"),
        req(APPEND, b"s", value=b""),
        get(b"s", GETK),
    ],
    "cas": [
        store(b"k", b"v"),  # CAS 1 on both servers
        store(b"k", b"w", cas=12345),
        store(b"k", b"w", cas=1),
        get(b"k"),
        store(b"nokey", b"y", cas=5),
        store(b"nokey", b"y", op=ADD, cas=5),
        store(b"k", b"y", op=REPLACE, cas=5),
        store(b"k", b"y", op=ADD, cas=2),
        req(APPEND, b"k", value=b"Q", cas=1),
        req(DELETE, b"k", cas=99),
        get(b"k"),
        req(DELETE, b"k", cas=3),
        get(b"k"),
        req(DELETE, b"k"),
    ],
    "append-with-cas": [
        store(b"k", b"v"),
        req(APPEND, b"k", value=b"1", cas=1),
        req(PREPEND, b"k", value=b"0", cas=1),
        req(PREPEND, b"k", value=b"0", cas=2),
        req(APPEND, b"missing", value=b"0", cas=2),
        get(b"k"),
    ],
    "delete": [
        store(b"k", b"v"),
        req(DELETE, b"k"),
        req(DELETE, b"k"),
        get(b"k"),
    ],
    "quiet-opcodes": [
        store(b"k", b"v"),
        store(b"q", b"x", op=SETQ),
        store(b"k", b"x", op=ADDQ),
        store(b"q2", b"x", op=ADDQ),
        store(b"nope", b"x", op=REPLACEQ),
        store(b"q2", b"y", op=REPLACEQ),
        store(b"k", b"x", op=SETQ, cas=777),
        req(APPENDQ, b"q", value=b"y"),
        req(APPENDQ, b"nope", value=b"y"),
        req(PREPENDQ, b"nope", value=b"y"),
        req(DELETEQ, b"nope"),
        req(DELETEQ, b"q2"),
        arith(b"n", 1, 5, op=INCRQ),
        arith(b"n", 1, op=DECRQ),
        arith(b"q", 1, op=INCRQ),
        arith(b"nn", 1, 0, 0xFFFFFFFF, op=DECRQ),
        get(b"n", GETK),
        get(b"q", GETKQ),
        req(FLUSHQ),
        get(b"q"),
    ],
    # Counters.
    "incr-decr": [
        arith(b"c", 1, 10),
        arith(b"c", 5),
        arith(b"c", 100, op=DECR),
        get(b"c"),
        arith(b"n", 1, 5, 0xFFFFFFFF),
        arith(b"n", 1, 5, 0xFFFFFFFF, op=DECR),
        store(b"s", b"abc", 3),
        arith(b"s", 1),
        store(b"w", b"18446744073709551615"),
        arith(b"w", 2),
        get(b"w"),
        store(b"p", b"100"),
        arith(b"p", 1, op=DECR),
        get(b"p"),
        arith(b"p", 1, cas=777),
        arith(b"new", 1, 42, cas=777),
        get(b"new"),
        store(b"sp", b" 7 "),
        arith(b"sp", 1),
        store(b"e", b""),
        arith(b"e", 1),
    ],
    "incr-with-matching-cas": [
        store(b"p", b"10"),  # CAS 1
        arith(b"p", 1, cas=1),
        arith(b"p", 1, cas=1),
        get(b"p"),
    ],
    # Lifetimes.
    "exptime-unsigned": [
        store(b"a", b"A", 1, 0xFFFFFFFF),
        store(b"b", b"B", 2, 2592001),
        store(b"c", b"C", 3, 0x80000000),
        store(b"d", b"D", 4, 2592000),
        get(b"a"),
        get(b"b"),
        get(b"c"),
        get(b"d"),
        arith(b"e", 1, 7, 2592001),
        get(b"e"),
        arith(b"f", 1, 7, 0x80000001),
        get(b"f"),
    ],
    "touch-gat": [
        store(b"s", b"abc", 3),
        touch(TOUCH, b"s", 100),
        touch(GAT, b"s", 0xFFFFFFFF),
        touch(GATK, b"s", 0),
        touch(TOUCH, b"zz", 1),
        touch(GAT, b"zz", 1),
        touch(GATK, b"zz", 1),
        touch(GATQ, b"zz", 1),
        touch(GATKQ, b"zz", 1),
        touch(GATQ, b"s", 1000),
        touch(GATKQ, b"s", 1000),
        touch(TOUCH, b"s", 2592001),
        get(b"s"),
    ],
    "flush": [
        store(b"a", b"A"),
        req(FLUSH),
        get(b"a"),
        store(b"b", b"B"),
        req(FLUSHQ),
        get(b"b"),
        store(b"c", b"C"),
        req(FLUSH, extras=struct.pack(">I", 0)),
        get(b"c"),
        store(b"d", b"D"),
        req(FLUSH, extras=struct.pack(">I", 1000)),
        get(b"d"),
    ],
    # Housekeeping.
    "noop-version-opaque": [noop(0xFFFFFFFF), req(VERSION, opaque=0x01020304), noop(1)],
    "quit": [store(b"k", b"v"), req(QUIT, opaque=3)],
    "quitq": [store(b"k", b"v"), req(QUITQ)],
    "unknown-opcodes": [
        req(0x50, opaque=9),
        req(0xFF),
        req(VERBOSITY),
        req(0x1F),
        req(0x25),
    ],
    "sasl-without-S": [
        req(SASL_LIST),
        req(SASL_AUTH, b"PLAIN", value=b"\x00user\x00pass"),
        req(SASL_STEP, b"PLAIN", value=b"abc"),
        req(SASL_AUTH, b"CRAM-MD5"),
    ],
    # Too large.
    "set-too-large-deletes": [
        store(b"k", b"v"),
        store(b"k", b"x" * ITEM_MAX),
        get(b"k"),
        store(b"k", b"v"),
        store(b"k", b"x" * ITEM_MAX, op=SETQ),
        get(b"k"),
        store(b"k", b"v"),
        store(b"k", b"x" * ITEM_MAX, cas=12345),
        get(b"k"),
    ],
    "add-replace-append-too-large-keep": [
        store(b"k", b"v"),
        store(b"k", b"x" * ITEM_MAX, op=ADD),
        store(b"k", b"x" * ITEM_MAX, op=REPLACE),
        req(APPEND, b"k", value=b"x" * ITEM_MAX),
        req(PREPENDQ, b"k", value=b"x" * ITEM_MAX),
        get(b"k"),
    ],
    "item-size-boundary": [
        store(b"k", b"z" * (ITEM_MAX - ITEM_HEADER - 1)),
        store(b"l", b"z" * (ITEM_MAX - ITEM_HEADER - 1 + 1)),
        store(b"m" * 250, b"z" * (ITEM_MAX - ITEM_HEADER - 250)),
        store(b"m" * 250, b"z" * (ITEM_MAX - ITEM_HEADER - 250 + 1)),
        req(GETK, b"l"),
    ],
    "append-past-limit-not-stored": [
        store(b"k", b"y" * (600 * 1024)),
        req(APPEND, b"k", value=b"y" * (600 * 1024)),
        req(PREPENDQ, b"k", value=b"y" * (600 * 1024)),
        req(APPEND, b"k", value=b"y" * 1000),
    ],
    # Statistics (see the module docstring for the normalisation).
    "stat-general": [req(STAT, opaque=5)],
    "stat-settings": [req(STAT, b"settings"), req(STAT, b"settingsXX")],
    "stat-reset": [req(STAT, b"reset"), req(STAT, b"resetXX")],
    "stat-items-slabs-sizes-empty": [req(STAT, b"items"), req(STAT, b"slabs"), req(STAT, b"sizes")],
    "stat-items-slabs-with-item": [store(b"k", b"v"), req(STAT, b"items"), req(STAT, b"slabs")],
    "stat-unknown": [
        req(STAT, b"bogus"),
        req(STAT, b"conns"),
        req(STAT, b"itemsX"),
        req(STAT, b"detail"),
        req(STAT, b"extstore"),
    ],
}

#: Requests that are answered "Invalid arguments" (status 0x04), after which memcached closes.
MALFORMED: dict[str, bytes] = {
    "get-key-251": get(b"k" * 251),
    "unknown-key-251": req(0x50, b"k" * 251),
    "get-no-key": req(GET),
    "get-extras": req(GET, b"abc", b"1234"),
    "get-value": req(GET, b"abc", value=b"zz"),
    "getkq-no-key": req(GETKQ),
    "set-extlen-4": req(SET, b"abc", b"1234", b"v"),
    "set-no-key": req(SET, b"", E8, b"v"),
    "addq-no-extras": req(ADDQ, b"k", value=b"v"),
    "incr-extlen-8": req(INCR, b"abc", E8),
    "decr-value": req(DECR, b"abc", E20, b"1"),
    "incr-no-key": req(INCR, b"", E20),
    "delete-extras": req(DELETE, b"abc", b"1234"),
    "deleteq-value": req(DELETEQ, b"abc", value=b"1234"),
    "append-extras": req(APPEND, b"abc", E8, b"x"),
    "prepend-no-key": req(PREPEND, b"", value=b"x"),
    "touch-no-extras": req(TOUCH, b"abc"),
    "touch-no-key": req(TOUCH, b"", b"1234"),
    "gatkq-extlen-8": req(GATKQ, b"abc", E8),
    "flush-key": req(FLUSH, b"k"),
    "flush-extlen-8": req(FLUSH, b"", E8),
    "flushq-value": req(FLUSHQ, value=b"x"),
    "noop-value": req(NOOP, value=b"x"),
    "noop-key": req(NOOP, b"k"),
    "version-value": req(VERSION, value=b"x"),
    "quit-value": req(QUIT, value=b"x"),
    "quitq-extras": req(QUITQ, extras=b"1234"),
    "stat-extras": req(STAT, extras=b"1234"),
    "sasl-list-value": req(SASL_LIST, value=b"x"),
    "sasl-auth-no-key": req(SASL_AUTH, value=b"abc"),
    "sasl-auth-extras": req(SASL_AUTH, b"PLAIN", b"1234"),
}

for _name, _packet in MALFORMED.items():
    # A reply before the malformed packet must survive the close.
    CASES[f"malformed-{_name}"] = [store(b"a", b"A"), get(b"a", GETQ), _packet]

CASES.update(
    {
        # Extras plus key longer than the body: "Unknown command", then close.
        "ext-key-over-body": [req(GET, b"abc", bodylen=2)],
        "ext-key-over-body-set": [req(SET, b"abc", E8, bodylen=10)],
        # A later packet with a bad magic: closed without a reply.
        "bad-magic-later": [noop(1), req(NOOP, magic=0x81)],
        "response-magic-later": [noop(1), req(GET, b"k", magic=0x81)],
    }
)


# ---------------------------------------------------------------------------------------------
# The two servers.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Memcached:
    proc: subprocess.Popen[bytes]
    port: int


@contextlib.contextmanager
def memcached(*args: str) -> Iterator[Memcached]:
    """A fresh Debian memcached with its defaults (64 MB, 1 MB items), one worker thread."""
    peer = MEMCACHED
    if peer is None:
        pytest.skip("memcached is not installed (apt-get install memcached)")
    for _attempt in range(5):
        port = _free_port()
        argv = [peer, "-l", "127.0.0.1", "-p", str(port), "-t", "1", "-U", "0", *args]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            argv += ["-u", "nobody"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        if proc.poll() is None:
            try:
                yield Memcached(proc, port)
            finally:
                proc.kill()
                proc.wait()
            return
        proc.wait()  # the port was taken meanwhile: try another
    pytest.fail("memcached did not start")


def _packets(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, header) of each complete response packet in ``data``."""
    i = 0
    while i + HEADER.size <= len(data):
        bodylen = HEADER.unpack_from(data, i)[6]
        end = i + HEADER.size + bodylen
        if end > len(data):
            return
        yield i, end, data[i : i + HEADER.size]
        i = end


def _answered(data: bytes) -> bool:
    """Whether the sentinel NOOP has been answered."""
    fields = (HEADER.unpack(h) for _s, _e, h in _packets(data))
    return any(f[1] == NOOP and f[7] == SENTINEL for f in fields)


def via_memcached(data: bytes, *args: str) -> tuple[bytes, bool]:
    """Sends ``data`` to a fresh memcached; returns what came back and whether it closed."""
    with memcached(*args) as mc, socket.create_connection(("127.0.0.1", mc.port), timeout=10) as s:
        with contextlib.suppress(OSError):  # it may close before reading everything
            s.sendall(data)
        got = b""
        while not _answered(got):
            try:
                chunk = s.recv(1 << 20)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return got, True
            got += chunk
        return got, False


def via_ratmemcache(data: bytes, chunk: int | None = None, **engine: Any) -> tuple[bytes, bool]:
    """Feeds ``data`` to a fresh ratmemcache session, whole or in ``chunk``-byte pieces."""
    cache = Cache(shards=1)
    try:
        session = Engine(cache, **engine).session()
        step = chunk or max(len(data), 1)
        got = b""
        for i in range(0, len(data), step):
            reply, close = session.feed(data[i : i + step])
            got += reply
            if close:
                return got, True
        return got, False
    finally:
        cache.close()


# ---------------------------------------------------------------------------------------------
# Normalisation (the module docstring says what and why).


def normalise(data: bytes) -> list[object]:
    out: list[object] = []
    cas_order: dict[int, int] = {}
    end = 0
    for start, end, h in _packets(data):
        magic, op, keylen, extlen, dtype, status, _bodylen, opaque, cas = HEADER.unpack(h)
        body = data[start + HEADER.size : end]
        if op == STAT and status == 0 and keylen > 0:
            if out and out[-1] == "<stats>":
                continue
            out.append("<stats>")
            continue
        if cas:
            cas = cas_order.setdefault(cas, len(cas_order) + 1)
        out.append((hex(magic), hex(op), keylen, extlen, dtype, hex(status), opaque, cas, body))
    if end != len(data):
        out.append(("<trailing bytes>", data[end:]))
    return out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(CASES))
def test_same_replies_as_memcached(name: str) -> None:
    data = b"".join(CASES[name]) + noop(SENTINEL)
    theirs, their_close = via_memcached(data)
    ours, our_close = via_ratmemcache(data)
    assert normalise(ours) == normalise(theirs)
    assert our_close == their_close
    # Framing never depends on how the stream is split.
    for chunk in (1, 7, 23, 25):
        if chunk == 1 and len(data) > 20_000:
            continue
        split, split_close = via_ratmemcache(data, chunk)
        assert normalise(split) == normalise(ours), f"fed in {chunk}-byte pieces"
        assert split_close == our_close


#: Cases for a non-default configuration: memcached's flags and the matching Engine options.
CONFIGURED: dict[str, tuple[tuple[str, ...], dict[str, Any], list[bytes]]] = {
    # memcached -F refuses a binary flush with an auth error, quiet or not.
    "flush-disabled": (
        ("-F",),
        {"allow_flush": False},
        [store(b"k", b"v"), req(FLUSH), req(FLUSHQ), req(FLUSH, extras=b"\0\0\0\1"), get(b"k")],
    ),
    # -I moves the item size boundary; the 59-byte item header stays.
    "item-size-2m": (
        ("-I", "2m"),
        {"max_item_size": 2 * ITEM_MAX},
        [
            store(b"k", b"z" * (2 * ITEM_MAX - ITEM_HEADER - 1)),
            store(b"l", b"z" * (2 * ITEM_MAX - ITEM_HEADER - 1 + 1)),
            req(APPEND, b"k", value=b"z"),
            get(b"l"),
        ],
    ),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(CONFIGURED))
def test_same_replies_as_configured_memcached(name: str) -> None:
    args, engine, packets = CONFIGURED[name]
    data = b"".join(packets) + noop(SENTINEL)
    theirs, their_close = via_memcached(data, *args)
    ours, our_close = via_ratmemcache(data, **engine)
    assert normalise(ours) == normalise(theirs)
    assert our_close == their_close


def test_malformed_cases_close_with_invalid_arguments() -> None:
    """The oracle cases above also prove the point; this pins what the point is."""
    for name, packet in MALFORMED.items():
        ours, close = via_ratmemcache(packet + noop(SENTINEL))
        assert close, name
        assert HEADER.unpack_from(ours, 0)[5] == 0x04, name
        assert ours[HEADER.size :] == b"Invalid arguments", name


def test_general_stat_names_are_memcacheds() -> None:
    """The general ``stat`` reports memcached's names, except for ratmemcache's own few."""
    theirs, _ = via_memcached(req(STAT) + noop(SENTINEL))
    ours, _ = via_ratmemcache(req(STAT) + noop(SENTINEL))

    def names(data: bytes) -> list[str]:
        return [
            data[s + HEADER.size : s + HEADER.size + HEADER.unpack(h)[2]].decode()
            for s, _e, h in _packets(data)
            if HEADER.unpack(h)[1] == STAT and HEADER.unpack(h)[2] > 0
        ]

    own = set(names(ours)) - set(names(theirs))
    assert own <= {"eviction_policy", "shards", "cmd_meta"}, own
    assert names(ours)[:4] == ["pid", "uptime", "time", "version"]
