"""`init --admin-email` and `users ...`: the admin UI's people, created and managed from a shell."""

from __future__ import annotations

import re

import pytest

from tests.cli.conftest import Cli, json_output

pytestmark = pytest.mark.usefixtures("data_dir")

PASSWORD = "a long enough password"


def test_init_creates_the_first_super_admin_once(cli: Cli) -> None:
    created = cli("init", "--admin-email", "Admin@Example.com", "--password-stdin", input=PASSWORD + "\n")
    assert "Created super-admin" in created.stdout
    assert PASSWORD not in created.stdout
    again = cli("init", "--admin-email", "admin@example.com", "--password-stdin", input="ignored password\n")
    assert "exists" in again.stdout
    users = json_output(cli("users", "list", "--json"))
    assert [(user["email"], user["roles"]) for user in users] == [("admin@example.com", ["super-admin"])]


def test_init_without_a_terminal_generates_and_shows_the_password_once(cli: Cli) -> None:
    created = cli("init", "--admin-email", "ops@example.com")
    found = re.search(r"shown only now: (\S+)", created.stdout)
    assert found is not None
    assert len(found.group(1)) >= 20


def test_users_create_prompts_twice_and_refuses_a_short_password(cli: Cli) -> None:
    cli("users", "create", "bob@example.com", "--role", "operator", input=f"{PASSWORD}\n{PASSWORD}\n")
    short = cli("users", "create", "eve@example.com", "--password-stdin", input="short\n", exit_code=1)
    assert "password: at least 10 characters" in short.stderr
    emails = [user["email"] for user in json_output(cli("users", "list", "--json"))]
    assert emails == ["bob@example.com"]  # nothing half-written


def test_set_roles_set_active_and_the_last_super_admin(cli: Cli) -> None:
    cli("init", "--admin-email", "admin@example.com", "--password-stdin", input=PASSWORD + "\n")
    cli("users", "create", "bob@example.com", "--password-stdin", input=PASSWORD + "\n")
    assert (
        "operator, viewer"
        in cli("users", "set-roles", "bob@example.com", "--role", "viewer", "--role", "operator").stdout
    )
    assert "inactive" in cli("users", "set-active", "bob@example.com", "--inactive").stdout
    refused = cli("users", "set-active", "admin@example.com", "--inactive", exit_code=1)
    assert "no active super-admin" in refused.stderr
    unknown = cli("users", "set-roles", "bob@example.com", "--role", "wizard", exit_code=1)
    assert "roles: unknown wizard" in unknown.stderr
    cli("users", "set-password", "bob@example.com", "--password-stdin", input="another long password\n")
