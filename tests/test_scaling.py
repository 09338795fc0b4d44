"""Scale-out over several ratmemcached instances (docs/scaling.md), with each I/O engine.

- Client-side hashing: pymemcache's ``HashClient`` over 3 instances spreads the keys over all
  of them, and keeps serving the keys of the other two when one is killed.
- twemproxy (``nutcracker``) in front of 3 instances, with the config in examples/nutcracker.yml
  (only the listen address and the server ports changed): the same, through the proxy, plus which
  commands the proxy passes on.

Everything runs on 127.0.0.1 on free ports and is stopped afterwards.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheError

from servers import (
    ENGINES,
    HOST,
    ServerProcess,
    ServerStartFailed,
    free_port,
    ratmemcached,
    wait_for_port,
)

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "nutcracker.yml"


def _find_nutcracker() -> str | None:
    path = shutil.which("nutcracker")
    if path is None and Path("/usr/sbin/nutcracker").exists():
        path = "/usr/sbin/nutcracker"  # not on a non-root user's PATH
    return path


NUTCRACKER = _find_nutcracker()
requires_nutcracker = pytest.mark.skipif(
    NUTCRACKER is None,
    reason="twemproxy is not installed (apt-get install nutcracker; `make system-deps` does it)",
)

#: What a client must accept while the proxy has not yet ejected a dead server, or while
#: HashClient has not yet marked it dead: a reply of SERVER_ERROR, a closed connection, a refusal.
TRANSIENT = (MemcacheError, OSError)


def value_of(key: str) -> bytes:
    return f"value of {key}".encode()


def three_servers(stack: contextlib.ExitStack, engine: str) -> list[ServerProcess]:
    return [stack.enter_context(ratmemcached("-m", "16", engine=engine)) for _ in range(3)]


def direct_client(srv: ServerProcess) -> Client:
    return Client(srv.address, connect_timeout=5, timeout=5, default_noreply=False)


def held_by(servers: Sequence[ServerProcess], keys: Sequence[str]) -> dict[int, set[str]]:
    """Which of ``keys`` each server holds, asking each one directly (by port)."""
    held = {}
    for srv in servers:
        c = direct_client(srv)
        try:
            held[srv.port] = set(c.get_many(list(keys)))
        finally:
            c.close()
    return held


def assert_spread(held: dict[int, set[str]], keys: Sequence[str]) -> None:
    """Every key on exactly one server, and each server with a fair share (>= 1/10)."""
    assert sum(len(s) for s in held.values()) == len(keys), "a key is on two servers"
    assert set().union(*held.values()) == set(keys), "a key is on no server"
    for port, s in held.items():
        assert len(s) >= len(keys) // 10, f"server {port} holds {len(s)} of {len(keys)} keys"


def kill(srv: ServerProcess) -> None:
    srv.proc.kill()
    srv.proc.wait(timeout=10)


def retry_until_clean(
    attempt: Callable[[], int], deadline_s: float, what: str, pause: float = 0.05
) -> int:
    """Run ``attempt`` (which returns its error count) until a run has no error; return the
    errors seen before that. Fails after ``deadline_s`` seconds."""
    deadline = time.monotonic() + deadline_s
    errors = 0
    while True:
        n = attempt()
        if n == 0:
            return errors
        errors += n
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still {n} errors after {deadline_s}s ({errors} in all)")
        time.sleep(pause)


# --- client-side consistent hashing: pymemcache HashClient ---------------------------------------

#: What docs/scaling.md tells users to pass to HashClient (timeouts in seconds).
HASHCLIENT_OPTIONS = {
    "ignore_exc": True,  # a dead server's keys are misses, not exceptions
    "retry_attempts": 2,  # after the first failure, 2 more tries ...
    "retry_timeout": 1,  # ... 1 s apart, then the server leaves the ring ...
    "dead_timeout": 30,  # ... for 30 s, then it is tried again
    "connect_timeout": 1,
    "timeout": 1,
    "default_noreply": False,  # to see the result of each set
}


@pytest.mark.parametrize("engine", ENGINES)
def test_hashclient_spreads_keys_and_survives_a_dead_server(engine: str) -> None:
    with contextlib.ExitStack() as stack:
        servers = three_servers(stack, engine)
        hc = HashClient([s.address for s in servers], **HASHCLIENT_OPTIONS)
        stack.callback(hc.close)
        keys = [f"key:{i}" for i in range(300)]
        for k in keys:
            assert hc.set(k, value_of(k)) is True
        assert all(hc.get(k) == value_of(k) for k in keys)
        assert hc.get_many(keys) == {k: value_of(k) for k in keys}
        held = held_by(servers, keys)
        assert_spread(held, keys)

        victim, survivors = servers[1], [servers[0], servers[2]]
        kill(victim)
        lost = sorted(held[victim.port])
        kept = sorted(set(keys) - set(lost))

        # Without ignore_exc, a request for a key of the dead server raises.
        strict = HashClient([s.address for s in servers], connect_timeout=1, timeout=1)
        stack.callback(strict.close)
        with pytest.raises(OSError):
            strict.get(lost[0])

        # With the options above: the other servers' keys are served all along, the dead
        # server's keys are misses, and once HashClient has marked it dead (after
        # retry_attempts tries retry_timeout apart), its keys are stored on the other two.
        def store_lost() -> int:
            assert hc.get_many(kept) == {k: value_of(k) for k in kept}
            assert hc.get(lost[0]) is None
            return sum(not hc.set(k, b"again " + value_of(k)) for k in lost)

        retry_until_clean(store_lost, 15, "sets of the dead server's keys", pause=0.2)
        assert hc.get_many(lost) == {k: b"again " + value_of(k) for k in lost}
        assert hc.get_many(kept) == {k: value_of(k) for k in kept}
        moved = held_by(survivors, lost)
        assert set().union(*moved.values()) == set(lost)
        new = [f"new:{i}" for i in range(100)]
        for k in new:
            assert hc.set(k, value_of(k)) is True
        assert hc.get_many(new) == {k: value_of(k) for k in new}
        assert all(held_by(survivors, new).values()), "new keys go to both survivors"


# --- twemproxy ---------------------------------------------------------------------------------


def nutcracker_config(
    template: str, listen: tuple[str, int], servers: Sequence[tuple[str, int]]
) -> str:
    """``template`` (examples/nutcracker.yml) with the listen address and the server addresses
    replaced, in order; everything else (hash, distribution, ejection settings) is kept."""
    text, n = re.subn(
        r"(?m)^(\s+listen: ).*$", lambda m: f"{m.group(1)}{listen[0]}:{listen[1]}", template
    )
    assert n == 1, "the template has no single listen line"
    addresses = iter(servers)

    def server_line(m: re.Match[str]) -> str:
        host, port = next(addresses)
        return f"{m.group(1)}{host}:{port}:{m.group(2)}"

    text, n = re.subn(r"(?m)^(\s+- )[\w.-]+:\d+:(\d+(?: \S+)?)\s*$", server_line, text)
    assert n == len(servers), f"the template has {n} server lines, not {len(servers)}"
    return text


def config_value(text: str, key: str) -> int:
    m = re.search(rf"(?m)^\s+{key}: (\d+)\s*$", text)
    assert m is not None, f"no {key} in the config"
    return int(m.group(1))


def check_config(path: Path) -> None:
    assert NUTCRACKER is not None
    r = subprocess.run(
        [NUTCRACKER, "-t", "-c", str(path)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, f"nutcracker -t rejects {path}:\n{r.stdout}{r.stderr}"


@contextlib.contextmanager
def nutcracker(tmp_path: Path, servers: Sequence[ServerProcess]) -> Iterator[tuple[int, int, str]]:
    """twemproxy in front of ``servers`` with the example config; yields (port, stats port,
    config text). It listens and serves its stats on 127.0.0.1 only, and is always stopped."""
    assert NUTCRACKER is not None
    template = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    for attempt in range(3):
        port, stats_port = free_port(), free_port()
        text = nutcracker_config(template, (HOST, port), [s.address for s in servers])
        conf = tmp_path / f"nutcracker-{attempt}.yml"
        conf.write_text(text, encoding="utf-8")
        check_config(conf)
        log = tmp_path / f"nutcracker-{attempt}.log"
        # -a: the stats port listens on 0.0.0.0 by default; -o: the log goes to /var/log/nutcracker
        # by default; -i: stats are aggregated every 30 s by default.
        argv = [NUTCRACKER, "-c", str(conf), "-s", str(stats_port), "-a", HOST, "-i", "100"]
        argv += ["-o", str(log)]
        with open(log.with_suffix(".out"), "wb") as out:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            try:
                wait_for_port(HOST, port, proc, timeout=10)
                wait_for_port(HOST, stats_port, proc, timeout=10)
            except ServerStartFailed as e:
                output = "".join(
                    p.read_text(errors="replace")
                    for p in (log, log.with_suffix(".out"))
                    if p.exists()
                )
                if "already in use" in output and attempt < 2:
                    continue
                raise ServerStartFailed(f"nutcracker ({' '.join(argv)}): {e}\n{output}") from None
            yield port, stats_port, text
            return
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


def proxy_stats(stats_port: int) -> dict[str, object]:
    """twemproxy's stats: one JSON document, sent to whoever connects, then the port closes."""
    data = b""
    with socket.create_connection((HOST, stats_port), timeout=5) as s:
        while chunk := s.recv(65536):
            data += chunk
    stats = json.loads(data)
    assert isinstance(stats, dict)
    pool = stats["ratmemcache"]
    assert isinstance(pool, dict)
    return pool


@requires_nutcracker
def test_example_nutcracker_config_is_valid() -> None:
    check_config(EXAMPLE_CONFIG)


@requires_nutcracker
@pytest.mark.parametrize("engine", ENGINES)
def test_twemproxy_spreads_keys_and_survives_a_dead_server(tmp_path: Path, engine: str) -> None:
    with contextlib.ExitStack() as stack:
        servers = three_servers(stack, engine)
        port, stats_port, conf = stack.enter_context(nutcracker(tmp_path, servers))
        failure_limit = config_value(conf, "server_failure_limit")
        # The proxy puts the server back in the ring after this long: the test must be done by
        # then, or the dead server's keys fail again (up to the failure limit).
        retry_ms = config_value(conf, "server_retry_timeout")
        assert retry_ms >= 10_000
        started = time.monotonic()

        proxy = Client((HOST, port), connect_timeout=5, timeout=5, default_noreply=False)
        stack.callback(proxy.close)
        keys = [f"key:{i}" for i in range(300)]
        for k in keys:
            assert proxy.set(k, value_of(k)) is True
        assert all(proxy.get(k) == value_of(k) for k in keys[:50])
        # A multi-key get is split by server and the replies joined.
        for i in range(0, len(keys), 100):
            batch = keys[i : i + 100]
            assert proxy.get_many(batch) == {k: value_of(k) for k in batch}
        counters = [f"counter:{i}" for i in range(30)]
        for c in counters:
            assert proxy.set(c, b"10") is True
            assert proxy.incr(c, 5) == 15
            assert proxy.decr(c, 3) == 12
        gone = keys[250:]
        for k in gone:
            assert proxy.delete(k) is True
        assert proxy.get_many(gone) == {}
        live = keys[:250]
        held = held_by(servers, live)
        assert_spread(held, live)
        assert_spread(held_by(servers, counters), counters)

        victim, survivors = servers[1], [servers[0], servers[2]]
        kill(victim)
        lost = sorted(held[victim.port])
        kept = sorted(set(live) - set(lost))

        # Until the proxy ejects the dead server (after failure_limit consecutive failures),
        # requests for its keys get SERVER_ERROR or a closed connection; nutcracker does not
        # retry. Then they are misses, served by the other two.
        errors: list[str] = []

        def read_lost() -> int:
            n = 0
            for k in lost:
                try:
                    assert proxy.get(k) is None
                except TRANSIENT as e:
                    errors.append(repr(e))
                    proxy.close()  # reconnects on the next request
                    n += 1
            return n

        retry_until_clean(read_lost, 10, "reads through the proxy after a server died")
        assert 1 <= len(errors) <= 3 * failure_limit, errors
        deadline = time.monotonic() + 10
        while (ejects := proxy_stats(stats_port)["server_ejects"]) == 0:
            assert time.monotonic() < deadline, "the proxy never counted an ejection"
            time.sleep(0.1)
        assert isinstance(ejects, int) and ejects >= 1

        # After the ejection, everything works again without an error.
        assert proxy.get_many(kept) == {k: value_of(k) for k in kept}
        for k in lost:
            assert proxy.set(k, b"again " + value_of(k)) is True
        assert proxy.get_many(lost) == {k: b"again " + value_of(k) for k in lost}
        moved = held_by(survivors, lost)
        assert set().union(*moved.values()) == set(lost)
        new = [f"new:{i}" for i in range(100)]
        for k in new:
            assert proxy.set(k, value_of(k)) is True
            assert proxy.get(k) == value_of(k)
        assert all(held_by(survivors, new).values()), "new keys go to both survivors"
        for c in counters:
            r = proxy.incr(c, 1)
            assert r == 13 or r is None  # a counter of the dead server is gone
        for k in new[:10]:
            assert proxy.delete(k) is True
        assert time.monotonic() - started < retry_ms / 1000, "too slow to trust the ejection"


@requires_nutcracker
def test_twemproxy_ejects_a_hung_server(tmp_path: Path) -> None:
    """A server that stops answering (SIGSTOP: a hung host, not a refused connection) costs the
    config's ``timeout`` per request until the proxy ejects it."""
    if sys.platform == "win32":  # as nutcracker; and it narrows SIGSTOP for mypy's win32 pass
        pytest.skip("SIGSTOP: POSIX only")
    with contextlib.ExitStack() as stack:
        servers = three_servers(stack, "native")
        port, _, conf = stack.enter_context(nutcracker(tmp_path, servers))
        timeout_s = config_value(conf, "timeout") / 1000
        failure_limit = config_value(conf, "server_failure_limit")
        proxy = Client((HOST, port), connect_timeout=5, timeout=10, default_noreply=False)
        stack.callback(proxy.close)
        keys = [f"key:{i}" for i in range(100)]
        for k in keys:
            assert proxy.set(k, value_of(k)) is True
        held = held_by(servers, keys)
        victim = servers[2]
        victim.send_signal(signal.SIGSTOP)
        stack.callback(victim.send_signal, signal.SIGCONT)  # so that it can be stopped
        lost = sorted(held[victim.port])
        kept = sorted(set(keys) - set(lost))
        errors: list[tuple[str, float]] = []

        def read_lost() -> int:
            n = 0
            for k in lost:
                t = time.monotonic()
                try:
                    assert proxy.get(k) is None
                except TRANSIENT as e:
                    errors.append((repr(e), time.monotonic() - t))
                    proxy.close()
                    n += 1
            return n

        retry_until_clean(read_lost, 20, "reads through the proxy after a server hung")
        assert 1 <= len(errors) <= 3 * failure_limit, errors
        for what, seconds in errors:
            assert "timed out" in what.lower(), errors
            assert timeout_s * 0.8 <= seconds <= timeout_s + 2, errors
        assert proxy.get_many(kept) == {k: value_of(k) for k in kept}
        for k in lost:
            assert proxy.set(k, b"again") is True


def command_reply(port: int, request: bytes) -> bytes:
    """Send ``request`` on a new connection; read one reply, or until the peer closes."""
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while not (data.endswith(b"END\r\n") or (data.endswith(b"\r\n") and b"VALUE" not in data)):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


@requires_nutcracker
def test_twemproxy_passes_the_text_protocol_only(tmp_path: Path) -> None:
    """What docs/scaling.md says twemproxy 0.5.0 forwards, and what it refuses (it closes the
    connection without a reply)."""
    with contextlib.ExitStack() as stack:
        servers = three_servers(stack, "native")
        port, _, _ = stack.enter_context(nutcracker(tmp_path, servers))
        served = [
            (b"set k 5 0 2\r\nhi\r\n", b"STORED\r\n"),
            (b"add k 0 0 1\r\nx\r\n", b"NOT_STORED\r\n"),
            (b"replace k 5 0 3\r\nhey\r\n", b"STORED\r\n"),
            (b"append k 0 0 1\r\n!\r\n", b"STORED\r\n"),
            (b"prepend k 0 0 1\r\n>\r\n", b"STORED\r\n"),
            (b"get k\r\n", b"VALUE k 5 5\r\n>hey!\r\nEND\r\n"),
            (b"touch k 100\r\n", b"TOUCHED\r\n"),
            (b"cas k 0 0 1 1\r\nz\r\n", b"EXISTS\r\n"),
            (b"set n 0 0 1\r\n7\r\n", b"STORED\r\n"),
            (b"incr n 3\r\n", b"10\r\n"),
            (b"decr n 4\r\n", b"6\r\n"),
            (b"delete n\r\n", b"DELETED\r\n"),
            (b"delete n\r\n", b"NOT_FOUND\r\n"),
            (
                b"set q 0 0 1 noreply\r\n1\r\nincr q 1 noreply\r\nget q\r\n",
                b"VALUE q 0 1\r\n2\r\nEND\r\n",
            ),
        ]
        for request, reply in served:
            assert command_reply(port, request) == reply, request
        gets = command_reply(port, b"gets k\r\n")
        assert re.fullmatch(rb"VALUE k 5 5 \d+\r\n>hey!\r\nEND\r\n", gets), gets
        assert command_reply(port, b"version\r\n").startswith(b"VERSION ")
        # A value near the 1 MB item limit passes through the proxy's 16 KB buffers.
        big = bytes(range(256)) * 4000
        proxy = Client((HOST, port), connect_timeout=5, timeout=10, default_noreply=False)
        stack.callback(proxy.close)
        assert proxy.set("big", big) is True
        assert proxy.get("big") == big
        refused = [
            b"mg k v\r\n",  # meta
            b"ms k 2\r\nhi\r\n",
            b"md k\r\n",
            b"ma n\r\n",
            b"me k\r\n",
            b"mn\r\n",
            b"gat 100 k\r\n",
            b"gats 100 k\r\n",
            b"streaming_get k\r\n",  # ratmemcache's extension (docs/streaming.md)
            b"stats\r\n",
            b"flush_all\r\n",
            b"verbosity 1\r\n",
            b"\x80\x0a" + bytes(22),  # binary noop
        ]
        for request in refused:
            assert command_reply(port, request) == b"", request
