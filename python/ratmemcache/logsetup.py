"""Logging for ``ratmemcached``, as the ``[logging]`` table describes it.

Loggers (all under ``ratmemcache``, so an embedding app can route them):

* ``ratmemcache.server`` and friends: startup, listening addresses, errors.
* ``ratmemcache.audit``: connections opened, refused and closed; signals; shutdown.
* ``ratmemcache.perf``: slow protocol calls and periodic throughput.
* ``ratmemcache.cache``: per-exchange sizes, at debug level (never key or value contents; those
  appear only at debug level and only in the Rust core's own diagnostics).

Why :class:`LogSwitches` exists: the request path must cost nothing when a log is off. The server
reads the switches once per connection and tests a plain ``bool`` before doing any logging work, so
with ``enable_logging = false`` (or a switch off) no logging function is ever called per request.

Async mode (``enable_async = true``) uses the stdlib's ``QueueHandler``/``QueueListener``: the
event loop only enqueues a record; a background thread formats and writes it. The stdlib has no
batching or byte budget, so the three knobs are honoured like this:

* ``buffer_size``: a byte budget on the queue. Each queued record counts the length of its message;
  a record that would exceed the budget is dropped (and counted; the count is logged at exit)
  instead of blocking the server or growing memory without bound.
* ``batch_size``: the writer thread accumulates formatted lines and writes them to the stream in one
  call once this many bytes are waiting...
* ``batch_interval_ms``: ...or once the oldest waiting line is this old (the listener wakes up at
  this interval even when no record arrives), so a quiet server still writes promptly.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

from ratmemcache.config import LoggingConfig
from ratmemcache.errors import ConfigError

__all__ = [
    "AUDIT_LOGGER",
    "CACHE_LOGGER",
    "PERF_LOGGER",
    "ROOT_LOGGER",
    "LogSwitches",
    "LoggingHandle",
    "configure",
    "level_number",
    "shutdown",
]

ROOT_LOGGER = "ratmemcache"
AUDIT_LOGGER = "ratmemcache.audit"
PERF_LOGGER = "ratmemcache.perf"
CACHE_LOGGER = "ratmemcache.cache"

#: The original's "trace" level, below DEBUG.
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "off": logging.CRITICAL + 10,
}


def level_number(name: str) -> int:
    """The ``logging`` level for a ``[logging] level`` value (already canonical)."""
    return _LEVELS[name]


@dataclass(frozen=True)
class LogSwitches:
    """Which optional logs are on. Tested as plain bools on the request path."""

    audit: bool = False
    perf: bool = False
    cache: bool = False

    @classmethod
    def from_config(cls, cfg: LoggingConfig) -> LogSwitches:
        if not cfg.enable_logging or cfg.level == "off":
            return cls()
        level = level_number(cfg.level)
        return cls(
            audit=cfg.enable_audit_logs and level <= logging.INFO,
            perf=cfg.enable_performance_logs and level <= logging.INFO,
            # Cache logs are debug lines: with the level above debug they would be built and
            # thrown away, so the switch is off.
            cache=cfg.enable_cache_logs and level <= logging.DEBUG,
        )


class ColorFormatter(logging.Formatter):
    """Colors the level name. Used only when the stream is a terminal."""

    COLORS: ClassVar[dict[int, str]] = {
        TRACE: "\033[2m",
        logging.DEBUG: "\033[36m",
        logging.INFO: "\033[32m",
        logging.WARNING: "\033[33m",
        logging.ERROR: "\033[31m",
        logging.CRITICAL: "\033[1;31m",
    }
    RESET = "\033[0m"

    def formatMessage(self, record: logging.LogRecord) -> str:
        color = self.COLORS.get(record.levelno)
        if color is None:
            return super().formatMessage(record)
        saved = record.levelname
        record.levelname = f"{color}{saved}{self.RESET}"
        try:
            return super().formatMessage(record)
        finally:
            record.levelname = saved


class BatchingStreamHandler(logging.Handler):
    """Writes formatted lines in batches: ``batch_size`` bytes, or ``interval`` seconds, whichever
    comes first. Runs only in the listener thread, so the lock is uncontended."""

    def __init__(self, stream: IO[str], batch_size: int, interval: float) -> None:
        super().__init__()
        self.stream = stream
        self.batch_size = batch_size
        self.interval = interval
        self._lines: list[str] = []
        self._bytes = 0
        self._first = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        if not self._lines:
            self._first = time.monotonic()
        self._lines.append(line)
        self._bytes += len(line)
        if self._bytes >= self.batch_size or time.monotonic() - self._first >= self.interval:
            self.flush()

    def flush_due(self) -> None:
        if self._lines and time.monotonic() - self._first >= self.interval:
            self.flush()

    def flush(self) -> None:
        with self.lock or contextlib.nullcontext():
            if not self._lines:
                return
            data, self._lines, self._bytes = "".join(self._lines), [], 0
            try:
                self.stream.write(data)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # the stream is gone (closed stderr, daemon): nothing useful to do


class BudgetQueueHandler(logging.handlers.QueueHandler):
    """A QueueHandler that never blocks and never queues more than ``budget`` bytes."""

    def __init__(self, q: queue.Queue[Any], budget: int) -> None:
        super().__init__(q)
        self.budget = budget
        self.pending = 0
        self.dropped = 0
        self._count_lock = threading.Lock()

    def enqueue(self, record: logging.LogRecord) -> None:
        size = len(record.msg) if isinstance(record.msg, str) else 64
        with self._count_lock:
            if self.pending + size > self.budget:
                self.dropped += 1
                return
            self.pending += size
        record.rmc_size = size
        self.queue.put_nowait(record)

    def settle(self, record: logging.LogRecord) -> None:
        with self._count_lock:
            self.pending -= getattr(record, "rmc_size", 0)


class BatchingQueueListener(logging.handlers.QueueListener):
    """Wakes up every ``interval`` even without records, so batched lines are written on time."""

    def __init__(
        self,
        q: queue.Queue[Any],
        writer: BatchingStreamHandler,
        source: BudgetQueueHandler,
        interval: float,
    ) -> None:
        super().__init__(q, writer, respect_handler_level=False)
        self.writer = writer
        self.source = source
        self.interval = interval

    def dequeue(self, block: bool) -> Any:
        q: queue.Queue[Any] = self.queue  # type: ignore[assignment]
        while True:
            try:
                record = q.get(timeout=self.interval) if self.interval > 0 else q.get()
            except queue.Empty:
                self.writer.flush_due()
                continue
            if isinstance(record, logging.LogRecord):
                self.source.settle(record)
            return record

    def stop(self) -> None:
        super().stop()
        self.writer.flush()


@dataclass
class LoggingHandle:
    """What :func:`configure` installed; ``close()`` flushes and removes it."""

    switches: LogSwitches
    handlers: list[logging.Handler] = field(default_factory=list)
    listener: BatchingQueueListener | None = None
    queue_handler: BudgetQueueHandler | None = None
    stream: IO[str] | None = None
    owns_stream: bool = False
    #: The logger state before configure(), restored by close() (tests configure repeatedly).
    saved: dict[str, tuple[int, bool, bool]] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return self.queue_handler.dropped if self.queue_handler else 0

    def close(self) -> None:
        root = logging.getLogger(ROOT_LOGGER)
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
            if self.dropped:
                # Written synchronously: the async path is gone.
                self._write_direct(
                    f"ratmemcached: {self.dropped} log records were dropped "
                    "(async log buffer full; raise [logging] buffer_size)\n"
                )
        for h in self.handlers:
            root.removeHandler(h)
            h.flush()
            if h is not self.queue_handler:
                with contextlib.suppress(Exception):
                    h.close()
        self.handlers.clear()
        for name, (level, propagate, disabled) in self.saved.items():
            lg = logging.getLogger(name)
            lg.setLevel(level)
            lg.propagate = propagate
            lg.disabled = disabled
        self.saved.clear()
        if self.owns_stream and self.stream is not None:
            with contextlib.suppress(OSError):
                self.stream.close()
            self.stream = None

    def _write_direct(self, text: str) -> None:
        if self.stream is not None:
            with contextlib.suppress(OSError, ValueError):
                self.stream.write(text)
                self.stream.flush()


_current: LoggingHandle | None = None


def configure(
    cfg: LoggingConfig, *, stream: IO[str] | None = None, verbosity: int = 0
) -> LoggingHandle:
    """Install the handlers that ``cfg`` asks for on the ``ratmemcache`` logger.

    Only the CLI calls this: an app that embeds the server keeps its own logging setup. Calling it
    again replaces the previous setup. ``verbosity`` is memcached's ``-v`` count: 1 raises the level
    to at least info, 2 or more to debug.
    """
    global _current
    if _current is not None:
        _current.close()
    saved = {
        name: (lg.level, lg.propagate, lg.disabled)
        for name in (ROOT_LOGGER, AUDIT_LOGGER, PERF_LOGGER, CACHE_LOGGER)
        for lg in [logging.getLogger(name)]
    }
    root = logging.getLogger(ROOT_LOGGER)
    root.propagate = False
    if not cfg.enable_logging or cfg.level == "off":
        root.setLevel(logging.CRITICAL + 10)
        null = logging.NullHandler()
        root.addHandler(null)
        _current = LoggingHandle(LogSwitches(), handlers=[null], saved=saved)
        return _current

    level = level_number(cfg.level)
    if verbosity >= 2:
        level = min(level, logging.DEBUG)
    elif verbosity == 1:
        level = min(level, logging.INFO)
    root.setLevel(level)

    owns = False
    if cfg.file:
        try:
            out: IO[str] = open(cfg.file, "a", encoding="utf-8")  # noqa: SIM115 (the handle closes it)
        except OSError as e:
            raise ConfigError(
                f"[logging] file: cannot open {cfg.file}: {e.strerror or e}"
            ) from None
        owns = True
    else:
        out = stream if stream is not None else sys.stderr

    fmt = "%(levelname)s %(name)s: %(message)s"
    if cfg.show_timestamp:
        fmt = "%(asctime)s.%(msecs)03d " + fmt
    use_color = cfg.enable_colors and not owns and _isatty(out) and "NO_COLOR" not in os.environ
    formatter: logging.Formatter = (ColorFormatter if use_color else logging.Formatter)(
        fmt, datefmt="%Y-%m-%d %H:%M:%S"
    )

    handle = LoggingHandle(LogSwitches.from_config(cfg), stream=out, owns_stream=owns, saved=saved)
    if cfg.enable_async:
        q: queue.Queue[Any] = queue.Queue()
        writer = BatchingStreamHandler(out, cfg.batch_size, cfg.batch_interval_ms / 1000)
        writer.setFormatter(formatter)
        qh = BudgetQueueHandler(q, cfg.buffer_size)
        listener = BatchingQueueListener(q, writer, qh, cfg.batch_interval_ms / 1000)
        listener.start()
        root.addHandler(qh)
        handle.handlers.append(qh)
        handle.listener = listener
        handle.queue_handler = qh
    else:
        h = logging.StreamHandler(out)
        h.setFormatter(formatter)
        root.addHandler(h)
        handle.handlers.append(h)

    for name, on in (
        (AUDIT_LOGGER, handle.switches.audit),
        (PERF_LOGGER, handle.switches.perf),
        (CACHE_LOGGER, handle.switches.cache),
    ):
        logging.getLogger(name).disabled = not on
    _current = handle
    return handle


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def shutdown() -> None:
    """Flush and remove what :func:`configure` installed (the async writer thread included)."""
    global _current
    if _current is not None:
        _current.close()
        _current = None
