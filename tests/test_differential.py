"""Random command sequences against ratmemcached and Debian's memcached: the same replies.

hypothesis draws sequences of text and meta commands over a few keys (so they collide: adds
that fail, cas that races, appends to missing keys, incr on text). Each command is sent to both
servers in turn and the replies compared; CAS uniques differ between servers, so each server's
own last unique is used for `cas`, and uniques in replies are compared by their order of
appearance rather than their value. Lifetimes are 0 or far away, as wall-clock expiry would
race.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from servers import ENGINES, ServerProcess, memcached, ratmemcached, requires_memcached

pytestmark = requires_memcached

KEYS = ["a", "b", "c"]
VALUES = [b"", b"0", b"1", b"42", b"18446744073709551615", b"x", b"hello world", b"  7"]


class Conn:
    def __init__(self, srv: ServerProcess) -> None:
        self.sock = socket.create_connection(srv.address, timeout=5)
        self.last_cas: dict[str, int] = {}

    def send(self, data: bytes, end: tuple[bytes, ...]) -> bytes:
        self.sock.sendall(data)
        buf = b""
        while not buf.endswith(end):
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf


END_ANY = (b"\r\n",)
END_GET = (b"END\r\n",)


def command() -> st.SearchStrategy[tuple[str, str, bytes, int]]:
    verbs = [
        "set",
        "add",
        "replace",
        "append",
        "prepend",
        "cas",
        "incr",
        "decr",
        "delete",
        "touch",
        "get",
        "gets",
        "mg",
        "ms",
        "md",
        "ma",
    ]
    return st.tuples(
        st.sampled_from(verbs),
        st.sampled_from(KEYS),
        st.sampled_from(VALUES),
        st.integers(min_value=0, max_value=5),
    )


Request = tuple[bytes, tuple[bytes, ...]]


def render(conn: Conn, verb: str, key: str, value: bytes, n: int) -> Request:
    flags = n
    exptime = 0 if n % 2 else 100_000
    if verb in ("set", "add", "replace", "append", "prepend"):
        line = f"{verb} {key} {flags} {exptime} {len(value)}\r\n".encode() + value + b"\r\n"
        return line, END_ANY
    if verb == "cas":
        unique = conn.last_cas.get(key, 999_999) + (1 if n == 5 else 0)  # n == 5: a stale one
        line = f"cas {key} {flags} {exptime} {len(value)} {unique}\r\n".encode() + value + b"\r\n"
        return line, END_ANY
    if verb in ("incr", "decr"):
        return f"{verb} {key} {n * 7}\r\n".encode(), END_ANY
    if verb == "delete":
        return f"delete {key}\r\n".encode(), END_ANY
    if verb == "touch":
        return f"touch {key} {exptime}\r\n".encode(), END_ANY
    if verb in ("get", "gets"):
        others = " ".join(KEYS[: n % 3 + 1])
        return f"{verb} {key} {others}\r\n".encode(), END_GET
    if verb == "mg":
        flag_sets = ["v", "v c f", "s t", "k v", "q v", "v N30"]
        return f"mg {key} {flag_sets[n]}\r\n".encode(), END_ANY
    if verb == "ms":
        modes = ["", "MA", "MP", "ME", "MR", "I"]
        line = f"ms {key} {len(value)} F{flags} {modes[n]}\r\n".encode() + value + b"\r\n"
        return line, END_ANY
    if verb == "md":
        return f"md {key}{' q' if n == 1 else ''}{' I' if n == 2 else ''}\r\n".encode(), END_ANY
    # ma
    modes = ["", "MD", "N0 J5", "D3 v", "MI v", "q"]
    return f"ma {key} {modes[n]}\r\n".encode(), END_ANY


CAS_IN_GETS = re.compile(rb"^(VALUE \S+ \d+ \d+) (\d+)\r$", re.M)
CAS_IN_META = re.compile(rb" c(\d+)")
# A number padded with spaces, as a value block of get (VALUE key flags len) or mg (VA len).
PADDED_VALUE = re.compile(rb"^(VALUE \S+ \d+ |VA )(\d+)((?: [^\r]*)?)\r\n(\d+)( +)\r\n", re.M)


def unpad(m: re.Match[bytes]) -> bytes:
    return m[1] + str(len(m[4])).encode() + m[3] + b"\r\n" + m[4] + b"\r\n"


def normalize(conn: Conn, reply: bytes, key: str) -> bytes:
    """Replaces CAS uniques by their rank among this server's uniques; remembers the last.

    Also drops the spaces after a number: memcached's incr and decr rewrite the item in place,
    padding a shorter number with spaces, only when nothing else holds a reference to the item
    at that moment (its refcount is 2); otherwise they store a new item of the number's length.
    Which one happens depends on memcached's own threads, so the padding is not compared."""
    reply = PADDED_VALUE.sub(unpad, reply)
    for m in CAS_IN_GETS.finditer(reply):
        k = m.group(1).split()[1].decode()
        conn.last_cas[k] = int(m.group(2))
    for m in CAS_IN_META.finditer(reply):
        conn.last_cas[key] = int(m.group(1))
    reply = CAS_IN_GETS.sub(rb"\1 <cas>\r", reply)
    return CAS_IN_META.sub(b" c<cas>", reply)


@pytest.fixture(scope="module", params=ENGINES)
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """memcached and ratmemcached with each I/O engine: the anyio engine answers these small
    requests on its inline path, the native one in its connection tasks."""
    config = {"l1": {"shards": 1}}
    with memcached() as ref, ratmemcached(config=config, engine=request.param) as ours:
        yield ref, ours


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cmds=st.lists(command(), min_size=1, max_size=25))
def test_random_sequences_get_memcacheds_replies(
    servers: tuple[ServerProcess, ServerProcess], cmds: list[tuple[str, str, bytes, int]]
) -> None:
    ref, ours = (Conn(s) for s in servers)
    try:
        for c in (ref, ours):
            assert c.send(b"flush_all\r\n", END_ANY) == b"OK\r\n"
        for verb, key, value, n in cmds:
            got = []
            for c in (ref, ours):
                line, end = render(c, verb, key, value, n)
                if b" q" in line.split(b"\r\n")[0] and verb in ("mg", "md", "ma"):
                    line += b"mn\r\n"  # quiet mode: the MN ends what may be an empty reply
                    end = (b"MN\r\n",)
                got.append(normalize(c, c.send(line, end), key))
            assert got[1] == got[0], f"{verb} {key} {value!r} {n}: after {cmds}"
    finally:
        for c in (ref, ours):
            c.sock.close()
