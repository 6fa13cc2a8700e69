"""Real servers for end-to-end tests: uvicorn in a subprocess on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``uvicorn service.api.app:app_factory --factory`` in its own process group.

    Parameters
    ----------
    var_dir : Path
        ``SIGNPOST_VAR_DIR``; the server's log goes to ``var_dir/server.log``.
    env : dict
        Extra environment (``SIGNPOST_*``).

    """

    def __init__(self, var_dir: Path, env: dict[str, str]):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = var_dir / "server.log"
        # The compile cache this process uses, not the one `configure_compile_cache` may have
        # put in os.environ for a temporary var dir: a cold cache costs ~40 s per fit worker.
        full_env = {**os.environ, "PYTENSOR_FLAGS": shared_compiledir(),
                    "SIGNPOST_VAR_DIR": str(var_dir), **env}
        self._log = open(self.log_path, "ab")  # closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "service.api.app:app_factory", "--factory",
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log, for assertion messages."""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, path: str, timeout: float = 90.0) -> httpx.Response:
        """Poll ``path`` until it answers 200; fail with the log if it never does."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                response = httpx.get(self.base_url + path, timeout=5)
                if response.status_code == 200:
                    return response
                last = response.status_code
            except httpx.TransportError as exc:
                last = exc
            time.sleep(0.2)
        pytest.fail(f"{path} did not answer 200 within {timeout}s (last: {last!r}):\n"
                    f"{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL the whole group if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:  # the group: the server and its spawned fit worker
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait(timeout=15)
        self._log.close()


def shared_compiledir() -> str:
    """``PYTENSOR_FLAGS`` that keep a child's compile cache where this process has it (warm)."""
    import pytensor

    return f"base_compiledir={pytensor.config.base_compiledir}"


@pytest.fixture(scope="session")
def pytensor_flags() -> str:
    """``PYTENSOR_FLAGS`` for child processes: this run's compile cache."""
    return shared_compiledir()


def started(factory: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Yield ``start(...)``, which makes a process with ``factory``; all stopped after."""
    processes: list[Any] = []

    def start(*args: Any, **kwargs: Any) -> Any:
        process = factory(*args, **kwargs)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()


def _serve() -> Iterator[Callable[..., ServerProcess]]:
    yield from started(lambda var_dir, env=None: ServerProcess(var_dir, env or {}))


@pytest.fixture
def serve() -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with ``serve(var_dir, env)``; all are stopped after the test."""
    yield from _serve()


@pytest.fixture(scope="module")
def serve_module() -> Iterator[Callable[..., ServerProcess]]:
    """Like `serve`, for servers shared by a module's tests."""
    yield from _serve()
