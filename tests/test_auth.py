"""memcached's ASCII authentication (``-Y authfile``), with Debian's memcached as the oracle.

memcached 1.6 answers one request per read while a connection is unauthenticated (it leaves
pipelined requests unread until the client sends more), so each exchange here is sent alone and
its reply read before the next: the replies must then be byte for byte memcached's.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from servers import memcached, ratmemcached, requires_memcached

EXCHANGES: list[bytes] = [
    b"get k\r\n",
    b"version\r\n",
    b"mg k v\r\n",
    b"stats\r\n",
    b"set a b c\r\n",
    b"set a 0 0 x\r\n",
    b"set auth 0 0 10\r\nalice oops\r\n",
    b"set auth 0 0 14\r\nalice secretXX\r\n",
    b"set auth 0 0 5\r\nalice\r\n",
    b"set auth 0 0 14\r\nbob hunter2 zz\r\n",
    b"get k\r\n",
    b"set k 0 0 1\r\nv\r\n",
    b"get k\r\n",
]


@pytest.fixture
def authfile(tmp_path: Path) -> Path:
    p = tmp_path / "authfile"
    p.write_text("alice:secret\nbob:hunter2\n")
    return p


def replies(address: tuple[str, int], exchanges: list[bytes]) -> list[bytes]:
    out = []
    with socket.create_connection(address, timeout=5) as s:
        for req in exchanges:
            s.sendall(req)
            buf = b""
            while not buf.endswith(b"\r\n") or (buf.startswith(b"VALUE") and b"END\r\n" not in buf):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            out.append(buf)
    return out


@requires_memcached
def test_unauthenticated_replies_match_memcached(authfile: Path) -> None:
    with memcached("-Y", str(authfile)) as ref, ratmemcached("-Y", str(authfile)) as ours:
        want = replies(ref.address, EXCHANGES)
        got = replies(ours.address, EXCHANGES)
    assert got == want
    assert want[-1] == b"VALUE k 0 1\r\nv\r\nEND\r\n"


def test_an_authenticated_client_works_and_stats_count_it(authfile: Path) -> None:
    with ratmemcached("-Y", str(authfile)) as srv:
        with socket.create_connection(srv.address, timeout=5) as s:
            s.sendall(b"set auth 0 0 12\r\nalice secret\r\n")
            assert s.recv(100) == b"STORED\r\n"
            # Authenticated: a normal client from here on.
            c = Client(srv.address)
            c.sock = s  # pymemcache reuses the authenticated socket
            assert c.set("x", b"1", noreply=False)
            assert c.get("x") == b"1"
            stats = c.stats()
            assert stats[b"auth_cmds"] == 1 and stats[b"auth_errors"] == 0
            settings = c.stats("settings")
            assert settings[b"auth_enabled_ascii"] == b"yes"
        with socket.create_connection(srv.address, timeout=5) as s:
            s.sendall(b"set auth 0 0 10\r\nalice oops\r\n")
            assert s.recv(100) == b"CLIENT_ERROR authentication failure\r\n"
            s.sendall(b"get x\r\n")
            assert s.recv(100) == b"CLIENT_ERROR unauthenticated\r\n"
        assert "listening on all interfaces" not in srv.output()


def test_a_bad_authfile_stops_the_server_with_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "auth"
    bad.write_text("alice:secret\nno-colon-here\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ratmemcache", "-Y", str(bad), "-p", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f'ratmemcached: error: [server] auth_file {bad}:2: expected "user:password"'
    ]
