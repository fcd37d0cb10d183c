"""LLM Manager's HTTP gateway against the LiteLLM proxy and direct calls, one core each.

    .venv/bin/python bench/gateway.py [--quick] [--json] [--skip-litellm]

One run starts a fast mock OpenAI upstream (`_mock_upstream.py`), our server (`llm-manager
serve --workers 1`) and the LiteLLM proxy (`--num_workers 1`, a pinned version installed into
`bench/.litellm-venv` on first use), then measures from a keep-alive load generator (`_load.py`):

- B1 added latency: non-streamed calls one at a time, p50 and p99, against calls sent directly
  to the mock (interleaved blocks, so drift falls on every target alike);
- B2 throughput: the most requests per second at 100 % success with a 50 ms upstream, ramping
  the number of clients, each sending its next request as soon as the last one ended;
- B3 streaming: added time to first token one at a time, then concurrent 50-chunk streams
  (a chunk every 20 ms, the clients' first streams spread over one stream's length) ramped until
  a stall: the 99th percentile wait for the first chunk or between two chunks exceeds five times
  the mock's gap, or a stream fails;
- B8 start-up: seconds from process creation until the health endpoint answers 200, and the
  resident memory (VmRSS of the process tree) once started; both start from bytecode, as
  installed from a wheel (`compile_llm_manager`).

With two cores, the mock and the load generator share core 0 and the gateway under test has core
1 to itself; the gateway not being measured is stopped (SIGSTOP) during the throughput ramps.
Both authenticate and log every call; ours also reserves and settles a budget on each, which
LiteLLM cannot do without its database (see `_servers.py`).
The run takes about 4–5 minutes (about 3 with `--quick`) and exits 1 only when something was wrong
beyond performance: a gateway that never became healthy, or calls that were not all accounted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import uvloop
from _load import Client, Reply, Target, check_completion, check_stream, closed_loop, failures, one_at_a_time
from _mock_upstream import content_text
from _report import print_report
from _servers import (
    BENCH,
    LITELLM_MASTER_KEY,
    LITELLM_VERSION,
    MOCK_API_KEY,
    Server,
    can_pin,
    compile_llm_manager,
    ensure_litellm,
    free_port,
    litellm_files,
    llm_manager_setup,
    start_litellm,
    start_llm_manager,
    usage_lines,
)

T = TypeVar("T")

DIRECT, OURS, LITELLM = "direct", "llm-manager", "litellm"
LOAD_CORE, GATEWAY_CORE = 0, 1
FAST_CHUNKS = 8
B2_DELAY_MS = 50
STREAM_CHUNKS, STREAM_GAP_MS = 50, 20
STREAM_SECONDS = STREAM_CHUNKS * STREAM_GAP_MS / 1000
STALL_FACTOR = 5
SCENARIOS = {
    "mock": (0, FAST_CHUNKS, 0),  # B1 and B3 time to first token: no delay, no gap
    "mock-slow": (B2_DELAY_MS, FAST_CHUNKS, 0),  # B2
    "mock-stream": (0, STREAM_CHUNKS, STREAM_GAP_MS),  # B3 concurrent streams
}
BLOCK = 100
"""Requests per interleaved block in the one-at-a-time phases."""
HEALTH = {OURS: "/healthz", LITELLM: "/health/liveliness"}


@dataclass(frozen=True)
class Plan:
    requests: int = 2000
    warmup: int = 200
    seconds: float = 5.0
    """Length of one ramp level."""
    b2_levels: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    b3_levels: tuple[int, ...] = (10, 25, 50, 100, 200, 300, 400)
    starts: int = 3

    @classmethod
    def quick(cls) -> Plan:
        return cls(500, 50, 3.0, (16, 32, 64, 128, 256), (10, 50, 100, 200, 300), 1)


def mock_path(scenario: str) -> str:
    delay, chunks, gap = SCENARIOS[scenario]
    return f"/mock/{delay}/{chunks}/{gap}/v1"


def mock_base(mock_port: int, scenario: str) -> str:
    return f"http://127.0.0.1:{mock_port}{mock_path(scenario)}"


@dataclass
class Gateway:
    name: str
    port: int
    token: str
    server: Server | None = None
    """None for direct calls to the mock."""
    succeeded: int = 0
    """Calls answered 200, warm-ups included: what the gateway must have logged."""

    def target(self, scenario: str, *, stream: bool) -> Target:
        if self.server is None:
            path = f"{mock_path(scenario)}/chat/completions"
            return Target.chat(self.name, self.port, path, "mock-model", token=self.token, stream=stream)
        return Target.chat(
            self.name, self.port, "/v1/chat/completions", scenario, token=self.token, stream=stream
        )

    def cpu_seconds(self) -> float:
        """CPU time of the gateway's processes; NaN for direct calls (nothing in between)."""
        return self.server.cpu_seconds() if self.server else math.nan

    def count(self, replies: Sequence[Reply]) -> None:
        self.succeeded += sum(1 for reply in replies if reply.status == 200 and reply.error is None)


def percentile_ms(values_ns: Sequence[int], percent: float) -> float:
    """Nearest-rank percentile, in milliseconds (NaN for no values)."""
    if not values_ns:
        return math.nan
    ordered = sorted(values_ns)
    rank = max(math.ceil(percent / 100 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1] / 1e6


# -- the phases (async: they run on the load generator's loop) --------------------------------------


async def one_at_a_time_phase(
    gateways: Sequence[Gateway], scenario: str, *, stream: bool, plan: Plan
) -> dict[str, dict[str, Any]]:
    """B1 / B3 first token: one request at a time, targets interleaved in blocks of `BLOCK`.

    Each block starts with one call that is timed apart (`after_switch_*`): the first call after
    another target had the machine. The gateways share one core, and that call finds the core's
    caches filled by the other gateway (measured: about 1 ms more for ours, even after 10 ms of
    idle). One per block of 100 is exactly the 1 % that p99 reports, so left in, p99 measured
    the bench's own switching rather than a gateway's tail.
    """
    clients = {gateway.name: Client(gateway.target(scenario, stream=stream)) for gateway in gateways}
    by_name = {gateway.name: gateway for gateway in gateways}
    check = (check_stream if stream else check_completion)(content_text(FAST_CHUNKS))
    replies: dict[str, list[Reply]] = {name: [] for name in clients}
    switches: dict[str, list[Reply]] = {name: [] for name in clients}
    for name, client in clients.items():
        warmup = await one_at_a_time(client, plan.warmup)
        by_name[name].count(warmup)
        if problems := failures(warmup, check):
            raise BenchError(f"{name} warm-up failed: {problems[0]}")
    cpu = dict.fromkeys(clients, 0.0)
    order = list(clients)
    for number, start in enumerate(range(0, plan.requests, BLOCK)):
        shift = number % len(order)
        for name in order[shift:] + order[:shift]:
            switches[name] += await one_at_a_time(clients[name], 1)
            before = by_name[name].cpu_seconds()
            replies[name] += await one_at_a_time(clients[name], min(BLOCK, plan.requests - start))
            cpu[name] += by_name[name].cpu_seconds() - before
    figures = {}
    for name, client in clients.items():
        client.close()
        by_name[name].count(replies[name] + switches[name])
        problems = failures(replies[name] + switches[name], check)
        values, after_switch = (_timings(found, stream=stream) for found in (replies[name], switches[name]))
        figures[name] = {
            "n": len(values),
            "errors": len(problems),
            "first_error": problems[0] if problems else None,
            "p50_ms": percentile_ms(values, 50),
            "p99_ms": percentile_ms(values, 99),
            "after_switch_n": len(after_switch),
            "after_switch_p50_ms": percentile_ms(after_switch, 50),
            "after_switch_max_ms": percentile_ms(after_switch, 100),
            "new_connections": client.connects,
            "gateway_cpu_ms_per_call": 1000 * cpu[name] / len(replies[name]) if replies[name] else math.nan,
        }
    return figures


def _timings(replies: Sequence[Reply], *, stream: bool) -> list[int]:
    """Each reply's latency, or its time to first token for streams (none for a failed reply)."""
    timings = [reply.ttft_ns if stream else reply.latency_ns for reply in replies]
    return [value for value in timings if value is not None]


async def throughput_phase(gateway: Gateway, plan: Plan) -> list[dict[str, Any]]:
    """B2: closed-loop clients against the 50 ms upstream, ramped until errors or saturation."""
    target = gateway.target("mock-slow", stream=False)
    check = check_completion(content_text(FAST_CHUNKS))
    levels: list[dict[str, Any]] = []
    best = 0.0
    for concurrency in plan.b2_levels:
        cpu = gateway.cpu_seconds()
        load = await closed_loop(target, concurrency, plan.seconds)
        cpu = gateway.cpu_seconds() - cpu
        gateway.count(load.replies)
        problems = failures(load.replies, check)
        latencies = [reply.latency_ns for reply in load.replies]
        levels.append(
            {
                "concurrency": concurrency,
                "requests": len(load.replies),
                "errors": len(problems),
                "first_error": problems[0] if problems else None,
                "per_second": load.per_second,
                "p50_ms": percentile_ms(latencies, 50),
                "p99_ms": percentile_ms(latencies, 99),
                "gateway_cpu_percent": 100 * cpu / (load.wall_ns / 1e9),
                "gateway_cpu_ms_per_call": 1000 * cpu / len(load.replies) if load.replies else math.nan,
            }
        )
        if problems or load.per_second < 1.1 * best:
            break  # errors, or saturated: more clients no longer bring more requests per second
        best = load.per_second
        await asyncio.sleep(0.5)
    return levels


async def streams_phase(gateway: Gateway, plan: Plan) -> list[dict[str, Any]]:
    """B3: concurrent streams, ramped until the first stall.

    A stall is any failed stream, or a 99th percentile wait above `STALL_FACTOR` × the mock's gap
    between two chunks, or for the first chunk. The clients' first streams start spread evenly
    over one stream's length, as users arrive: every stream lasts the same second, so clients
    started in the same instant would stay in step for the whole run, and each level would measure
    one burst of N simultaneous starts, repeated every second, rather than N streams open at once.
    """
    target = gateway.target("mock-stream", stream=True)
    check = check_stream(content_text(STREAM_CHUNKS))
    threshold_ms = STALL_FACTOR * STREAM_GAP_MS
    levels: list[dict[str, Any]] = []
    for concurrency in plan.b3_levels:
        cpu = gateway.cpu_seconds()
        load = await closed_loop(
            target, concurrency, max(plan.seconds, 3 * STREAM_SECONDS), spread_s=STREAM_SECONDS
        )
        cpu = gateway.cpu_seconds() - cpu
        gateway.count(load.replies)
        problems = failures(load.replies, check)
        gaps = [gap for reply in load.replies for gap in reply.gaps_ns()]
        ttfts = [reply.ttft_ns for reply in load.replies if reply.ttft_ns is not None]
        gap_p99, ttft_p99 = percentile_ms(gaps, 99), percentile_ms(ttfts, 99)
        stalled = bool(problems) or not (gap_p99 <= threshold_ms and ttft_p99 <= threshold_ms)
        levels.append(
            {
                "concurrency": concurrency,
                "streams": len(load.replies),
                "errors": len(problems),
                "first_error": problems[0] if problems else None,
                "gap_p50_ms": percentile_ms(gaps, 50),
                "gap_p99_ms": gap_p99,
                "gap_max_ms": max(gaps, default=0) / 1e6,
                "ttft_p50_ms": percentile_ms(ttfts, 50),
                "ttft_p99_ms": ttft_p99,
                "chunks_per_second": len(gaps) / (load.wall_ns / 1e9),
                "open_streams": sum(reply.latency_ns for reply in load.replies) / load.wall_ns,
                "gateway_cpu_percent": 100 * cpu / (load.wall_ns / 1e9),
                "stalled": stalled,
            }
        )
        if stalled:
            break
        await asyncio.sleep(0.5)
    return levels


# -- orchestration (sync: it starts and stops processes) ---------------------------------------------


class BenchError(RuntimeError):
    """Something was wrong beyond performance: the figures would be meaningless."""


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one phase on a fresh uvloop loop with the collector off (a GC pause is not a gateway's)."""
    gc.collect()
    gc.disable()
    try:
        return uvloop.run(coroutine)
    finally:
        gc.enable()


def cold_start(
    start: Callable[[], Server], port: int, health: str, starts: int
) -> tuple[Server, dict[str, Any]]:
    """Start `starts` times (the last one stays up): seconds until healthy, then RSS after 1 s idle."""
    seconds, rss = [], []
    server: Server | None = None
    for number in range(starts):
        server = start()
        seconds.append(server.wait_until_ok(port, health))
        time.sleep(1.0)
        rss.append(server.rss_kib() * 1024 / 1e6)
        if number < starts - 1:
            server.stop()
    assert server is not None
    return server, {"seconds": seconds, "idle_rss_mb": rss, "processes": server.process_count()}


def bench(plan: Plan, *, with_litellm: bool, workdir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    pin = can_pin()
    load_cores = {LOAD_CORE} if pin else None
    gateway_cores = {GATEWAY_CORE} if pin else None
    if pin:
        os.sched_setaffinity(0, {LOAD_CORE})
    else:
        log("fewer than 2 cores available: nothing is pinned, figures are not comparable with the README")

    litellm_executable = ensure_litellm(BENCH / ".litellm-venv") if with_litellm else None
    mock_port = free_port()
    mock = Server.start(
        "mock",
        [sys.executable, str(BENCH / "_mock_upstream.py"), "--port", str(mock_port)],
        cores=load_cores,
        env={},
        cwd=workdir,
        log=workdir / "mock.log",
    )
    servers: list[Server] = [mock]
    report: dict[str, Any] = {"b8": {}, "run": {"pinned": pin, "load_average_before": os.getloadavg()[0]}}
    try:
        wait_for_port(mock, mock_port)
        models = {scenario: mock_base(mock_port, scenario) for scenario in SCENARIOS}
        gateways = [Gateway(DIRECT, mock_port, MOCK_API_KEY)]

        log("setting up llm-manager (init, configurations, application, token, budget)")
        ours_dir = workdir / "llm-manager"
        ours_dir.mkdir()
        token = llm_manager_setup(ours_dir, models)
        compile_llm_manager()
        ours_port = free_port()
        log(f"B8: starting llm-manager {plan.starts}×")
        server, report["b8"][OURS] = cold_start(
            lambda: start_llm_manager(ours_dir, ours_port, gateway_cores, workdir / "llm-manager.log"),
            ours_port,
            HEALTH[OURS],
            plan.starts,
        )
        servers.append(server)
        gateways.append(Gateway(OURS, ours_port, token, server))

        if litellm_executable is not None:
            litellm_dir = workdir / "litellm"
            litellm_dir.mkdir()
            config = litellm_files(litellm_dir, models)
            litellm_port = free_port()
            log(f"B8: starting litellm {plan.starts}×")
            server, report["b8"][LITELLM] = cold_start(
                lambda: start_litellm(
                    litellm_executable, config, litellm_port, gateway_cores, workdir / "litellm.log"
                ),
                litellm_port,
                HEALTH[LITELLM],
                plan.starts,
            )
            servers.append(server)
            gateways.append(Gateway(LITELLM, litellm_port, LITELLM_MASTER_KEY, server))

        log(f"B1: {plan.requests} non-streamed calls per target, one at a time")
        report["b1"] = run(one_at_a_time_phase(gateways, "mock", stream=False, plan=plan))
        log(f"B3: {plan.requests} streamed calls per target, one at a time (time to first token)")
        report["b3_ttft"] = run(one_at_a_time_phase(gateways, "mock", stream=True, plan=plan))

        report["b2"], report["b3_streams"] = {}, {}
        for gateway in gateways:
            others = [other.server for other in gateways if other is not gateway and other.server]
            for other in others:
                other.pause()
            try:
                log(f"B2: {gateway.name}, {B2_DELAY_MS} ms upstream, clients {plan.b2_levels}")
                report["b2"][gateway.name] = run(throughput_phase(gateway, plan))
                log(f"B3: {gateway.name}, concurrent streams {plan.b3_levels}")
                report["b3_streams"][gateway.name] = run(streams_phase(gateway, plan))
            finally:
                for other in others:
                    other.resume()

        for gateway in gateways:
            if gateway.server is not None:
                report["b8"][gateway.name]["after_load_rss_mb"] = gateway.server.rss_kib() * 1024 / 1e6
        time.sleep(1.0)
        for server in servers[1:]:
            server.stop()  # our server flushes its usage writer on shutdown
        report["run"]["load_average_after"] = os.getloadavg()[0]
        report["accounting"] = accounting(gateways, ours_dir, workdir / "litellm")
    finally:
        for server in reversed(servers):
            server.stop()
    return report


def wait_for_port(server: Server, port: int) -> None:
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.01)
    raise BenchError(f"the mock upstream did not start; see {server.log}")


def accounting(gateways: Sequence[Gateway], ours_dir: Path, litellm_dir: Path) -> dict[str, Any]:
    """Every call a gateway answered 200 must have left its record: a usage row / a log line."""
    result: dict[str, Any] = {}
    for gateway in gateways:
        if gateway.name == OURS:
            with sqlite3.connect(ours_dir / "llm-manager.db") as database:
                rows = dict(
                    database.execute("SELECT status, count(*) FROM usage_logs GROUP BY status").fetchall()
                )
                spent = database.execute("SELECT sum(spent_usd) FROM budget_windows").fetchone()[0] or 0
            result[OURS] = {"answered": gateway.succeeded, "logged": rows, "budget_spent_usd": spent / 1e9}
        elif gateway.name == LITELLM:
            result[LITELLM] = {"answered": gateway.succeeded, "logged": usage_lines(litellm_dir)}
    for figures in result.values():
        figures["missing"] = figures["answered"] - figures["logged"].get("ok", 0)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer requests, shorter ramps, one start (~3 min)"
    )
    parser.add_argument("--skip-litellm", action="store_true", help="only direct and llm-manager")
    parser.add_argument("--requests", type=int, help="calls per target in B1 and B3-TTFT")
    parser.add_argument("--seconds", type=float, help="length of one ramp level")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, databases)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (the tables go to stderr)")
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    if args.requests:
        plan = replace(plan, requests=args.requests)
    if args.seconds:
        plan = replace(plan, seconds=args.seconds)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="llm-gateway-bench-"))
    try:
        report = bench(plan, with_litellm=not args.skip_litellm, workdir=workdir, log=log)
    except (BenchError, RuntimeError) as error:
        print(f"bench failed: {error} (working directory kept: {workdir})", file=sys.stderr)
        return 1
    report["run"] |= {
        "plan": asdict(plan),
        "litellm": LITELLM_VERSION,
        "python": platform.python_version(),
        "uvloop": version("uvloop"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "elapsed_s": round(time.perf_counter() - started, 1),
        "mock_gap_ms": STREAM_GAP_MS,
        "mock_chunks": STREAM_CHUNKS,
        "stall_threshold_ms": STALL_FACTOR * STREAM_GAP_MS,
    }
    if args.keep:
        log(f"working directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(report, stderr=args.json)
    if args.json:
        print(json.dumps(report, default=str))
    missing = any(figures["missing"] for figures in report["accounting"].values())
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
