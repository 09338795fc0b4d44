"""Real memcached clients against a running ratmemcached, with each I/O engine: pymemcache (text
and meta), pylibmc (text and binary), and libmemcached's memccapable conformance suite (ascii and
binary)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from types import ModuleType

import pytest
from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

from servers import ENGINES, ServerProcess, ratmemcached

pylibmc: ModuleType | None
try:
    import pylibmc
except ImportError:  # no wheels: it builds only against libmemcached-dev (Linux CI installs it)
    pylibmc = None
requires_pylibmc = pytest.mark.skipif(
    pylibmc is None, reason="pylibmc is not installed (it needs libmemcached-dev to build)"
)

LARGE = bytes(range(256)) * 4000  # ~1 MB minus headroom: under the 1 MB item limit


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with ratmemcached(engine=request.param) as srv:
        yield srv


def exercise(client: object, prefix: str) -> None:
    """set, get, multi-get, cas, incr, delete, touch and a large value, through any client that
    speaks pymemcache's or pylibmc's API (they name a few calls differently)."""
    c = client
    is_pylibmc = pylibmc is not None and isinstance(c, pylibmc.Client)
    k = prefix + "k"
    assert c.set(k, b"v1")  # type: ignore[attr-defined]
    assert c.get(k) == b"v1"  # type: ignore[attr-defined]
    many = {prefix + f"m{i}": str(i).encode() for i in range(20)}
    if is_pylibmc:
        assert c.set_multi(many) == []  # type: ignore[attr-defined]
        assert c.get_multi(list(many)) == many  # type: ignore[attr-defined]
    else:
        assert c.set_many(many) == []  # type: ignore[attr-defined]
        assert c.get_many(list(many)) == many  # type: ignore[attr-defined]
    if is_pylibmc:
        value, cas = c.gets(k)  # type: ignore[attr-defined]
        assert value == b"v1"
        assert c.cas(k, b"v2", cas)  # type: ignore[attr-defined]
        assert not c.cas(k, b"v3", cas)  # type: ignore[attr-defined]
    else:
        value, cas = c.gets(k)  # type: ignore[attr-defined]
        assert value == b"v1"
        assert c.cas(k, b"v2", cas) is True  # type: ignore[attr-defined]
        assert c.cas(k, b"v3", cas) is False  # type: ignore[attr-defined]
    assert c.get(k) == b"v2"  # type: ignore[attr-defined]
    n = prefix + "n"
    c.set(n, b"10")  # type: ignore[attr-defined]
    assert c.incr(n, 5) == 15  # type: ignore[attr-defined]
    assert c.decr(n, 20) == 0  # type: ignore[attr-defined]
    assert c.touch(k, 100)  # type: ignore[attr-defined]
    assert c.delete(k)  # type: ignore[attr-defined]
    assert c.get(k) is None  # type: ignore[attr-defined]
    big = prefix + "big"
    assert c.set(big, LARGE)  # type: ignore[attr-defined]
    assert c.get(big) == LARGE  # type: ignore[attr-defined]


def test_pymemcache_text(server: ServerProcess) -> None:
    c = Client(server.address, connect_timeout=5, timeout=5)
    try:
        exercise(c, "pmt:")
        # Expiry: a negative exptime expires at once, as in memcached.
        c.set("pmt:gone", b"x", expire=-1)
        assert c.get("pmt:gone") is None
        assert c.version().startswith(b"1.6")
    finally:
        c.close()


def test_pymemcache_hashclient_over_one_server(server: ServerProcess) -> None:
    c = HashClient([server.address], connect_timeout=5, timeout=5)
    try:
        exercise(c, "hc:")
    finally:
        c.close()


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


@requires_pylibmc
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_pylibmc(server: ServerProcess, binary: bool) -> None:
    assert pylibmc is not None
    host, port = server.address
    c = pylibmc.Client([f"{host}:{port}"], binary=binary, behaviors={"cas": True})
    try:
        exercise(c, f"plm{int(binary)}:")
        assert c.get("plm:missing") is None
        assert c.add(f"plm{int(binary)}:add", b"1")
        assert not c.add(f"plm{int(binary)}:add", b"2")
    finally:
        c.disconnect_all()


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
