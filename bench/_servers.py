"""The gateway benchmark's processes: start them pinned to a core, time their start, read their memory.

- `Server`: a process started in its own session (so its whole tree can be signalled by its id),
  pinned to a set of cores before it executes, its output sent to a log file;
- `compile_llm_manager` / `llm_manager_setup` / `start_llm_manager`: our server in a data directory of its own, set up
  through the CLI exactly as an operator would (configuration, application, token, budget);
- `ensure_litellm` / `litellm_files` / `start_litellm`: the LiteLLM proxy, pinned to a version and
  installed from PyPI into a virtual environment of its own, run without a database.
"""

from __future__ import annotations

import compileall
import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
LITELLM_VERSION = "1.80.0"
LITELLM_MASTER_KEY = "sk-bench-master"
MOCK_API_KEY = "sk-mock"
PRICE_INPUT = "0.15"
"""USD per million tokens, the same on both gateways so both compute a cost."""
PRICE_OUTPUT = "0.60"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    started: float
    """`time.perf_counter()` just before the process was created."""
    log: Path

    @classmethod
    def start(
        cls,
        name: str,
        command: Sequence[str],
        *,
        cores: set[int] | None,
        env: dict[str, str],
        cwd: Path,
        log: Path,
    ) -> Server:
        def pin() -> None:
            if cores is not None:
                os.sched_setaffinity(0, cores)

        output = log.open("ab")
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pin,  # safe here: this script starts processes from one thread only
        )
        output.close()
        return cls(name, process, started, log)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_until_ok(self, port: int, path: str, timeout: float = 120.0) -> float:
        """Poll `GET path` every 5 ms; seconds from process creation until it answered 200."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log}")
            if _get_status(port, path) == 200:
                return time.perf_counter() - self.started
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} did not answer {path} within {timeout:g}s; see {self.log}")

    def rss_kib(self) -> int:
        """VmRSS of the process and all its descendants."""
        return sum(_rss_kib(pid) for pid in _tree(self.pid))

    def process_count(self) -> int:
        return len(_tree(self.pid))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its descendants (threads included)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in _tree(self.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    def pause(self) -> None:
        """SIGSTOP the whole tree, so an idle neighbour cannot take CPU from the one measured."""
        os.killpg(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.pid, signal.SIGCONT)
        os.killpg(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()


def _get_status(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- LLM Manager --------------------------------------------------------------------------------


def llm_manager_env(data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LLM_MANAGER_")}
    return env | {"LLM_MANAGER_DATA_DIR": str(data_dir), "MOCK_API_KEY": MOCK_API_KEY}


def compile_llm_manager() -> None:
    """Write llm-manager's bytecode, as installing its wheel does.

    The development install is editable: its modules are compiled at import, and with
    `PYTHONDONTWRITEBYTECODE` set (as on many CI machines and containers) at every start, which
    is not what a deployed server does. LiteLLM, installed from its wheel, starts from bytecode.
    """
    spec = importlib.util.find_spec("llm_manager")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llm_manager is not installed in this environment")
    for location in spec.submodule_search_locations:
        if not compileall.compile_dir(location, quiet=1):
            raise RuntimeError(f"compiling {location} failed")


def llm_manager_setup(data_dir: Path, models: dict[str, str]) -> str:
    """`init`, one configuration per model (slug → base URL), an application, a budget; the token."""
    env = llm_manager_env(data_dir)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [str(VENV_BIN / "llm-manager"), *args], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"llm-manager {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout.strip()

    cli("init")
    for slug, base_url in models.items():
        cli(
            "config", "add", slug,
            "--provider", "openai-compatible",
            "--model", "mock-model",
            "--base-url", base_url,
            "--api-key-env", "MOCK_API_KEY",
            "--input-price", PRICE_INPUT,
            "--output-price", PRICE_OUTPUT,
        )  # fmt: skip
    cli("apps", "create", "bench")
    token = cli("tokens", "create", "--app", "bench", "--name", "gateway-bench")
    cli("budgets", "set", "--app", "bench", "--period", "day", "--usd", "1000000")
    return token


def start_llm_manager(data_dir: Path, port: int, cores: set[int] | None, log: Path) -> Server:
    command = [
        str(VENV_BIN / "llm-manager"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return Server.start(
        "llm-manager", command, cores=cores, env=llm_manager_env(data_dir), cwd=data_dir, log=log
    )


# -- LiteLLM ------------------------------------------------------------------------------------

_USAGE_LOGGER = '''"""One JSON line per call: LiteLLM's equivalent, without a database, of a usage row."""

import json

from litellm.integrations.custom_logger import CustomLogger


class UsageLog(CustomLogger):
    def __init__(self):
        super().__init__()
        self.file = open("usage.jsonl", "a", buffering=1)

    def _write(self, status, kwargs, response_obj, start_time, end_time):
        usage = getattr(response_obj, "usage", None)
        self.file.write(json.dumps({
            "status": status,
            "model": kwargs.get("model"),
            "cost": kwargs.get("response_cost"),
            "prompt_tokens": getattr(usage, "prompt_tokens", None),
            "completion_tokens": getattr(usage, "completion_tokens", None),
            "latency_ms": (end_time - start_time).total_seconds() * 1000,
        }) + "\\n")

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write("ok", kwargs, response_obj, start_time, end_time)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._write("error", kwargs, response_obj, start_time, end_time)


usage_logger = UsageLog()
'''


def ensure_litellm(venv: Path, version: str = LITELLM_VERSION) -> Path:
    """The `litellm` executable of `venv`, installing `litellm[proxy]==version` there if needed."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
    if python.exists():
        found = subprocess.run(probe, capture_output=True, text=True, check=False).stdout.strip()
        if found == version:
            return venv / "bin" / "litellm"
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        (venv / ".gitignore").write_text("*\n")  # as `python -m venv` does from 3.13 on
    print(f"installing litellm[proxy]=={version} into {venv} (once; ~1 minute)", file=sys.stderr)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"litellm[proxy]=={version}",
        ],
        check=True,
    )
    return venv / "bin" / "litellm"


def litellm_files(directory: Path, models: dict[str, str]) -> Path:
    """config.yaml (models with prices, the master key, the JSONL usage logger) in `directory`.

    No budget: every LiteLLM budget (proxy-wide `max_budget`, per key, team or user) is read from
    and written to its database, and without one LiteLLM enforces none of them.
    """
    lines = ["model_list:"]
    for name, base_url in models.items():
        lines += [
            f"  - model_name: {name}",
            "    litellm_params:",
            "      model: openai/mock-model",
            f"      api_base: {base_url}",
            f"      api_key: {MOCK_API_KEY}",
            f"      input_cost_per_token: {float(PRICE_INPUT) / 1e6:.3e}",
            f"      output_cost_per_token: {float(PRICE_OUTPUT) / 1e6:.3e}",
        ]
    lines += [
        "litellm_settings:",
        "  callbacks: usage_log.usage_logger",
        "general_settings:",
        f"  master_key: {LITELLM_MASTER_KEY}",
    ]
    (directory / "usage_log.py").write_text(_USAGE_LOGGER)
    config = directory / "config.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def start_litellm(executable: Path, config: Path, port: int, cores: set[int] | None, log: Path) -> Server:
    env = {
        key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "LITELLM_MASTER_KEY")
    }
    # The cost map bundled with the package: no attempt to download it (there is no internet here).
    env |= {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    command = [
        str(executable), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
        "--num_workers", "1", "--telemetry", "False",
    ]  # fmt: skip
    return Server.start("litellm", command, cores=cores, env=env, cwd=config.parent, log=log)


def usage_lines(directory: Path) -> dict[str, int]:
    """Lines the LiteLLM usage logger wrote, by status."""
    counts: dict[str, int] = {}
    path = directory / "usage.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            status = str(json.loads(line).get("status"))
            counts[status] = counts.get(status, 0) + 1
    return counts
