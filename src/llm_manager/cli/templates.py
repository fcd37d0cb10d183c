"""`llm-manager templates ...`: prompt templates, their immutable versions, labels and statistics.

A reference is `name` (the version the `production` label points at, else the newest), `name@label`
or `name@3`. `add` never changes a version, it saves the next one: a usage row naming a version
keeps meaning the same text, so `stats` can compare versions by cost and latency.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from llm_manager.cli._runtime import consoles, fail, money, parse_pairs, print_json, run
from llm_manager.manager import LLMManager
from llm_manager.services.templates import (
    TemplateDraft,
    TemplateVersionView,
    TemplateView,
    VersionStats,
    parse_reference,
)

app = typer.Typer(
    help="Prompt templates: immutable numbered versions, labels, rendering and statistics.",
    no_args_is_help=True,
)

CREATED_BY = "cli"
"""Recorded as the author of versions saved here (the admin UI records the user's email)."""

NameArgument = Annotated[str, typer.Argument(help="The template's name.")]
ReferenceArgument = Annotated[
    str,
    typer.Argument(
        help="NAME (its production version, else the newest), NAME@LABEL or NAME@VERSION.",
        metavar="NAME[@LABEL|@VERSION]",
    ),
]
VariablesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--var",
        "-v",
        help="A variable's value, key=value (repeat); text is converted to the variable's declared type "
        '(integer 3, boolean yes/no, list ["a","b"], ...).',
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def parse_variables(pairs: Iterable[str]) -> dict[str, str]:
    """`key=value` pairs as text: the template's declarations, not JSON, decide what each becomes."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--var")
        values[key.strip()] = value
    return values


@app.command("list")
def list_templates(as_json: JsonOption = False) -> None:
    """Every template with its newest version and its labels."""
    views = run(lambda llm: llm.templates.list())
    if as_json:
        print_json([asdict(view) for view in views])
        return
    if not views:
        consoles()[1].print(
            "No templates. Add one with [bold]llm-manager templates add NAME --user 'Hello {{ name }}' "
            "--var name![/]."
        )
        return
    table = Table(header_style="bold")
    for column in ("name", "versions", "labels", "description", "updated (UTC)"):
        table.add_column(column, no_wrap=column in ("name", "updated (UTC)"))
    for view in views:
        table.add_row(
            view.name,
            str(view.latest_version),
            _labels(view),
            Text(view.description),
            view.updated_at.strftime("%Y-%m-%d %H:%M"),
        )
    consoles()[0].print(table)


@app.command("show")
def show(reference: ReferenceArgument, as_json: JsonOption = False) -> None:
    """A template's versions and labels, and the text and variables of one version."""
    name = parse_reference(reference)[0]
    template, versions, chosen = run(lambda llm: _template(llm, name, reference))
    if as_json:
        print_json(
            {
                **asdict(template),
                "versions": [asdict(version) for version in versions],
                "selected": asdict(chosen),
            }
        )
        return
    out = consoles()[0]
    out.print(Text(template.name, style="bold"), Text(template.description or "", style="dim"))
    out.print(Text(f"labels: {_labels(template)}", style="dim"))
    table = Table(header_style="bold")
    for column in ("version", "labels", "configuration", "variables", "note", "created (UTC)", "by"):
        table.add_column(column, no_wrap=column in ("version", "created (UTC)"))
    for version in versions:
        table.add_row(
            str(version.version),
            ", ".join(version.labels),
            version.configuration or "-",
            ", ".join(spec.name for spec in version.variables) or "-",
            Text(version.note),
            version.created_at.strftime("%Y-%m-%d %H:%M"),
            version.created_by or "-",
        )
    out.print(table)
    _print_version(chosen)


@app.command("add")
def add(
    name: NameArgument,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="The user part, Jinja2 text: 'Summarise {{ text }}'.")
    ] = None,
    user_file: Annotated[
        Path | None, typer.Option("--user-file", help="Read the user part from a file ('-': standard input).")
    ] = None,
    system: Annotated[str | None, typer.Option("--system", "-s", help="The system part, if any.")] = None,
    system_file: Annotated[
        Path | None,
        typer.Option("--system-file", help="Read the system part from a file ('-': standard input)."),
    ] = None,
    var: Annotated[
        list[str] | None,
        typer.Option(
            "--var",
            help="Declare a variable (repeat): NAME[:TYPE[:DEFAULT]], a trailing ! for required "
            "(topic!, count:integer:3, tags:list). Types: string (default), number, integer, boolean, "
            "list, object.",
        ),
    ] = None,
    variables_file: Annotated[
        Path | None,
        typer.Option(
            "--variables-file",
            help="Declarations as a JSON list of {name, type, default, required, description}.",
        ),
    ] = None,
    configuration: Annotated[
        str | None, typer.Option("--config", help="The configuration calls use unless they name one.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A default generation parameter, e.g. temperature=0.2 (repeat)."),
    ] = None,
    note: Annotated[str, typer.Option("--note", help="What this version changes.")] = "",
    description: Annotated[
        str | None, typer.Option("--description", help="What the template is for (kept across versions).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the saved version as JSON.")] = False,
) -> None:
    """Save the next version of a template (creating the template with version 1).

    Versions never change: saving again adds a version, and `latest` moves to it. Point
    `production` at the version calls should use with `templates label NAME production N`.
    """
    if var and variables_file:
        raise typer.BadParameter("give --var or --variables-file, not both", param_hint="--var")
    if str(user_file) == "-" and str(system_file) == "-":
        raise typer.BadParameter("only one part can come from standard input", param_hint="--system-file")
    user_text = _text(user, user_file, "--user")
    if user_text is None:
        raise typer.BadParameter("give the user part with --user or --user-file", param_hint="--user")
    draft = TemplateDraft(
        user=user_text,
        system=_text(system, system_file, "--system"),
        variables=_declarations_file(variables_file)
        if variables_file
        else [_declaration(v) for v in var or ()],
        configuration=configuration,
        params=parse_pairs(param or (), option="--param"),
        note=note,
    )
    saved = run(lambda llm: llm.templates.save(name, draft, created_by=CREATED_BY, description=description))
    if as_json:
        print_json(asdict(saved))
        return
    consoles()[0].print(
        Text(f"Saved template {saved.name} version {saved.version} (labels: {', '.join(saved.labels)}).")
    )


@app.command("render")
def render(
    reference: ReferenceArgument,
    var: VariablesOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the rendered parts, version and variables as JSON.")
    ] = False,
) -> None:
    """Render a version with variables and print it, without calling any model.

    Missing required variables, unknown ones and values that do not fit their type are refused by name.
    """
    variables = parse_variables(var or ())
    rendered = run(lambda llm: llm.templates.render(reference, variables))
    if as_json:
        print_json(asdict(rendered))
        return
    out, err = consoles()
    err.print(Text(f"{rendered.name} version {rendered.version}", style="dim"))
    if rendered.system is None:
        typer.echo(rendered.user)
        return
    out.print(Rule(Text("system", style="bold"), align="left"), Text(rendered.system))
    out.print(Rule(Text("user", style="bold"), align="left"), Text(rendered.user))


@app.command("label")
def label(
    name: NameArgument,
    label_name: Annotated[str, typer.Argument(metavar="LABEL", help="production, or a name of your own.")],
    version: Annotated[
        int | None, typer.Argument(min=1, help="The version it points at (not with --remove).")
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the label instead.")] = False,
) -> None:
    """Point a label at a version (moving it if it pointed elsewhere), or remove it.

    A bare template name means its `production` version; `latest` always follows the newest version.
    """
    if remove:
        if version is not None:
            raise typer.BadParameter("--remove takes no VERSION", param_hint="VERSION")
        run(lambda llm: llm.templates.remove_label(name, label_name))
        consoles()[0].print(Text(f"Removed label {label_name} from {name}."))
        return
    if version is None:
        raise typer.BadParameter("give the VERSION the label points at", param_hint="VERSION")
    chosen = version
    run(lambda llm: llm.templates.set_label(name, label_name, chosen))
    consoles()[0].print(Text(f"{name}@{label_name} → version {chosen}"))


@app.command("stats")
def stats(name: NameArgument, as_json: JsonOption = False) -> None:
    """How each version performed: calls, errors, tokens, cost and mean latency, from the usage log."""
    rows = run(lambda llm: llm.templates.stats(name))
    if as_json:
        print_json([{**asdict(row), "avg_cost": row.avg_cost} for row in rows])
        return
    if not rows:
        consoles()[1].print(
            f"No calls used {name} yet. Try [bold]llm-manager chat --template {name} -v key=value[/].",
            highlight=False,
        )
        return
    consoles()[0].print(_stats_table(name, rows))


@app.command("delete")
def delete(
    name: NameArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a template and every version; usage rows keep the name and version they recorded."""
    if not yes:
        view = run(lambda llm: llm.templates.get(name))
        typer.confirm(f"Delete template {view.name} and its {view.latest_version} versions?", abort=True)
    run(lambda llm: llm.templates.delete(name))
    consoles()[0].print(Text(f"Deleted template {name}."))


async def _template(
    llm: LLMManager, name: str, reference: str
) -> tuple[TemplateView, list[TemplateVersionView], TemplateVersionView]:
    templates = llm.templates
    return await templates.get(name), await templates.versions(name), await templates.version(reference)


def _print_version(version: TemplateVersionView) -> None:
    out = consoles()[0]
    labels = f" ({', '.join(version.labels)})" if version.labels else ""
    out.print(Rule(Text(f"version {version.version}{labels}", style="bold"), align="left"))
    defaults = [
        f"configuration: {version.configuration}" if version.configuration else "",
        f"parameters: {json.dumps(version.params)}" if version.params else "",
    ]
    if any(defaults):
        out.print(Text(" · ".join(part for part in defaults if part), style="dim"))
    if version.system is not None:
        out.print(Text("system:", style="bold"), Text(version.system))
    out.print(Text("user:", style="bold"), Text(version.user))
    if not version.variables:
        return
    table = Table("variable", "type", "default", "required", "description", header_style="bold")
    for spec in version.variables:
        table.add_row(
            spec.name,
            spec.type,
            "-" if spec.default is None else json.dumps(spec.default, ensure_ascii=False),
            "yes" if spec.required else "no",
            Text(spec.description),
        )
    out.print(table)


def _stats_table(name: str, rows: list[VersionStats]) -> Table:
    table = Table(title=f"{name}: calls per version", header_style="bold")
    for column in ("version", "calls", "errors", "tokens in+out", "cost", "cost per call", "mean latency"):
        table.add_column(column, justify="left" if column == "version" else "right")
    for row in rows:
        table.add_row(
            str(row.version),
            str(row.requests),
            str(row.errors),
            f"{row.prompt_tokens}+{row.completion_tokens}",
            money(row.cost),
            money(row.avg_cost),
            "-" if row.avg_latency_ms is None else f"{row.avg_latency_ms:.0f} ms",
        )
    return table


def _labels(view: TemplateView) -> str:
    return ", ".join(f"{label}→{version}" for label, version in sorted(view.labels.items())) or "-"


def _text(inline: str | None, path: Path | None, option: str) -> str | None:
    if inline is not None and path is not None:
        raise typer.BadParameter(f"give {option} or {option}-file, not both", param_hint=option)
    return inline if path is None else _read(path)


def _read(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        fail(f"cannot read {path}: {getattr(error, 'strerror', None) or error}")


def _declaration(text: str) -> dict[str, Any]:
    """`name[:type[:default]]`, a trailing `!` for required; the service checks what it means."""
    required = text.endswith("!")
    body = text[:-1] if required else text
    name, _, rest = body.partition(":")
    kind, has_default, default = rest.partition(":")
    declaration: dict[str, Any] = {
        "name": name.strip(),
        "type": kind.strip() or "string",
        "required": required,
    }
    if has_default:
        declaration["default"] = default
    return declaration


def _declarations_file(path: Path) -> list[Any]:
    try:
        declarations = json.loads(_read(path))
    except json.JSONDecodeError as error:
        fail(f"{path} is not JSON: {error}")
    if not isinstance(declarations, list):
        fail(f"{path} must hold a JSON list of variable declarations")
    return declarations
