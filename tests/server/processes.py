"""Real `llm-manager serve` processes, for what an in-process app cannot show: several processes
sharing one database and one Redis, and what a real SIGTERM does.

Each process gets the settings as `LLM_MANAGER_*` variables (everything else of ours is removed
from its environment), writes its output to a log file that failures quote, and is always
stopped — SIGTERM, then SIGKILL if it does not go — when the `running_servers` block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

SCRIPT = Path(sys.executable).parent / "llm-manager"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_environment(values: Mapping[str, object]) -> dict[str, str]:
    """This environment without any `LLM_MANAGER_*` variable, plus `values` as settings variables."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("LLM_MANAGER_")}
    environment |= {f"LLM_MANAGER_{name.upper()}": str(value) for name, value in values.items()}
    return environment


@dataclass
class ServerProcess:
    """One `llm-manager serve` subprocess listening on `port`."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    terminated: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until `/readyz` answers 200 (the database is reachable and migrated)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=2) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server on port {self.port} exited early:\n{self.log()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/readyz").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server on port {self.port} not ready in {timeout:g}s:\n{self.log()}")
                time.sleep(0.05)

    def terminate(self) -> None:
        """Send SIGTERM (once): the server drains and exits on its own."""
        if not self.terminated and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.terminated = True

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait, SIGKILL if it is still there; returns the exit status. Safe to call twice."""
        self.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode


def start_server(values: Mapping[str, object], log_dir: Path, *, name: str = "server") -> ServerProcess:
    """Start `llm-manager serve` on a free port (not yet ready: see `ServerProcess.wait_ready`)."""
    port = free_port()
    log_path = log_dir / f"{name}-{port}.log"
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=server_environment(values),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ServerProcess(process=process, port=port, log_path=log_path)


@contextlib.contextmanager
def running_servers(count: int, values: Mapping[str, object], log_dir: Path) -> Iterator[list[ServerProcess]]:
    """`count` ready servers with the same settings; all of them stopped on the way out."""
    servers: list[ServerProcess] = []
    try:
        for index in range(count):
            servers.append(start_server(values, log_dir, name=f"server{index}"))
        for server in servers:  # started together: they start (and migrate) concurrently
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.stop()
