"""`llm-manager metrics ...`: custom metrics applications record."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from llm_manager.cli._runtime import consoles, print_json, run
from llm_manager.manager import LLMManager

app = typer.Typer(help="Custom metrics recorded about calls or applications.", no_args_is_help=True)


@app.command("list")
def list_metrics(
    name: Annotated[str | None, typer.Option(help="Only metrics with this name.")] = None,
    log_id: Annotated[str | None, typer.Option(help="Only metrics tied to this usage log.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The most recent custom metrics."""
    found = run(lambda llm: llm.metrics.list_recent(name=name, usage_log_id=log_id, limit=limit))
    if as_json:
        print_json([asdict(metric) for metric in found])
        return
    if not found:
        consoles()[1].print(
            "No metrics yet. Record one with `llm-manager metrics record NAME VALUE --log-id ID` or LLMManager.record_metric()."
        )
        return
    table = Table(header_style="bold")
    for column in ("time (UTC)", "name", "value", "data", "usage log", "application"):
        table.add_column(column)
    for metric in found:
        table.add_row(
            metric.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            metric.name,
            "" if metric.value is None else f"{metric.value:g}",
            "" if metric.data is None else str(metric.data)[:60],
            metric.usage_log_id or "",
            "" if metric.application_id is None else str(metric.application_id),
        )
    consoles()[0].print(table)


@app.command("record")
def record(
    name: Annotated[str, typer.Argument()],
    value: Annotated[float, typer.Argument()],
    log_id: Annotated[str | None, typer.Option(help="Tie it to this usage log.")] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="Tie it to this application.")] = None,
) -> None:
    """Record a numeric metric against a usage log or an application."""

    async def action(llm: LLMManager) -> str:
        application_id = (await llm.applications.get(app_name)).id if app_name else None
        return await llm.record_metric(name, value, log_id=log_id, application_id=application_id)

    metric_id = run(action)
    consoles()[0].print(f"Recorded {name}={value:g} ({metric_id}).")
