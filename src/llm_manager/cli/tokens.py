"""`llm-manager tokens ...`: issue, list and revoke the API tokens applications call the server with.

The secret is printed once, at creation, and only the token's prefix is ever shown again. Without
`--json` the secret is the only line on standard output, so `TOKEN=$(llm-manager tokens create
--app x)` captures it while the warning to store it goes to the terminal on standard error.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from llm_manager.cli._runtime import consoles, print_json, run
from llm_manager.manager import LLMManager
from llm_manager.services.tokens import TokenView

app = typer.Typer(help="API tokens applications use to call the server.", no_args_is_help=True)

_RELATIVE = re.compile(r"^(\d{1,6})(min|h|d|w)$")
_UNITS = {"min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
"""No bare `m`: read as months by some and minutes by others, it would mislead either way."""
_STATUS_STYLE = {"active": "green", "revoked": "red", "expired": "yellow"}


class Scope(StrEnum):
    inference = "inference"
    management = "management"
    admin = "admin"


@app.command("create")
def create(
    application: Annotated[str, typer.Option("--app", help="The application the token calls as.")],
    name: Annotated[str, typer.Option(help="A label to recognise the token by.")] = "",
    configuration: Annotated[
        list[str] | None,
        typer.Option(
            "--config", help="Only this configuration (repeat); default: every one the app may use."
        ),
    ] = None,
    scope: Annotated[
        list[Scope] | None,
        typer.Option(
            "--scope",
            help="Endpoint group (repeat): inference (/v1), management (its app's /api), admin (all apps).",
        ),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(
            help="Lifetime (90min, 12h, 30d, 2w) or a UTC time (2027-01-01T00:00Z); default: never."
        ),
    ] = None,
    rpm: Annotated[int | None, typer.Option("--rpm", min=1, help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option("--tpm", min=1, help="Tokens per minute.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the secret and the token as JSON.")] = False,
) -> None:
    """Issue a token. Its secret is printed once: store it now, it cannot be shown again."""
    expires_at = parse_expiry(expires, now=datetime.now(UTC)) if expires else None
    scopes = [choice.value for choice in scope] if scope else ["inference"]
    issued = run(
        lambda llm: llm.tokens.create(
            application,
            name=name,
            groups=scopes,
            configurations=configuration,
            expires_at=expires_at,
            rpm_limit=rpm,
            tpm_limit=tpm,
        )
    )
    if as_json:
        print_json({"token": issued.secret, **_public(issued.token)})
    else:
        typer.echo(issued.secret)
    view = issued.token
    consoles()[1].print(
        f"Created token [bold]{view.prefix}[/] for application [bold]{view.application}[/] "
        f"(scopes: {', '.join(view.groups)}; configurations: {_configurations(view)}; "
        f"expires: {_time(view.expires_at, 'never')}).\n"
        "[bold yellow]Store it now: it cannot be shown again.[/]",
        highlight=False,
    )


@app.command("list")
def list_tokens(
    application: Annotated[str | None, typer.Option("--app", help="Only this application's tokens.")] = None,
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List tokens by prefix (never their secret) with their scopes and status."""
    views = run(lambda llm: _list(llm, application, include_revoked))
    if as_json:
        print_json([_public(view) for view in views])
        return
    if not views:
        consoles()[1].print("No tokens. Issue one with [bold]llm-manager tokens create --app NAME[/].")
        return
    table = Table(header_style="bold")
    for column in (
        "prefix",
        "application",
        "name",
        "scopes",
        "configurations",
        "status",
        "expires",
        "last used",
    ):
        table.add_column(column, no_wrap=column == "prefix")
    for view in views:
        table.add_row(
            view.prefix,
            view.application,
            view.name,
            ", ".join(view.groups),
            _configurations(view),
            Text(view.status, style=_STATUS_STYLE[view.status]),
            _time(view.expires_at, "never"),
            _time(view.last_used_at, "never"),
        )
    consoles()[0].print(table)


@app.command("revoke")
def revoke(prefix: Annotated[str, typer.Argument(help="The token's prefix, e.g. llmm_1a2b3c4d.")]) -> None:
    """Revoke a token: it is refused from the next request on, in every server process."""
    view = run(lambda llm: llm.tokens.revoke(prefix))
    consoles()[0].print(f"Revoked token [bold]{view.prefix}[/] of application {view.application}.")


def parse_expiry(text: str, *, now: datetime) -> datetime:
    """A relative lifetime from `now`, or an ISO 8601 time (UTC unless it names a zone); future only."""
    text = text.strip()
    relative = _RELATIVE.match(text)
    try:
        if relative:
            expires_at = now + timedelta(**{_UNITS[relative[2]]: int(relative[1])})
        else:
            expires_at = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise typer.BadParameter(
            f"expected a lifetime like 90min, 12h, 30d, 2w or a time like 2027-01-01T00:00Z, got {text!r}",
            param_hint="--expires",
        ) from None
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at <= now:
        raise typer.BadParameter(f"{text!r} is not in the future", param_hint="--expires")
    return expires_at


async def _list(llm: LLMManager, application: str | None, include_revoked: bool) -> list[TokenView]:
    application_id = (await llm.applications.get(application)).id if application else None
    return await llm.tokens.list_all(application_id=application_id, include_revoked=include_revoked)


def _public(view: TokenView) -> dict[str, Any]:
    return {**asdict(view), "status": view.status}


def _configurations(view: TokenView) -> str:
    return "all" if view.configurations is None else ", ".join(view.configurations)


def _time(value: datetime | None, missing: str) -> str:
    return missing if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
