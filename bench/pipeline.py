"""How much LLM Manager's call pipeline adds to a call, over a raw HTTP call to the same upstream.

    .venv/bin/python bench/pipeline.py [--requests N] [--concurrency C] [--warmup W] [--json]

Both sides talk to the same zero-delay fake OpenAI upstream on 127.0.0.1 (a real socket server on
a background thread) and receive the same recorded bytes:

- raw: one pooled `UpstreamClient` (the client the adapters use, built by the same
  `new_http_client()`) POSTs the exact request bytes the pipeline sent, reads the SSE to the end
  (or the JSON body) and does nothing else;
- pipeline: `llm.stream(...)` / `llm.chat(...)` through `LLMManager` — resolve the configuration,
  call the OpenAI adapter, decode events, build the result, price it, queue the usage row.

Raw and pipeline requests run in alternating blocks so drift (thermal, other processes, the
usage writer catching up) falls on both. The figures are printed, never asserted; the only
failures are correctness ones (a wrong answer, or a usage row missing after the writer flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from llm_manager.db.tables import UsageLog
from llm_manager.manager import LLMManager
from llm_manager.providers._http import UpstreamClient
from llm_manager.providers._wire import new_http_client
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.settings import Settings
from llm_manager.testing.fake_upstream import FakeUpstream
from llm_manager.testing.transcripts import openai as transcripts
from llm_manager.types import TextDelta

PROMPT = "hello"
STREAM_SLUG = "bench-stream"
CHAT_SLUG = "bench-chat"
# Two path prefixes on one fake server, because a route is keyed by method and path and the
# streamed and whole replies share OpenAI's one path.
STREAM_PREFIX = "/stream"
CHAT_PREFIX = "/chat"
BLOCK = 50
"""Requests per interleaved block (rounded to a multiple of the concurrency)."""

Timing = tuple[int, int | None]
"""(total ns, time-to-first-token ns or None) of one request."""


class BenchError(RuntimeError):
    """A request answered wrongly: the figures would be meaningless."""


class CountingUpstream(FakeUpstream):
    """The fake upstream, also counting TCP connections, to show whether keep-alive held."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await super()._serve(reader, writer)


@dataclass
class Samples:
    total_ns: list[int] = field(default_factory=list)
    ttft_ns: list[int] = field(default_factory=list)
    wall_ns: int = 0
    connections: int = 0

    def add(self, timings: Sequence[Timing]) -> None:
        for total, ttft in timings:
            self.total_ns.append(total)
            if ttft is not None:
                self.ttft_ns.append(ttft)

    @property
    def per_second(self) -> float:
        return len(self.total_ns) / (self.wall_ns / 1e9) if self.wall_ns else 0.0


def percentile_ms(values_ns: Sequence[int], percent: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    ordered = sorted(values_ns)
    rank = max(math.ceil(percent / 100 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1] / 1e6


class Bench:
    def __init__(
        self, llm: LLMManager, upstream: CountingUpstream, client: UpstreamClient, concurrency: int
    ) -> None:
        self.llm = llm
        self.upstream = upstream
        self.client = client
        self.concurrency = concurrency
        self.pipeline_calls = 0
        self.max_writer_depth = 0
        self.requests: dict[str, tuple[str, bytes, dict[str, str]]] = {}

    # -- the four measured operations --------------------------------------------------------

    async def raw_stream(self) -> Timing:
        url, body, headers = self.requests["stream"]
        first: int | None = None
        done = False
        started = time.perf_counter_ns()
        async with self.client.stream("POST", url, content=body, headers=headers) as response:
            if response.status_code != 200:
                raise BenchError(f"raw stream answered HTTP {response.status_code}")
            # Read to the end of the body (past `[DONE]`) so the connection goes back to the pool.
            async for line in response.aiter_lines():
                if first is None and '"content":"' in line and '"content":""' not in line:
                    first = time.perf_counter_ns()
                elif line == "data: [DONE]":
                    done = True
        ended = time.perf_counter_ns()
        if first is None or not done:
            raise BenchError("raw stream ended without content or [DONE]")
        return ended - started, first - started

    async def pipeline_stream(self) -> Timing:
        first: int | None = None
        started = time.perf_counter_ns()
        stream = self.llm.stream(STREAM_SLUG, PROMPT)
        async for event in stream:
            if first is None and isinstance(event, TextDelta):
                first = time.perf_counter_ns()
        ended = time.perf_counter_ns()
        self.pipeline_calls += 1
        result = stream.result
        if first is None or result is None or result.text != transcripts.TEXT_STREAM_TEXT:
            raise BenchError(f"pipeline stream answered {result!r}")
        return ended - started, first - started

    async def raw_chat(self) -> Timing:
        url, body, headers = self.requests["chat"]
        started = time.perf_counter_ns()
        response = await self.client.post(url, content=body, headers=headers)
        payload = orjson.loads(response.content)
        ended = time.perf_counter_ns()
        if response.status_code != 200 or not payload.get("choices"):
            raise BenchError(f"raw chat answered HTTP {response.status_code}")
        return ended - started, None

    async def pipeline_chat(self) -> Timing:
        started = time.perf_counter_ns()
        result = await self.llm.chat(CHAT_SLUG, PROMPT)
        ended = time.perf_counter_ns()
        self.pipeline_calls += 1
        if result.text != transcripts.TEXT_COMPLETION_TEXT:
            raise BenchError(f"pipeline chat answered {result!r}")
        return ended - started, None

    # -- running them ------------------------------------------------------------------------

    async def run(self, operation: Callable[[], Awaitable[Timing]], count: int, into: Samples) -> None:
        """`count` requests, `concurrency` at a time; each request timed on its own."""
        connections = self.upstream.connections
        started = time.perf_counter_ns()
        done = 0
        while done < count:
            size = min(self.concurrency, count - done)
            if size == 1:
                into.add([await operation()])
            else:
                into.add(await asyncio.gather(*(operation() for _ in range(size))))
            done += size
            self.max_writer_depth = max(self.max_writer_depth, self.llm.services.writer.depth)
        into.wall_ns += time.perf_counter_ns() - started
        into.connections += self.upstream.connections - connections

    async def measure(
        self,
        name: str,
        raw: Callable[[], Awaitable[Timing]],
        pipeline: Callable[[], Awaitable[Timing]],
        requests: int,
        warmup: int,
    ) -> tuple[Samples, Samples]:
        path = f"{STREAM_PREFIX if name == 'stream' else CHAT_PREFIX}/v1/chat/completions"
        await self.run(pipeline, warmup, Samples())
        self.requests[name] = self._captured(path)
        await self.run(raw, warmup, Samples())
        raw_samples, pipeline_samples = Samples(), Samples()
        block = max(self.concurrency, BLOCK // self.concurrency * self.concurrency)
        for number, start in enumerate(range(0, requests, block)):
            size = min(block, requests - start)
            order = [(raw, raw_samples), (pipeline, pipeline_samples)]
            for operation, samples in order if number % 2 == 0 else reversed(order):
                await self.run(operation, size, samples)
        return raw_samples, pipeline_samples

    def _captured(self, path: str) -> tuple[str, bytes, dict[str, str]]:
        """The exact body and headers the pipeline sent, for the raw client to send again."""
        sent = next(request for request in reversed(self.upstream.requests) if request.path == path)
        headers = {name: sent.headers[name] for name in ("content-type", "authorization")}
        return f"{self.upstream.url}{path}", sent.body, headers

    async def usage_rows(self) -> dict[str, int]:
        async with self.llm.services.database.session() as session:
            rows = await session.execute(
                select(UsageLog.status, func.count()).select_from(UsageLog).group_by(UsageLog.status)
            )
            return {status: count for status, count in rows.all()}


def _settings(directory: Path) -> Settings:
    return Settings(
        data_dir=directory,
        database_url=f"sqlite+aiosqlite:///{directory}/bench.db",
        secret_keys=Fernet.generate_key().decode(),
    )


async def bench(requests: int, concurrency: int, warmup: int) -> dict[str, Any]:
    with CountingUpstream() as upstream, tempfile.TemporaryDirectory(prefix="llm-bench-") as tmp:
        upstream.add("POST", f"{STREAM_PREFIX}{transcripts.CHAT_PATH}", transcripts.text_stream())
        upstream.add("POST", f"{CHAT_PREFIX}{transcripts.CHAT_PATH}", transcripts.text_completion())
        async with (
            LLMManager.open(_settings(Path(tmp))) as llm,
            new_http_client() as client,
        ):
            for slug, prefix in ((STREAM_SLUG, STREAM_PREFIX), (CHAT_SLUG, CHAT_PREFIX)):
                await llm.configurations.create(
                    ConfigurationCreate(
                        slug=slug,
                        provider="openai",
                        model="gpt-4o-mini",
                        base_url=transcripts.base_url(f"{upstream.url}{prefix}"),
                        api_key="sk-bench",
                    )
                )
            runner = Bench(llm, upstream, client, concurrency)
            gc.collect()
            started = time.perf_counter()
            stream = await runner.measure(
                "stream", runner.raw_stream, runner.pipeline_stream, requests, warmup
            )
            chat = await runner.measure("chat", runner.raw_chat, runner.pipeline_chat, requests, warmup)
            elapsed = time.perf_counter() - started
            flush_started = time.perf_counter_ns()
            await llm.services.writer.flush()
            flush_ms = (time.perf_counter_ns() - flush_started) / 1e6
            rows = await runner.usage_rows()
            written = llm.services.writer.written
            max_queue = llm.services.writer.max_queue
            pipeline_calls = runner.pipeline_calls
            # Warm-up opens at least one connection; none counted means the hook no longer runs.
            counted = upstream.connections > 0
    return {
        "stream": _compare(*stream, counted=counted),
        "stream_ttft": _compare(*stream, ttft=True),
        "chat": _compare(*chat, counted=counted),
        "accounting": {
            "pipeline_calls": pipeline_calls,
            "usage_rows": sum(rows.values()),
            "usage_rows_by_status": rows,
            "writer_written": written,
            "lost": pipeline_calls - sum(rows.values()),
            "final_flush_ms": round(flush_ms, 3),
            "max_queue_depth_seen": runner.max_writer_depth,
            "queue_bound": max_queue,
        },
        "elapsed_s": round(elapsed, 2),
    }


def _compare(raw: Samples, pipeline: Samples, *, ttft: bool = False, counted: bool = True) -> dict[str, Any]:
    raw_ns = raw.ttft_ns if ttft else raw.total_ns
    pipe_ns = pipeline.ttft_ns if ttft else pipeline.total_ns
    figures: dict[str, Any] = {"n": len(pipe_ns)}
    for name, values in (("raw", raw_ns), ("pipeline", pipe_ns)):
        figures[name] = {
            "p50_ms": round(percentile_ms(values, 50), 3),
            "p99_ms": round(percentile_ms(values, 99), 3),
        }
    for percent in ("p50", "p99"):
        raw_ms, pipe_ms = figures["raw"][f"{percent}_ms"], figures["pipeline"][f"{percent}_ms"]
        figures[f"overhead_{percent}_ms"] = round(pipe_ms - raw_ms, 3)
        figures[f"ratio_{percent}"] = round(pipe_ms / raw_ms, 2) if raw_ms else None
    if not ttft:
        for name, samples in (("raw", raw), ("pipeline", pipeline)):
            figures[name] |= {
                "per_second": round(samples.per_second),
                "connections": samples.connections if counted else None,
            }
    return figures


def _table(report: dict[str, Any]) -> Table:
    run = report["run"]
    table = Table(
        title=(
            f"LLM Manager pipeline vs the raw upstream client\n{run['requests']} requests per path, concurrency "
            f"{run['concurrency']}, {run['loop']}"
        ),
        caption=(
            f"Python {run['python']} · {run['cpus']} CPUs · warm-up {run['warmup']} per path · "
            f"{report['elapsed_s']} s · {run['date']}"
        ),
    )
    calls = (
        ("stream, to end", report["stream"]),
        ("stream, 1st token", report["stream_ttft"]),
        ("chat", report["chat"]),
    )
    table.add_column("")
    for label, _ in calls:
        table.add_column(label, justify="right")

    def row(label: str, cell: Callable[[dict[str, Any]], str], *, end_section: bool = False) -> None:
        table.add_row(label, *(cell(figures) for _, figures in calls), end_section=end_section)

    row("raw p50 ms", lambda f: f"{f['raw']['p50_ms']:.3f}")
    row("raw p99 ms", lambda f: f"{f['raw']['p99_ms']:.3f}", end_section=True)
    row("pipeline p50 ms", lambda f: f"{f['pipeline']['p50_ms']:.3f}")
    row("pipeline p99 ms", lambda f: f"{f['pipeline']['p99_ms']:.3f}", end_section=True)
    row("[bold]overhead p50 ms[/]", lambda f: f"[bold]{f['overhead_p50_ms']:+.3f}[/]")
    row("overhead p99 ms", lambda f: f"{f['overhead_p99_ms']:+.3f}")
    row("ratio p50", lambda f: f"{f['ratio_p50']:.2f}×")
    row("ratio p99", lambda f: f"{f['ratio_p99']:.2f}×", end_section=True)
    row("req/s raw / pipeline", lambda f: _pair(f, "per_second"))
    row("new conns raw / pipeline", lambda f: _pair(f, "connections"))
    return table


def _pair(figures: dict[str, Any], key: str) -> str:
    if key not in figures["raw"]:
        return "—"
    raw, pipeline = (figures[name][key] for name in ("raw", "pipeline"))
    return f"{'?' if raw is None else raw} / {'?' if pipeline is None else pipeline}"


def _accounting_line(report: dict[str, Any]) -> str:
    accounting = report["accounting"]
    lost = accounting["lost"]
    verdict = "[green]none lost[/]" if lost == 0 else f"[red]{lost} LOST[/]"
    return (
        f"usage rows: {accounting['usage_rows']} for {accounting['pipeline_calls']} pipeline calls, "
        f"{verdict} (writer queue peaked at {accounting['max_queue_depth_seen']} of "
        f"{accounting['queue_bound']}; final flush waited {accounting['final_flush_ms']:.0f} ms)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="measured requests per path (500)")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight at once (1)")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured requests per path first (50)")
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop (uvloop if installed)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object (the table goes to stderr)"
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.warmup < 1:
        parser.error("--requests, --concurrency and --warmup must be at least 1")

    loop_name, run = _loop(args.loop)
    try:
        report = run(bench(args.requests, args.concurrency, args.warmup))
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    report["run"] = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "loop": loop_name,
        "python": platform.python_version(),
        "cpus": _cpus(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    console = Console(stderr=args.json)
    console.print(_table(report))
    console.print(_accounting_line(report))
    if args.json:
        print(json.dumps(report))
    return 0 if report["accounting"]["lost"] == 0 else 1


def _loop(choice: str) -> tuple[str, Callable[[Any], Any]]:
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise SystemExit("uvloop is not installed") from None
        else:
            return f"uvloop {uvloop.__version__}", uvloop.run
    return "asyncio", asyncio.run


def _cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


if __name__ == "__main__":
    sys.exit(main())
