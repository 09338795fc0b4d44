"""The Python ecosystem's memcached clients against a running ratmemcached, with each I/O engine.

Every client runs the same script through a thin adapter (the clients name things differently):
set, get, a multi-get with a miss, gets + cas (and a stale cas), incr, delete, touch (which must
save an item from expiring), a value of almost 1 MB (under the default 1 MB item limit, key and
memcached's 59-byte header included), and a 1-second expiry waited for with a bounded poll.

Clients: pymemcache (``Client``, ``HashClient`` and ``PooledClient``, with its serde helpers),
pylibmc (text and binary protocol), python-memcached (``memcache``), aiomcache (asyncio) and
meta-memcache (meta protocol). pymemcache 4.0 has no meta commands: raw meta through its socket is
in ``test_clients.py``, and meta-memcache speaks only meta.

``test_too_large_value_*`` checks that each client sees the same thing from ratmemcached as from
Debian's memcached when a value is over the item limit (the reply, and that the client can go on).
docs/compatibility.md, "Client notes", lists the options these clients need.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiomcache
import memcache
import pytest
from meta_memcache.cache_client import CacheClient
from meta_memcache.configuration import ServerAddress
from meta_memcache.connection.pool import ConnectionPool
from meta_memcache.protocol import SetMode
from pymemcache import serde
from pymemcache.client.base import Client, PooledClient
from pymemcache.client.hash import HashClient

from servers import ENGINES, ServerProcess, memcached, ratmemcached, requires_memcached

try:
    import pylibmc
except ImportError:  # no wheels: it builds only against libmemcached-dev (Linux CI installs it)
    pylibmc = None

T = TypeVar("T")

#: memcached's default item limit (-I 1m) counts key + value + a 59-byte header.
ITEM_LIMIT = 1024 * 1024
#: Incompressible (so a compressing client still sends about 1 MB), and 1 KB under the limit to
#: leave room for the key, the header and a compressor's framing.
LARGE = random.Random(8).randbytes(ITEM_LIMIT - 1024)
#: TTL of the expiring item, and how long we wait for it to go at most.
TTL = 1
EXPIRY_DEADLINE = 4.0
#: meta-memcache's read buffer: the largest value read plus room for its header.
READ_BUFFER = ITEM_LIMIT + 4096


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with ratmemcached(engine=request.param) as srv:
        yield srv


# --------------------------------------------------------------------------------------------
# One interface over every client


class Ops:
    """What the script needs, with each client's spelling behind it. Keys are ``str``."""

    def set(self, key: str, value: Any, ttl: int = 0) -> bool:
        raise NotImplementedError

    def add(self, key: str, value: Any) -> bool:
        raise NotImplementedError

    def get(self, key: str) -> Any:
        raise NotImplementedError

    def get_multi(self, keys: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def gets(self, key: str) -> tuple[Any, Any]:
        raise NotImplementedError

    def cas(self, key: str, value: Any, token: Any) -> bool:
        raise NotImplementedError

    def incr(self, key: str, delta: int) -> int | None:
        """The new value, or None when the key is missing."""
        raise NotImplementedError

    def delete(self, key: str) -> bool:
        raise NotImplementedError

    def touch(self, key: str, ttl: int) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class PymemcacheOps(Ops):
    """pymemcache's ``Client``, ``HashClient`` and ``PooledClient`` share one API."""

    def __init__(self, client: Any) -> None:
        self.c = client

    def set(self, key: str, value: Any, ttl: int = 0) -> bool:
        return bool(self.c.set(key, value, expire=ttl, noreply=False))

    def add(self, key: str, value: Any) -> bool:
        return bool(self.c.add(key, value, noreply=False))

    def get(self, key: str) -> Any:
        return self.c.get(key)

    def get_multi(self, keys: list[str]) -> dict[str, Any]:
        return dict(self.c.get_many(keys))

    def gets(self, key: str) -> tuple[Any, Any]:
        value, token = self.c.gets(key)
        return value, token

    def cas(self, key: str, value: Any, token: Any) -> bool:
        return self.c.cas(key, value, token, noreply=False) is True

    def incr(self, key: str, delta: int) -> int | None:
        result = self.c.incr(key, delta, noreply=False)
        return None if result is None else int(result)

    def delete(self, key: str) -> bool:
        return bool(self.c.delete(key, noreply=False))

    def touch(self, key: str, ttl: int) -> bool:
        return bool(self.c.touch(key, ttl, noreply=False))

    def close(self) -> None:
        self.c.close()


class LibmemcachedStyleOps(Ops):
    """What pylibmc and python-memcached spell alike (``time=`` for the TTL, ``get_multi``,
    ``disconnect_all``)."""

    def __init__(self, client: Any) -> None:
        self.c = client

    def set(self, key: str, value: Any, ttl: int = 0) -> bool:
        return bool(self.c.set(key, value, time=ttl))

    def add(self, key: str, value: Any) -> bool:
        return bool(self.c.add(key, value))

    def get(self, key: str) -> Any:
        return self.c.get(key)

    def get_multi(self, keys: list[str]) -> dict[str, Any]:
        return dict(self.c.get_multi(keys))

    def delete(self, key: str) -> bool:
        return bool(self.c.delete(key))

    def touch(self, key: str, ttl: int) -> bool:
        return bool(self.c.touch(key, ttl))

    def close(self) -> None:
        self.c.disconnect_all()


class PylibmcOps(LibmemcachedStyleOps):
    def gets(self, key: str) -> tuple[Any, Any]:
        value, token = self.c.gets(key)
        return value, token

    def cas(self, key: str, value: Any, token: Any) -> bool:
        return bool(self.c.cas(key, value, token))

    def incr(self, key: str, delta: int) -> int | None:
        try:
            return int(self.c.incr(key, delta))
        except pylibmc.NotFound:
            return None


class PythonMemcachedOps(LibmemcachedStyleOps):
    """python-memcached keeps the CAS uniques itself (``cache_cas=True``): ``gets`` records the
    key's unique and ``cas`` sends it, so the token is not passed around."""

    def gets(self, key: str) -> tuple[Any, Any]:
        value = self.c.gets(key)
        return value, self.c.cas_ids.get(key.encode())

    def cas(self, key: str, value: Any, token: Any) -> bool:
        assert self.c.cas_ids.get(key.encode()) == token
        return bool(self.c.cas(key, value))

    def incr(self, key: str, delta: int) -> int | None:
        result = self.c.incr(key, delta)
        return None if result is None else int(result)


class AiomcacheOps(Ops):
    """aiomcache is asyncio-only and takes bytes keys: each call runs on one private loop."""

    def __init__(self, host: str, port: int) -> None:
        self.runner = asyncio.Runner()
        self.c: aiomcache.Client = self.run(self._connect(host, port))

    @staticmethod
    async def _connect(host: str, port: int) -> aiomcache.Client:
        return aiomcache.Client(host, port, pool_size=2)

    def run(self, op: Awaitable[T]) -> T:
        return self.runner.run(asyncio.wait_for(op, 10))

    def set(self, key: str, value: Any, ttl: int = 0) -> bool:
        return self.run(self.c.set(key.encode(), value, exptime=ttl))

    def add(self, key: str, value: Any) -> bool:
        return self.run(self.c.add(key.encode(), value))

    def get(self, key: str) -> Any:
        return self.run(self.c.get(key.encode()))

    def get_multi(self, keys: list[str]) -> dict[str, Any]:
        values = self.run(self.c.multi_get(*(k.encode() for k in keys)))
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

    def gets(self, key: str) -> tuple[Any, Any]:
        return self.run(self.c.gets(key.encode()))

    def cas(self, key: str, value: Any, token: Any) -> bool:
        return self.run(self.c.cas(key.encode(), value, token))

    def incr(self, key: str, delta: int) -> int | None:
        try:
            return self.run(self.c.incr(key.encode(), delta))
        except aiomcache.exceptions.ClientException as e:
            # aiomcache raises on NOT_FOUND (its docstring says it returns None).
            if "NOT_FOUND" in str(e):
                return None
            raise

    def delete(self, key: str) -> bool:
        return self.run(self.c.delete(key.encode()))

    def touch(self, key: str, ttl: int) -> bool:
        return self.run(self.c.touch(key.encode(), ttl))

    def close(self) -> None:
        try:
            self.run(self.c.close())
            # Let closed transports (including those aiomcache dropped after an error) finish
            # closing their sockets before the loop goes.
            self.run(asyncio.sleep(0.05))
        finally:
            self.runner.close()


class MetaMemcacheOps(Ops):
    """meta-memcache speaks only the meta protocol (mg, ms, md, ma, with flags)."""

    def __init__(self, host: str, port: int) -> None:
        # meta-memcache's pools have no close(): keep the sockets, to close them ourselves.
        self.sockets: list[socket.socket] = []

        def pool(server: ServerAddress) -> ConnectionPool:
            def connect() -> socket.socket:
                s = socket.create_connection((server.host, server.port), timeout=5)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sockets.append(s)
                return s

            return ConnectionPool(
                server=str(server),
                socket_factory_fn=connect,
                initial_pool_size=1,
                max_pool_size=4,
                # The default (4 KB) makes reading a 1 MB value take about 25 s (Client notes).
                read_buffer_size=READ_BUFFER,
            )

        self.c = CacheClient.cache_client_from_servers(
            servers=[ServerAddress(host=host, port=port)],
            connection_pool_factory_fn=pool,
        )

    def set(self, key: str, value: Any, ttl: int = 0) -> bool:
        return self.c.set(key, value, ttl=ttl)

    def add(self, key: str, value: Any) -> bool:
        return self.c.set(key, value, ttl=0, set_mode=SetMode.ADD)

    def get(self, key: str) -> Any:
        return self.c.get(key)

    def get_multi(self, keys: list[str]) -> dict[str, Any]:
        found = self.c.multi_get(keys)
        return {k.key: v for k, v in found.items() if v is not None}

    def gets(self, key: str) -> tuple[Any, Any]:
        return self.c.get_cas(key)

    def cas(self, key: str, value: Any, token: Any) -> bool:
        return self.c.set(key, value, ttl=0, cas_token=token)

    def incr(self, key: str, delta: int) -> int | None:
        return self.c.delta_and_get(key, delta)

    def delete(self, key: str) -> bool:
        return self.c.delete(key)

    def touch(self, key: str, ttl: int) -> bool:
        return self.c.touch(key, ttl)

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def pymemcache_client(addr: tuple[str, int], **kw: Any) -> Ops:
    return PymemcacheOps(Client(addr, connect_timeout=5, timeout=5, **kw))


#: name -> how to connect to (host, port). Each client uses its own defaults except where
#: docs/compatibility.md ("Client notes") says an option is needed.
CLIENTS: dict[str, Callable[[tuple[str, int]], Ops]] = {
    "pymemcache-client": lambda a: pymemcache_client(a),
    "pymemcache-client-pickle_serde": lambda a: pymemcache_client(a, serde=serde.pickle_serde),
    "pymemcache-client-python_memcache_serializer": lambda a: pymemcache_client(
        a,
        serializer=serde.python_memcache_serializer,
        deserializer=serde.python_memcache_deserializer,
    ),
    "pymemcache-client-compressed_serde": lambda a: pymemcache_client(
        a, serde=serde.compressed_serde
    ),
    "pymemcache-hashclient": lambda a: PymemcacheOps(
        HashClient([a], connect_timeout=5, timeout=5, serde=serde.pickle_serde)
    ),
    "pymemcache-pooledclient": lambda a: PymemcacheOps(
        PooledClient(a, connect_timeout=5, timeout=5, max_pool_size=4, serde=serde.pickle_serde)
    ),
    "pylibmc-text": lambda a: PylibmcOps(
        pylibmc.Client([f"{a[0]}:{a[1]}"], behaviors={"cas": True})
    ),
    "pylibmc-binary": lambda a: PylibmcOps(
        # poll_timeout: libmemcached 1.0.18 waits for it after a binary touch (Client notes).
        pylibmc.Client(
            [f"{a[0]}:{a[1]}"], binary=True, behaviors={"cas": True, "_poll_timeout": 300}
        )
    ),
    "python-memcached": lambda a: PythonMemcachedOps(
        memcache.Client([f"{a[0]}:{a[1]}"], cache_cas=True, socket_timeout=5)
    ),
    "aiomcache": lambda a: AiomcacheOps(*a),
    "meta-memcache": lambda a: MetaMemcacheOps(*a),
}


def make_client(name: str, address: tuple[str, int]) -> Ops:
    """CLIENTS[name] on ``address``; skips the test when the client is not installed."""
    if name.startswith("pylibmc") and pylibmc is None:
        pytest.skip("pylibmc is not installed (it needs libmemcached-dev to build)")
    return CLIENTS[name](address)


@pytest.fixture(params=list(CLIENTS))
def client_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ops(server: ServerProcess, client_name: str) -> Iterator[Ops]:
    c = make_client(client_name, server.address)
    try:
        yield c
    finally:
        c.close()


def wait_until_gone(c: Ops, key: str, deadline: float) -> float:
    """Poll ``key`` until it misses; the time it took. Fails at ``deadline`` (monotonic)."""
    while c.get(key) is not None:
        assert time.monotonic() < deadline, f"{key} still there"
        time.sleep(0.05)
    return time.monotonic()


# --------------------------------------------------------------------------------------------
# The script


def test_client_script(ops: Ops, client_name: str) -> None:
    run_script(ops, client_name + ":")


def run_script(c: Ops, p: str) -> None:
    """The script, on keys that start with ``p``."""
    # Expiry starts first, so the rest of the script runs while the clock goes.
    exp, kept = p + "exp", p + "kept"
    t0 = time.monotonic()
    assert c.set(exp, b"soon", ttl=TTL)
    assert c.set(kept, b"stays", ttl=TTL)
    assert c.touch(kept, 100)
    assert c.get(exp) == b"soon"

    k = p + "k"
    assert c.set(k, b"v1")
    assert c.get(k) == b"v1"
    assert c.get(p + "missing") is None
    assert c.add(k, b"other") is False
    assert c.add(p + "added", b"new") is True
    assert c.get(p + "added") == b"new"

    many = {p + f"m{i}": str(i).encode() for i in range(20)}
    for key, value in many.items():
        assert c.set(key, value)
    assert c.get_multi([*many, p + "missing"]) == many

    value, token = c.gets(k)
    assert value == b"v1"
    assert token is not None
    assert c.cas(k, b"v2", token) is True
    assert c.cas(k, b"v3", token) is False  # the unique changed with the first cas
    assert c.get(k) == b"v2"

    n = p + "n"
    assert c.set(n, b"10")
    assert c.incr(n, 5) == 15
    assert c.set(n + "max", str(2**64 - 1).encode())
    assert c.incr(n + "max", 2) == 1  # memcached's incr wraps at 2**64
    assert c.incr(p + "missing", 1) is None

    assert c.delete(k) is True
    assert c.get(k) is None
    assert c.delete(k) is False
    assert c.touch(p + "missing", 10) is False

    big = p + "big"
    assert c.set(big, LARGE)
    assert c.get(big) == LARGE

    gone_at = wait_until_gone(c, exp, t0 + EXPIRY_DEADLINE)
    # Not before its time: ratmemcache keeps TTLs to the millisecond. (Against memcached, whose
    # clock moves in whole seconds, the item can go up to a second early; the rest of the script
    # passes against memcached as it is.)
    assert gone_at - t0 >= TTL - 0.01
    assert c.get(kept) == b"stays"  # touched to 100 s before it expired


@pytest.mark.parametrize("engine", ENGINES)
def test_pymemcache_hashclient_over_two_servers(engine: str) -> None:
    # The keys spread over both servers; multi-gets gather from both.
    with ratmemcached(engine=engine) as one, ratmemcached(engine=engine) as two:
        c = HashClient(
            [one.address, two.address], connect_timeout=5, timeout=5, serde=serde.pickle_serde
        )
        try:
            run_script(PymemcacheOps(c), "hc2:")
            for srv in (one, two):
                stats = Client(srv.address, connect_timeout=5, timeout=5)
                try:
                    assert int(stats.stats()[b"curr_items"]) > 0
                finally:
                    stats.close()
        finally:
            c.close()


def test_pymemcache_version_and_negative_exptime(server: ServerProcess) -> None:
    c = Client(server.address, connect_timeout=5, timeout=5)
    try:
        assert c.version().startswith(b"1.6")
        # A negative exptime expires at once, as in memcached.
        assert c.set("neg:gone", b"x", expire=-1, noreply=False)
        assert c.get("neg:gone") is None
        # cache_memlimit changes the memory limit, as in memcached.
        assert c.cache_memlimit(96) is True
        assert c.stats()[b"limit_maxbytes"] == 96 << 20
        assert c.cache_memlimit(64) is True
        assert c.get("neg:gone") is None
    finally:
        c.close()


# --------------------------------------------------------------------------------------------
# Serializers: what each client stores for Python objects round-trips through the server's flags


OBJECTS: dict[str, Any] = {
    "str": "Iñtërnâtiônàlizætiøn",
    "int": 42,
    "big_int": 2**70,
    "float": 1.5,
    "list": [1, "two", 3.0],
    "dict": {"a": {"b": [1, 2]}},
    "none_in_tuple": (None, True),
}

SERDE_CLIENTS = [
    "pymemcache-client-pickle_serde",
    "pymemcache-client-python_memcache_serializer",
    "pymemcache-client-compressed_serde",
    "pymemcache-hashclient",
    "pymemcache-pooledclient",
    "pylibmc-text",
    "pylibmc-binary",
    "python-memcached",
    "meta-memcache",
]


@pytest.mark.parametrize("name", SERDE_CLIENTS)
def test_serialized_objects_round_trip(server: ServerProcess, name: str) -> None:
    c = make_client(name, server.address)
    try:
        for label, value in OBJECTS.items():
            key = f"{name}:obj:{label}"
            assert c.set(key, value)
            got = c.get(key)
            assert got == value and type(got) is type(value), label
        many = {f"{name}:obj:{label}": v for label, v in OBJECTS.items()}
        assert c.get_multi(list(many)) == many
        # An int stored through the serializer is decimal text: incr works on it.
        if name != "meta-memcache":  # its int encoding is decimal too, but typed by flags
            assert c.incr(f"{name}:obj:int", 1) == 43
            assert c.get(f"{name}:obj:int") == 43
    finally:
        c.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_python_memcached_and_pymemcache_share_values(engine: str) -> None:
    # pymemcache's python_memcache_serializer uses python-memcached's flags: the server must keep
    # them exactly for one client to read what the other wrote.
    with ratmemcached(engine=engine) as srv:
        host, port = srv.address
        pm = memcache.Client([f"{host}:{port}"], socket_timeout=5)
        pc = Client(
            srv.address,
            connect_timeout=5,
            timeout=5,
            serializer=serde.python_memcache_serializer,
            deserializer=serde.python_memcache_deserializer,
        )
        try:
            for label, value in OBJECTS.items():
                assert pm.set(f"pm:{label}", value)
                assert pc.get(f"pm:{label}") == value, label
                pc.set(f"pc:{label}", value, noreply=False)
                assert pm.get(f"pc:{label}") == value, label
        finally:
            pm.disconnect_all()
            pc.close()


# --------------------------------------------------------------------------------------------
# Concurrency through the pooling clients


def test_pymemcache_pooledclient_threads(server: ServerProcess) -> None:
    c = PooledClient(server.address, connect_timeout=5, timeout=5, max_pool_size=4)
    try:
        c.set("pool:n", b"0", noreply=False)

        def work(i: int) -> None:
            for j in range(50):
                assert c.incr("pool:n", 1, noreply=False) is not None
                c.set(f"pool:{i}:{j}", str(j).encode(), noreply=False)
                assert c.get(f"pool:{i}:{j}") == str(j).encode()

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(work, range(4)))
        assert c.get("pool:n") == b"200"
    finally:
        c.close()


def test_aiomcache_concurrent_tasks(server: ServerProcess) -> None:
    async def main() -> None:
        c = aiomcache.Client(*server.address, pool_size=4)
        try:
            await c.set(b"aio:n", b"0")

            async def work(i: int) -> None:
                for j in range(25):
                    assert await c.incr(b"aio:n", 1) is not None
                    await c.set(f"aio:{i}:{j}".encode(), b"x" * j)
                    assert await c.get(f"aio:{i}:{j}".encode()) == b"x" * j

            await asyncio.gather(*(work(i) for i in range(8)))
            assert await c.get(b"aio:n") == b"200"
        finally:
            await c.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_meta_memcache_threads(server: ServerProcess) -> None:
    c = MetaMemcacheOps(*server.address)
    assert c.set("mm:n", 0)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                assert c.incr("mm:n", 1) is not None
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    try:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert c.get("mm:n") == 200
    finally:
        c.close()


# --------------------------------------------------------------------------------------------
# Over the item limit: each client must see what it sees from memcached


def outcome(f: Callable[[], Any]) -> tuple[str, str]:
    try:
        return ("returned", repr(f()))
    except Exception as e:
        return ("raised", type(e).__name__)


def too_large_story(name: str, addr: tuple[str, int]) -> list[tuple[str, str]]:
    """Store a small value, then an over-limit one under the same key, then read and write
    again: what the client saw at each step."""
    c = make_client(name, addr)
    try:
        key = f"{name}:toolarge"
        over = random.Random(9).randbytes(ITEM_LIMIT)  # plus key and header: over the limit
        steps = [
            outcome(lambda: c.set(key, b"small")),
            outcome(lambda: c.set(key, over)),
            # memcached drops the old value when a set fails for size.
            outcome(lambda: c.get(key)),
            outcome(lambda: c.set(key + "2", b"after")),
            outcome(lambda: c.get(key + "2")),
        ]
        return steps
    finally:
        c.close()


@pytest.fixture(scope="module")
def reference() -> Iterator[ServerProcess]:
    with memcached() as ref:
        yield ref


@requires_memcached
@pytest.mark.parametrize("name", list(CLIENTS))
def test_too_large_value_same_as_memcached(
    server: ServerProcess, reference: ServerProcess, name: str
) -> None:
    expected = too_large_story(name, reference.address)
    assert too_large_story(name, server.address) == expected
