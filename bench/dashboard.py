"""How long the dashboard's and statistics page's queries take over 1,000,000 usage rows.

    .venv/bin/python bench/dashboard.py [--rows N] [--days D] [--repeat R] [--postgres URL] [--json]

Generates N usage rows (default 1,000,000) spread over the last D days (default 30, so the
dashboard's 30-day window covers them all), with the two rollups the usage writer keeps beside
them (`usage_daily` and the latency histogram `usage_latency_daily`), computed in Python exactly
as the writer does and bulk-loaded. SQLite runs in a temporary directory; `--postgres URL`
(a database that may be emptied: its tables are created by the migrations and truncated) runs
the same on PostgreSQL too. Then each query the pages make is run R times (after one warm-up) and
its p50 and max wall time printed. Nothing is asserted; only 127.0.0.1 / the given URL is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from llm_manager.db import tables
from llm_manager.db.migrate import upgrade_to_head
from llm_manager.db.session import Database
from llm_manager.services.accounting import UsageWriter
from llm_manager.services.latency import bucket_of
from llm_manager.services.stats import StatsFilter, StatsService
from llm_manager.services.usage import UsageService

PROVIDERS = ("openai", "anthropic", "ollama", "openrouter", "demo")
APPLICATIONS = 20
CONFIGURATIONS = 40
CONFIGS_PER_APPLICATION = 4
USERS = 20
NANOS = 1_000_000_000
LOG_COLUMNS = [column.name for column in tables.UsageLog.__table__.columns]
DAILY_KEY = tables.USAGE_DAILY_KEY
DAILY_COUNTERS = tables.USAGE_DAILY_COUNTERS
LATENCY_COLUMNS = ("day", "application_id", "configuration_id", "provider", "model", "bucket", "count")
Query = Callable[[], Awaitable[Any]]


def generate(
    rows: int, days: int, seed: int = 7
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The usage rows and both rollups, as tuples in table column order."""
    generator = random.Random(seed)
    configurations = [
        (index + 1, f"config-{index + 1}", PROVIDERS[index % len(PROVIDERS)], f"model-{index % 12}")
        for index in range(CONFIGURATIONS)
    ]
    uses = {
        app: generator.sample(configurations, CONFIGS_PER_APPLICATION) for app in range(1, APPLICATIONS + 1)
    }
    now = datetime.now(UTC)
    start = now - timedelta(days=days)
    span = (now - start).total_seconds()
    logs: list[tuple[Any, ...]] = []
    daily: dict[tuple[Any, ...], list[int]] = {}
    latency: Counter[tuple[Any, ...]] = Counter()
    for _ in range(rows):
        created_at = start + timedelta(seconds=generator.random() * span)
        application = generator.randint(1, APPLICATIONS)
        config_id, slug, provider, model = generator.choice(uses[application])
        status = "error" if generator.random() < 0.03 else "cancelled" if generator.random() < 0.01 else "ok"
        prompt, completion = generator.randint(10, 3000), generator.randint(0, 1500)
        latency_ms = int(generator.lognormvariate(6.8, 0.7))
        ttft = latency_ms // 4 if generator.random() < 0.6 else None
        cost = (prompt * 150 + completion * 600) if provider != "ollama" else None
        user = f"user-{generator.randint(1, USERS)}" if generator.random() < 0.2 else None
        values = {
            "id": str(uuid.UUID(int=generator.getrandbits(128))),
            "created_at": created_at,
            "operation": "chat",
            "configuration_id": config_id,
            "configuration_slug": slug,
            "requested_configuration": slug,
            "application_id": application,
            "api_token_id": None,
            "provider": provider,
            "model": model,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "tokens_estimated": False,
            "cost": cost,
            "unpriced": cost is None,
            "latency_ms": latency_ms,
            "ttft_ms": ttft,
            "status": status,
            "error_class": "UpstreamError" if status == "error" else None,
            "error_message": "upstream said no" if status == "error" else None,
            "finish_reason": "stop",
            "attempts": 1,
            "response_chars": completion * 4,
            "user_id": user,
            "conversation_id": None,
            "template_name": None,
            "template_version": None,
        }
        logs.append(tuple(values[name] for name in LOG_COLUMNS))
        day = created_at.date()
        totals = daily.setdefault(
            (day, application, config_id, provider, model, user or ""), [0] * len(DAILY_COUNTERS)
        )
        for index, amount in enumerate(
            (
                1,
                status == "error",
                status == "cancelled",
                prompt,
                completion,
                0,
                cost or 0,
                cost is None,
                0,
                latency_ms,
                ttft or 0,
                ttft is not None,
            )
        ):
            totals[index] += amount
        latency[(day, application, config_id, provider, model, bucket_of(latency_ms))] += 1
    return (
        logs,
        [key + tuple(values) for key, values in daily.items()],
        [(*key, count) for key, count in latency.items()],
    )


def _sqlite_rows(rows: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Dates and times as the strings SQLAlchemy stores in SQLite (only those columns converted)."""
    for row in rows:
        yield tuple(
            value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            if isinstance(value, datetime)
            else value.isoformat()
            if isinstance(value, date)
            else value
            for value in row
        )


def load_sqlite(path: Path, data: tuple[list[tuple[Any, ...]], ...]) -> None:
    """Bulk load with the log's secondary indexes dropped, then rebuilt (as a restore would)."""
    logs, daily, latency = data
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-262144")
        indexes = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'usage_logs' AND sql IS NOT NULL"
        ).fetchall()
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        for table, columns, rows in (
            ("usage_logs", LOG_COLUMNS, logs),
            ("usage_daily", DAILY_KEY + DAILY_COUNTERS, daily),
            ("usage_latency_daily", LATENCY_COLUMNS, latency),
        ):
            marks = ", ".join("?" * len(columns))
            connection.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", _sqlite_rows(rows)
            )
        for _, sql in indexes:
            connection.execute(sql)
        connection.commit()
        connection.execute("ANALYZE")
        connection.commit()
    finally:
        connection.close()


async def load_postgres(url: str, data: tuple[list[tuple[Any, ...]], ...]) -> None:
    logs, daily, latency = data
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("TRUNCATE usage_logs, usage_daily, usage_latency_daily CASCADE")
        # The generated ids name applications and configurations that do not exist: skip FK checks.
        await connection.execute("SET session_replication_role = replica")
        await connection.copy_records_to_table("usage_logs", records=logs, columns=LOG_COLUMNS)
        await connection.copy_records_to_table(
            "usage_daily", records=daily, columns=list(DAILY_KEY + DAILY_COUNTERS)
        )
        await connection.copy_records_to_table(
            "usage_latency_daily", records=latency, columns=list(LATENCY_COLUMNS)
        )
        await connection.execute("ANALYZE usage_logs; ANALYZE usage_daily; ANALYZE usage_latency_daily")
    finally:
        await connection.close()


def queries(database: Database) -> Iterator[tuple[str, Query]]:
    """Every query the dashboard and the statistics page make, by name."""
    stats = StatsService(database)
    usage = UsageService(database, UsageWriter(database))
    today = datetime.now(UTC).date()
    day = StatsFilter(date_from=today, date_to=today)
    month = StatsFilter(date_from=today - timedelta(days=29), date_to=today)
    narrowed = StatsFilter(date_from=month.date_from, date_to=today, provider="openai", application_id=3)
    yield "summary, today", lambda: stats.summary(day)
    yield "summary, 30 days", lambda: stats.summary(month)
    yield "p50/p95, today", lambda: stats.latency(day)
    yield "p50/p95, 30 days", lambda: stats.latency(month)
    yield "by day, 30 days", lambda: stats.by("day", month)
    yield "by provider × day, 30 days", lambda: stats.by_day_and("provider", month)
    yield "tokens by model (top 10)", lambda: stats.by("model", month, limit=10)
    yield "top models (10)", lambda: stats.top_models(month, limit=10)
    yield "top applications (10)", lambda: stats.by("application", month, limit=10)
    yield "filter menus (1 DISTINCT)", lambda: stats.filter_options(month.date_from or today, today)
    yield "recent rows (10, usage_logs)", lambda: usage.list_page(limit=10)
    yield "export daily rows, 30 days", lambda: stats.daily_rows(month)
    yield "= whole dashboard (stats)", lambda: stats.dashboard(today)
    yield "= whole statistics page", lambda: stats.report(month)
    yield "= statistics page, filtered", lambda: stats.report(narrowed)


async def time_queries(url: str, repeat: int) -> list[dict[str, Any]]:
    database = Database(url)
    results = []
    try:
        for name, query in queries(database):
            await query()  # warm-up: connection, statement cache, page cache
            samples = []
            for _ in range(repeat):
                started = time.perf_counter()
                await query()
                samples.append((time.perf_counter() - started) * 1000)
            results.append({"query": name, "p50_ms": statistics.median(samples), "max_ms": max(samples)})
    finally:
        await database.dispose()
    return results


async def migrate(url: str) -> None:
    database = Database(url)
    try:
        await upgrade_to_head(database)
    finally:
        await database.dispose()


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    started = time.perf_counter()
    data = generate(args.rows, args.days)
    generated = time.perf_counter() - started
    counts = {"usage_logs": len(data[0]), "usage_daily": len(data[1]), "usage_latency_daily": len(data[2])}
    console.print(f"generated {counts} in {generated:.1f} s")
    report: dict[str, Any] = {"rows": counts, "generate_s": round(generated, 1), "engines": {}}
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "bench.db"
            url = f"sqlite+aiosqlite:///{path}"
            await migrate(url)
            started = time.perf_counter()
            load_sqlite(path, data)
            report["engines"]["sqlite"] = {"load_s": round(time.perf_counter() - started, 1)}
            console.print(f"sqlite: loaded in {report['engines']['sqlite']['load_s']} s")
            report["engines"]["sqlite"]["queries"] = await time_queries(url, args.repeat)
    if args.postgres:
        await migrate(args.postgres)
        started = time.perf_counter()
        await load_postgres(args.postgres, data)
        report["engines"]["postgresql"] = {"load_s": round(time.perf_counter() - started, 1)}
        console.print(f"postgresql: loaded in {report['engines']['postgresql']['load_s']} s")
        report["engines"]["postgresql"]["queries"] = await time_queries(args.postgres, args.repeat)
    return report


def print_table(report: dict[str, Any], console: Console) -> None:
    engines = list(report["engines"])
    table = Table(title=f"dashboard / statistics queries over {report['rows']['usage_logs']:,} usage rows")
    table.add_column("query")
    for engine in engines:
        table.add_column(f"{engine} p50 ms", justify="right")
        table.add_column(f"{engine} max ms", justify="right")
    names = [row["query"] for row in report["engines"][engines[0]]["queries"]]
    for index, name in enumerate(names):
        cells = []
        for engine in engines:
            row = report["engines"][engine]["queries"][index]
            cells += [f"{row['p50_ms']:.1f}", f"{row['max_ms']:.1f}"]
        table.add_row(name, *cells)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--postgres", help="a PostgreSQL URL (postgresql+asyncpg://...) to empty and use")
    parser.add_argument("--no-sqlite", action="store_true", help="only the --postgres run")
    parser.add_argument("--json", action="store_true", help="table on stderr, one JSON object on stdout")
    args = parser.parse_args()
    console = Console(stderr=args.json)
    report = asyncio.run(run(args, console))
    print_table(report, console)
    if args.json:
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
