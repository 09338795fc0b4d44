"""Start real servers for tests: ``ratmemcached`` (this package) and Debian's ``memcached``.

Both run as subprocesses on 127.0.0.1 on a free port, are waited for until the port accepts, and are
always stopped (SIGTERM, or Ctrl+Break on Windows; then SIGKILL). Use the context managers::

    from servers import memcached, ratmemcached, requires_memcached

    def test_something(tmp_path):
        with ratmemcached("-m", "16", config={"server": {"idle_timeout": 5}}) as srv:
            sock = srv.connect()
            ...
        assert srv.returncode == 0          # it exited cleanly on SIGTERM

    @requires_memcached
    def test_same_bytes():
        with memcached() as ref, ratmemcached() as ours:
            ...

``srv.output()`` returns what the server wrote to stdout/stderr (for assertions and for failure
messages). A server that dies during startup raises :class:`ServerStartFailed` with its output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomlkit

__all__ = [
    "ENGINES",
    "MEMCACHED",
    "ServerProcess",
    "ServerStartFailed",
    "exchange",
    "free_port",
    "memcached",
    "ratmemcached",
    "ratmemcached_argv",
    "requires_memcached",
    "start_memcached",
    "start_ratmemcached",
    "wait_for_port",
    "wait_for_unix",
]

HOST = "127.0.0.1"
#: The I/O engines every server-level test runs against (``--engine``).
ENGINES = ("anyio", "native")


def _find_memcached() -> str | None:
    # RATMEMCACHE_TEST_MEMCACHED names the peer binary; set empty, the suite runs as it does where
    # there is no memcached (macOS and Windows CI): the tests that need it skip.
    chosen = os.environ.get("RATMEMCACHE_TEST_MEMCACHED")
    if chosen is not None:
        return chosen or None
    path = shutil.which("memcached")
    if path is None and Path("/usr/bin/memcached").exists():
        path = "/usr/bin/memcached"
    return path


#: Debian's memcached, the reference server, or None when it is not installed.
MEMCACHED = _find_memcached()
requires_memcached = pytest.mark.skipif(
    MEMCACHED is None, reason="memcached is not installed (apt-get install memcached)"
)


class ServerStartFailed(RuntimeError):
    """The server exited, or never accepted connections, during startup."""


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A running server subprocess."""

    name: str
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    argv: list[str]
    log_path: Path
    _tmpdir: Path | None = field(default=None, repr=False)
    _final_output: str | None = field(default=None, repr=False)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def output(self) -> str:
        """Everything the server wrote to stdout and stderr so far (kept after cleanup)."""
        if self._final_output is not None:
            return self._final_output
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # The timeouts here are generous: they only bound a failure, and a server on a busy machine
    # (a parallel build, CI) may be slow to start, answer or stop.

    def connect(self, timeout: float = 30.0) -> socket.socket:
        """A new blocking client socket with a timeout."""
        return socket.create_connection(self.address, timeout=timeout)

    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)

    def wait_for_output(self, text: str, timeout: float = 30.0) -> None:
        """Return once the server has written ``text`` (a log line, say); fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the output of {self.name}:\n{self.output()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit status. On Windows
        the graceful stop is Ctrl+Break, sent to the server's own process group."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if sys.platform == "win32":
                    self.proc.send_signal(signal.CTRL_BREAK_EVENT)
                else:
                    self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        return int(self.proc.returncode)

    def cleanup(self) -> None:
        """Remove the temporary files (the output stays readable through ``output()``)."""
        if self._tmpdir is not None:
            self._final_output = self.output()
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


def wait_for_port(
    host: str, port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0
) -> None:
    """Return once ``host:port`` accepts a connection; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServerStartFailed(f"exited with status {proc.returncode} during startup")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ServerStartFailed(f"{host}:{port} did not accept within {timeout}s") from None
            time.sleep(0.02)


def wait_for_unix(
    path: Path, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0
) -> None:
    """Return once the unix socket ``path`` accepts a connection; fail early if ``proc`` exits."""
    if sys.platform == "win32":
        raise ServerStartFailed("unix sockets are POSIX only here")
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServerStartFailed(f"exited with status {proc.returncode} during startup")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect(str(path))
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ServerStartFailed(f"{path} did not accept within {timeout}s") from None
            time.sleep(0.02)


def ratmemcached_argv(*args: str) -> list[str]:
    """How to run this package's server: the venv's interpreter with ``-m ratmemcache``."""
    return [sys.executable, "-m", "ratmemcache", *args]


def _write_config(config: str | Path | Mapping[str, Any], tmpdir: Path) -> Path:
    if isinstance(config, Path):
        return config
    path = tmpdir / "ratmemcached.toml"
    text = config if isinstance(config, str) else tomlkit.dumps(dict(config))
    path.write_text(text, encoding="utf-8")
    return path


def _spawn(
    name: str,
    argv: list[str],
    host: str,
    port: int,
    tmpdir: Path,
    env: Mapping[str, str] | None,
    ready_timeout: float,
    cwd: Path | None,
    unix_socket: Path | None = None,
) -> ServerProcess:
    log_path = tmpdir / f"{name}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            # Windows: a process group of its own, so that stop()'s Ctrl+Break reaches it alone.
            creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
        )
    srv = ServerProcess(name, host, port, proc, argv, log_path, tmpdir)
    try:
        if unix_socket is not None:
            wait_for_unix(unix_socket, proc, ready_timeout)
        else:
            wait_for_port(host, port, proc, ready_timeout)
    except ServerStartFailed as e:
        srv.stop(timeout=2)
        out = srv.output()
        srv.cleanup()
        raise ServerStartFailed(f"{name} ({' '.join(argv)}): {e}\n{out}") from None
    return srv


def start_ratmemcached(
    *args: str,
    engine: str | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
    host: str = HOST,
    port: int | None = None,
    add_address: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready_timeout: float = 60.0,
    unix_socket: Path | None = None,
) -> ServerProcess:
    """Start ``ratmemcached`` with ``args``; remember to ``stop()`` and ``cleanup()`` it.

    With ``unix_socket``, it listens there only (``-s``, no TCP) and is ready when the socket
    accepts; ``port`` is then only the would-be TCP port.

    ``config`` is TOML text, a dict (written as TOML), or a path. ``-l host -p port`` are added
    (after ``args``, so they win) unless ``add_address`` is false; then pass the port yourself
    and give it as ``port``. ``engine`` adds ``--engine ENGINE`` (see :data:`ENGINES`). A port
    taken by someone else between our check and the server's bind is retried with another port.
    """
    for attempt in range(3):
        tmpdir = Path(tempfile.mkdtemp(prefix="ratmemcached-test-"))
        p = port if port is not None else free_port(host)
        argv = ratmemcached_argv(*args)
        if engine is not None:
            argv += ["--engine", engine]
        if config is not None:
            argv += ["--config", str(_write_config(config, tmpdir))]
        if add_address:
            argv += ["-l", host, "-p", str(p)]
        if unix_socket is not None:
            argv += ["-s", str(unix_socket)]
        try:
            return _spawn(
                "ratmemcached", argv, host, p, tmpdir, env, ready_timeout, cwd, unix_socket
            )
        except ServerStartFailed as e:
            if port is None and "address already in use" in str(e) and attempt < 2:
                continue
            raise
    raise AssertionError("unreachable")


def start_memcached(
    *args: str,
    host: str = HOST,
    port: int | None = None,
    ready_timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """Start Debian's memcached (skips the test when it is not installed)."""
    if MEMCACHED is None:
        pytest.skip("memcached is not installed (apt-get install memcached)")
    for attempt in range(3):
        tmpdir = Path(tempfile.mkdtemp(prefix="memcached-test-"))
        p = port if port is not None else free_port(host)
        argv = [MEMCACHED, "-U", "0", "-l", host, "-p", str(p), *args]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            argv += ["-u", "root"]  # memcached refuses to run as root without -u
        try:
            return _spawn("memcached", argv, host, p, tmpdir, env, ready_timeout, None)
        except ServerStartFailed as e:
            if port is None and "Address already in use" in str(e) and attempt < 2:
                continue
            raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def ratmemcached(*args: str, **kwargs: Any) -> Iterator[ServerProcess]:
    """``start_ratmemcached`` as a context manager: always stopped and cleaned up."""
    srv = start_ratmemcached(*args, **kwargs)
    try:
        yield srv
    finally:
        srv.stop()
        srv.cleanup()


@contextlib.contextmanager
def memcached(*args: str, **kwargs: Any) -> Iterator[ServerProcess]:
    """``start_memcached`` as a context manager: always stopped and cleaned up."""
    srv = start_memcached(*args, **kwargs)
    try:
        yield srv
    finally:
        srv.stop()
        srv.cleanup()


def exchange(
    sock: socket.socket, data: bytes, *, until: bytes | Sequence[bytes] = b"\r\n"
) -> bytes:
    """Send ``data`` and read until the reply ends with ``until`` (or one of several endings)."""
    endings = (until,) if isinstance(until, bytes) else tuple(until)
    sock.sendall(data)
    buf = b""
    while not buf.endswith(endings):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
    return buf
