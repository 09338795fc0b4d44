"""TLS (memcached's ``-Z``) with a real TLS client, against ratmemcached and memcached -Z."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from servers import ENGINES, memcached, ratmemcached, ratmemcached_argv, requires_memcached

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "server.crt", d / "server.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(crt),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return crt, key


def client_context(crt: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(crt))
    ctx.check_hostname = False  # the certificate names the IP; pymemcache connects by IP
    return ctx


def exercise(address: tuple[str, int], crt: Path) -> list[object]:
    c = Client(address, tls_context=client_context(crt), connect_timeout=5, timeout=5)
    try:
        out: list[object] = [c.set("k", b"over tls", noreply=False), c.get("k")]
        big = bytes(range(256)) * 4096  # 1 MB: many TLS records
        out += [c.set("big", big[: 1000 * 1000], noreply=False), c.get("big") == big[:1000000]]
        out += [c.incr("n", 1), c.delete("k", noreply=False), c.get("k")]
        return out
    finally:
        c.close()


@requires_memcached
@needs_openssl
@pytest.mark.parametrize("engine", ENGINES)
def test_a_tls_client_gets_the_same_answers_as_from_memcached(
    cert: tuple[Path, Path], engine: str
) -> None:
    crt, key = cert
    opts = f"ssl_chain_cert={crt},ssl_key={key}"
    with memcached("-Z", "-o", opts) as ref, ratmemcached("-Z", "-o", opts, engine=engine) as ours:
        want = exercise(ref.address, crt)
        got = exercise(ours.address, crt)
    assert got == want == [True, b"over tls", True, True, None, True, None]


@needs_openssl
@pytest.mark.parametrize("engine", ENGINES)
def test_plain_text_and_bad_handshakes_cost_only_their_connection(
    cert: tuple[Path, Path], engine: str
) -> None:
    crt, key = cert
    cfg = {
        "server": {
            "tls": True,
            "ssl_chain_cert": str(crt),
            "ssl_key": str(key),
            "engine": engine,
        },
        "logging": {"enable_audit_logs": True},
    }
    with ratmemcached(config=cfg) as srv, srv.connect(timeout=5) as silent:
        # A client that never starts its handshake holds only its own connection.
        assert silent.fileno() >= 0
        with srv.connect(timeout=5) as plain:
            plain.sendall(b"version\r\n")  # not a TLS ClientHello
            reply = plain.recv(100)
            # Closed with no cleartext answer: nothing (Python's ssl) or a TLS alert (rustls).
            assert reply == b"" or reply.startswith(b"\x15\x03"), reply
        assert exercise(srv.address, crt)[1] == b"over tls"
    assert "TLS handshake failed" in srv.output()


@pytest.mark.parametrize("engine", ENGINES)
def test_tls_without_a_certificate_is_one_line(tmp_path: Path, engine: str) -> None:
    base = ratmemcached_argv("--engine", engine, "-Z", "-p", "0")
    proc = subprocess.run(
        base, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 2
    assert "[server] ssl_chain_cert: required when tls = true" in proc.stderr
    missing = tmp_path / "nope.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    for bad in (missing, garbage):
        proc = subprocess.run(
            [*base, "-o", f"ssl_chain_cert={bad}"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 2, proc.stderr
        assert str(bad) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@needs_openssl
@pytest.mark.parametrize("engine", ENGINES)
def test_tls_leaves_the_unix_socket_plain(
    cert: tuple[Path, Path], tmp_path: Path, engine: str
) -> None:
    """As memcached's: TLS applies to TCP listeners; a unix socket (which, as memcached's -s,
    turns TCP off) is local and stays plain."""
    import socket

    if sys.platform == "win32":
        pytest.skip("unix sockets: POSIX only")

    crt, key = cert
    path = tmp_path / "mc.sock"
    opts = f"ssl_chain_cert={crt},ssl_key={key}"
    with (
        ratmemcached("-Z", "-o", opts, engine=engine, unix_socket=path),
        socket.socket(socket.AF_UNIX) as s,
    ):
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(b"version\r\n")
        assert s.recv(100).startswith(b"VERSION ")
