"""Locust users that load a memcached server (ratmemcached) through pymemcache.

Each scenario in ``scenarios.py`` is one User class here; ``run.py`` starts a server, preloads
it and runs locust headless for one class at a time. By hand, against a server you started::

    locust -f loadtests/locustfile.py --headless -u 8 -r 8 -t 20s --host 127.0.0.1:11211 GetHeavy

Every request is reported to locust with ``events.request.fire`` (type ``get``, ``get_many`` or
``set``; name: the scenario), so locust's console, CSV and HTML reports show it. A get that
returns a wrong value is a failure. Two options are added to locust's command line:
``--max-requests N`` stops the run after N requests (a bound besides ``--run-time``), and
``--latency-out FILE`` writes exact latency percentiles (locust's own round to whole
milliseconds below 100 ms, too coarse for a cache) and hit counts to a JSON file at the end.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, ClassVar

import gevent
from locust import User, constant, events, task
from locust.env import Environment
from pymemcache.client.base import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenarios import SCENARIOS, Scenario, value_for

#: Response times in ms by request type, and hit/miss/error counts, for --latency-out.
_samples: dict[str, list[float]] = defaultdict(list)
_counts: Counter[str] = Counter()
#: When the first request started and the last one ended (time.perf_counter()).
_window = [0.0, 0.0]
_stopping = False


class WrongValue(Exception):
    """A get returned something other than the key's value or a miss."""


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    parser.add_argument(
        "--max-requests", type=int, default=0, help="Stop after this many requests (0: no limit)."
    )
    parser.add_argument(
        "--latency-out", default="", help="Write exact latency percentiles to this JSON file."
    )


def _percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


@events.quitting.add_listener
def _write_latency(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    path = getattr(opts, "latency_out", "") if opts is not None else ""
    if not path:
        return
    elapsed = max(_window[1] - _window[0], 1e-9)
    report: dict[str, Any] = {
        "seconds": round(elapsed, 3),
        "requests": sum(len(v) for v in _samples.values()) + _counts["errors"],
        "failures": _counts["errors"],
        "counts": dict(_counts),
        "ops": {},
    }
    everything: list[float] = []
    for op, ms in _samples.items():
        ms.sort()
        everything.extend(ms)
        report["ops"][op] = _summary(ms, elapsed)
    everything.sort()
    report["all"] = _summary(everything, elapsed)
    Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _summary(sorted_ms: list[float], elapsed: float) -> dict[str, float]:
    return {
        "requests": len(sorted_ms),
        "rps": round(len(sorted_ms) / elapsed, 1),
        "p50_ms": round(_percentile(sorted_ms, 0.50), 3),
        "p95_ms": round(_percentile(sorted_ms, 0.95), 3),
        "p99_ms": round(_percentile(sorted_ms, 0.99), 3),
        "max_ms": round(sorted_ms[-1], 3) if sorted_ms else 0.0,
    }


class MemcachedUser(User):
    """One connection to the server at ``--host`` (``host:port``), running one scenario."""

    abstract = True
    wait_time = constant(0)
    scenario: ClassVar[Scenario]

    def on_start(self) -> None:
        host, _, port = (self.host or "127.0.0.1:11211").rpartition(":")
        self.mc = Client(
            (host or "127.0.0.1", int(port)),
            connect_timeout=5,
            timeout=10,
            default_noreply=False,
            no_delay=True,
        )
        self.rng = random.Random()

    def on_stop(self) -> None:
        self.mc.close()

    def _report(
        self, op: str, started: float, length: int, exc: BaseException | None = None
    ) -> None:
        global _stopping
        now = time.perf_counter()
        ms = (now - started) * 1000.0
        if not _window[0]:
            _window[0] = started
        _window[1] = now
        self.environment.events.request.fire(
            request_type=op,
            name=self.scenario.name,
            response_time=ms,
            response_length=length,
            exception=exc,
            context={},
        )
        if exc is None:
            _samples[op].append(ms)
        else:
            _counts["errors"] += 1
            self.mc.close()  # reconnect on the next request
        limit = getattr(self.environment.parsed_options, "max_requests", 0)
        total = sum(len(v) for v in _samples.values()) + _counts["errors"]
        if limit and total >= limit and not _stopping:
            _stopping = True
            runner = self.environment.runner
            if runner is not None:
                gevent.spawn(runner.quit)

    def _check(self, i: int, got: bytes | None) -> int:
        if got is None:
            _counts["misses"] += 1
            return 0
        if got != value_for(self.scenario, i):
            raise WrongValue(f"{self.scenario.key(i)}: {len(got)} bytes, not the value set")
        _counts["hits"] += 1
        return len(got)

    @task
    def request(self) -> None:
        s = self.scenario
        rng = self.rng
        if rng.random() >= s.get_ratio:
            i = rng.randrange(s.keys)
            value = value_for(s, i)
            t = time.perf_counter()
            try:
                ok = self.mc.set(s.key(i), value)
                if not ok:
                    raise RuntimeError(f"set {s.key(i)} was not stored")
            except Exception as e:
                self._report("set", t, 0, e)
            else:
                self._report("set", t, len(value))
        elif s.multi_get_ratio and rng.random() < s.multi_get_ratio:
            ids = rng.sample(range(s.keys), s.multi_get)
            t = time.perf_counter()
            try:
                got = self.mc.get_many([s.key(i) for i in ids])
                length = sum(self._check(i, got.get(s.key(i))) for i in ids)
            except Exception as e:
                self._report("get_many", t, 0, e)
            else:
                self._report("get_many", t, length)
        else:
            i = rng.randrange(s.keys)
            t = time.perf_counter()
            try:
                length = self._check(i, self.mc.get(s.key(i)))
            except Exception as e:
                self._report("get", t, 0, e)
            else:
                self._report("get", t, length)


class GetHeavy(MemcachedUser):
    scenario = SCENARIOS["get_heavy"]


class SetHeavy(MemcachedUser):
    scenario = SCENARIOS["set_heavy"]


class LargeValues(MemcachedUser):
    scenario = SCENARIOS["large_values"]


class L2ColdRead(MemcachedUser):
    scenario = SCENARIOS["l2_cold"]
