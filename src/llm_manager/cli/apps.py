"""`llm-manager apps ...`: the applications configurations and usage belong to."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from llm_manager.cli._runtime import consoles, print_json, run

app = typer.Typer(help="Applications that call LLMs through LLM Manager.", no_args_is_help=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument()],
    description: Annotated[str, typer.Option(help="What the application is.")] = "",
) -> None:
    """Create an application."""
    view = run(lambda llm: llm.applications.create(name, description))
    consoles()[0].print(f"Created application [bold]{view.name}[/] (id {view.id}).")


@app.command("list")
def list_applications(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List applications."""
    views = run(lambda llm: llm.applications.list_all())
    if as_json:
        print_json([asdict(view) for view in views])
        return
    table = Table(header_style="bold")
    for column in ("id", "name", "active", "description"):
        table.add_column(column)
    for view in views:
        table.add_row(str(view.id), view.name, "yes" if view.is_active else "no", view.description)
    consoles()[0].print(table)
