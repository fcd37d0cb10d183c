"""The root command: `init`, `chat`, `models`, `usage`, and the command groups."""

from __future__ import annotations

import asyncio
import secrets
import sys
from dataclasses import asdict
from enum import StrEnum
from typing import Annotated, Any

import typer
import uvicorn

from llm_manager.cli import apps, budgets, config, keys, metrics, tokens, users
from llm_manager.cli._runtime import consoles, fail, money, parse_pairs, print_json, run
from llm_manager.cli.rendering import result_summary, usage_table
from llm_manager.errors import LLMManagerError
from llm_manager.manager import LLMManager
from llm_manager.services.secrets import ensure_key_file
from llm_manager.services.seed import seed_defaults
from llm_manager.services.usage import UsageFilter
from llm_manager.settings import load_settings
from llm_manager.types import ChatResult, TextDelta

app = typer.Typer(
    name="llm-manager",
    help="One managed place through which your applications use Large Language Models.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(config.app, name="config")
app.add_typer(keys.app, name="keys")
app.add_typer(metrics.app, name="metrics")
app.add_typer(apps.app, name="apps")
app.add_typer(tokens.app, name="tokens")
app.add_typer(budgets.app, name="budgets")
app.add_typer(users.app, name="users")


class CallStatusChoice(StrEnum):
    ok = "ok"
    error = "error"
    cancelled = "cancelled"


ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Generation parameter override, e.g. temperature=0.2."),
]


@app.command()
def init(
    admin_email: Annotated[
        str | None,
        typer.Option(help="Also create this super-admin for the admin UI (password prompted) if missing."),
    ] = None,
    password_stdin: users.PasswordStdin = False,
) -> None:
    """Create the data directory, the encryption key and the database, and seed the demo configuration."""
    out, err = consoles()
    try:
        settings = load_settings()
    except LLMManagerError as error:
        fail(str(error))
    if ensure_key_file(settings):
        err.print(f"Created encryption key [bold]{settings.key_file}[/] (mode 0600). Back it up.")
    created = run(lambda llm: seed_defaults(llm.configurations))
    out.print(f"Database ready: {settings.database_url}")
    if created:
        out.print(f"Seeded configurations: {', '.join(created)}")
    if admin_email:
        _ensure_admin(admin_email, password_stdin)
    out.print('Try it: [bold]llm-manager chat demo "hello"[/]')


def _ensure_admin(email: str, password_stdin: bool) -> None:
    """Create the first super-admin; an existing account is left as it is (init runs on every `make run`)."""
    out = consoles()[0]
    existing = run(lambda llm: llm.services.accounts.list_users())
    if any(user.email == email.strip().lower() for user in existing):
        out.print(f"Admin user {email} exists; sign in at /admin.")
        return
    generated = not password_stdin and not sys.stdin.isatty()
    # Nobody to ask (CI, a service manager): make a strong password and show it this once.
    password = secrets.token_urlsafe(18) if generated else users.read_password(password_stdin)
    run(
        lambda llm: llm.services.accounts.create_user(
            email, password, name="Administrator", roles=["super-admin"]
        )
    )
    out.print(f"Created super-admin [bold]{email}[/]; sign in at /admin.")
    if generated:
        out.print(
            f"Its generated password, shown only now: [bold]{password}[/] (change it on /admin/account)."
        )


@app.command()
def chat(
    configuration: Annotated[str, typer.Argument(help="Configuration slug.")],
    prompt: Annotated[str, typer.Argument(help="What to say. Use '-' to read it from standard input.")],
    system: Annotated[str | None, typer.Option("--system", "-s", help="A system prompt.")] = None,
    param: ParamOption = None,
    no_stream: Annotated[bool, typer.Option("--no-stream", help="Wait for the whole reply.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with text, usage, cost, log_id.")
    ] = False,
) -> None:
    """Send a prompt through a configuration; the reply streams to the terminal."""
    text = sys.stdin.read() if prompt == "-" else prompt
    overrides = parse_pairs(param or (), option="--param")
    if no_stream or as_json:
        result = run(lambda llm: llm.chat(configuration, text, system=system, **overrides))
        if as_json:
            print_json(_result_json(result))
        else:
            typer.echo(result.text)
            consoles()[1].print(result_summary(result))
        return
    streamed = run(lambda llm: _stream_to_terminal(llm, configuration, text, system, overrides))
    if streamed is not None:
        consoles()[1].print(result_summary(streamed))
        if streamed.status == "cancelled":
            raise typer.Exit(130)


async def _stream_to_terminal(
    llm: LLMManager, configuration: str, text: str, system: str | None, overrides: dict[str, Any]
) -> ChatResult | None:
    """Print text as it arrives; Ctrl-C stops the call, which is still accounted as cancelled."""
    wrote = False
    async with llm.stream(configuration, text, system=system, **overrides) as stream:
        try:
            async for event in stream:
                if isinstance(event, TextDelta):
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                    wrote = True
        except asyncio.CancelledError:
            await stream.aclose()
        finally:
            if wrote:
                sys.stdout.write("\n")
    return stream.result


@app.command()
def models(
    configuration: Annotated[str, typer.Argument(help="Configuration slug.")],
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Ask the upstream again instead of the cache.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the models a configuration's provider offers (cached; --refresh to ask again)."""
    found = run(lambda llm: llm.models(configuration, refresh=refresh))
    if as_json:
        print_json([asdict(model) for model in found])
        return
    for model in found:
        context = f"  ({model.context_length:,} tokens)" if model.context_length else ""
        typer.echo(f"{model.id}{context}")


@app.command()
def usage(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many calls.")] = 20,
    configuration: Annotated[str | None, typer.Option("--config", help="Only this configuration.")] = None,
    status: Annotated[
        CallStatusChoice | None, typer.Option("--status", help="Only calls with this status.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The most recent calls with tokens, cost, latency and time to first token."""

    filters = UsageFilter(configuration=configuration, status=status.value if status else None)
    page = run(lambda llm: llm.usage.list_page(limit=limit, filters=filters))
    if as_json:
        print_json([asdict(row) for row in page.rows])
        return
    if not page.rows:
        consoles()[1].print('No calls yet. Try [bold]llm-manager chat demo "hello"[/].')
        return
    consoles()[0].print(usage_table(page.rows))


def _result_json(result: ChatResult) -> dict[str, object]:
    return {
        "text": result.text,
        "tool_calls": [asdict(call) for call in result.tool_calls],
        "usage": {
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "total_tokens": result.usage.total_tokens,
            "cached_tokens": result.usage.cached_tokens,
            "estimated": result.usage.estimated,
        },
        "cost": None if result.cost is None else str(result.cost),
        "cost_display": money(result.cost),
        "log_id": result.log_id,
        "configuration": result.configuration,
        "provider": result.provider,
        "model": result.model,
        "finish_reason": result.finish_reason,
        "latency_ms": result.latency_ms,
        "ttft_ms": result.ttft_ms,
        "attempts": result.attempts,
    }


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes. Budgets and revocations hold across them; rate limits need LLM_MANAGER_REDIS_URL.",
        ),
    ] = 1,
    graceful_timeout: Annotated[
        int,
        typer.Option(min=0, help="Seconds to let calls in flight finish on shutdown before closing them."),
    ] = 30,
) -> None:
    """Run the HTTP server (migrates the database first)."""
    uvicorn.run(
        "llm_manager.server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_graceful_shutdown=graceful_timeout,
        loop="uvloop",
        http="httptools",
        log_level="info",
    )


def main() -> None:
    """Console entry point: errors raised outside a command (bad settings) end without a traceback."""
    try:
        app()
    except LLMManagerError as error:
        consoles()[1].print(f"[bold red]error:[/] {error}", highlight=False)
        raise SystemExit(1) from None
