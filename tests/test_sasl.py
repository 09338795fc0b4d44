"""SASL PLAIN on the binary protocol (``-S``), with Debian's memcached -S as the oracle.

memcached authenticates through Cyrus SASL; the reference here runs with ``mech_list: plain``
and a sasldb made by ``saslpasswd2`` (Debian's sasl2-bin), so PLAIN is checked against the same
users that ratmemcached reads from its ``user:password`` file. Every exchange runs on its own
connection against both servers, and the replies (header and body) must be byte for byte the
same, including when memcached closes the connection.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from servers import ENGINES, memcached, ratmemcached, requires_memcached

USERS = {"alice": "secret", "bob": "hunter2"}

GET, SET, NOOP, VERSION, QUIT, STAT = 0x00, 0x01, 0x0A, 0x0B, 0x07, 0x10
LIST_MECHS, AUTH, STEP = 0x20, 0x21, 0x22


def req(
    op: int, key: bytes = b"", extras: bytes = b"", value: bytes = b"", opaque: int = 0
) -> bytes:
    body = extras + key + value
    return (
        struct.pack(">BBHBBHIIQ", 0x80, op, len(key), len(extras), 0, 0, len(body), opaque, 0)
        + body
    )


def plain(user: str, password: str, authzid: str = "") -> bytes:
    return f"{authzid}\0{user}\0{password}".encode()


AUTH_OK = req(AUTH, b"PLAIN", value=plain("alice", "secret"), opaque=7)
SET_K = req(SET, b"k", extras=b"\0\0\0\x05\0\0\0\0", value=b"v")

#: Each is one connection: requests sent one at a time, each reply read before the next.
EXCHANGES: dict[str, list[bytes]] = {
    "list mechanisms": [req(LIST_MECHS, opaque=1)],
    "version before auth": [req(VERSION, opaque=2)],
    "noop before auth closes": [req(NOOP), req(VERSION)],
    "get before auth closes": [req(GET, b"k", opaque=3), req(VERSION)],
    "set before auth closes": [SET_K, req(VERSION)],
    "stat before auth closes": [req(STAT), req(VERSION)],
    "quit before auth": [req(QUIT), req(VERSION)],
    "malformed get before auth": [req(GET, b"k", extras=b"xxxx"), req(VERSION)],
    "good auth, then a normal client": [AUTH_OK, SET_K, req(GET, b"k", opaque=9), req(NOOP)],
    "lower-case mechanism": [req(AUTH, b"plain", value=plain("alice", "secret")), req(NOOP)],
    "authzid equal to the user": [req(AUTH, b"PLAIN", value=plain("bob", "hunter2", "bob"))],
    "another authzid": [req(AUTH, b"PLAIN", value=plain("alice", "secret", "bob")), req(NOOP)],
    "wrong password, then retry": [
        req(AUTH, b"PLAIN", value=plain("alice", "wrong")),
        AUTH_OK,
        req(NOOP),
    ],
    "unknown user": [req(AUTH, b"PLAIN", value=plain("carol", "secret")), req(VERSION)],
    "failed re-auth drops the login": [
        AUTH_OK,
        req(AUTH, b"PLAIN", value=plain("alice", "nope")),
        req(NOOP),
    ],
    "trailing NUL": [req(AUTH, b"PLAIN", value=plain("alice", "secret") + b"\0")],
    "garbage message": [req(AUTH, b"PLAIN", value=b"garbage")],
    "empty message, then steps": [
        req(AUTH, b"PLAIN"),
        req(STEP, b"PLAIN", value=plain("alice", "bad")),
        req(STEP, b"OTHER", value=plain("alice", "secret")),
        req(NOOP),
        req(STEP, b"PLAIN", value=plain("alice", "secret")),
        req(NOOP),
    ],
    "empty step": [req(AUTH, b"PLAIN"), req(STEP, b"PLAIN"), req(NOOP)],
    "empty message, other mechanism": [req(AUTH, b"CRAM-MD5"), req(VERSION)],
    "unknown mechanism": [req(AUTH, b"CRAM-MD5", value=b"x"), AUTH_OK],
    "step without a start": [req(STEP, b"PLAIN", value=plain("alice", "secret")), AUTH_OK],
    "no mechanism": [req(AUTH, value=plain("alice", "secret")), req(VERSION)],
    "extras on auth": [req(AUTH, b"PLAIN", extras=b"abcd", value=b"x"), req(VERSION)],
    "list with a key": [req(LIST_MECHS, b"x"), req(VERSION)],
    "32-byte mechanism": [req(AUTH, b"P" * 32, value=b"x"), AUTH_OK],
    "33-byte mechanism": [req(AUTH, b"P" * 33, value=b"\0alice\0secret"), AUTH_OK],
    "long message": [req(AUTH, b"PLAIN", value=b"\0alice\0" + b"s" * 5000), AUTH_OK],
}


def read_reply(sock: socket.socket) -> bytes:
    """One binary reply (header and body, CAS masked), or b"" when the server closed."""
    data = b""
    try:
        while len(data) < 24:
            chunk = sock.recv(24 - len(data))
            if not chunk:
                return b""
            data += chunk
        (bodylen,) = struct.unpack(">I", data[8:12])
        while len(data) < 24 + bodylen:
            chunk = sock.recv(24 + bodylen - len(data))
            if not chunk:
                return b""
            data += chunk
    except ConnectionResetError:
        return b""
    # CAS uniques are each server's own; everything else must match.
    return data[:16] + b"<cas>" + data[24:]


def run(address: tuple[str, int], requests: list[bytes]) -> list[bytes]:
    replies = []
    with socket.create_connection(address, timeout=5) as s:
        for r in requests:
            try:
                s.sendall(r)
            except (BrokenPipeError, ConnectionResetError):
                replies.append(b"")
                continue
            replies.append(read_reply(s))
    return replies


@pytest.fixture(scope="module")
def pwdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("sasl") / "pwdb"
    p.write_text("".join(f"{u}:{pw}\n" for u, pw in USERS.items()))
    return p


@pytest.fixture(scope="module")
def sasl_memcached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """memcached -S over a sasldb holding USERS."""
    # Debian puts it in /usr/sbin, which a minimal PATH may leave out.
    saslpasswd2 = shutil.which("saslpasswd2") or shutil.which("saslpasswd2", path="/usr/sbin:/sbin")
    if saslpasswd2 is None:
        pytest.skip("saslpasswd2 is not installed (apt-get install sasl2-bin)")
    d = tmp_path_factory.mktemp("memcached-sasl")
    db = d / "sasldb2"
    for user, password in USERS.items():
        subprocess.run(
            [saslpasswd2, "-p", "-a", "memcached", "-c", "-f", str(db), user],
            input=password.encode(),
            check=True,
            timeout=30,
        )
    (d / "memcached.conf").write_text(f"mech_list: plain\nsasldb_path: {db}\n")
    with memcached("-S", env={"SASL_CONF_PATH": str(d)}) as ref:
        yield ref.address


@requires_memcached
@pytest.mark.parametrize("engine", ENGINES)
def test_sasl_replies_match_memcached(
    engine: str, pwdb: Path, sasl_memcached: tuple[str, int]
) -> None:
    with ratmemcached("-S", "--sasl-pwdb", str(pwdb), engine=engine) as ours:
        for name, requests in EXCHANGES.items():
            want = run(sasl_memcached, requests)
            got = run(ours.address, requests)
            assert got == want, name
    # The oracle really authenticates: the good exchange ends with a stored value and a noop.
    ok = run(sasl_memcached, EXCHANGES["good auth, then a normal client"])
    assert ok[0][6:8] == b"\0\0" and ok[0].endswith(b"Authenticated")
    assert ok[2].endswith(b"v")


@requires_memcached
def test_a_text_client_is_refused_as_memcached_refuses_it(
    pwdb: Path, sasl_memcached: tuple[str, int]
) -> None:
    with ratmemcached("-S", "--sasl-pwdb", str(pwdb)) as ours:
        for address in (sasl_memcached, ours.address):
            with socket.create_connection(address, timeout=5) as s:
                s.sendall(b"get k\r\n" + b"x" * 40)
                assert s.recv(100) == b""


@pytest.mark.parametrize("engine", ENGINES)
def test_a_real_sasl_client_authenticates(engine: str, pwdb: Path) -> None:
    """python-binary-memcached speaks SASL PLAIN. (pylibmc's SASL goes through libmemcached and
    the Cyrus client, which gives up after listing the mechanisms, against memcached -S too.)"""
    bmemcached = pytest.importorskip("bmemcached")
    with ratmemcached("-S", "--sasl-pwdb", str(pwdb), engine=engine) as srv:
        addr = f"{srv.address[0]}:{srv.address[1]}"
        mc = bmemcached.Client((addr,), "alice", "secret")
        try:
            assert mc.set("k", b"v")
            assert mc.get("k") == b"v"
            assert mc.incr("n", 1) == 1 if mc.set("n", 0) else False
            assert mc.delete("k")
            bad = bmemcached.Client((addr,), "alice", "wrong")
            with pytest.raises(bmemcached.exceptions.MemcachedException, match="Auth failure"):
                bad.set("k", b"w")
            bad.disconnect_all()
            stats = next(iter(mc.stats().values()))
            assert int(stats["auth_cmds"]) >= 2 and int(stats["auth_errors"]) >= 1
        finally:
            mc.disconnect_all()
        # A text client can't get in at all with only SASL on.
        text = Client(srv.address, connect_timeout=5, timeout=5)
        with pytest.raises((ConnectionError, OSError, Exception)):
            text.get("k")
        text.close()


def test_sasl_and_ascii_auth_together(pwdb: Path, tmp_path: Path) -> None:
    """With both, text clients use ASCII auth and binary clients SASL, each with its users."""
    authfile = tmp_path / "authfile"
    authfile.write_text("carol:pw\n")
    with ratmemcached("-S", "--sasl-pwdb", str(pwdb), "-Y", str(authfile)) as srv:
        with socket.create_connection(srv.address, timeout=5) as s:
            s.sendall(b"get k\r\n")
            assert s.recv(100) == b"CLIENT_ERROR unauthenticated\r\n"
            s.sendall(b"set a 0 0 8\r\ncarol pw\r\n")
            assert s.recv(100) == b"STORED\r\n"
        assert run(srv.address, [AUTH_OK])[0].endswith(b"Authenticated")
        bad = req(AUTH, b"PLAIN", value=plain("carol", "pw"))
        assert run(srv.address, [bad])[0].endswith(b"Auth failure.")
        settings = run(srv.address, [AUTH_OK, req(STAT, b"settings")])
        assert settings[1]  # the first stat packet of "stats settings"


def test_sasl_without_users_stops_with_one_line(tmp_path: Path) -> None:
    from ratmemcache.authfiles import SASL_PWDB_ENV

    if SASL_PWDB_ENV in os.environ:
        pytest.skip(f"${SASL_PWDB_ENV} is set in this environment")
    from servers import ServerStartFailed

    with (
        pytest.raises(ServerStartFailed, match=r"\[server\] sasl_pwdb: required"),
        ratmemcached("-S"),
    ):
        pass
    missing = tmp_path / "nope"
    with (
        pytest.raises(ServerStartFailed, match=f"sasl_pwdb .*{missing}.*cannot read"),
        ratmemcached("-S", env={SASL_PWDB_ENV: str(missing)}),
    ):
        pass
