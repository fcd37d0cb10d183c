"""`llm-manager config ...`: add, list, show, test and remove configurations."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from decimal import Decimal
from typing import Annotated, Any

import typer
from pydantic import SecretStr, ValidationError
from rich.table import Table

from llm_manager.cli._runtime import consoles, fail, money, parse_pairs, print_json, run
from llm_manager.cli.rendering import result_summary
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.configurations import ConfigurationView

app = typer.Typer(
    help="Manage named configurations (provider + model + parameters + key).", no_args_is_help=True
)


@app.command("add")
def add(
    slug: Annotated[str, typer.Argument(help="URL-safe name callers use, e.g. 'support-bot'.")],
    provider: Annotated[
        str, typer.Option(help="openai, openai-compatible, openrouter, anthropic, ollama or demo.")
    ],
    model: Annotated[str, typer.Option(help="The provider's model id, e.g. gpt-4o-mini.")],
    base_url: Annotated[str | None, typer.Option(help="Override the provider's default URL.")] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Read the API key from this environment variable.")
    ] = None,
    api_key_stdin: Annotated[bool, typer.Option(help="Read the API key from standard input.")] = False,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Default parameter, e.g. temperature=0.2.")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", help="Provider option, e.g. delay_ms=20.")
    ] = None,
    app_name: Annotated[
        str | None, typer.Option("--app", help="Scope to this application (default: global).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    fallback: Annotated[
        list[str] | None, typer.Option("--fallback", help="Fallback configuration slug (repeat, in order).")
    ] = None,
    input_price: Annotated[
        Decimal | None, typer.Option(help="Price override: USD per million input tokens.")
    ] = None,
    output_price: Annotated[
        Decimal | None, typer.Option(help="Price override: USD per million output tokens.")
    ] = None,
    default: Annotated[bool, typer.Option("--default", help="Make it the default configuration.")] = False,
    inactive: Annotated[bool, typer.Option("--inactive", help="Create it switched off.")] = False,
) -> None:
    """Add a configuration. The API key is encrypted at rest and never shown again."""
    if api_key_env and api_key_stdin:
        raise typer.BadParameter("use either --api-key-env or --api-key-stdin", param_hint="--api-key-env")
    api_key = _read_key(api_key_env, api_key_stdin)
    try:
        spec = ConfigurationCreate(
            slug=slug,
            name=name,
            provider=provider,
            model=model,
            base_url=base_url,
            api_key=SecretStr(api_key) if api_key else None,
            default_params=parse_pairs(param or (), option="--param"),
            options=parse_pairs(option or (), option="--option"),
            application=app_name,
            fallbacks=fallback,
            input_price=input_price,
            output_price=output_price,
            is_default=default,
            is_active=not inactive,
        )
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    view = run(lambda llm: llm.configurations.create(spec))
    consoles()[0].print(f"Added [bold]{view.slug}[/] ({view.provider_label} · {view.model}).")


@app.command("list")
def list_configurations(
    provider: Annotated[str | None, typer.Option(help="Only this provider.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List configurations."""
    views = run(lambda llm: llm.configurations.list_all(provider=provider))
    if as_json:
        print_json([_public(view) for view in views])
        return
    table = Table(header_style="bold")
    for column in ("slug", "provider", "model", "active", "default", "key", "application", "fallbacks"):
        table.add_column(column)
    for view in views:
        provider_label = f"{view.provider} [magenta](demo)[/]" if view.is_demo else view.provider
        table.add_row(
            view.slug,
            provider_label,
            view.model,
            "yes" if view.is_active else "[dim]no[/]",
            "★" if view.is_default else "",
            view.api_key_hint or "-",
            view.application or "[dim]global[/]",
            ", ".join(view.fallbacks),
        )
    consoles()[0].print(table)


@app.command("show")
def show(
    slug: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one configuration (the key only as a hint)."""
    view = run(lambda llm: llm.configurations.get(slug))
    public = _public(view)
    if as_json:
        print_json(public)
        return
    out = consoles()[0]
    for key, value in public.items():
        out.print(f"[bold]{key:>16}[/] {value}", highlight=False)


@app.command("test")
def test(slug: Annotated[str, typer.Argument()]) -> None:
    """Make a tiny real call through the configuration and record it."""
    result = run(lambda llm: llm.test(slug))
    consoles()[0].print(f"[green]OK[/] {result.text.strip()[:80]!r}")
    consoles()[1].print(result_summary(result))


@app.command("remove")
def remove(
    slug: Annotated[str, typer.Argument()],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a configuration (its usage history stays)."""
    if not yes:
        typer.confirm(f"Delete configuration {slug!r}?", abort=True)
    run(lambda llm: llm.configurations.delete(slug))
    consoles()[0].print(f"Removed {slug}.")


def _read_key(env: str | None, stdin: bool) -> str | None:
    if env:
        value = os.environ.get(env)
        if not value:
            fail(f"environment variable {env} is not set")
        return value
    if stdin:
        value = sys.stdin.readline().strip()
        if not value:
            fail("no API key on standard input")
        return value
    return None


def _public(view: ConfigurationView) -> dict[str, Any]:
    data = asdict(view)
    override = view.price_override
    data["price_override"] = (
        None
        if override is None
        else {"input_per_mtok": money(override.input), "output_per_mtok": money(override.output)}
    )
    return data
