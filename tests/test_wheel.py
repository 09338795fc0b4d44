"""The first experience of a user: ``pip install`` the wheel into a fresh virtualenv, then run it.

Builds a wheel of this checkout with ``maturin build`` (the dev profile and the features of
``make develop``, so it reuses the repo's ``target/`` instead of compiling from scratch), checks
its metadata, installs it into a new virtualenv (the dependencies come from the package index, as
for a user) and checks the ``ratmemcached`` command, the library and the server from there.
The release wheels are built and smoke-tested the same way by .github/workflows/wheels.yml.
"""

from __future__ import annotations

import email.parser
import email.policy
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from servers import HOST, exchange, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
WINDOWS = sys.platform == "win32"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not (ROOT / "Cargo.toml").exists(), reason="needs the source tree (Cargo.toml)"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("maturin") is None, reason="needs maturin (make venv installs it)"
    ),
]


def _project() -> dict[str, object]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        project: dict[str, object] = tomllib.load(f)["project"]
    return project


def _cargo_version() -> str:
    with open(ROOT / "Cargo.toml", "rb") as f:
        version: str = tomllib.load(f)["package"]["version"]
    return version


def _clean_env() -> dict[str, str]:
    """The environment of a user's shell: none of this checkout's venv or paths."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env["PYTHONNOUSERSITE"] = "1"
    env["NO_COLOR"] = "1"
    return env


@dataclass
class Built:
    wheel: Path
    seconds: float


@dataclass
class Installed:
    bin: Path
    python: Path
    seconds: float

    def run(self, *argv: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_clean_env(),
            cwd=self.bin.parent.parent,  # not the checkout: nothing importable from there
        )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("wheelhouse")
    argv = [
        sys.executable,
        "-m",
        "maturin",
        "build",
        "--profile",
        "dev",
        "--features",
        "extension-module",
        "--interpreter",
        sys.executable,
        "--out",
        str(out),
    ]
    start = time.monotonic()
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=540)
    seconds = time.monotonic() - start
    assert r.returncode == 0, f"{' '.join(argv)} failed:\n{r.stdout}\n{r.stderr}"
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, (wheels, r.stderr)
    print(f"\nmaturin build (dev profile): {seconds:.1f}s -> {wheels[0].name}")
    return Built(wheels[0], seconds)


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    venv = tmp_path_factory.mktemp("user") / "venv"
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bin_dir = venv / ("Scripts" if WINDOWS else "bin")
    python = bin_dir / ("python.exe" if WINDOWS else "python")
    r = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", str(built.wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_clean_env(),
    )
    assert r.returncode == 0, f"pip install failed:\n{r.stdout}\n{r.stderr}"
    seconds = time.monotonic() - start
    print(f"\nfresh venv + pip install: {seconds:.1f}s")
    return Installed(bin_dir, python, seconds)


def _metadata(wheel: Path) -> tuple[email.message.Message, str, str, list[str]]:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        dist_info = {n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")}
        assert len(dist_info) == 1, dist_info
        (d,) = dist_info
        meta = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            z.read(f"{d}/METADATA")
        )
        wheel_file = z.read(f"{d}/WHEEL").decode()
        entry_points = z.read(f"{d}/entry_points.txt").decode()
    return meta, wheel_file, entry_points, names


def test_wheel_metadata(built: Built) -> None:
    project = _project()
    version = _cargo_version()
    name = built.wheel.name
    # name-version-cp311-abi3-platform.whl: one wheel for every CPython from 3.11 on.
    assert name.startswith(f"ratmemcache-{version}-cp311-abi3-"), name
    meta, wheel_file, entry_points, names = _metadata(built.wheel)
    assert meta["Name"] == "ratmemcache"
    assert meta["Version"] == version
    assert meta["Requires-Python"] == project["requires-python"] == ">=3.11"
    licence = meta.get("License-Expression") or meta.get("License")
    assert licence == "MIT", (meta.get("License-Expression"), meta.get("License"))
    assert meta["Summary"] == project["description"]
    # Names compare as PEP 503 normalizes them (prometheus_client == prometheus-client).
    requires = [_normalized(r) for r in meta.get_all("Requires-Dist") or []]
    for dep in project["dependencies"]:  # type: ignore[attr-defined]
        assert _normalized(dep) in requires, (dep, requires)
    # The README is the project page on PyPI.
    assert meta.get("Description-Content-Type", "").startswith("text/markdown")
    assert "## Quick start" in meta.get_payload()
    assert re.search(r"^Tag: cp311-abi3-\S+$", wheel_file, re.M), wheel_file
    assert re.search(r"^Root-Is-Purelib: false$", wheel_file, re.M), wheel_file
    assert re.search(r"^ratmemcached\s*=\s*ratmemcache\.cli:main$", entry_points, re.M)

    core = [n for n in names if n.startswith("ratmemcache/_core")]
    assert any(n.endswith((".abi3.so", ".pyd")) for n in core), core
    for f in ("__init__.py", "cli.py", "native.py", "py.typed", "_core.pyi"):
        assert f"ratmemcache/{f}" in names, f
    stray = [n for n in names if n.startswith(("tests/", "rust/", "bench/", "target/"))]
    assert not stray, stray


def test_version_command(installed: Installed) -> None:
    r = installed.run(installed.bin / "ratmemcached", "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"ratmemcached {_cargo_version()}"


def test_library_from_the_wheel(installed: Installed) -> None:
    code = (
        "import ratmemcache; c = ratmemcache.Cache(); c.set('k', b'v'); print(c.get('k')); "
        "print(ratmemcache.__file__)"
    )
    r = installed.run(installed.python, "-c", code)
    assert r.returncode == 0, r.stderr
    value, where = r.stdout.splitlines()
    assert value == "b'v'"
    # The installed copy, not this checkout's editable install.
    assert Path(where).resolve().is_relative_to(installed.bin.parent.resolve()), where


@pytest.fixture
def server(installed: Installed) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    proc = subprocess.Popen(
        [str(installed.bin / "ratmemcached"), "-l", HOST, "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_clean_env(),
        cwd=installed.bin.parent.parent,
        # Windows: its own process group, so CTRL_BREAK_EVENT reaches it alone.
        creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
    )
    try:
        wait_for_port(HOST, port, proc, timeout=30)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_installed_server_answers(server: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = server
    with socket.create_connection((HOST, port), timeout=10) as s:
        # The memcached version it is compatible with (rust/src/engine.rs MEMCACHED_VERSION),
        # which clients check, not the package's.
        reply = exchange(s, b"version\r\n")
        assert re.fullmatch(rb"VERSION 1\.6\.\d+\r\n", reply), reply
        reply = exchange(s, b"set k 0 0 1\r\nv\r\nget k\r\n", until=b"END\r\n")
        assert reply == b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
    # A graceful stop: SIGTERM on POSIX, Ctrl+Break on Windows; either way it exits 0.
    if sys.platform == "win32":  # spelled out (not WINDOWS): mypy checks each platform by it
        proc.send_signal(signal.CTRL_BREAK_EVENT)
    else:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode(errors="replace")


def _normalized(requirement: str) -> str:
    """A requirement with its project name normalized (PEP 503: lower case, runs of -_. to -)."""
    m = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert m, requirement
    return re.sub(r"[-_.]+", "-", m.group(0)).lower() + requirement[m.end() :]
