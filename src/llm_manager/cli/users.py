"""`llm-manager users ...`: the people who sign in to the admin UI, and their roles.

Passwords are never options (they would land in shell history and `ps`): they are prompted for,
twice, or read from standard input with `--password-stdin` for scripts.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from llm_manager.cli._runtime import consoles, fail, print_json, run
from llm_manager.manager import LLMManager
from llm_manager.services.accounts import DEFAULT_ROLES, UserView

app = typer.Typer(help="Admin UI users and their roles.", no_args_is_help=True)

RoleOption = Annotated[
    list[str] | None,
    typer.Option("--role", help=f"Role (repeat): {', '.join(DEFAULT_ROLES)} or one made in the UI."),
]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input (for scripts).")
]


def read_password(from_stdin: bool) -> str:
    """A new password: the first line of standard input, or typed twice at a hidden prompt."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("no password on standard input")
        return password
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@app.command("create")
def create(
    email: Annotated[str, typer.Argument(help="Sign-in email address.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    role: RoleOption = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a user (default role: viewer)."""
    password = read_password(password_stdin)
    user = run(
        lambda llm: llm.services.accounts.create_user(email, password, name=name, roles=role or ["viewer"])
    )
    consoles()[0].print(f"Created user [bold]{user.email}[/] with roles {', '.join(user.roles)}.")


@app.command("list")
def list_users(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every user, with roles and last sign-in."""
    users = run(lambda llm: llm.services.accounts.list_users())
    if as_json:
        print_json([_json(user) for user in users])
        return
    table = Table("id", "email", "name", "roles", "active", "last sign-in")
    for user in users:
        last = user.last_login_at.strftime("%Y-%m-%d %H:%M") if user.last_login_at else "never"
        table.add_row(
            str(user.id),
            user.email,
            user.name,
            ", ".join(user.roles),
            "yes" if user.is_active else "no",
            last,
        )
    consoles()[0].print(table)


@app.command("set-roles")
def set_roles(email: Annotated[str, typer.Argument()], role: RoleOption = None) -> None:
    """Replace a user's roles; it applies on the user's next request."""
    if not role:
        fail("give at least one --role")
    roles = role

    async def action(llm: LLMManager) -> UserView:
        user = await llm.services.accounts.user_by_email(email)
        return await llm.services.accounts.update_user(user.id, roles=roles)

    user = run(action)
    consoles()[0].print(f"{user.email}: {', '.join(user.roles)}")


@app.command("set-active")
def set_active(
    email: Annotated[str, typer.Argument()],
    active: Annotated[bool, typer.Option("--active/--inactive", help="Allow or refuse sign-in.")],
) -> None:
    """Deactivate (ending every session at once) or reactivate a user."""

    async def action(llm: LLMManager) -> UserView:
        user = await llm.services.accounts.user_by_email(email)
        return await llm.services.accounts.update_user(user.id, is_active=active)

    user = run(action)
    consoles()[0].print(f"{user.email}: {'active' if user.is_active else 'inactive'}")


@app.command("set-password")
def set_password(email: Annotated[str, typer.Argument()], password_stdin: PasswordStdin = False) -> None:
    """Set a user's password (a forgotten one); every session of that user ends."""
    password = read_password(password_stdin)

    async def action(llm: LLMManager) -> None:
        user = await llm.services.accounts.user_by_email(email)
        await llm.services.accounts.set_password(user.id, password)

    run(action)
    consoles()[0].print(f"Password of {email} changed; their sessions have ended.")


def _json(user: UserView) -> dict[str, object]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "roles": list(user.roles),
        "is_active": user.is_active,
        "created_at": user.created_at.isoformat(),
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
    }
