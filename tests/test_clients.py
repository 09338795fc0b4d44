"""Raw meta commands through pymemcache's socket, and libmemcached's memccapable conformance suite
(ascii and binary), against a running ratmemcached with each I/O engine. The clients themselves
(pymemcache, pylibmc, python-memcached, aiomcache, meta-memcache) are in
test_clients_ecosystem.py."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
from pymemcache.client.base import Client

from servers import ENGINES, ServerProcess, ratmemcached


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with ratmemcached(engine=request.param) as srv:
        yield srv


def test_pymemcache_raw_meta(server: ServerProcess) -> None:
    c = Client(server.address, connect_timeout=5, timeout=5)
    try:
        c.set("meta:k", b"hello", flags=7)
        sock = c.sock
        assert sock is not None
        sock.sendall(b"mg meta:k v f t\r\nmn\r\n")
        reply = b""
        while not reply.endswith(b"MN\r\n"):
            reply += sock.recv(4096)
        assert reply == b"VA 5 f7 t-1\r\nhello\r\nMN\r\n"
    finally:
        c.close()


@pytest.mark.skipif(shutil.which("memccapable") is None, reason="libmemcached-tools not installed")
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", ["-a", "-b"], ids=["ascii", "binary"])
def test_memccapable(mode: str, engine: str) -> None:
    # memccapable flushes the server, so it gets one of its own.
    with ratmemcached(engine=engine) as srv:
        host, port = srv.address
        run = subprocess.run(
            ["memccapable", "-h", host, "-p", str(port), mode, "-t", "10"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "All tests passed" in run.stdout, run.stdout
    assert "[FAIL]" not in run.stdout
