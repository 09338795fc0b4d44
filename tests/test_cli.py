"""The ``ratmemcached`` command: flags, precedence, startup errors, pid file, daemon mode."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import tomlkit

import ratmemcache
from ratmemcache.config import Config, config_from_mapping
from servers import (
    ENGINES,
    MEMCACHED,
    exchange,
    free_port,
    ratmemcached,
    ratmemcached_argv,
    start_ratmemcached,
)

MEMCACHED_BIN = MEMCACHED

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX only")


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        ratmemcached_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The startup contract: exactly one line on stderr, no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("ratmemcached: error: ")
    return lines[0]


def printed_config(*args: str) -> Config:
    proc = run_cli(*args, "--print-config")
    assert proc.returncode == 0, proc.stderr
    return config_from_mapping(tomlkit.parse(proc.stdout).unwrap())


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- informational ----------------------------------------------------------------------------


def test_version() -> None:
    for flag in ("--version", "-V"):
        proc = run_cli(flag)
        assert proc.returncode == 0
        assert proc.stdout.strip() == f"ratmemcached {ratmemcache.__version__}"


def test_help_lists_memcached_and_original_flags() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for flag in ("--bind", "--config", "--daemon", "--pid-file", "-p", "-l", "-m", "-c", "-t"):
        assert flag in proc.stdout
    for flag in ("-I", "-U", "-v", "-o", "--print-config", "--version"):
        assert flag in proc.stdout


def test_print_config_defaults_is_round_trippable_toml() -> None:
    proc = run_cli("--print-config")
    assert proc.returncode == 0, proc.stderr
    assert config_from_mapping(tomlkit.parse(proc.stdout).unwrap()) == Config()
    assert 'bind = "127.0.0.1"' in proc.stdout and "port = 11211" in proc.stdout


def test_memcached_flags_map_to_the_config() -> None:
    c = printed_config(
        "-m", "128", "-c", "10", "-t", "2", "-I", "2m", "-o", "idle_timeout=7",
        "-b", "64", "-F", "-A", "--bind", "0.0.0.0:1234", "-s", "/tmp/x.sock", "-U", "0",
    )  # fmt: skip
    assert c.l1.max_memory == 128 << 20
    assert c.server.max_connections == 10
    assert c.performance.worker_threads == 2
    assert c.server.max_item_size == 2 << 20
    assert c.server.idle_timeout == 7
    assert c.server.backlog == 64
    assert c.server.allow_flush is False and c.server.allow_shutdown is True
    assert (c.server.bind, c.server.port) == ("0.0.0.0", 1234)
    assert c.server.unix_socket == "/tmp/x.sock"


def test_listen_and_port_flags() -> None:
    c = printed_config("-l", "127.0.0.2", "-p", "4000", "-m", "1GB")
    assert (c.server.bind, c.server.port, c.l1.max_memory) == ("127.0.0.2", 4000, 1 << 30)


def test_precedence_cli_over_file_over_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nport = 2000\nmax_connections = 5\n[l1]\neviction_strategy = "Lfu"\n')
    c = printed_config("--config", str(cfg), "-p", "3000")
    assert c.server.port == 3000  # flag over file
    assert c.server.max_connections == 5  # file over default
    assert c.l1.eviction_strategy == "lfu"
    assert c.l1.max_memory == 64 << 20  # default


def test_original_only_keys_warn_on_stderr(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[l2]\nblock_cache_size = 33554432\n[performance]\nenable_concurrency = true\n")
    proc = run_cli("--config", str(cfg), "--print-config")
    assert proc.returncode == 0
    assert "WARNING" in proc.stderr
    assert "[l2] block_cache_size is ignored" in proc.stderr
    assert "[performance] enable_concurrency is ignored" in proc.stderr


# -- startup errors: one line, non-zero --------------------------------------------------------


def test_bad_config_value(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[l1]\nmax_memory = true\n")
    proc = run_cli("--config", str(cfg))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert line.endswith('[l1] max_memory: expected a size (int or string like "64MB"), got true')


def test_bad_config_syntax(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[server]\nport = = 1\n")
    proc = run_cli("--config", str(cfg))
    assert proc.returncode == 2
    assert f"{cfg}:2:" in one_error_line(proc)


def test_missing_config_file(tmp_path: Path) -> None:
    proc = run_cli("--config", str(tmp_path / "nope.toml"))
    assert proc.returncode == 2
    assert "config file not found" in one_error_line(proc)


def test_bad_flag_value() -> None:
    proc = run_cli("-c", "0")
    assert proc.returncode == 2
    assert "-c/--conn-limit: expected an integer of at least 1, got 0" in one_error_line(proc)
    proc = run_cli("-I", "12xb")
    assert proc.returncode == 2
    assert "-I 12xb" in one_error_line(proc)
    proc = run_cli("-p", "abc")  # click's own usage errors are one line too
    assert proc.returncode == 2
    assert "'abc' is not a valid integer" in one_error_line(proc)


def test_an_l2_that_cannot_open_is_one_line_naming_the_path(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    cfg = tmp_path / "l2.toml"
    cfg.write_text(f'[l2]\nenable_l2_cache = true\ndata_dir = "{(not_a_dir / "l2").as_posix()}"\n')
    proc = run_cli("--config", str(cfg), "-p", str(free_port()))
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert str(not_a_dir) in line and "data_dir" in line


def test_network_flags_map_to_the_config() -> None:
    c = printed_config("-U", "11311", "-B", "binary", "-R", "7", "-a", "0750")
    assert c.server.udp_port == 11311
    assert c.server.binding_protocol == "binary"
    assert c.server.reqs_per_event == 7
    assert c.server.unix_socket_mask == 0o750
    assert printed_config("-U", "0").server.udp_port == 0
    assert printed_config().server.reqs_per_event == 20


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("-R", "0"), "-R/--max-reqs-per-event: expected an integer of at least 1, got 0"),
        (("-a", "999"), "-a/--unix-mask: expected octal permissions"),
        (("-B", "foo"), "'foo' is not one of 'auto', 'ascii', 'binary'"),
        (("-S", "-B", "ascii"), "SASL"),
        (("-Y", "/dev/null", "-B", "binary"), "ASCII authentication"),
        (("-Y", "/dev/null", "-U", "11311"), "UDP cannot be used with ASCII authentication"),
        (("-S", "-U", "11311"), "UDP cannot be used with SASL"),
    ],
)
def test_network_flag_errors_are_one_line(args: tuple[str, ...], needle: str) -> None:
    """memcached refuses these too (-R 0, -B foo, -S with -B ascii, -Y with -B binary, -U with
    -Y or -S), each with one line and a non-zero status."""
    proc = run_cli(*args, "--print-config")
    assert proc.returncode == 2
    assert needle in one_error_line(proc)


def test_extended_options_set_warn_or_stop() -> None:
    """memcached's -o: options with a meaning here set it; its tuning options get one warning
    each (however often given); an unknown one stops the server with one line naming it, as
    memcached's ``Illegal suboption "..."`` (exit 1) does."""
    c = printed_config("-o", "idle_timeout=9,ssl_chain_cert=/c.pem,ssl_key=/k.pem")
    assert (c.server.idle_timeout, c.server.ssl_chain_cert, c.server.ssl_key) == (
        9,
        "/c.pem",
        "/k.pem",
    )
    proc = run_cli(
        "-o", "no_modern,slab_chunk_max=512,hash_algorithm=murmur3",
        "-o", "no_modern,ext_path=/x:1G,ssl_min_version=2",
        "--print-config",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 4, proc.stderr
    for name in ("no_modern", "slab_chunk_max", "hash_algorithm", "ext_path"):
        assert sum(f"-o {name}:" in w for w in warnings) == 1, name
    for bad, needle in (
        ("frobnicate=1", "-o frobnicate=1: illegal suboption"),
        ("lru_segmented", "-o lru_segmented: illegal suboption"),
        ("ssl_verify_mode=2", "client certificates are not supported"),
        ("ssl_ca_cert=/ca.pem", "is not supported"),
    ):
        proc = run_cli("-o", bad, "--print-config")
        assert proc.returncode == 2
        assert needle in one_error_line(proc)


@pytest.mark.skipif(not MEMCACHED_BIN, reason="memcached is not installed")
def test_unknown_extended_option_as_memcached_refuses_it() -> None:
    """The oracle for the test above: one line naming the option, a non-zero status."""
    assert MEMCACHED_BIN is not None
    argv = [MEMCACHED_BIN, "-p", "0", "-U", "0", "-o", "frobnicate=1"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv += ["-u", "root"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert proc.stderr.strip() == 'Illegal suboption "frobnicate=1"'


def test_port_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli("-p", str(port))
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in line


def test_unresolvable_bind_address() -> None:
    proc = run_cli("-l", "no-such-host.invalid", "-p", str(free_port()))
    assert proc.returncode == 1
    assert "cannot listen on no-such-host.invalid" in one_error_line(proc)


# -- serving ----------------------------------------------------------------------------------


def test_no_arguments_serves_on_127_0_0_1_11211() -> None:
    if port_accepts(11211):
        pytest.skip("something already listens on 127.0.0.1:11211")
    with ratmemcached(add_address=False, port=11211) as srv:
        with srv.connect() as s:
            assert exchange(s, b"set k 0 0 2\r\nhi\r\nget k\r\n", until=b"END\r\n") == (
                b"STORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n"
            )
        assert "listening on 127.0.0.1:11211" in srv.output()
    assert srv.returncode == 0


@posix_only
def test_pid_file_is_written_and_removed(tmp_path: Path) -> None:
    pid_file = tmp_path / "r.pid"
    with ratmemcached("--pid-file", str(pid_file)) as srv:
        assert wait_until(pid_file.exists)
        assert pid_file.read_text().strip() == str(srv.pid)
        assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed into place
    assert srv.returncode == 0
    assert not pid_file.exists()


@posix_only
def test_sigint_is_graceful_too() -> None:
    with ratmemcached() as srv:
        srv.send_signal(signal.SIGINT)
        assert srv.wait(10) == 0
    assert "SIGINT received" in srv.output()


@posix_only
def test_daemon_detaches_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    if sys.platform == "win32":  # as posix_only says; and it narrows os.getsid for mypy
        pytest.skip("POSIX only")
    port = free_port()
    pid_file = tmp_path / "d.pid"
    log_file = tmp_path / "d.log"
    cfg = tmp_path / "d.toml"
    cfg.write_text(f'[logging]\nfile = "{log_file.as_posix()}"\n')
    proc = run_cli("--daemon", "--pid-file", str(pid_file), "-p", str(port), "--config", str(cfg))
    # The launcher returns only once the daemon listens.
    assert proc.returncode == 0, proc.stderr
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)  # alive, though the launcher has exited
        assert os.getsid(pid) != os.getsid(0)  # its own session: no controlling terminal
        assert port_accepts(port)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            assert exchange(s, b"set d 0 0 1\r\nx\r\nget d\r\n", until=b"END\r\n").endswith(
                b"VALUE d 0 1\r\nx\r\nEND\r\n"
            )
    finally:
        os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not pid_file.exists())
    assert wait_until(lambda: not port_accepts(port))
    assert "listening on 127.0.0.1" in log_file.read_text()


@posix_only
@pytest.mark.parametrize("engine", ENGINES)
def test_daemon_pid_file_holds_the_serving_process(tmp_path: Path, engine: str) -> None:
    """-d -P: the pid file holds the daemon's pid (after the forks), the process that serves:
    its ``stats`` pid is the same, and SIGTERM to it stops the server and removes the file."""
    port = free_port()
    pid_file = tmp_path / "d.pid"
    proc = run_cli("-d", "-P", str(pid_file), "-p", str(port), "--engine", engine)
    assert proc.returncode == 0, proc.stderr
    pid = int(pid_file.read_text())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            stats = exchange(s, b"stats\r\n", until=b"END\r\n")
        assert f"STAT pid {pid}\r\n".encode() in stats
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not pid_file.exists())
    assert wait_until(lambda: not port_accepts(port))

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    assert wait_until(gone)


@posix_only
def test_daemon_reports_startup_errors_to_the_launcher(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli("--daemon", "--pid-file", str(tmp_path / "p.pid"), "-p", str(port))
    assert proc.returncode == 1
    assert "address already in use" in one_error_line(proc)
    assert not (tmp_path / "p.pid").exists()


def test_daemon_is_refused_on_windows_with_one_line() -> None:
    # Simulated here (sys.platform set after the imports); the real thing on Windows CI.
    code = (
        "import sys; from ratmemcache.cli import main; sys.platform = 'win32'; "
        "sys.argv = ['ratmemcached', '--daemon']; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=os.environ
    )
    assert proc.returncode == 2
    assert "--daemon is POSIX-only" in one_error_line(proc)


def test_logging_disabled_prints_nothing() -> None:
    with ratmemcached(config={"logging": {"enable_logging": False}}) as srv, srv.connect() as s:
        assert exchange(s, b"version\r\n").startswith(b"VERSION ")
    assert srv.returncode == 0
    assert srv.output() == ""


def test_async_logging_is_flushed_at_exit() -> None:
    cfg = {"logging": {"enable_async": True, "batch_interval_ms": 1000, "batch_size": 65536}}
    with ratmemcached(config=cfg) as srv, srv.connect() as s:
        assert exchange(s, b"version\r\n").startswith(b"VERSION ")
    assert srv.returncode == 0
    out = srv.output()
    assert "listening on" in out and "conn 2 opened" in out and "stopped" in out


def test_verbose_flag_enables_debug_cache_logs() -> None:
    cfg = {"logging": {"level": "error", "enable_cache_logs": True}}
    with ratmemcached("-vv", config=cfg) as srv, srv.connect() as s:
        assert exchange(s, b"set secretkey 0 0 6\r\nsecret\r\n") == b"STORED\r\n"
    out = srv.output()
    assert re.search(r"DEBUG ratmemcache\.cache: conn \d+: 29 bytes in, 8 bytes out", out)
    assert "secret" not in out  # sizes only: key and value contents are never logged


def test_start_failure_is_reported_by_the_helper() -> None:
    with pytest.raises(Exception, match="expected an integer of at least 1"):
        start_ratmemcached("-R", "0", ready_timeout=10)


# -- logging setup (what the CLI installs), in process ------------------------------------------


def test_async_logging_batches_and_drops_past_its_budget() -> None:
    import io
    import logging

    from ratmemcache import logsetup
    from ratmemcache.config import LoggingConfig

    out = io.StringIO()
    cfg = LoggingConfig(
        enable_async=True, buffer_size=1024, batch_size=1 << 20, batch_interval_ms=10_000
    )
    handle = logsetup.configure(cfg, stream=out)
    try:
        log = logging.getLogger("ratmemcache.test")
        for i in range(200):
            log.warning("line %d %s", i, "x" * 50)  # ~60 bytes each: only ~16 fit the budget
        assert out.getvalue() == ""  # batched: nothing written before the batch is due
    finally:
        handle.close()
    text = out.getvalue()
    assert "line 0 " in text
    assert handle.dropped > 100
    assert f"{handle.dropped} log records were dropped" in text
    assert "\033[" not in text  # no colors on a non-terminal
    assert logging.getLogger("ratmemcache").propagate  # the previous state is restored


def test_log_switches_follow_the_config() -> None:
    from ratmemcache.config import LoggingConfig
    from ratmemcache.logsetup import LogSwitches

    assert LogSwitches.from_config(LoggingConfig()) == LogSwitches(audit=True)
    off = LoggingConfig(enable_logging=False, enable_audit_logs=True, enable_cache_logs=True)
    assert LogSwitches.from_config(off) == LogSwitches()  # nothing on the hot path
    debug = LoggingConfig(level="debug", enable_cache_logs=True, enable_performance_logs=True)
    assert LogSwitches.from_config(debug) == LogSwitches(audit=True, perf=True, cache=True)
    quiet = LoggingConfig(level="error", enable_cache_logs=True)
    assert LogSwitches.from_config(quiet) == LogSwitches()
