"""The root command: `init`, `chat` (in `chat.py`), `models`, `usage`, and the command groups."""

from __future__ import annotations

import math
import secrets
import sys
from dataclasses import asdict
from enum import StrEnum
from typing import Annotated

import typer
import uvicorn

from llm_manager.cli import apps, budgets, config, conversations, keys, metrics, templates, tokens, users
from llm_manager.cli._runtime import consoles, fail, print_json, run
from llm_manager.cli.chat import chat
from llm_manager.cli.rendering import usage_table
from llm_manager.errors import LLMManagerError
from llm_manager.services.secrets import ensure_key_file
from llm_manager.services.seed import seed_defaults
from llm_manager.services.usage import UsageFilter
from llm_manager.settings import load_settings

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
app.add_typer(conversations.app, name="conversations")
app.add_typer(templates.app, name="templates")


class CallStatusChoice(StrEnum):
    ok = "ok"
    error = "error"
    cancelled = "cancelled"


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


app.command()(chat)


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
    output = consoles()[0]
    output.print(usage_table(page.rows, width=output.width))


STREAM_END_MARGIN = 10
"""Seconds past the shutdown grace before uvicorn closes connections: the streams it ended send their
`error` event and are accounted in that time."""


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
        int | None,
        typer.Option(
            min=0,
            help="Seconds calls in flight may take on shutdown before their connections are closed. "
            "Default: LLM_MANAGER_SHUTDOWN_GRACE + 10, so streams still open when the grace ends "
            "get their error event first.",
        ),
    ] = None,
) -> None:
    """Run the HTTP server (migrates the database first)."""
    if graceful_timeout is None:
        graceful_timeout = math.ceil(load_settings().shutdown_grace) + STREAM_END_MARGIN
    uvicorn.run(
        "llm_manager.server.app:serve_app",
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
