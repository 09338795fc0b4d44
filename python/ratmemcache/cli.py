"""The ``ratmemcached`` command: memcached's familiar flags plus the original RatMemCache's.

With no arguments it serves on 127.0.0.1:11211 with the embedded defaults. Settings come from
defaults, then ``--config FILE``, then flags (CLI > file > defaults). Startup problems (a bad
config, a port in use) print ONE line on stderr and exit non-zero: 2 for a configuration error,
1 when the server cannot start. A forced shutdown (a second signal) exits 1; a graceful one
exits 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click

from ratmemcache import __version__
from ratmemcache.config import Config, load_config, parse_size, split_host_port
from ratmemcache.errors import ConfigError, ServerStartError

__all__ = ["cli", "main"]

PROG = "ratmemcached"
DAEMON_POSIX_ONLY = (
    "--daemon is POSIX-only (it forks); on Windows run ratmemcached in the foreground, "
    "e.g. as a service"
)

# memcached 1.6.18's -o options (memcached.c's subopts_tokens, checked against the binary) that
# tune its own slab allocator, hash table, LRU threads, logger, privileges or extstore: accepted
# with one warning each, so an existing memcached command line keeps working.
_MEMCACHED_ONLY_EXTENDED = frozenset(
    {
        "maxconns_fast",  # over -c a connection is always told and closed (maxconns_fast's way)
        "no_maxconns_fast",
        "hashpower",
        "tail_repair_time",
        "hash_algorithm",
        "lru_crawler",
        "no_lru_crawler",
        "lru_crawler_sleep",
        "lru_crawler_tocrawl",
        "lru_maintainer",
        "no_lru_maintainer",
        "hot_lru_pct",
        "warm_lru_pct",
        "hot_max_factor",
        "warm_max_factor",
        "temporary_ttl",
        "watcher_logbuf_size",
        "worker_logbuf_size",
        "slab_sizes",
        "slab_chunk_max",
        "track_sizes",
        "no_inline_ascii_resp",
        "inline_ascii_resp",
        "modern",
        "no_modern",
        "no_chunked_items",
        "slab_reassign",
        "no_slab_reassign",
        "slab_automove",
        "no_slab_automove",
        "slab_automove_ratio",
        "slab_automove_window",
        "slab_automove_freeratio",
        "read_buf_mem_limit",
        "resp_obj_mem_limit",
        "no_hashexpand",
        "drop_privileges",
        "no_drop_privileges",
        "sock_cookie_id",
        # TLS tuning that changes no guarantee
        "ssl_wbuf_size",
        "ssl_session_cache",
        "ssl_kernel_tls",
        # extstore
        "ext_path",
        "ext_page_size",
        "ext_wbuf_size",
        "ext_threads",
        "ext_io_depth",
        "ext_item_size",
        "ext_item_age",
        "ext_low_ttl",
        "ext_drop_unread",
        "ext_recache_rate",
        "ext_compact_under",
        "ext_drop_under",
        "ext_max_frag",
        "ext_max_sleep",
    }
)

#: The -o options that set something here.
_EXTENDED_SETTINGS = ("idle_timeout", "ssl_chain_cert", "ssl_key")


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"{PROG}: error: {message}", err=True)
    sys.exit(code)


def _extended_overrides(items: tuple[str, ...], log: logging.Logger) -> dict[str, Any]:
    """memcached's ``-o key=value,key2`` list.

    ``idle_timeout``, ``ssl_chain_cert`` and ``ssl_key`` set their ``[server]`` keys; TLS options
    whose guarantee can't be given here (client certificates, a cipher list, a TLS 1.3 minimum)
    stop the server; memcached's tuning options get one warning each; anything else stops the
    server with one line, as memcached does (``Illegal suboption``).
    """
    out: dict[str, Any] = {}
    warned: set[str] = set()
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            key, _, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if key in ("ssl_chain_cert", "ssl_key"):
                if not value:
                    _fail(f"-o {key}: expected a file path")
                out[f"server.{key}|-o {key}"] = value
            elif key == "idle_timeout":
                if not value.isdigit():
                    _fail(f"-o idle_timeout: expected a whole number of seconds, got {value!r}")
                out["server.idle_timeout|-o idle_timeout"] = int(value)
            elif key in _TLS_REFUSED:
                refusal = _TLS_REFUSED[key](value)
                if refusal:
                    _fail(f"-o {part}: {refusal}")
            elif key in _MEMCACHED_ONLY_EXTENDED:
                if key not in warned:
                    warned.add(key)
                    log.warning(
                        "-o %s: a memcached tuning option with no effect here; ignored", key
                    )
            else:
                _fail(
                    f"-o {part}: illegal suboption (memcached's; supported here: "
                    f"{', '.join(_EXTENDED_SETTINGS)}, and its tuning options are ignored)"
                )
    return out


def _tls_keyformat(value: str) -> str | None:
    return None if value.upper() in ("PEM", "0", "") else "only PEM keys are supported"


def _tls_verify_mode(value: str) -> str | None:
    if value in ("0", ""):
        return None
    return "client certificates are not supported (only ssl_verify_mode=0)"


def _tls_min_version(value: str) -> str | None:
    # 0-2 (TLS 1.0 to 1.2): TLS 1.2 is the minimum here anyway, at least as strict.
    if value in ("0", "1", "2", ""):
        return None
    return "a TLS 1.3 minimum is not supported (TLS 1.2 and up are served)"


def _tls_unsupported(what: str) -> Any:
    return lambda _value: f"{what} is not supported"


#: memcached's TLS options that promise something this server does not do: refused (with the
#: reason) unless their value asks for nothing more than what is served.
_TLS_REFUSED: dict[str, Any] = {
    "ssl_keyformat": _tls_keyformat,
    "ssl_verify_mode": _tls_verify_mode,
    "ssl_min_version": _tls_min_version,
    "ssl_ca_cert": _tls_unsupported("verifying client certificates (ssl_ca_cert)"),
    "ssl_ciphers": _tls_unsupported("choosing the cipher list"),
}


@contextlib.contextmanager
def _held_records(name: str) -> Iterator[list[logging.LogRecord]]:
    """Hold back the config loader's warnings until logging is set up, then replay them."""
    held: list[logging.LogRecord] = []

    class Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            held.append(record)

    logger = logging.getLogger(name)
    handler = Hold(logging.DEBUG)
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield held
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


def _replay(records: list[logging.LogRecord]) -> None:
    for r in records:
        logging.getLogger(r.name).handle(r)


def write_pid_file(path: Path, pid: int | None = None) -> None:
    """Write the pid atomically: a reader never sees a partial file."""
    pid = os.getpid() if pid is None else pid
    tmp = path.with_name(f".{path.name}.{pid}.tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{pid}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_pid_file(path: Path) -> None:
    """Remove the pid file if it is still ours (a newer server may have replaced it)."""
    try:
        if path.read_text(encoding="ascii").strip() == str(os.getpid()):
            path.unlink()
    except (OSError, ValueError):
        pass


def _daemonize(ready_timeout: float = 60.0) -> int:
    """Detach as POSIX daemons do (fork, setsid, fork). Returns, in the daemon, the fd on which
    to report readiness ("OK") or the startup error line; the original process waits for that
    report and exits 0 or 1, so ``--daemon`` fails loudly when the server can't start."""
    if sys.platform == "win32":  # no fork: the CLI refuses --daemon there before this
        _fail(DAEMON_POSIX_ONLY)
    r, w = os.pipe()
    pid = os.fork()
    if pid > 0:  # the original process
        os.close(w)
        os.waitpid(pid, 0)
        data = b""
        while True:
            ready, _, _ = select.select([r], [], [], ready_timeout)
            if not ready:
                _fail("the daemon did not report readiness in time", 1)
            chunk = os.read(r, 4096)
            if not chunk:
                break
            data += chunk
        os.close(r)
        text = data.decode("utf-8", "replace").strip()
        if text == "OK":
            sys.exit(0)
        _fail(text or "the daemon exited during startup", 1)
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)
    return w


def _absolute(config: Config) -> None:
    """A daemon runs in /: make its paths absolute first."""
    s, lg = config.server, config.logging
    for obj, attr in ((s, "unix_socket"), (s, "pid_file"), (lg, "file")):
        value = getattr(obj, attr)
        if value:
            setattr(obj, attr, str(Path(value).expanduser().absolute()))


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Settings: CLI flags override --config, which overrides the defaults. "
    "See docs/configuration.md.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML config file (RatMemCache's format; see examples/ratmemcached.toml).",
)
@click.option("--bind", help="Address to listen on: host or host:port (default 127.0.0.1:11211).")
@click.option("-l", "--listen", help="Interface to listen on (memcached -l).")
@click.option("-p", "--port", type=int, help="TCP port (default 11211; 0 picks a free one).")
@click.option(
    "-s",
    "--unix-socket",
    help="Listen on this unix socket only: no TCP, no UDP, as memcached -s (POSIX).",
)
@click.option(
    "-a",
    "--unix-mask",
    help="Permissions of the unix socket, in octal (default 0700), as memcached -a.",
)
@click.option(
    "-m", "--memory-limit", help="Item memory in megabytes, like memcached (or a size: 1GB)."
)
@click.option("-c", "--conn-limit", type=int, help="Max simultaneous connections (default 1024).")
@click.option("-t", "--threads", type=int, help="Worker threads (default 4).")
@click.option(
    "--engine",
    type=click.Choice(["anyio", "native"]),
    help='I/O engine: "native" (Rust, multi-threaded; the default) or "anyio" (Python).',
)
@click.option("-I", "--max-item-size", help="Largest item, e.g. 1m (default), 2m, 128m.")
@click.option(
    "-U",
    "--udp-port",
    type=int,
    help="Serve memcached's UDP protocol on this port (0: off, default).",
)
@click.option(
    "-B",
    "--protocol",
    "binding_protocol",
    type=click.Choice(["auto", "ascii", "binary"]),
    help="Protocols clients may speak, as memcached -B (default auto).",
)
@click.option(
    "-R",
    "--max-reqs-per-event",
    type=int,
    help="Pipelined requests answered per read before yielding (default 20), as memcached -R.",
)
@click.option("-b", "--listen-backlog", type=int, help="Listen backlog (default 1024).")
@click.option("-F", "--disable-flush-all", is_flag=True, help="Refuse flush_all.")
@click.option(
    "-M",
    "--disable-evictions",
    is_flag=True,
    help='Answer "out of memory" when full instead of evicting (memcached -M).',
)
@click.option("-C", "--disable-cas", is_flag=True, help="No CAS uniques (memcached -C).")
@click.option(
    "-D", "--prefix-delimiter", help='The key prefix delimiter of "stats detail" (default ":").'
)
@click.option("-A", "--enable-shutdown", is_flag=True, help='Accept the "shutdown" command.')
@click.option("-Z", "--enable-ssl", is_flag=True, help="Serve TLS (with -o ssl_chain_cert=...).")
@click.option("-Y", "--auth-file", help='memcached\'s ASCII auth: a file of "user:password" lines.')
@click.option(
    "-S", "--enable-sasl", is_flag=True, help="SASL PLAIN for binary clients (users: --sasl-pwdb)."
)
@click.option(
    "--sasl-pwdb",
    help='The SASL users: a file of "user:password" lines (default: $MEMCACHED_SASL_PWDB).',
)
@click.option(
    "-o",
    "--extended",
    multiple=True,
    help="memcached extended options: idle_timeout=SECONDS, ssl_chain_cert=FILE, ssl_key=FILE; "
    "memcached's tuning options are accepted with a warning, unknown ones refused.",
)
@click.option("-v", "--verbose", count=True, help="-v: info logging; -vv: debug logging.")
@click.option("-d", "--daemon", is_flag=True, help="Detach into the background (POSIX only).")
@click.option(
    "-P",
    "--pid-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the pid here (atomically); removed on exit.",
)
@click.option(
    "--admin-port",
    type=int,
    help="Serve /metrics, /api/stats and a status page over HTTP on this port (0 = off).",
)
@click.option("--admin-bind", help="Address of the HTTP admin listener (default 127.0.0.1).")
@click.option(
    "--print-config", is_flag=True, help="Print the effective configuration as TOML and exit."
)
@click.version_option(
    __version__, "-V", "--version", prog_name=PROG, message="%(prog)s %(version)s"
)
def cli(
    config_path: Path | None,
    bind: str | None,
    listen: str | None,
    port: int | None,
    unix_socket: str | None,
    unix_mask: str | None,
    memory_limit: str | None,
    conn_limit: int | None,
    threads: int | None,
    engine: str | None,
    max_item_size: str | None,
    udp_port: int | None,
    binding_protocol: str | None,
    max_reqs_per_event: int | None,
    listen_backlog: int | None,
    disable_flush_all: bool,
    disable_evictions: bool,
    disable_cas: bool,
    prefix_delimiter: str | None,
    enable_shutdown: bool,
    enable_ssl: bool,
    auth_file: str | None,
    enable_sasl: bool,
    sasl_pwdb: str | None,
    extended: tuple[str, ...],
    verbose: int,
    daemon: bool,
    pid_file: Path | None,
    admin_port: int | None,
    admin_bind: str | None,
    print_config: bool,
) -> None:
    """ratmemcached: a memcached-compatible cache server with a Rust core."""
    from ratmemcache import logsetup

    if daemon and sys.platform == "win32":
        _fail(DAEMON_POSIX_ONLY)

    overrides: dict[str, Any] = {}
    with _held_records("ratmemcache.config") as held:
        try:
            if bind is not None:
                host, bind_port = split_host_port(bind, where="--bind")
                if listen is not None and listen != host:
                    _fail(f"--bind {bind} and -l {listen} disagree; give one of them")
                overrides["server.bind|--bind"] = host
                if bind_port is not None:
                    if port is not None and port != bind_port:
                        _fail(f"--bind {bind} and -p {port} give different ports; give one")
                    overrides["server.port|--bind"] = bind_port
            if listen is not None:
                overrides["server.bind|-l/--listen"] = listen
            if port is not None:
                overrides["server.port|-p/--port"] = port
            if unix_socket is not None:
                overrides["server.unix_socket|-s/--unix-socket"] = unix_socket
            if unix_mask is not None:
                overrides["server.unix_socket_mask|-a/--unix-mask"] = unix_mask
            if udp_port is not None:
                overrides["server.udp_port|-U/--udp-port"] = udp_port
            if binding_protocol is not None:
                overrides["server.binding_protocol|-B/--protocol"] = binding_protocol
            if max_reqs_per_event is not None:
                overrides["server.reqs_per_event|-R/--max-reqs-per-event"] = max_reqs_per_event
            if memory_limit is not None:
                text = memory_limit.strip()
                mb = int(text) * (1 << 20) if text.isdigit() else _size_flag(text, "-m")
                overrides["l1.max_memory|-m/--memory-limit"] = mb
            if conn_limit is not None:
                overrides["server.max_connections|-c/--conn-limit"] = conn_limit
            if threads is not None:
                overrides["performance.worker_threads|-t/--threads"] = threads
            if engine is not None:
                overrides["server.engine|--engine"] = engine
            if max_item_size is not None:
                overrides["server.max_item_size|-I/--max-item-size"] = _size_flag(
                    max_item_size, "-I"
                )
            if listen_backlog is not None:
                overrides["server.backlog|-b/--listen-backlog"] = listen_backlog
            if disable_flush_all:
                overrides["server.allow_flush|-F"] = False
            if disable_evictions:
                overrides["l1.evictions|-M"] = False
            if disable_cas:
                overrides["l1.cas|-C"] = False
            if prefix_delimiter is not None:
                overrides["server.detail_delimiter|-D"] = prefix_delimiter
            if enable_shutdown:
                overrides["server.allow_shutdown|-A"] = True
            if enable_ssl:
                overrides["server.tls|-Z"] = True
            if auth_file is not None:
                overrides["server.auth_file|-Y/--auth-file"] = auth_file
            if enable_sasl:
                overrides["server.sasl|-S/--enable-sasl"] = True
            if sasl_pwdb is not None:
                overrides["server.sasl_pwdb|--sasl-pwdb"] = sasl_pwdb
            if pid_file is not None:
                overrides["server.pid_file|--pid-file"] = str(pid_file)
            if admin_port is not None:
                overrides["admin.http_port|--admin-port"] = admin_port
            if admin_bind is not None:
                overrides["admin.http_bind|--admin-bind"] = admin_bind
            overrides.update(_extended_overrides(extended, logging.getLogger("ratmemcache.config")))
            if verbose:
                overrides["logging.enable_logging|-v"] = True
            config = load_config(config_path, overrides)
        except ConfigError as e:
            _fail(str(e))
    _apply_verbosity(config, verbose)

    # Foreground logging first (synchronous: a queue thread would not survive --daemon's fork).
    try:
        logsetup.configure(
            dataclasses.replace(config.logging, enable_async=False, file=None)
            if daemon
            else config.logging,
            verbosity=verbose,
        )
    except ConfigError as e:
        _fail(str(e))
    _replay(held)

    if print_config:
        click.echo(config.to_toml(), nl=False)
        return
    try:
        config.check_available()
    except ConfigError as e:
        _fail(str(e))

    sys.exit(_serve(config, daemon=daemon, verbosity=verbose))


def _apply_verbosity(config: Config, verbose: int) -> None:
    """memcached's -v/-vv: at least info, at least debug (never quieter than the file says)."""
    from ratmemcache.logsetup import level_number

    if not verbose:
        return
    wanted = "debug" if verbose >= 2 else "info"
    if level_number(wanted) < level_number(config.logging.level):
        config.logging.level = wanted


def _size_flag(text: str, flag: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise ConfigError(f"{flag} {text}: {e}") from None


def _serve(config: Config, *, daemon: bool, verbosity: int) -> int:
    from ratmemcache import logsetup
    from ratmemcache.server import run

    ready_fd: int | None = None
    if daemon:
        _absolute(config)
    pid_path = Path(config.server.pid_file) if config.server.pid_file else None

    def on_started(_server: object) -> None:
        nonlocal ready_fd
        if pid_path is not None:
            try:
                write_pid_file(pid_path)
            except OSError as e:
                raise ServerStartError(
                    f"cannot write the pid file {pid_path}: {e.strerror or e}"
                ) from None
        if ready_fd is not None:
            os.write(ready_fd, b"OK\n")
            os.close(ready_fd)
            ready_fd = None

    try:
        if daemon:
            ready_fd = _daemonize()
            logsetup.configure(config.logging, verbosity=verbosity)
        if config.server.engine == "native":
            from ratmemcache.native import run_native

            return run_native(config, on_started=on_started)
        return run(config, on_started=on_started)
    except (ConfigError, ServerStartError) as e:
        if ready_fd is not None:
            os.write(ready_fd, str(e).encode())
            os.close(ready_fd)
            ready_fd = None
            return 1
        _fail(str(e), 2 if isinstance(e, ConfigError) else 1)
    except KeyboardInterrupt:  # before the loop installed its handlers
        return 130
    finally:
        if pid_path is not None:
            remove_pid_file(pid_path)
        logsetup.shutdown()


def main() -> None:
    """Console-script entry point: click's usage errors become one line too, like ours."""
    try:
        rv = cli.main(prog_name=PROG, standalone_mode=False)
    except click.UsageError as e:
        _fail(f"{e.format_message()} (see {PROG} --help)", 2)
    except click.ClickException as e:
        _fail(e.format_message(), e.exit_code)
    except click.Abort:
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
