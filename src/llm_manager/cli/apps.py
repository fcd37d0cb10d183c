"""`llm-manager apps ...`: the applications configurations, usage, tokens and budgets belong to."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from llm_manager.cli._runtime import consoles, fail, print_json, run
from llm_manager.services.applications import UNSET, ApplicationView

app = typer.Typer(help="Applications that call LLMs through LLM Manager.", no_args_is_help=True)

RpmOption = Annotated[
    int | None, typer.Option("--rpm", min=1, help="Requests per minute, across all its tokens.")
]
TpmOption = Annotated[
    int | None, typer.Option("--tpm", min=1, help="Tokens per minute, across all its tokens.")
]


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    description: Annotated[str, typer.Option(help="What the application is.")] = "",
    rpm: RpmOption = None,
    tpm: TpmOption = None,
) -> None:
    """Create an application, optionally with rate limits shared by all its tokens."""
    view = run(lambda llm: llm.applications.create(name, description, rpm_limit=rpm, tpm_limit=tpm))
    consoles()[0].print(f"Created application [bold]{view.name}[/] (id {view.id}{_limits_note(view)}).")


@app.command("list")
def list_applications(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List applications with their rate limits."""
    views = run(lambda llm: llm.applications.list_all())
    if as_json:
        print_json([asdict(view) for view in views])
        return
    table = Table(header_style="bold")
    for column in ("id", "name", "active", "rpm", "tpm", "description"):
        table.add_column(column, justify="right" if column in ("rpm", "tpm") else "left")
    for view in views:
        table.add_row(
            str(view.id),
            view.name,
            "yes" if view.is_active else "[dim]no[/]",
            _limit(view.rpm_limit),
            _limit(view.tpm_limit),
            view.description,
        )
    consoles()[0].print(table)


@app.command("update")
def update(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    rpm: RpmOption = None,
    no_rpm: Annotated[bool, typer.Option("--no-rpm", help="Lift the requests-per-minute limit.")] = False,
    tpm: TpmOption = None,
    no_tpm: Annotated[bool, typer.Option("--no-tpm", help="Lift the tokens-per-minute limit.")] = False,
    active: Annotated[
        bool | None,
        typer.Option("--active/--inactive", help="Switch the application (and all its tokens) on or off."),
    ] = None,
) -> None:
    """Change what is given; the change applies to the very next request, in every process."""
    if rpm is not None and no_rpm:
        raise typer.BadParameter("use either --rpm or --no-rpm", param_hint="--rpm")
    if tpm is not None and no_tpm:
        raise typer.BadParameter("use either --tpm or --no-tpm", param_hint="--tpm")
    if description is None and active is None and rpm is None and tpm is None and not (no_rpm or no_tpm):
        fail(
            "nothing to change: give --description, --rpm, --no-rpm, --tpm, --no-tpm, --active or --inactive",
            2,
        )
    # None lifts a limit, UNSET leaves it as it is.
    rpm_limit = None if no_rpm else (UNSET if rpm is None else rpm)
    tpm_limit = None if no_tpm else (UNSET if tpm is None else tpm)
    view = run(
        lambda llm: llm.applications.update(
            name, description=description, is_active=active, rpm_limit=rpm_limit, tpm_limit=tpm_limit
        )
    )
    state = "active" if view.is_active else "inactive"
    consoles()[0].print(f"Updated application [bold]{view.name}[/] ({state}{_limits_note(view)}).")


def _limit(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _limits_note(view: ApplicationView) -> str:
    limits = []
    if view.rpm_limit is not None:
        limits.append(f"{view.rpm_limit:,} requests/min")
    if view.tpm_limit is not None:
        limits.append(f"{view.tpm_limit:,} tokens/min")
    return "".join(f", {limit}" for limit in limits)
